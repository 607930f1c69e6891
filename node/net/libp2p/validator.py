"""The DHT validator of the ``dgpu`` namespace, enforced locally and by every server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dgpu.node.net.records import check_offer_record, select_newest
from dgpu.protocol.errors import ProtocolError
from libp2p.records.validator import Validator

log = logging.getLogger(__name__)


class OfferRecordValidator(Validator):
    """Values under ``/dgpu/offer/<peer>`` must be valid offers signed by that peer (size,
    signature, time window); nothing else may be stored under ``/dgpu/``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def validate(self, key: str, value: bytes) -> None:
        try:
            check_offer_record(key, value, now=int(self._clock()))
        except ProtocolError as exc:
            log.debug("refused DHT record under %s: %s", key, exc)
            raise ValueError(f"invalid dgpu record under {key!r}: {exc}") from exc

    def select(self, key: str, values: list[bytes]) -> int:
        return select_newest(key, values, now=int(self._clock()))
