"""Development tooling, not shipped to production: the embedded PostgreSQL and Redis
(`devserver.embedded`, which `manage.py` also uses when nothing is exported) and `make run`'s
launcher (`devserver.run`).

Its wheels come with the `dev` extra (requirements-dev.lock); the Docker image installs
requirements.lock alone and leaves this package out (.dockerignore). Nothing in core/ or the
apps imports it.
"""
