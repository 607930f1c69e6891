"""The node-level report: jobs, utilisation, prices, money per party, and the invariants.

Money is read back from the chain (token balances, the mint's supply) and from what the
nodes kept (the renters' signed receipts, the providers' stored receipts, the work the
executors really did). Invariants:

- ``tokens_conserved``: the mint's supply is what was minted, and renters, providers and
  the treasury hold all of it once every channel is closed (nothing left in a vault);
- ``no_payment_beyond_receipt``: no channel settled above the highest cumulative its renter
  signed, and each provider's balance is exactly what its channels settled minus fees;
- ``renters_refunded``: every channel was closed with ``deposit - settled`` back to its
  renter, and each renter holds its starting balance minus what its channels settled;
- ``providers_paid_their_receipts``: every channel settled up to the highest receipt its
  provider stored (no acknowledged receipt lost, whatever the coordinator did);
- ``fees_to_treasury``: the treasury holds exactly the fee of every channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dgpu.contracts_client.money import fee_of
from dgpu.protocol.codec import decode_as
from dgpu.protocol.messages import Quote
from dgpu.simulations.nodes.chain import FEE_BPS
from dgpu.simulations.nodes.desk import tx_bytes
from dgpu.simulations.report import distribution, ratio, series_block

if TYPE_CHECKING:
    from dgpu.simulations.nodes.runner import NodeSimulation


@dataclass(frozen=True)
class Holdings:
    """Token balances at the end of a run."""

    supply: int
    renters: dict[bytes, int]
    providers: dict[bytes, int]
    treasury: int
    coordinator: int


async def read_holdings(sim: NodeSimulation) -> Holdings:
    chain = sim.chain
    return Holdings(
        supply=await chain.supply(),
        renters={
            r.identity.public_key: await chain.balance(r.identity.public_key) for r in sim.renters
        },
        providers={
            p.identity.public_key: await chain.balance(p.identity.public_key) for p in sim.providers
        },
        treasury=await chain.balance(chain.treasury),
        coordinator=await chain.balance(chain.coordinator.public_key),
    )


@dataclass(frozen=True)
class JobFacts:
    job_id: bytes
    provider: bytes
    renter: bytes
    state: str
    stop_reason: str
    channel: bytes | None
    price: int
    gpus: int
    max_duration: int
    seconds: int

    @property
    def delivered(self) -> int:
        return min(self.seconds, self.max_duration) * self.price * self.gpus


def _jobs(sim: NodeSimulation) -> list[JobFacts]:
    facts: list[JobFacts] = []
    for node in sim.providers:
        for job in node.store.jobs("provider"):
            if job.quote is None:
                continue
            quote = decode_as(Quote, job.quote)
            work = sim.work.records.get(job.job_id.hex())
            seconds = work.seconds() if work is not None and work.ended is not None else 0
            facts.append(
                JobFacts(
                    job.job_id,
                    node.identity.public_key,
                    quote.renter,
                    job.state,
                    job.stop_reason,
                    job.channel,
                    quote.price_per_gpu_second,
                    quote.gpu_count,
                    quote.max_duration_s,
                    seconds,
                )
            )
    return sorted(facts, key=lambda f: f.job_id)


def node_report(sim: NodeSimulation, held: Holdings) -> dict[str, Any]:
    sc = sim.sc
    chain = sim.chain
    channels = sim.chain.log.channels
    jobs = _jobs(sim)
    by_channel = {j.channel: j for j in jobs if j.channel is not None}
    signed: dict[bytes, int] = {}
    for renter in sim.renters:
        for receipt in renter.store.latest_receipts("renter"):
            signed[receipt.channel] = max(signed.get(receipt.channel, 0), receipt.cumulative)
    stored: dict[bytes, int] = {}
    for provider in sim.providers:
        for receipt in provider.store.latest_receipts("provider"):
            stored[receipt.channel] = max(stored.get(receipt.channel, 0), receipt.cumulative)
    fees = {c: fee_of(r.settled, FEE_BPS) for c, r in channels.items()}
    open_vaults = sum(
        r.deposit - r.settled + fees[c] for c, r in channels.items() if r.refunded is None
    )
    holders = sum(held.renters.values()) + sum(held.providers.values()) + held.treasury
    earned: dict[bytes, int] = {}
    spent: dict[bytes, int] = {}
    for c, r in channels.items():
        earned[r.provider] = earned.get(r.provider, 0) + r.settled - fees[c]
        spent[r.renter] = spent.get(r.renter, 0) + r.settled
    invariants = {
        "tokens_conserved": held.supply == chain.minted
        and holders + open_vaults + held.coordinator == chain.minted
        and open_vaults == 0,
        "no_payment_beyond_receipt": all(r.settled <= signed.get(c, 0) for c, r in channels.items())
        and all(held.providers[p] == earned.get(p, 0) for p in held.providers),
        "renters_refunded": all(
            r.refunded is not None and r.refunded == r.deposit - r.settled
            for r in channels.values()
        )
        and all(held.renters[k] == sc.renters.balance - spent.get(k, 0) for k in held.renters),
        "providers_paid_their_receipts": all(
            channels[c].settled >= cumulative for c, cumulative in stored.items() if c in channels
        )
        and all(c in channels for c in stored),
        "fees_to_treasury": held.treasury == sum(fees.values()),
    }
    unpaid_job = {
        j.job_id: max(
            0, j.delivered - (channels[j.channel].settled if j.channel in channels else 0)
        )
        for j in jobs
    }
    exposure: dict[bytes, int] = {}
    for j in jobs:
        exposure[j.provider] = exposure.get(j.provider, 0) + unpaid_job[j.job_id]
    over: dict[bytes, int] = {}
    for c, r in channels.items():
        job = by_channel.get(c)
        value = job.delivered if job is not None else 0
        over[r.renter] = over.get(r.renter, 0) + max(0, r.settled - value)
    labels = {p.identity.public_key: p.label for p in sim.providers}
    labels.update({r.identity.public_key: r.label for r in sim.renters})
    return {
        "mode": "node",
        "scenario": sc.name,
        "seed": sim.seed,
        "duration_s": sc.duration_s,
        "providers": sc.providers.count,
        "renters": sc.renters.count,
        "engine": engine(sim),
        "jobs": _job_counts(sim, jobs),
        "utilisation": _utilisation(sim),
        "prices": _prices(sim),
        "paid": {
            "renters_total": sum(spent.values()),
            "providers_total": sum(earned.values()),
            "treasury": held.treasury,
            "refunded_total": sum(r.refunded or 0 for r in channels.values()),
            "deposited_total": sum(r.deposit for r in channels.values()),
            "per_provider": {
                labels[k]: v
                for k, v in sorted(held.providers.items(), key=lambda kv: labels[kv[0]])
            },
            "per_renter": {
                labels[k]: spent.get(k, 0) for k in sorted(held.renters, key=lambda k: labels[k])
            },
        },
        "exposure": {
            "largest": max(exposure.values(), default=0),
            "largest_provider": _argmax(exposure, labels),
            "largest_job": max(unpaid_job.values(), default=0),
            "per_job": distribution(list(unpaid_job.values())),
        },
        "overpayment": {
            "largest": max(over.values(), default=0),
            "largest_renter": _argmax(over, labels),
            "total": sum(over.values()),
        },
        "settlement": _settlements(sim),
        "faults": _faults(sim),
        "series": _series(sim),
        "invariants": invariants,
    }


def _argmax(values: dict[bytes, int], labels: dict[bytes, str]) -> str | None:
    if not values or max(values.values()) == 0:
        return None
    return min((labels[k] for k, v in values.items() if v == max(values.values())))


def engine(sim: NodeSimulation) -> dict[str, str]:
    return {
        "provider": "dgpu.node.provider.Provider (real role)",
        "renter": "dgpu.node.renter.Renter (real role)",
        "network": "dgpu.node.net.memory (MemoryHub, trio MockClock)",
        "executor": "dgpu.node.provider.VirtualExecutor (simulated jobs)",
        "gpus": "dgpu.node.gpu.SimulatedBackend",
        "escrow": "escrow program (.so) in LiteSVM"
        if sim.chain.backend == "litesvm"
        else "dgpu.contracts_client.money.MemoryLedger (proven equal to the program)",
    }


def _job_counts(sim: NodeSimulation, jobs: list[JobFacts]) -> dict[str, Any]:
    """Jobs as the renters saw them end, and as the providers stopped them."""
    outcomes = sim.tally.outcomes
    unmatched = outcomes.get("unmatched", 0)
    cut: dict[str, int] = {}
    for j in jobs:
        if j.state not in ("succeeded", "failed"):
            reason = j.stop_reason or j.state
            cut[reason] = cut.get(reason, 0) + 1
    return {
        "requested": sim.tally.requested,
        "matched": sim.tally.requested - unmatched,
        "unmatched": unmatched,
        "completed": sum(1 for j in jobs if j.state == "succeeded"),
        "failed": sum(1 for j in jobs if j.state == "failed"),
        "cut_off": dict(sorted(cut.items())),
        "renter_outcomes": dict(sorted(outcomes.items())),
        "skipped_renter_offline": sim.tally.skipped_offline,
    }


def _utilisation(sim: NodeSimulation) -> dict[str, Any]:
    samples = sim.samples
    busy = sum(sum(s.busy.values()) for s in samples)
    online = sum(sum(s.online.values()) for s in samples)
    return {
        "mean": ratio(busy, online),
        "by_model": {
            m: ratio(sum(s.busy[m] for s in samples), sum(s.online[m] for s in samples))
            for m in sim.sc.models
        },
    }


def _prices(sim: NodeSimulation) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for model in sim.sc.models:
        asks = [s.ask[model] for s in sim.samples if s.ask[model] is not None]
        values = [a for a in asks if a is not None]
        out[model] = {
            "min": min(values, default=0),
            "max": max(values, default=0),
            "mean": sum(values) // len(values) if values else 0,
        }
    return out


def _settlements(sim: NodeSimulation) -> dict[str, Any]:
    coordinator = sim.chain.coordinator.public_key
    groups: dict[str, list[int]] = {"coordinator": [], "providers": []}
    for payer, receipts in sim.chain.log.settlements:
        groups["coordinator" if payer == coordinator else "providers"].append(receipts)

    def block(sizes: list[int]) -> dict[str, Any]:
        return {
            "transactions": len(sizes),
            "receipts": sum(sizes),
            "max_receipts_per_tx": max(sizes, default=0),
            "bytes_total": sum(tx_bytes(n) for n in sizes),
            "bytes_max": max((tx_bytes(n) for n in sizes), default=0),
        }

    every = groups["coordinator"] + groups["providers"]
    return {
        **block(every),
        "by_coordinator": block(groups["coordinator"]),
        "by_providers": block(groups["providers"]),
        "coordinator": sim.sc.settlement.coordinator,
        "receipts_dropped_by_coordinator": sim.desk.dropped,
        "failed_batches": sim.desk.log.failed,
    }


def _faults(sim: NodeSimulation) -> dict[str, Any]:
    stats = sim.hub.stats
    return {
        "dials": stats.dials,
        "dials_failed": stats.dials_failed,
        "gossip_lost": stats.gossip_lost,
        "dht_rpcs_lost": stats.dht_rpcs_lost,
        "partitions": [
            {"at_s": at, "duration_s": d, "nodes_cut_off": n} for at, d, n in sim.faults.partitions
        ],
        "crashes": sim.faults.crashes,
        "leaves": sim.faults.leaves,
        "restarts": sim.faults.restarts,
        "over_reporting_providers": sum(1 for p in sim.providers if p.config.faults.over_report_s),
        "renters_that_stop_paying": sum(1 for r in sim.renters if r.stop_signing_after is not None),
        "reports_refused_by_renters": sim.tally.disputes,
    }


def _series(sim: NodeSimulation) -> dict[str, Any]:
    samples = sim.samples
    models = sim.sc.models
    return series_block(
        [s.t for s in samples],
        {
            "price": {m: [s.ask[m] or 0 for s in samples] for m in models},
            "multiplier_bps": {m: [s.multiplier_bps[m] for s in samples] for m in models},
            "utilisation": {m: [ratio(s.busy[m], s.online[m]) for s in samples] for m in models},
            "online_gpus": {m: [s.online[m] for s in samples] for m in models},
        },
        total_utilisation=[ratio(sum(s.busy.values()), sum(s.online.values())) for s in samples],
    )
