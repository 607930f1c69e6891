"""The ``dgpu`` command line. Each ``cmd_*.py`` module here adds one command group."""
