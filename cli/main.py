"""Entry point of the ``dgpu`` command.

Command groups live in ``dgpu.cli.cmd_*`` modules, each exposing ``command`` (a click
command or group), listed in :data:`COMMANDS` with the line ``dgpu --help`` shows. A
command's module is imported only when that command runs: ``dgpu --help`` or ``dgpu keys
show`` must not pay for libp2p, solders, starlette and the rest (a test checks this).
Errors of dgpu print as one line of words, never as a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Final

import click
from dgpu.cli.output import fail
from dgpu.protocol.errors import DgpuError

COMMANDS: Final[dict[str, str]] = {
    "bootstrap": "Bootstrap peers: the DHT servers new nodes join through.",
    "chain": "The Solana side: a local JSON-RPC chain and the escrow program.",
    "config": "Profiles: named networks and your defaults, so commands need few flags.",
    "coordinator": "The coordinator: offer index, prices, settlement, explorer.",
    "devnet": "A whole local network: chain, coordinator, peers, providers.",
    "jobs": "Your jobs: ls, logs [-f], attach, stop, outputs, resume.",
    "keys": "Node keys: one key is the Solana wallet and the libp2p ID.",
    "probe": "Check a provider's GPU claims with a short paid job; sign the verdict.",
    "provider": "Offer GPUs for rent, run the jobs, get paid per second.",
    "run": "Run a container on a rented GPU, or manage jobs.",
    "sim": "Simulate many nodes in virtual time, or a whole market.",
    "wallet": "Your key's money: balance, history, transfer, devnet airdrop.",
}
"""Command name -> its one-line help; the command is ``dgpu.cli.cmd_<name>.command``."""


class LazyGroup(click.Group):
    """Imports a command's module when the command is looked up to run, not to list it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"dgpu.cli.cmd_{cmd_name}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(sorted(COMMANDS.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """dgpu: rent GPUs peer to peer, pay per second through a Solana escrow."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (trio nurseries wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main() -> None:
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
