"""The PBS commands: qsub, qstat, qdel, qhold, qrls, qlog, one module each (`control` holds qdel/qhold/qrls).

Each `main()` / `*_main()` is a console script (see pyproject.toml). They talk to the
current host's HTTP API (hyperbatch.cli.host_registry, hyperbatch.cli.client); the server
validates every field, so the client only splits the command line into the
JobRequest fields and passes the server's 4xx messages through.
"""
