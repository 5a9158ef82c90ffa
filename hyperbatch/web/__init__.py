"""The web dashboard: pages served by the API's own resolver (local daemon and Lambda alike).

pages.py renders HTML (every user-controlled string escaped); routes.py adds the routes and local
mode's sign-in; static/ holds the one stylesheet and the one script, served by the daemon itself.
"""
