"""Canonical MessagePack encoding of :mod:`dgpu.protocol.messages`, with strict decoding.

``decode`` checks the size cap before parsing, validates every field (types, ranges,
lengths) and re-encodes to make sure the input was in canonical form. Every failure is a
:class:`~dgpu.protocol.errors.DecodeError` naming the field.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from dgpu.protocol.errors import DecodeError, MessageTooLarge
from dgpu.protocol.messages import MAX_MESSAGE_BYTES, AnyMessage, Message

M = TypeVar("M", bound=Message)

_encoder = msgspec.msgpack.Encoder()
_any_decoder: msgspec.msgpack.Decoder[AnyMessage] = msgspec.msgpack.Decoder(AnyMessage)
_decoders: dict[type[Message], msgspec.msgpack.Decoder[Message]] = {}
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> AnyMessage:
    """Decode any message kind."""
    return _checked(_any_decoder, data, limit)


def decode_as(kind: type[M], data: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> M:
    """Decode a message that must be of ``kind``."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    message = _checked(decoder, data, limit)
    assert isinstance(message, kind)
    return message


def _checked(decoder: msgspec.msgpack.Decoder[M], data: bytes, limit: int) -> M:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > limit:
        raise MessageTooLarge(len(data), limit)
    try:
        message = decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        field = match.group(1) if match else None
        reason = text[: match.start()] if match else text
        raise DecodeError(f"invalid message: {reason}", field=field or None) from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed MessagePack: {exc}") from exc
    except (RecursionError, MemoryError, OverflowError, ValueError) as exc:
        raise DecodeError(f"malformed MessagePack: {exc!r}") from exc
    if _encoder.encode(message) != bytes(data):
        raise DecodeError("message is not in canonical form")
    return message
