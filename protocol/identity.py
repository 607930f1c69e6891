"""One ed25519 key per node: its Solana address, its libp2p peer ID, its signatures.

Every signature is domain-separated: the signed bytes are ``tag || payload`` where the
tag names the message kind and version (``dgpu/v1/offer``...). Tags all start with
``dgpu/`` and contain a NUL terminator, so no tagged payload is a valid Solana
transaction message and no kind can be replayed as another.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import base58
import nacl.exceptions
import nacl.signing
from dgpu.protocol.errors import SignatureError

if TYPE_CHECKING:
    from solders.keypair import Keypair

PUBLIC_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
SEED_LEN: Final = 32

# libp2p: identity multihash (code 0x00) of the protobuf PublicKey {Type: Ed25519, Data: key}
_PEER_ID_PREFIX: Final = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def domain_tag(kind: str) -> bytes:
    """The signature domain of one message kind, e.g. ``b"dgpu/v1/offer\\0"``."""
    if not kind or "\0" in kind or "/" in kind:
        raise ValueError(f"bad signature kind {kind!r}")
    return f"dgpu/v1/{kind}".encode() + b"\0"


def address_of(public_key: bytes) -> str:
    """Solana address (base58 of the 32-byte public key)."""
    _check_public_key(public_key)
    return _base58_key(bytes(public_key))


_B58: Final = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_PAIRS: Final = [bytes((_B58[i // 58], _B58[i % 58])) for i in range(58 * 58)]


@functools.lru_cache(maxsize=4096)
def _base58_key(data: bytes) -> str:
    """base58 two digits at a time (half the big-integer divisions of ``base58``'s
    encoder), remembered for the keys met again and again (a batch of receipts names one
    renter and one program, and each channel twice): the pure-Python encoder cost ~14 µs
    a key, a tenth of an ed25519 verification, several times per receipt. Leading zero
    bytes are leading '1's, as in Bitcoin's and Solana's base58."""
    number = int.from_bytes(data, "big")
    pairs: list[bytes] = []
    while number:
        number, rest = divmod(number, 58 * 58)
        pairs.append(_B58_PAIRS[rest])
    pairs.reverse()
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + b"".join(pairs).lstrip(b"1").decode()


def public_key_of_address(address: str) -> bytes:
    try:
        raw = base58.b58decode(address)
    except ValueError as exc:
        raise SignatureError(f"not a base58 address: {address!r}") from exc
    _check_public_key(raw)
    return raw


def peer_id_of(public_key: bytes) -> str:
    """libp2p peer ID (``12D3KooW...``) of an ed25519 public key."""
    _check_public_key(public_key)
    return base58.b58encode(_PEER_ID_PREFIX + public_key).decode()


def public_key_of_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_of`; only ed25519 identity peer IDs are accepted."""
    try:
        raw = base58.b58decode(peer_id)
    except ValueError as exc:
        raise SignatureError(f"not a base58 peer ID: {peer_id!r}") from exc
    if len(raw) != len(_PEER_ID_PREFIX) + PUBLIC_KEY_LEN or not raw.startswith(_PEER_ID_PREFIX):
        raise SignatureError(f"not an ed25519 peer ID: {peer_id!r}")
    return raw[len(_PEER_ID_PREFIX) :]


def verify(public_key: bytes, kind: str, payload: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``public_key``'s over ``kind``."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise SignatureError(f"public key must be {PUBLIC_KEY_LEN} bytes, got {len(public_key)}")
    if len(signature) != SIGNATURE_LEN:
        raise SignatureError(f"signature must be {SIGNATURE_LEN} bytes, got {len(signature)}")
    try:
        nacl.signing.VerifyKey(public_key).verify(domain_tag(kind) + payload, signature)
    except nacl.exceptions.BadSignatureError as exc:
        raise SignatureError(f"bad {kind} signature by {address_of(public_key)}") from exc
    except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise SignatureError(f"invalid {kind} public key") from exc


def _check_public_key(public_key: bytes) -> None:
    if len(public_key) != PUBLIC_KEY_LEN:
        raise SignatureError(f"public key must be {PUBLIC_KEY_LEN} bytes, got {len(public_key)}")


@dataclass(frozen=True, repr=False)
class Identity:
    """A node's ed25519 key pair. ``repr`` never shows the secret."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_LEN:
            raise ValueError(f"ed25519 seed must be {SEED_LEN} bytes, got {len(self.seed)}")

    @classmethod
    def generate(cls) -> Identity:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_label(cls, label: str) -> Identity:
        """A deterministic key for tests and simulations (never for real funds)."""
        return cls(hashlib.sha256(b"dgpu-test-key:" + label.encode()).digest())

    @functools.cached_property
    def _signing_key(self) -> nacl.signing.SigningKey:
        # derived once: a node signs every report or receipt with it
        return nacl.signing.SigningKey(self.seed)

    @functools.cached_property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def address(self) -> str:
        return address_of(self.public_key)

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.public_key)

    def secret_bytes(self) -> bytes:
        """The 64-byte ``seed || public key`` form used by Solana and libp2p."""
        return self.seed + self.public_key

    def sign(self, kind: str, payload: bytes) -> bytes:
        return self._signing_key.sign(domain_tag(kind) + payload).signature

    def sign_raw(self, message: bytes) -> bytes:
        """Sign bytes as they are: only for byte layouts that carry their own domain tag
        (receipts, whose tag is part of the layout the chain parses) and Solana transactions."""
        return self._signing_key.sign(message).signature

    def to_solders(self) -> Keypair:
        from solders.keypair import Keypair

        return Keypair.from_bytes(self.secret_bytes())

    def to_libp2p(self) -> object:
        """A ``libp2p.crypto.keys.KeyPair`` for this identity (imported lazily: libp2p is slow
        to import and the protocol core does not need it)."""
        from libp2p.crypto.ed25519 import create_new_key_pair

        return create_new_key_pair(self.seed)

    def __repr__(self) -> str:
        return f"Identity({self.address})"
