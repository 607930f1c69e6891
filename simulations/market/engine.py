"""The market-level simulation: pricing and matching only, no network, discrete events.

Thousands of providers and renters over days of simulated time in seconds of wall time.
The prices come from :mod:`dgpu.pricing`: every ``reprice_s`` the reference price of each
model is ``reference_price(model, demand_gpus=D, supply_gpus=S)`` where D is the GPUs of
the agreements of the recent window and S the free GPUs of online providers, and every
provider asks ``provider_price(reference, ProviderPricing(floor, markup))``. Renters arrive
as Poisson processes, ask for a model and GPU count with a price limit of reference x
(1 + their markup), and take the cheapest fitting offer (:mod:`.book`); a job that finds
none retries a few times, then gives up. Supply shocks, churn and crashes take providers
away (cutting off their jobs) or bring new ones.

Everything is driven by one :class:`~dgpu.simulations.events.EventQueue` and seeded
streams (:class:`~dgpu.simulations.rng.Streams`): the same scenario and seed give the
same report, byte for byte.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from dgpu.pricing import DEFAULT_RATE_CARD, RateCard, amount_for, fee_for, reference_price
from dgpu.pricing.units import BPS_DENOMINATOR, ceil_div
from dgpu.simulations.events import EventQueue
from dgpu.simulations.market.book import ModelBook
from dgpu.simulations.rng import Streams, poisson_gap, stepped, weighted_choice
from dgpu.simulations.scenario import Scenario

Event = tuple[str, int]
Progress = Callable[[float], None]


@dataclass(slots=True)
class Job:
    renter: int
    model: int
    gpu_count: int
    duration_s: int
    max_price: int
    tries: int = 0
    provider: int = -1
    price: int = 0
    started: float = 0.0
    ended: bool = False


@dataclass
class Provider:
    model: int
    markup_index: int
    gpus: int
    free: int
    online: bool = True
    leaving: bool = False
    jobs: dict[int, None] = field(default_factory=dict)


@dataclass
class Sample:
    t: int
    price: list[int]
    multiplier_bps: list[int]
    busy: list[int]
    online: list[int]
    asks: list[tuple[int, int, int] | None]


@dataclass
class MarketState:
    """Everything the engine tracks; the report is computed from it."""

    scenario: Scenario
    models: tuple[str, ...]
    books: list[ModelBook]
    providers: list[Provider] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    reference: list[int] = field(default_factory=list)
    multiplier: list[int] = field(default_factory=list)
    online_gpus: list[int] = field(default_factory=list)
    busy_gpus: list[int] = field(default_factory=list)
    demand: list[int] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    requested: int = 0
    matched: int = 0
    completed: int = 0
    cut_off: int = 0
    unmatched: int = 0
    retries: int = 0
    renter_spent: list[int] = field(default_factory=list)
    provider_earned: list[int] = field(default_factory=list)
    treasury: int = 0
    overbooked: bool = False
    over_limit: bool = False
    multiplier_out_of_bounds: bool = False
    shocked: dict[int, list[int]] = field(default_factory=dict)


class MarketSimulation:
    def __init__(self, scenario: Scenario, seed: int, card: RateCard = DEFAULT_RATE_CARD) -> None:
        self.scenario = scenario
        self.card = card
        self.rng = Streams(seed)
        self.queue: EventQueue[Event] = EventQueue()
        models = scenario.models
        policy = scenario.providers.pricing
        markups = _markups(policy.markup_min_bps, policy.markup_max_bps, policy.markup_step_bps)
        books = [
            ModelBook(
                model=model,
                markups=markups,
                floor_per_gpu_second=policy.floor_per_gpu_second,
                max_gpus=max(e.per_node for e in scenario.providers.gpus if e.model == model),
            )
            for model in models
        ]
        n = len(models)
        self.state = MarketState(
            scenario=scenario,
            models=models,
            books=books,
            reference=[0] * n,
            multiplier=[BPS_DENOMINATOR] * n,
            online_gpus=[0] * n,
            busy_gpus=[0] * n,
            demand=[0] * n,
            renter_spent=[0] * scenario.renters.count,
        )
        self._markup_index = {m: i for i, m in enumerate(markups)}
        self._demand_mix = [(models.index(model), weight) for model, weight in demand_mix(scenario)]
        self._window: deque[tuple[float, int, int]] = deque()

    # -- set-up -----------------------------------------------------------------------

    def _new_provider(self, model: int | None = None) -> int:
        sc = self.scenario
        mix = [
            (e, e.weight)
            for e in sc.providers.gpus
            if model is None or e.model == self.state.models[model]
        ]
        entry = weighted_choice(self.rng.get("providers"), mix)
        policy = sc.providers.pricing
        markup = stepped(
            self.rng.get("providers"),
            policy.markup_min_bps,
            policy.markup_max_bps,
            policy.markup_step_bps,
        )
        provider = Provider(
            model=self.state.models.index(entry.model),
            markup_index=self._markup_index[markup],
            gpus=entry.per_node,
            free=entry.per_node,
        )
        self.state.providers.append(provider)
        self.state.provider_earned.append(0)
        pid = len(self.state.providers) - 1
        self._go_online(pid)
        return pid

    def _schedule_initial(self) -> None:
        sc = self.scenario
        for _ in range(sc.providers.count):
            self._new_provider()
        self._reprice()
        rate = sc.jobs.per_renter_per_hour / 3600
        arrivals = self.rng.get("arrivals")
        for renter in range(sc.renters.count):
            self.queue.schedule(poisson_gap(arrivals, rate), ("arrival", renter))
        self.queue.schedule(sc.providers.pricing.reprice_s, ("reprice", 0))
        self.queue.schedule(0, ("sample", 0))
        for index, shock in enumerate(sc.shocks):
            if shock.at_s < sc.duration_s:
                self.queue.schedule(shock.at_s, ("shock", index))
        churn = sc.faults.churn.per_provider_per_day / 86_400
        crash = sc.faults.crashes.per_node_per_day / 86_400
        for pid in range(len(self.state.providers)):
            self._schedule_fault(pid, "churn", churn)
            self._schedule_fault(pid, "crash", crash)

    def _schedule_fault(self, pid: int, kind: str, rate: float) -> None:
        gap = poisson_gap(self.rng.get(kind), rate)
        if self.queue.now + gap < self.scenario.duration_s:
            self.queue.after(gap, (kind, pid))

    # -- the loop ---------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> MarketState:
        self._schedule_initial()
        handlers: dict[str, Callable[[int], None]] = {
            "arrival": self._on_arrival,
            "retry": self._on_retry,
            "finish": self._on_finish,
            "reprice": self._on_reprice,
            "sample": self._on_sample,
            "shock": self._on_shock,
            "unshock": self._on_unshock,
            "churn": self._on_churn,
            "rejoin": self._on_rejoin,
            "crash": self._on_crash,
        }
        duration = self.scenario.duration_s
        next_report = 0.0
        while self.queue:
            at, (kind, arg) = self.queue.pop()
            handlers[kind](arg)
            if progress is not None and at >= next_report:
                progress(min(at / duration, 1.0))
                next_report = at + duration / 100
        if progress is not None:
            progress(1.0)
        return self.state

    def _live(self) -> bool:
        return self.queue.now < self.scenario.duration_s

    # -- renters ----------------------------------------------------------------------

    def _on_arrival(self, renter: int) -> None:
        if not self._live():
            return
        sc = self.scenario
        rng = self.rng.get("jobs")
        model = weighted_choice(rng, self._demand_mix)
        largest = self.state.books[model].max_gpus
        count = weighted_choice(
            rng, [(c, w) for c, w in sc.jobs.gpu_count if c <= largest] or [(1, 1)]
        )
        markup = rng.randint(sc.jobs.max_price_markup_min_bps, sc.jobs.max_price_markup_max_bps)
        max_price = ceil_div(
            self.state.reference[model] * (BPS_DENOMINATOR + markup), BPS_DENOMINATOR
        )
        job = Job(renter, model, count, draw_duration(rng, sc), max_price)
        self.state.jobs.append(job)
        self.state.requested += 1
        self._try_match(len(self.state.jobs) - 1)
        rate = sc.jobs.per_renter_per_hour / 3600
        self.queue.after(poisson_gap(self.rng.get("arrivals"), rate), ("arrival", renter))

    def _on_retry(self, job_id: int) -> None:
        self.state.retries += 1
        self._try_match(job_id)

    def _try_match(self, job_id: int) -> None:
        job = self.state.jobs[job_id]
        book = self.state.books[job.model]
        found = book.match(job.gpu_count, job.max_price)
        if found is None:
            job.tries += 1
            if job.tries > self.scenario.jobs.retries or not self._live():
                self.state.unmatched += 1
            else:
                self.queue.after(self.scenario.jobs.retry_after_s, ("retry", job_id))
            return
        pid, markup_index, free = found
        provider = self.state.providers[pid]
        price = book.asks[markup_index]
        if price > job.max_price:
            self.state.over_limit = True
        if free != provider.free or free < job.gpu_count:
            self.state.overbooked = True
        book.remove(pid, markup_index, free)
        provider.free -= job.gpu_count
        book.add(pid, markup_index, provider.free)
        provider.jobs[job_id] = None
        self.state.busy_gpus[job.model] += job.gpu_count
        job.provider, job.price, job.started = pid, price, self.queue.now
        self.state.matched += 1
        self._window.append((self.queue.now, job.model, job.gpu_count))
        self.state.demand[job.model] += job.gpu_count
        self.queue.after(job.duration_s, ("finish", job_id))

    def _on_finish(self, job_id: int) -> None:
        job = self.state.jobs[job_id]
        if job.ended:
            return
        self._end_job(job_id, completed=True)

    def _end_job(self, job_id: int, *, completed: bool) -> None:
        job = self.state.jobs[job_id]
        job.ended = True
        elapsed = min(int(self.queue.now - job.started), job.duration_s)
        amount = amount_for(elapsed, job.price, job.gpu_count)
        fee = fee_for(amount, self.card.platform_fee_bps)
        self.state.renter_spent[job.renter] += amount
        self.state.provider_earned[job.provider] += amount - fee
        self.state.treasury += fee
        if completed:
            self.state.completed += 1
        else:
            self.state.cut_off += 1
        provider = self.state.providers[job.provider]
        del provider.jobs[job_id]
        self.state.busy_gpus[job.model] -= job.gpu_count
        if _listed(provider):
            book = self.state.books[provider.model]
            book.remove(job.provider, provider.markup_index, provider.free)
            provider.free += job.gpu_count
            book.add(job.provider, provider.markup_index, provider.free)
        else:
            provider.free += job.gpu_count
            if provider.leaving and not provider.jobs:
                self._go_offline(job.provider)

    # -- prices and samples -----------------------------------------------------------

    def _on_reprice(self, _: int) -> None:
        self._reprice()
        if self._live():
            self.queue.after(self.scenario.providers.pricing.reprice_s, ("reprice", 0))

    def _reprice(self) -> None:
        horizon = self.queue.now - self.scenario.market.demand_window_s
        while self._window and self._window[0][0] <= horizon:
            _, model, gpus = self._window.popleft()
            self.state.demand[model] -= gpus
        bounds = self.card.multiplier
        for index, book in enumerate(self.state.books):
            ref = reference_price(
                book.model,
                demand_gpus=self.state.demand[index],
                supply_gpus=book.free_gpus,
                card=self.card,
            )
            if not bounds.min_bps <= ref.multiplier_bps <= bounds.max_bps:
                self.state.multiplier_out_of_bounds = True
            self.state.reference[index] = ref.price_per_gpu_second
            self.state.multiplier[index] = ref.multiplier_bps
            book.reprice(ref.price_per_gpu_second)

    def _on_sample(self, _: int) -> None:
        s = self.state
        s.samples.append(
            Sample(
                t=int(self.queue.now),
                price=list(s.reference),
                multiplier_bps=list(s.multiplier),
                busy=list(s.busy_gpus),
                online=list(s.online_gpus),
                asks=[book.ask_percentiles() for book in s.books],
            )
        )
        next_at = self.queue.now + self.scenario.sample_interval_s
        if next_at <= self.scenario.duration_s:
            self.queue.schedule(next_at, ("sample", 0))

    # -- supply: shocks, churn, crashes -----------------------------------------------

    def _go_online(self, pid: int) -> None:
        provider = self.state.providers[pid]
        provider.online, provider.leaving = True, False
        provider.free = provider.gpus
        self.state.online_gpus[provider.model] += provider.gpus
        self.state.books[provider.model].add(pid, provider.markup_index, provider.free)

    def _go_offline(self, pid: int) -> None:
        """Leave now: the provider's running jobs are cut off."""
        provider = self.state.providers[pid]
        if not provider.online:
            return
        if _listed(provider):
            self.state.books[provider.model].remove(pid, provider.markup_index, provider.free)
        provider.online, provider.leaving = False, False
        for job_id in list(provider.jobs):
            self._end_job(job_id, completed=False)
        self.state.online_gpus[provider.model] -= provider.gpus

    def _on_shock(self, index: int) -> None:
        shock = self.scenario.shocks[index]
        models = (
            [self.state.models.index(shock.model)]
            if shock.model
            else list(range(len(self.state.models)))
        )
        rng = self.rng.get("shocks")
        touched: list[int] = []
        for model in models:
            online = [
                pid for pid, p in enumerate(self.state.providers) if p.model == model and p.online
            ]
            count = round(abs(shock.change) * len(online))
            if shock.change < 0:
                for pid in rng.sample(online, min(count, len(online))):
                    self._go_offline(pid)
                    touched.append(pid)
            else:
                touched.extend(self._new_provider(model) for _ in range(count))
        self.state.shocked[index] = touched
        if shock.duration_s:
            self.queue.after(shock.duration_s, ("unshock", index))

    def _on_unshock(self, index: int) -> None:
        shock = self.scenario.shocks[index]
        for pid in self.state.shocked.get(index, []):
            if shock.change < 0:
                if not self.state.providers[pid].online:
                    self._go_online(pid)
            else:
                self._go_offline(pid)

    def _on_churn(self, pid: int) -> None:
        provider = self.state.providers[pid]
        if _listed(provider):
            if provider.jobs:
                # Stops offering; leaves once its running jobs are done.
                self.state.books[provider.model].remove(pid, provider.markup_index, provider.free)
                provider.leaving = True
            else:
                self._go_offline(pid)
            churn = self.scenario.faults.churn
            self.queue.after(
                self.rng.get("churn").randint(churn.offline_min_s, churn.offline_max_s),
                ("rejoin", pid),
            )
        self._schedule_fault(pid, "churn", self.scenario.faults.churn.per_provider_per_day / 86_400)

    def _on_rejoin(self, pid: int) -> None:
        provider = self.state.providers[pid]
        if provider.leaving:
            provider.leaving = False
            self.state.books[provider.model].add(pid, provider.markup_index, provider.free)
        elif not provider.online:
            self._go_online(pid)

    def _on_crash(self, pid: int) -> None:
        provider = self.state.providers[pid]
        if provider.online:
            self._go_offline(pid)
            crashes = self.scenario.faults.crashes
            self.queue.after(
                self.rng.get("crash").randint(crashes.restart_min_s, crashes.restart_max_s),
                ("rejoin", pid),
            )
        self._schedule_fault(pid, "crash", self.scenario.faults.crashes.per_node_per_day / 86_400)


def _markups(low: int, high: int, step: int) -> list[int]:
    first = -(-low // step)
    last = high // step
    if last < first:
        return [low]
    return [k * step for k in range(first, last + 1)]


def demand_mix(scenario: Scenario) -> list[tuple[str, int]]:
    """Which model a job asks for: the share of the model in the GPUs of the mix."""
    weights: dict[str, int] = {}
    for entry in scenario.providers.gpus:
        weights[entry.model] = weights.get(entry.model, 0) + entry.weight * entry.per_node
    return list(weights.items())


def _listed(provider: Provider) -> bool:
    """Whether the provider's free GPUs are in the book."""
    return provider.online and not provider.leaving


def draw_duration(rng: random.Random, scenario: Scenario) -> int:
    """A job's run time in whole seconds, from the scenario's distribution."""
    jobs = scenario.jobs
    if jobs.duration == "fixed":
        value = float(jobs.mean_duration_s)
    elif jobs.duration == "uniform":
        value = rng.uniform(jobs.min_duration_s, jobs.max_duration_s)
    else:
        value = rng.expovariate(1 / jobs.mean_duration_s)
    return max(jobs.min_duration_s, min(jobs.max_duration_s, round(value)))
