"""Typed errors of the node networking layer.

::

    DgpuError
    └── NetError                 root of dgpu.node.net
        ├── NetworkClosed        the local network was stopped or its peer crashed
        ├── PeerUnreachable      no connection to the peer (dial failed, no address, partition)
        │   └── ProtocolNotSupported  the peer does not serve the protocol
        ├── NetTimeout           a dial, read, write or lookup passed its deadline
        ├── StreamClosed         the remote ended the stream cleanly before a full message
        ├── StreamReset          the stream was aborted (by the remote or a broken connection)
        ├── FrameError           bytes on a stream that are not a valid frame
        │   └── FrameTooLarge    a length prefix above the agreed cap (cut off before reading)
        └── BulkError            the bulk byte channel
            ├── TicketRefused    a bulk ticket that is forged, expired or not authorised
            ├── BulkLimitExceeded more bytes than the negotiated limit
            └── IntegrityError   received bytes whose sha256 or size is not the announced one

Message bytes that do not decode raise :class:`dgpu.protocol.errors.DecodeError` (from the
protocol core) unchanged; offers that fail validation raise the protocol's ``OfferError``
or ``SignatureError``.
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class NetError(DgpuError):
    """Root of every error raised by :mod:`dgpu.node.net`."""


class NetworkClosed(NetError):
    """The local network is not running (stopped, or its peer crashed in a simulation)."""


class PeerUnreachable(NetError):
    """No connection could be made to ``peer_id``."""

    def __init__(self, peer_id: str, reason: str) -> None:
        super().__init__(f"peer {peer_id} unreachable: {reason}")
        self.peer_id = peer_id
        self.reason = reason


class ProtocolNotSupported(PeerUnreachable):
    def __init__(self, peer_id: str, protocol: str) -> None:
        super().__init__(peer_id, f"does not serve {protocol}")
        self.protocol = protocol


class NetTimeout(NetError, TimeoutError):
    """An operation passed its deadline; ``what`` names it."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} timed out after {seconds:g}s")
        self.what = what
        self.seconds = seconds


class StreamClosed(NetError):
    """The remote closed the stream (clean end of stream) before a complete message."""


class StreamReset(NetError):
    """The stream was aborted, by the remote, the local side or a broken connection."""


class FrameError(NetError):
    """Bytes on a stream that do not form a valid length-prefixed frame."""


class FrameTooLarge(FrameError):
    """A frame whose announced length exceeds the cap; refused before reading its body."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


class BulkError(NetError):
    """Root of the bulk byte channel's errors."""


class TicketRefused(BulkError):
    """A bulk ticket that is forged, expired, for another server or not authorised."""


class BulkLimitExceeded(BulkError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes exceed the agreed bulk limit of {limit} bytes")
        self.size = size
        self.limit = limit


class IntegrityError(BulkError):
    """Received bytes that are not the content announced (sha256 or size mismatch)."""
