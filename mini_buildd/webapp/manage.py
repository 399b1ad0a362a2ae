"""Django's management commands for developers (e.g. ``makemigrations``) on a throw-away home:
``python3 -m mini_buildd.webapp.manage makemigrations mini_buildd``.
"""

import sys
import tempfile

from mini_buildd import config, webapp


def main(argv=None):
    """Django's manage.py on a throw-away instance home (e.g. makemigrations)."""
    from django.core.management import execute_from_command_line  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as home:
        paths = config.init(home)
        paths.create()
        webapp.setup(paths)
        execute_from_command_line(["manage"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
