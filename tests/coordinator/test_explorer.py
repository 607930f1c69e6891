"""The explorer in real headless Chromium (Playwright driving Debian's chromium) against a
running coordinator filled with real signed offers and a real settlement."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.money import ChainEscrow
from dgpu.coordinator.settlement import SettlementBackend

from tests.coordinator.conftest import ADMIN, ManualClock, Server, make_config, running_server
from tests.coordinator.escrow_world import World, make_world
from tests.coordinator.explorer_data import FLEET, Filled, fill

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
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Filled]]:
    world: World = asyncio.run(make_world(LiteSVMChain(), providers=4, renters=1, label="explore"))
    clock = ManualClock()
    config = make_config(
        tmp_path_factory.mktemp("explorer"),
        admins=frozenset({ADMIN.address}),
        site_name="dgpu explorer",
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
    expected_providers = len({index for index, *_ in FLEET})
    assert page.locator("#providers-online").inner_text() == str(expected_providers)
    assert page.locator("#gpus-live").inner_text() == str(sum(f[2] for f in FLEET))
    bars = page.locator("#gpus-by-model g.bar")
    assert bars.count() == len({"RTX 4090", "A100", "H100", "RTX 4080", "M3 Ultra"})
    assert page.locator("#price-chart polyline").count() >= 4
    points = page.locator("#price-chart polyline").first.get_attribute("points")
    assert points is not None and len(points.split()) >= 2
    settled = page.locator("#volume-settled").inner_text()
    assert settled == f"{filled.settled_amount / 10**9:,.4f}"
    assert page.locator("#reference-prices tbody tr").count() == 6
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
    assert page.locator("#provider-offers .badge.sim").count() == 2
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
