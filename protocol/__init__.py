"""Sans-IO core of dgpu: identities, messages, signatures, receipts, state machines.

Nothing here does I/O or imports an event loop; the node, the coordinator and the
simulations drive these pieces.
"""

from dgpu.protocol.codec import decode, decode_as, encode
from dgpu.protocol.errors import (
    DecodeError,
    DgpuError,
    KeyFileError,
    MessageTooLarge,
    OfferError,
    OfferExpired,
    OfferNotYetValid,
    ProtocolError,
    SignatureError,
    StateError,
)
from dgpu.protocol.identity import Identity, address_of, peer_id_of, public_key_of_peer_id
from dgpu.protocol.keyfile import load_identity, save_identity
from dgpu.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Agreement,
    AnyMessage,
    Cancel,
    ChannelOpened,
    EnvVar,
    ErrorMessage,
    GpuSample,
    JobRequest,
    JobStatus,
    LogChunk,
    Message,
    Offer,
    OutputFile,
    OutputManifest,
    ProbeVerdict,
    Quote,
    Receipt,
    ReceiptAck,
    UsageReport,
)
from dgpu.protocol.offers import OfferTerms, make_offer, parse_offer, validate_offer
from dgpu.protocol.receipt import RECEIPT_LEN, RECEIPT_TAG, ReceiptBody

__all__ = [
    "MAX_MESSAGE_BYTES",
    "RECEIPT_LEN",
    "RECEIPT_TAG",
    "Agreement",
    "AnyMessage",
    "Cancel",
    "ChannelOpened",
    "DecodeError",
    "DgpuError",
    "EnvVar",
    "ErrorMessage",
    "GpuSample",
    "Identity",
    "JobRequest",
    "JobStatus",
    "KeyFileError",
    "LogChunk",
    "Message",
    "MessageTooLarge",
    "Offer",
    "OfferError",
    "OfferExpired",
    "OfferNotYetValid",
    "OfferTerms",
    "OutputFile",
    "OutputManifest",
    "ProbeVerdict",
    "ProtocolError",
    "Quote",
    "Receipt",
    "ReceiptAck",
    "ReceiptBody",
    "SignatureError",
    "StateError",
    "UsageReport",
    "address_of",
    "decode",
    "decode_as",
    "encode",
    "load_identity",
    "make_offer",
    "parse_offer",
    "peer_id_of",
    "public_key_of_peer_id",
    "save_identity",
    "validate_offer",
]
