#!/usr/bin/env python
"""Django's command-line utility for Tally.

In a development checkout (`make run` / `make test` install the `dev` extra) every command works
with nothing exported: what is not set of DATABASE_URL, CELERY_BROKER_URL and SECRET_KEY comes
from the embedded servers (started if they are not running) and the secret generated under
$TALLY_DATA_DIR (CONTRACT §2). With all three set, as in production, nothing embedded is started
or looked for, and the production image has no devserver package at all (.dockerignore).
"""

import os
import sys

PRODUCTION_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY")


def development_environment() -> None:
    if all(os.environ.get(name) for name in PRODUCTION_VARIABLES):
        return
    try:
        from devserver.embedded import dev_environ
    except ImportError:  # not a development checkout: the settings name the missing variable
        return
    dev_environ()


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    development_environment()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
