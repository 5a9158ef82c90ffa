"""Small helpers every layer above the core may use: file writes, retries, process groups, logging.

They do OS I/O (which the core may not), and hold no scheduling rule.
"""
