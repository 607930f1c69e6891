"""Entry point of the ``dgpu`` command.

Command groups live in ``dgpu.cli.cmd_*`` modules, each exposing ``command`` (a click
command or group); they are found at start so that no shared list must be edited to add
one. Errors of dgpu print as one line of words, never as a traceback.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click
import dgpu.cli
from dgpu.cli.output import fail
from dgpu.protocol.errors import DgpuError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """dgpu: rent GPUs peer to peer, pay per second through a Solana escrow."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    for info in sorted(pkgutil.iter_modules(dgpu.cli.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"dgpu.cli.{info.name}")
            cli.add_command(module.command)


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (trio nurseries wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main() -> None:
    _register()
    try:
        try:
            cli.main(standalone_mode=False)
        except BaseExceptionGroup as group:
            raise _leaf(group) from group
    except click.exceptions.Abort:
        fail("aborted", code=130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DgpuError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except Exception as exc:  # a bug: say so in words; -v shows the traceback
        logging.getLogger("dgpu").debug("internal error", exc_info=True)
        if logging.getLogger().isEnabledFor(logging.INFO):
            raise
        fail(f"internal error: {exc!r} (run with -v for the traceback)", code=70)


if __name__ == "__main__":
    main()
