"""The explorer in real headless Chromium (Playwright driving Debian's chromium) against a
running coordinator filled with real signed offers and a real settlement."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.money import ChainEscrow
from dgpu.coordinator.settlement import SettlementBackend
from dgpu.pricing import DEFAULT_RATE_CARD
from dgpu.protocol.codec import decode_as
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer, ProbeVerdict, VerdictKind
from dgpu.protocol.signing import sign

from tests.coordinator.conftest import (
    ADMIN,
    ManualClock,
    Server,
    client_for,
    make_config,
    offer_for,
    running_server,
)
from tests.coordinator.escrow_world import World, make_world
from tests.coordinator.explorer_data import FLEET, PROVIDERS, Filled, fill

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():  # pragma: no cover - the CI installs it (scripts/system-deps.sh)
    pytest.skip("Debian chromium is not installed", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def explorer(
    tmp_path_factory: pytest.TempPathFactory, database_url: str | None
) -> Iterator[tuple[Server, Filled]]:
    # in a thread of its own: the second store's fixture is built while Playwright's sync
    # API keeps an event loop running in this one
    with ThreadPoolExecutor(1) as pool:
        world: World = pool.submit(
            asyncio.run, make_world(LiteSVMChain(), providers=PROVIDERS, renters=1, label="explore")
        ).result()
    clock = ManualClock()
    config = make_config(
        tmp_path_factory.mktemp("explorer"),
        admins=frozenset({ADMIN.address}),
        site_name="dgpu explorer",
        explorer_refresh_s=0.5,
        database_url=database_url,
    )
    backend = SettlementBackend(ChainEscrow(world.escrow), world.settler)
    with running_server(config, backend=backend, clock=clock) as server:
        filled = trio.run(fill, server, world, clock)
        yield server, filled


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    yield page
    context.close()
    assert problems == []


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def api(server: Server, path: str, **params: Any) -> Any:
    return httpx.get(f"{server.url}{path}", params=params, timeout=30).json()


def test_overview_renders_the_network(explorer: tuple[Server, Filled], page: Any) -> None:
    server, filled = explorer
    page.goto(f"{server.url}/")
    assert page.locator("#providers-online").inner_text() == str(PROVIDERS)
    # one offer per provider: the superseded ones (still live) count neither here nor in the API
    assert page.locator("#gpus-live").inner_text() == str(sum(f[2] for f in FLEET))
    assert page.locator("#offers-live").inner_text() == str(len(FLEET))
    assert api(server, "/api/v1/offers")["total"] == len(FLEET)
    bars = page.locator("#gpus-by-model g.bar")
    assert bars.count() == len({"RTX 4090", "A100", "H100", "RTX 4080", "M3 Ultra"})
    assert page.locator("#price-chart polyline").count() >= 4
    points = page.locator("#price-chart polyline").first.get_attribute("points")
    assert points is not None and len(points.split()) >= 2
    settled = page.locator("#volume-settled").inner_text()
    assert settled == f"{filled.settled_amount / 10**9:,.4f}"
    assert page.locator("#reference-prices tbody tr").count() == len(DEFAULT_RATE_CARD.models)
    shoot(page, "explorer-overview.png")


def test_offer_filters_work(explorer: tuple[Server, Filled], page: Any) -> None:
    server, _ = explorer
    page.goto(f"{server.url}/offers")
    rows = page.locator("#offers-table tbody tr")
    assert rows.count() == len(FLEET)
    assert page.locator("#offers-table .badge.sim").count() == sum(1 for f in FLEET if f[6])
    page.select_option("select[name=gpu_model]", "H100")
    page.fill("input[name=count]", "5")
    page.click("#offer-filters button[type=submit]")
    page.wait_for_url(re.compile(r"gpu_model=H100"))
    assert "count=5" in page.url and "max_price" not in page.url  # empty fields dropped by JS
    expected = api(server, "/api/v1/offers", gpu_model="H100", count=5)
    assert page.locator("#offer-total").inner_text() == str(expected["total"]) == "1"
    assert page.locator("#offers-table tbody tr").count() == 1
    assert "H100" in page.locator("#offers-table tbody tr").first.inner_text()
    page.select_option("select[name=simulated]", "true")
    page.click("#offer-filters button[type=submit]")
    page.wait_for_url(re.compile(r"simulated=true"))
    assert page.locator("#no-offers").is_visible()
    page.goto(f"{server.url}/offers")
    shoot(page, "explorer-offers.png")


def test_why_no_match_names_the_blocking_filter(explorer: tuple[Server, Filled], page: Any) -> None:
    server, _ = explorer
    page.goto(f"{server.url}/why")
    page.select_option("select[name=gpu_model]", "H100")
    page.fill("input[name=max_price]", "1000")
    page.click("#why-form button[type=submit]")
    page.wait_for_selector("#why-result")
    assert page.locator("#blocking").inner_text() == "max_price"
    shoot(page, "explorer-why.png")
    row = page.locator('#why-table tr[data-filter="max_price"]').inner_text()
    assert "the cheapest is 1480000 per GPU-second" in row
    page.goto(f"{server.url}/why?gpu_model=RTX+4090&region=eu-west")
    assert "match" in page.locator("#why-result").inner_text()
    assert page.locator("#blocking").count() == 0


def test_provider_page_shows_score_parts_and_history(
    explorer: tuple[Server, Filled], page: Any
) -> None:
    server, filled = explorer
    provider = filled.providers[0].address
    profile = api(server, f"/api/v1/providers/{provider}")
    page.goto(f"{server.url}/providers")
    page.click(f'a[href="/providers/{provider}"]')
    page.wait_for_url(re.compile(provider))
    assert page.locator("#provider-address").inner_text() == provider
    assert page.locator("#provider-score").inner_text() == f"{profile['score']:.3f}"
    for part in ("reliability", "availability", "volume", "price_performance"):
        assert page.locator(f'#score-parts tr[data-part="{part}"]').count() == 1
    history = page.locator("#provider-history tbody tr")
    assert history.count() == len(profile["settlements"]) >= 1
    assert page.locator("#provider-offers tbody tr").count() == 1  # not its superseded offer
    assert page.locator("#provider-offers .badge.sim").count() == 1
    shoot(page, "explorer-provider.png")


def test_settlements_show_transaction_signatures(
    explorer: tuple[Server, Filled], page: Any
) -> None:
    server, filled = explorer
    page.goto(f"{server.url}/settlements")
    shown = page.locator("details.batch .sig").all_inner_texts()
    assert filled.settled_signatures and set(filled.settled_signatures) <= set(shown)
    assert page.locator("details.batch .state.confirmed").count() == len(filled.settled_signatures)
    shoot(page, "explorer-settlements.png")


def test_unknown_pages_render_an_error_page(explorer: tuple[Server, Filled], browser: Any) -> None:
    server, _ = explorer
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(f"{server.url}/providers/{'1' * 32}")
    assert response is not None and response.status == 404
    assert page.locator("#error-message").inner_text() == "no such provider"
    context.close()


UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
PAGES = {
    "overview": "/",
    "offers": "/offers",
    "providers": "/providers",
    "provider": "/providers/{provider}",
    "settlements": "/settlements",
    "why": "/why?gpu_model=H100",
}


@pytest.mark.parametrize("width", [390, 1280])
def test_every_page_fits_the_screen_and_writes_times_in_utc(
    explorer: tuple[Server, Filled], browser: Any, width: int
) -> None:
    """At phone and desktop widths: nothing wider than the window (wide tables scroll in
    their card), no console error, and every time in one format with its zone."""
    server, filled = explorer
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        for name, template in PAGES.items():
            path = template.format(provider=filled.providers[0].address)
            page.goto(f"{server.url}{path}")
            page.wait_for_load_state("load")
            sizes = page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth,"
                " document.body.scrollWidth]"
            )
            assert max(sizes[0], sizes[2]) <= sizes[1], (path, sizes)
            times = page.locator("time").all_inner_texts()
            assert all(UTC_TEXT.fullmatch(t) for t in times), (path, times)
            shoot(page, f"explorer-{width}-{name}.png")
        page.goto(f"{server.url}/offers")
        expires = page.locator("#offers-table tbody tr td:last-child")
        assert expires.count() == len(FLEET)
        assert all(UTC_TEXT.fullmatch(t) for t in expires.all_inner_texts())
    finally:
        context.close()
    assert problems == []


def test_overview_shows_new_offers_and_settlements_without_reload(
    explorer: tuple[Server, Filled], page: Any
) -> None:
    """Last in this module: it adds a provider, an offer and a settlement batch."""
    server, filled = explorer
    page.goto(f"{server.url}/")
    before_offers = int(page.locator("#offers-live").inner_text())
    before_batches = page.locator("#recent-settlements tbody tr").count()
    page.evaluate("() => { window.notReloaded = true; }")

    provider = filled.world.providers[0]
    stranger = Identity.from_label("explorer-live-provider")

    async def add_offer() -> None:
        async with client_for(server, stranger) as client:
            await client.post_offer(offer_for(stranger, now=int(server.clock()), ttl_s=3600))

    trio.run(add_offer)
    page.wait_for_function(
        "n => document.getElementById('offers-live').textContent === String(n)",
        arg=before_offers + 1,
        timeout=30_000,
    )
    assert page.locator("#providers-online").inner_text() == str(PROVIDERS + 1)

    async def settle() -> dict[str, Any]:
        renter = filled.world.renters[0]
        channel = await filled.world.open(renter, provider, deposit=10**9)
        async with client_for(server, provider) as client:
            await client.post_receipt(filled.world.receipt(renter, channel, 123_000_000))
        async with client_for(server, ADMIN) as admin:
            return await admin.run_settlement()

    assert trio.run(settle)["confirmed"] == 1
    page.wait_for_function(
        "n => document.querySelectorAll('#recent-settlements tbody tr').length > n",
        arg=before_batches,
        timeout=30_000,
    )
    newest = page.locator("#recent-settlements tbody tr").first.inner_text()
    assert "0.1230" in newest, newest
    assert page.evaluate("() => window.notReloaded") is True
    shoot(page, "explorer-overview-live.png")


async def _post_verdicts(server: Server, filled: Filled, kinds: dict[int, VerdictKind]) -> None:
    """Verdicts of the fill's renter on its jobs with providers ``kinds`` names."""
    renter = filled.world.renters[0]
    for index, kind in kinds.items():
        address = filled.providers[index].address
        profile = api(server, f"/api/v1/providers/{address}")
        offer = decode_as(Offer, base64.b64decode(profile["offers"][0]["raw"]))
        job_id = bytes.fromhex(profile["channels"][0]["job_id"])
        verdict = ProbeVerdict(
            renter=renter.public_key,
            provider=offer.provider,
            offer_id=offer.offer_id,
            job_id=job_id,
            gpu_model=offer.gpu_model,
            verdict=kind,
            reasons=[f"explorer test: {kind}"],
            at=int(server.clock()),
        )
        async with client_for(server, renter) as client:
            assert (await client.post_verdict(sign(verdict, renter)))["status"] == "recorded"


