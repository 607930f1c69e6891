"""Scenario files: TOML in, a validated :class:`~dgpu.simulations.scenario.Scenario` out.

Every key is checked (type, range) and unknown keys are errors, each reported as a
:class:`~dgpu.simulations.errors.ScenarioError` naming the dotted key. Money is written in
dGPU as a string or decimal (``"0.10"``) and read exactly (never through float). The
format, with defaults::

    name = "calm"                      # required
    description = ""
    duration_s = 21600                 # required: simulated time of job arrivals
    seed = 0                           # default seed (``--seed`` overrides)
    sample_interval_s = 300            # step of the time series

    [providers]
    count = 12                         # required
    interval_s = 10                    # metering interval
    grace_s = 30                       # grace period before a provider stops a job
    max_duration_s = 86400             # longest job a provider accepts
    offer_ttl_s = 300
    [[providers.gpus]]                 # required: the GPU mix, drawn by weight
    model = "RTX 4090"
    per_node = 1
    weight = 1
    [providers.pricing]
    markup_bps = [0, 0]                # each provider draws one, a multiple of markup_step_bps
    markup_step_bps = 100
    floor_per_gpu_hour = "0"           # dGPU
    reprice_s = 300

    [renters]
    count = 30                         # required
    balance = "1000"                   # dGPU each renter holds

    [jobs]
    per_renter_per_hour = 0.5          # required: Poisson arrival rate of each renter
    duration = "exponential"           # or "uniform" (min..max), "fixed" (mean)
    mean_duration_s = 1800
    min_duration_s = 60
    max_duration_s = 7200
    gpu_count = [[1, 1]]               # [count, weight] pairs
    max_price_markup_bps = [0, 5000]   # renters pay at most reference x (1 + markup)
    retries = 2
    retry_after_s = 120

    [settlement]
    coordinator = "up"                 # "up", "down" or "censor"
    batch_interval_s = 600
    max_receipts_per_tx = 5
    censored_fraction = 0.0            # with "censor": share of providers it ignores
    self_settle_after_s = 1800

    [chain]
    backend = "auto"                   # "litesvm", "ledger" or "auto"
    litesvm_max_nodes = 60

    [faults]
    loss = 0.0                         # probability a message is lost
    delay_ms = [0, 0]                  # one-way delay, uniform
    [[faults.partitions]]
    at_s = 3600
    duration_s = 600
    fraction = 0.3
    [faults.crashes]
    per_node_per_day = 0.0
    restart_after_s = [30, 600]
    [faults.churn]
    per_provider_per_day = 0.0
    offline_s = [600, 7200]
    [faults.over_report]
    fraction = 0.0                     # share of providers claiming more time than elapsed
    seconds = 60                       # how much more, in every UsageReport
    [faults.stop_paying]
    fraction = 0.0                     # share of renters that stop signing receipts
    after_receipts = [3, 60]           # after this many receipts of a job

    [[shocks]]
    at_s = 86400
    duration_s = 0                     # 0: for good
    model = ""                         # all models when empty
    change = -0.5                      # share of providers leaving (<0) or joining (>0)

    [market]
    demand_window_s = 3600
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, cast

from dgpu.pricing import DEFAULT_RATE_CARD, UnknownModel
from dgpu.pricing.units import SECONDS_PER_HOUR, ceil_div, dgpu_to_base_units
from dgpu.simulations.errors import ScenarioError
from dgpu.simulations.scenario import (
    ChainBackend,
    ChainSpec,
    Churn,
    CoordinatorMode,
    Crashes,
    Distribution,
    Faults,
    GpuMixEntry,
    JobsSpec,
    MarketSpec,
    OverReport,
    Partition,
    PricePolicy,
    ProvidersSpec,
    RentersSpec,
    Scenario,
    SettlementSpec,
    Shock,
    StopPaying,
)

MAX_NODES = 100_000
MAX_DURATION_S = 366 * 86_400


class _Table:
    """One TOML table being read: typed getters that name the dotted key on error, and a
    final check that no unknown key is left."""

    def __init__(self, data: object, key: str, path: str | None) -> None:
        if not isinstance(data, dict):
            raise ScenarioError("must be a table", key=key or None, path=path)
        self._data: dict[str, Any] = dict(data)
        self._key = key
        self._path = path

    def _name(self, name: str) -> str:
        return f"{self._key}.{name}" if self._key else name

    def error(self, name: str, reason: str) -> ScenarioError:
        return ScenarioError(reason, key=self._name(name), path=self._path)

    def has(self, name: str) -> bool:
        return name in self._data

    def integer(
        self, name: str, default: int | None = None, *, lo: int = 0, hi: int = 2**63 - 1
    ) -> int:
        value = self._take(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise self.error(name, f"must be between {lo} and {hi}, got {value}")
        return value

    def number(
        self, name: str, default: float | None = None, *, lo: float = 0.0, hi: float = float("inf")
    ) -> float:
        value = self._take(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise self.error(name, f"must be a number, got {value!r}")
        number = float(value)
        if not lo <= number <= hi:
            raise self.error(name, f"must be between {lo:g} and {hi:g}, got {number:g}")
        return number

    def text(self, name: str, default: str | None = None) -> str:
        value = self._take(name, default)
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {value!r}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def dgpu(self, name: str, default: str) -> int:
        """An amount written in dGPU, as base units."""
        value = self._take(name, default)
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise self.error(name, f'must be an amount in dGPU ("0.5"), got {value!r}')
        try:
            return dgpu_to_base_units(value)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def int_range(
        self, name: str, default: tuple[int, int], *, lo: int = 0, hi: int = 2**63 - 1
    ) -> tuple[int, int]:
        value = self._take(name, list(default))
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
        ):
            raise self.error(name, f"must be [min, max] integers, got {value!r}")
        first, second = value
        if not lo <= first <= second <= hi:
            raise self.error(name, f"needs {lo} <= min <= max <= {hi}, got {value!r}")
        return first, second

    def table(self, name: str) -> _Table:
        return _Table(self._take(name, {}), self._name(name), self._path)

    def tables(self, name: str) -> list[_Table]:
        value = self._take(name, [])
        if not isinstance(value, list):
            raise self.error(name, "must be an array of tables ([[...]])")
        return [
            _Table(item, f"{self._name(name)}[{n}]", self._path) for n, item in enumerate(value)
        ]

    def raw(self, name: str, default: object) -> object:
        return self._take(name, default)

    def done(self) -> None:
        if self._data:
            unknown = ", ".join(sorted(self._data))
            raise ScenarioError(
                f"unknown key(s): {unknown}", key=self._key or None, path=self._path
            )

    def _take(self, name: str, default: object) -> Any:
        if name in self._data:
            return self._data.pop(name)
        if default is None:
            raise self.error(name, "is required")
        return default


def parse_scenario(data: Mapping[str, Any], *, path: str | None = None) -> Scenario:
    """Validate a decoded TOML document (see the module docstring for the format)."""
    top = _Table(data, "", path)
    name = top.text("name")
    if not name or len(name) > 64:
        raise top.error("name", "must be 1 to 64 characters")
    description = top.text("description", "")
    duration_s = top.integer("duration_s", lo=1, hi=MAX_DURATION_S)
    seed = top.integer("seed", 0)
    sample_interval_s = top.integer("sample_interval_s", 300, lo=1, hi=MAX_DURATION_S)
    providers = _providers(top.table("providers"))
    renters = _renters(top.table("renters"))
    jobs = _jobs(top.table("jobs"), providers)
    settlement = _settlement(top.table("settlement"))
    chain = _chain(top.table("chain"))
    faults = _faults(top.table("faults"), duration_s)
    shocks = tuple(_shock(t, providers) for t in top.tables("shocks"))
    market_table = top.table("market")
    market = MarketSpec(demand_window_s=market_table.integer("demand_window_s", 3600, lo=1))
    market_table.done()
    top.done()
    return Scenario(
        name=name,
        description=description,
        duration_s=duration_s,
        seed=seed,
        sample_interval_s=sample_interval_s,
        providers=providers,
        renters=renters,
        jobs=jobs,
        settlement=settlement,
        chain=chain,
        faults=faults,
        shocks=shocks,
        market=market,
    )


def _providers(t: _Table) -> ProvidersSpec:
    count = t.integer("count", lo=1, hi=MAX_NODES)
    interval_s = t.integer("interval_s", 10, lo=1, hi=3600)
    grace_s = t.integer("grace_s", 30, lo=1, hi=3600)
    max_duration_s = t.integer("max_duration_s", 86_400, lo=1, hi=30 * 86_400)
    offer_ttl_s = t.integer("offer_ttl_s", 300, lo=10, hi=3600)
    mix: list[GpuMixEntry] = []
    for entry in t.tables("gpus"):
        model = entry.text("model")
        try:
            DEFAULT_RATE_CARD.rate_for(model)
        except UnknownModel as exc:
            raise entry.error("model", str(exc)) from None
        mix.append(
            GpuMixEntry(
                model=DEFAULT_RATE_CARD.resolve_model(model),
                per_node=entry.integer("per_node", 1, lo=1, hi=64),
                weight=entry.integer("weight", 1, lo=1, hi=1_000_000),
            )
        )
        entry.done()
    if not mix:
        raise t.error("gpus", "needs at least one [[providers.gpus]] entry")
    p = t.table("pricing")
    markup = p.int_range("markup_bps", (0, 0), lo=-10_000, hi=100_000)
    step = p.integer("markup_step_bps", 100, lo=1, hi=10_000)
    floor_per_hour = p.dgpu("floor_per_gpu_hour", "0")
    pricing = PricePolicy(
        markup_min_bps=markup[0],
        markup_max_bps=markup[1],
        markup_step_bps=step,
        floor_per_gpu_second=ceil_div(floor_per_hour, SECONDS_PER_HOUR),
        reprice_s=p.integer("reprice_s", 300, lo=1, hi=86_400),
    )
    p.done()
    t.done()
    return ProvidersSpec(
        count=count,
        gpus=tuple(mix),
        pricing=pricing,
        interval_s=interval_s,
        grace_s=grace_s,
        max_duration_s=max_duration_s,
        offer_ttl_s=offer_ttl_s,
    )


def _renters(t: _Table) -> RentersSpec:
    spec = RentersSpec(
        count=t.integer("count", lo=1, hi=MAX_NODES), balance=t.dgpu("balance", "1000")
    )
    if spec.balance <= 0:
        raise t.error("balance", "must be positive")
    t.done()
    return spec


def _jobs(t: _Table, providers: ProvidersSpec) -> JobsSpec:
    rate = t.number("per_renter_per_hour", lo=0.0, hi=3600.0)
    duration = t.choice("duration", "exponential", ("exponential", "uniform", "fixed"))
    mean = t.integer("mean_duration_s", 1800, lo=1, hi=30 * 86_400)
    low = t.integer("min_duration_s", 60, lo=1, hi=30 * 86_400)
    high = t.integer("max_duration_s", 7200, lo=1, hi=30 * 86_400)
    if not low <= high:
        raise t.error("max_duration_s", f"must be at least min_duration_s ({low})")
    if high > providers.max_duration_s:
        raise t.error(
            "max_duration_s",
            f"exceeds providers.max_duration_s ({providers.max_duration_s}), what providers accept",
        )
    counts = _weighted_counts(t, max(entry.per_node for entry in providers.gpus))
    markup = t.int_range("max_price_markup_bps", (0, 5000), lo=-10_000, hi=100_000)
    spec = JobsSpec(
        per_renter_per_hour=rate,
        duration=cast(Distribution, duration),
        mean_duration_s=mean,
        min_duration_s=low,
        max_duration_s=high,
        gpu_count=counts,
        max_price_markup_min_bps=markup[0],
        max_price_markup_max_bps=markup[1],
        retries=t.integer("retries", 2, lo=0, hi=100),
        retry_after_s=t.integer("retry_after_s", 120, lo=1, hi=86_400),
    )
    t.done()
    return spec


def _weighted_counts(t: _Table, largest_node: int) -> tuple[tuple[int, int], ...]:
    value = t.raw("gpu_count", [[1, 1]])
    pairs: list[tuple[int, int]] = []
    ok = isinstance(value, list) and bool(value)
    for item in value if isinstance(value, list) else []:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in item)
            or item[0] < 1
            or item[1] < 1
        ):
            ok = False
            break
        pairs.append((item[0], item[1]))
    if not ok:
        raise t.error(
            "gpu_count", f"must be [[count, weight], ...] positive integers, got {value!r}"
        )
    too_big = [count for count, _ in pairs if count > largest_node]
    if too_big:
        raise t.error("gpu_count", f"{too_big[0]} GPUs: no provider of the mix has that many")
    return tuple(pairs)


def _settlement(t: _Table) -> SettlementSpec:
    spec = SettlementSpec(
        coordinator=cast(CoordinatorMode, t.choice("coordinator", "up", ("up", "down", "censor"))),
        batch_interval_s=t.integer("batch_interval_s", 600, lo=1, hi=86_400),
        max_receipts_per_tx=t.integer("max_receipts_per_tx", 5, lo=1, hi=64),
        censored_fraction=t.number("censored_fraction", 0.0, hi=1.0),
        self_settle_after_s=t.integer("self_settle_after_s", 1800, lo=1, hi=30 * 86_400),
    )
    t.done()
    return spec


def _chain(t: _Table) -> ChainSpec:
    spec = ChainSpec(
        backend=cast(ChainBackend, t.choice("backend", "auto", ("auto", "litesvm", "ledger"))),
        litesvm_max_nodes=t.integer("litesvm_max_nodes", 60, lo=0, hi=MAX_NODES),
    )
    t.done()
    return spec


def _faults(t: _Table, duration_s: int) -> Faults:
    loss = t.number("loss", 0.0, hi=0.9)
    delay = t.int_range("delay_ms", (0, 0), hi=60_000)
    partitions: list[Partition] = []
    for p in t.tables("partitions"):
        partitions.append(
            Partition(
                at_s=p.integer("at_s", hi=MAX_DURATION_S),
                duration_s=p.integer("duration_s", lo=1, hi=MAX_DURATION_S),
                fraction=p.number("fraction", lo=0.0, hi=1.0),
            )
        )
        p.done()
    c = t.table("crashes")
    restart = c.int_range("restart_after_s", (30, 600), lo=1, hi=86_400)
    crashes = Crashes(c.number("per_node_per_day", 0.0, hi=1000.0), restart[0], restart[1])
    c.done()
    ch = t.table("churn")
    offline = ch.int_range("offline_s", (600, 7200), lo=1, hi=30 * 86_400)
    churn = Churn(ch.number("per_provider_per_day", 0.0, hi=1000.0), offline[0], offline[1])
    ch.done()
    o = t.table("over_report")
    over = OverReport(o.number("fraction", 0.0, hi=1.0), o.integer("seconds", 60, lo=1, hi=86_400))
    o.done()
    s = t.table("stop_paying")
    after = s.int_range("after_receipts", (3, 60), lo=0, hi=1_000_000)
    stop = StopPaying(s.number("fraction", 0.0, hi=1.0), after[0], after[1])
    s.done()
    t.done()
    return Faults(
        loss=loss,
        delay_min_ms=delay[0],
        delay_max_ms=delay[1],
        partitions=tuple(partitions),
        crashes=crashes,
        churn=churn,
        over_report=over,
        stop_paying=stop,
    )


def _shock(t: _Table, providers: ProvidersSpec) -> Shock:
    model = t.text("model", "")
    if model:
        try:
            model = DEFAULT_RATE_CARD.resolve_model(model)
        except UnknownModel as exc:
            raise t.error("model", str(exc)) from None
        if model not in {entry.model for entry in providers.gpus}:
            raise t.error("model", f"{model} is not in the providers' GPU mix")
    shock = Shock(
        at_s=t.integer("at_s", lo=0, hi=MAX_DURATION_S),
        change=t.number("change", lo=-1.0, hi=10.0),
        duration_s=t.integer("duration_s", 0, lo=0, hi=MAX_DURATION_S),
        model=model,
    )
    t.done()
    return shock


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, object]) -> dict[str, Any]:
    """A copy of ``data`` with dotted keys replaced (``{"providers.count": 10}``); tables on
    the way are created when missing."""
    result: dict[str, Any] = _deep_copy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node: dict[str, Any] = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ScenarioError("is not a table", key=part)
            node = child
        node[parts[-1]] = value
    return result


def parse_override(text: str) -> tuple[str, object]:
    """``"providers.count=10"`` -> ``("providers.count", 10)``; the value is read as TOML
    (a bare word that is not TOML is taken as a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(f"an override is KEY=VALUE, got {text!r}")
    try:
        value: object = tomllib.loads(f"v = {raw.strip()}", parse_float=Decimal)["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def read_scenario_data(path: str | Path) -> dict[str, Any]:
    """The decoded TOML of a scenario file (a path, or the name of a shipped scenario)."""
    source = Path(path)
    if not source.exists() and source.suffix in ("", ".toml") and source.parent == Path():
        shipped = resources.files("dgpu.simulations") / "scenarios" / f"{source.stem}.toml"
        if shipped.is_file():
            return _loads(shipped.read_text(encoding="utf-8"), str(path))
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read the scenario: {exc}", path=str(path)) from None
    return _loads(text, str(path))


def _loads(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}", path=path) from None


def load_scenario(path: str | Path, overrides: Mapping[str, object] | None = None) -> Scenario:
    """Read, override and validate a scenario file (or a shipped scenario by name)."""
    data = read_scenario_data(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return parse_scenario(data, path=str(path))


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in the package."""
    folder = resources.files("dgpu.simulations") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
