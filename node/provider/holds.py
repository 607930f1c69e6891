"""Who may hold this provider's GPUs before paying: the defence against capacity squatting.

The attack (issue 12, attack 5): a signed Agreement that is never funded held the GPUs for
240 s (60 s quote + 180 s funding timeout); one key with three messages kept three
providers busy, renewable forever, at no cost. What makes squatting cost the squatter
here, and why this mix:

1. **Short holds, in two steps.** A quote holds the GPUs only ``agreement_timeout_s``
   (an honest renter signs at once: it already chose the offer); an agreement holds them
   ``funding_timeout_s`` (an honest renter opens its channel at once: one transaction).
   Defaults 10 s + 30 s instead of 60 s + 180 s: a squatter now has to come back every
   40 s instead of every 240 s, and each time pays the next two points.
2. **Proof of funds.** Before an agreement turns into a hold, the renter's token balance
   in the agreed mint is read from the chain and must cover the quote's deposit. The read
   runs while the provider waits for the Agreement, so an honest renter waits no longer
   than before. Squatting now needs real tokens per key held against each deposit (they
   are not locked — hence 3 and 4 — but a Sybil flood of fresh, empty keys is refused).
3. **One unfunded hold per renter key** at a time (``max_unfunded_per_renter``), so one
   key cannot take every GPU of a provider with several requests.
4. **A cool-down for keys whose hold expired unfunded**, doubling at each repeat
   (``unfunded_cooldown_s`` times 2^(n-1), at most a day): an honest renter that failed to
   fund once retries soon; a squatter's key is shut out for longer each round, so
   renewing "forever" needs ever more funded keys.

A bond or funding-first (quote bound to the channel) would make squatting cost money
outright, but both add an on-chain step to every honest job or a protocol change on both
sides; the mix above keeps the honest path as fast as before, and what remains — a funded
key per hold, at most one hold per key, 40 s each, then an escalating ban — is bounded.

5. **Unfunded holds per IP address** (``max_unfunded_per_ip``): fresh funded keys are
   cheap to make from one machine; the address they connect from is not. The network passes
   the stream's remote IP up (``MessageStream.remote_ip``); relayed renters have none here
   (their relay limits reservations per IP) and are counted by key only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dgpu.contracts_client.money import Escrow
from dgpu.node.provider.funding import Refusal
from dgpu.protocol.errors import DgpuError

MAX_COOLDOWN_S = 24 * 3600


@dataclass
class _KeyRecord:
    unfunded: set[bytes] = field(default_factory=set)
    """Jobs of this key agreed or quoted but not funded yet."""
    expired: int = 0
    """How many of its holds expired unfunded."""
    banned_until: float = 0.0


class HoldBook:
    """Unfunded holds and cool-downs per renter key. Times are trio clock values."""

    def __init__(
        self,
        *,
        max_unfunded_per_renter: int,
        cooldown_s: float,
        max_unfunded_per_ip: int = 4,
        max_keys: int = 65_536,
    ) -> None:
        self.max_unfunded_per_renter = max_unfunded_per_renter
        self.max_unfunded_per_ip = max_unfunded_per_ip
        self.cooldown_s = cooldown_s
        self._max_keys = max_keys
        self._keys: dict[bytes, _KeyRecord] = {}
        self._ip_of: dict[bytes, str] = {}
        """Unfunded job -> the address its renter spoke from (known addresses only)."""
        self._per_ip: Counter[str] = Counter()

    def unfunded_from(self, ip: str) -> int:
        return self._per_ip[ip]

    def admit(self, renter: bytes, job_id: bytes, now: float, *, ip: str = "") -> None:
        """Count a new unfunded hold of ``renter`` (speaking from ``ip``, "" when unknown);
        :class:`Refusal` when it may not have one."""
        if ip and self._per_ip[ip] >= self.max_unfunded_per_ip:
            raise Refusal(
                "over_limit",
                f"{self._per_ip[ip]} agreements from your address are not funded yet (limit"
                f" {self.max_unfunded_per_ip}); fund one or wait until they expire",
            )
        record = self._keys.get(renter)
        if record is not None:
            if record.banned_until > now:
                wait = int(record.banned_until - now) + 1
                raise Refusal(
                    "over_limit", f"an earlier agreement of this key went unfunded; wait {wait}s"
                )
            if len(record.unfunded) >= self.max_unfunded_per_renter:
                raise Refusal("over_limit", "this key already holds GPUs it has not funded")
        else:
            self._forget_idle()
            record = self._keys[renter] = _KeyRecord()
        record.unfunded.add(job_id)
        if ip:
            self._ip_of[job_id] = ip
            self._per_ip[ip] += 1

    def funded(self, renter: bytes, job_id: bytes) -> None:
        """The job's channel checked out: its hold no longer counts as unfunded."""
        record = self._keys.get(renter)
        if record is not None:
            record.unfunded.discard(job_id)
        self._forget_ip(job_id)

    def _forget_ip(self, job_id: bytes) -> None:
        ip = self._ip_of.pop(job_id, None)
        if ip is not None:
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]

    def released(self, renter: bytes, job_id: bytes) -> None:
        """The hold ended before an agreement (refused, or the renter walked away)."""
        self.funded(renter, job_id)

    def expired(self, renter: bytes, job_id: bytes, now: float) -> None:
        """An agreed hold ran out unfunded: the key cools down, longer at each repeat."""
        record = self._keys.setdefault(renter, _KeyRecord())
        record.unfunded.discard(job_id)
        self._forget_ip(job_id)
        record.expired += 1
        ban = min(self.cooldown_s * 2 ** (record.expired - 1), MAX_COOLDOWN_S)
        record.banned_until = max(record.banned_until, now + ban)

    def _forget_idle(self) -> None:
        """Bounded memory under a flood of fresh keys: drop keys with nothing at stake."""
        if len(self._keys) < self._max_keys:
            return
        for key in [k for k, r in self._keys.items() if not r.unfunded and not r.expired]:
            del self._keys[key]
        while len(self._keys) >= self._max_keys:
            self._keys.pop(next(iter(self._keys)))


async def check_funds(escrow: Escrow, renter: bytes, mint: bytes, deposit: int) -> None:
    """:class:`Refusal` unless ``renter`` holds ``deposit`` of ``mint`` (read on chain)."""
    try:
        balance = await escrow.token_balance(renter, mint)
    except DgpuError as exc:
        raise Refusal("not_funded", f"could not read the renter's balance: {exc}"[:256]) from exc
    if balance < deposit:
        raise Refusal(
            "not_funded", f"the renter's balance {balance} does not cover the deposit {deposit}"
        )
