"""Schemathesis against the OpenAPI document of a real server: no 5xx, signed or not."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from dgpu.coordinator.api.openapi import openapi_document
from dgpu.protocol.codec import encode
from dgpu.protocol.http_auth import sign_request
from dgpu.protocol.identity import Identity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.core.result import Ok

from tests.coordinator.conftest import Server, offer_for, receipt_for

VENV_BIN = Path(sys.executable).parent
SIGNER = Identity.from_label("fuzz-signer")
FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_openapi_document_is_valid(server: Server) -> None:
    """The served document passes openapi-spec-validator (3.0 has no `description` on a
    media type: two operations had one)."""
    document = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    validate(document)
    assert document == openapi_document(server.config.max_page)


@pytest.mark.slow
def test_schemathesis_cli_finds_no_disagreement(tmp_path: Path) -> None:
    """`dgpu coordinator serve` in a child process; `st run` against its document with
    positive and negative data and every check: no 5xx, schema-valid requests accepted,
    schema-violating ones refused, `Allow` on 405, responses as documented. SIGTERM after."""
    server = subprocess.Popen(
        [
            str(VENV_BIN / "dgpu"),
            "coordinator",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(tmp_path / "db.sqlite"),
            "--ip-rate",
            "100000",
            "--ip-burst",
            "100000",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["url"]
        run = subprocess.run(
            [
                str(VENV_BIN / "st"),
                "run",
                f"{url}/api/v1/openapi.json",
                "--wait-for-schema",
                "30",
                "--checks",
                "all",
                "--mode",
                "all",  # positive and negative data
                "--phases",
                "examples,coverage,fuzzing",
                # bounded: about 700 cases (14 operations, two modes), 15 s here
                "--max-examples",
                "20",
                "--seed",
                "1",
                "--workers",
                "1",
                "--continue-on-failure",
                "--generation-database",
                "none",
                "--no-color",
                "--warnings",
                "off",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
        assert counts is not None, run.stdout[-2000:]
        assert counts.group(1) == counts.group(2), run.stdout[-2000:]
        assert int(counts.group(1)) >= 300, run.stdout[-2000:]
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=60)
    assert server.returncode == 0, errors[-3000:]
    assert "Traceback" not in errors


def _operations(method: str) -> list[Any]:
    schema = schemathesis.openapi.from_dict(openapi_document())
    found = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    return [op for op in found if op.method == method]


@pytest.mark.parametrize("operation", _operations("post"), ids=lambda op: op.path)
def test_signed_generated_writes_get_no_5xx(server: Server, operation: Any) -> None:
    """Schemathesis bodies with *valid* signatures reach past authentication."""
    with httpx.Client(timeout=30) as http:

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url=server.url)
            headers = {k: v for k, v in kwargs["headers"].items() if not k.startswith("X-Dgpu")}
            request = http.build_request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers=headers,
                json=kwargs.get("json"),
                content=kwargs.get("data"),
            )
            body = request.read()
            raw_path, _, raw_query = request.url.raw_path.partition(b"?")
            request.headers.update(
                sign_request(
                    SIGNER,
                    request.method,
                    raw_path.decode(),
                    body,
                    timestamp=int(server.clock()),
                    raw_query=raw_query.decode(),
                )
            )
            response = http.send(request)
            if response.status_code == 401:  # an identical body already used this signature
                assert response.json()["error"]["code"] == "replayed"
            assert response.status_code < 500, response.text

        check()


@FUZZ_SETTINGS
@given(
    model=st.from_regex(r"\A[A-Za-z0-9 ._-]{1,64}\Z"),
    count=st.integers(1, 64),
    vram=st.integers(1, 4 * 1024 * 1024),
    price=st.integers(0, 2**63 - 1),
    region=st.from_regex(r"\A[a-z0-9-]{1,32}\Z"),
    age=st.integers(-100, 4000),
    ttl=st.integers(1, 4000),
)
def test_valid_signed_offers_of_any_shape_get_no_5xx(
    server: Server, model: str, count: int, vram: int, price: int, region: str, age: int, ttl: int
) -> None:
    now = int(server.clock())
    offer = offer_for(
        SIGNER,
        model=model,
        count=count,
        vram_mb=vram,
        price=price,
        region=region,
        now=now - age,
        ttl_s=ttl,
    )
    body = encode(offer)
    headers = sign_request(SIGNER, "POST", "/api/v1/offers", body, timestamp=now)
    headers["Content-Type"] = "application/msgpack"
    response = httpx.post(f"{server.url}/api/v1/offers", content=body, headers=headers, timeout=30)
    assert response.status_code in (200, 201, 422), response.text
    search = httpx.get(
        f"{server.url}/api/v1/offers", params={"gpu_model": model, "region": region}, timeout=30
    )
    assert search.status_code == 200


@FUZZ_SETTINGS
@given(
    cumulative=st.integers(0, 2**63 - 1),
    nonce=st.integers(0, 2**63 - 1),
    seq=st.integers(0, 2**32 - 1),
)
def test_valid_receipts_of_any_amount_get_no_5xx(
    server: Server, cumulative: int, nonce: int, seq: int
) -> None:
    renter = Identity.from_label("fuzz-renter")
    receipt = receipt_for(
        renter, channel=os.urandom(32), cumulative=cumulative, open_nonce=nonce, seq=seq
    )
    body = encode(receipt)
    now = int(server.clock())
    headers = sign_request(SIGNER, "POST", "/api/v1/receipts", body, timestamp=now)
    headers["Content-Type"] = "application/msgpack"
    response = httpx.post(
        f"{server.url}/api/v1/receipts", content=body, headers=headers, timeout=30
    )
    assert response.status_code == 201, response.text
    channel = response.json()["channel"]
    assert (
        httpx.get(f"{server.url}/api/v1/channels/{channel}", timeout=30).json()["openings"][0][
            "cumulative"
        ]
        == cumulative
    )