def test_probe_verdicts_and_devices_show_and_filter(
    explorer: tuple[Server, Filled], page: Any
) -> None:
    # last in this module: it adds verdicts to the shared world
    server, filled = explorer
    trio.run(_post_verdicts, server, filled, {2: "verified", 1: "mismatch"})
    page.goto(f"{server.url}/offers")
    verdicts = page.locator("#offers-table td[data-verdict]")
    shown = sorted(v for v in verdicts.evaluate_all("els => els.map(e => e.dataset.verdict)") if v)
    assert shown == ["mismatch", "verified"]
    assert page.locator("#offers-table .badge.verified").count() == 1
    assert page.locator("#offers-table .badge.mismatch").count() == 1
    # the fill's offers carry no backend reading: vendor "unknown", containers
    devices = page.locator('#offers-table td[data-vendor="unknown"]')
    assert devices.count() == page.locator("#offers-table tbody tr").count() > 0
    assert "docker" in devices.first.inner_text()
    page.check("input[name=verified]")
    page.click("#offer-filters button[type=submit]")
    page.wait_for_url(re.compile(r"verified=true"))
    rows = page.locator("#offers-table tbody tr")
    assert rows.count() == 1
    assert "H100" in rows.first.inner_text()
    verified = filled.providers[2].address
    page.goto(f"{server.url}/providers/{verified}")
    assert page.locator("#provider-verification .badge.verified").count() == 1
    assert page.locator('#provider-verdicts tbody tr[data-verdict="verified"]').count() == 1
    page.goto(f"{server.url}/providers")
    assert page.locator("#providers-table .badge.mismatch").count() == 1
    shoot(page, "explorer-verdicts.png")
