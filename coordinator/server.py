"""Serve the coordinator with hypercorn (asyncio) until SIGINT/SIGTERM or a shutdown event.

The listening socket is bound here (``127.0.0.1:0`` picks a free port) and handed to
hypercorn's worker as is, so the caller learns the real address before serving starts;
connections that arrive during the app's startup wait in the listen backlog.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass

from dgpu.coordinator.errors import CoordinatorError
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import LifespanFailureError, wrap_app
from starlette.types import ASGIApp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise CoordinatorError(f"--listen wants HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the socket says it is TCP (with proto 0, Nagle + delayed ACKs add ~40 ms per response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise CoordinatorError(f"cannot listen on {listen}: {exc.strerror}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def hypercorn_config(*, graceful_timeout: float = 5.0) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = 30
    config.h11_max_incomplete_size = 16 * 1024
    return config


async def serve_app(
    app: ASGIApp,
    sock: socket.socket,
    *,
    shutdown: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Serve until ``shutdown`` is set or (with ``handle_signals``) SIGINT/SIGTERM arrives."""
    stop = shutdown or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    config = hypercorn_config()
    sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
    try:
        wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        await worker_serve(wrapped, config, sockets=sockets, shutdown_trigger=stop.wait)
    except LifespanFailureError as exc:
        lines = [line for line in str(exc).strip(" '\n").splitlines() if line.strip()]
        raise CoordinatorError(
            f"coordinator failed to start: {lines[-1] if lines else exc}"
        ) from None
    finally:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        sock.close()
