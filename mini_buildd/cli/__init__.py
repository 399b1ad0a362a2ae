"""Command-line entry points (daemon and user tools); each module has a ``main()``."""
