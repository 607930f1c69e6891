"""Hostile requests: each refused with the right status and a JSON error, nothing stored."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
import trio
from dgpu.coordinator.config import RateLimit
from dgpu.protocol.codec import encode
from dgpu.protocol.http_auth import HEADER_SIGNATURE, sign_request
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import U64_MAX
from dgpu.protocol.offers import offer_bytes

from tests.coordinator.conftest import (
    Server,
    make_config,
    offer_for,
    receipt_for,
    running_server,
)

PROVIDER = Identity.from_label("hostile-provider")
RENTER = Identity.from_label("hostile-renter")


def signed(
    server: Server,
    path: str,
    body: bytes,
    *,
    identity: Identity = PROVIDER,
    content_type: str = "application/msgpack",
    timestamp: int | None = None,
    sign_body: bytes | None = None,
) -> dict[str, str]:
    stamp = int(server.clock()) if timestamp is None else timestamp
    headers = sign_request(
        identity, "POST", path, body if sign_body is None else sign_body, timestamp=stamp
    )
    headers["Content-Type"] = content_type
    return headers


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def unchanged(server: Server) -> Iterator[None]:
    """The test must leave offers, channels and reports exactly as they were."""
    tables = ("offers", "channels", "job_reports", "presence")
    before = {t: server.count(t) for t in tables}
    yield
    assert {t: server.count(t) for t in tables} == before


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    doc = response.json()
    assert set(doc) == {"error"}
    assert doc["error"]["code"] == code
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]


def good_offer(server: Server) -> bytes:
    return offer_bytes(offer_for(PROVIDER, now=int(server.clock())))


@pytest.mark.usefixtures("unchanged")
class TestOffers:
    async def test_garbage(self, server: Server, http: httpx.AsyncClient) -> None:
        body = b"\xc1\xff garbage \x00"
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 400, "invalid_message")

    async def test_huge_declared(self, server: Server, http: httpx.AsyncClient) -> None:
        body = b"\x00" * (server.config.max_body_bytes + 1)
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 413, "body_too_large")

    async def test_huge_streamed_without_length(
        self, server: Server, http: httpx.AsyncClient
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"\x00" * 4096

        headers = signed(server, "/api/v1/offers", b"")
        r = await http.post("/api/v1/offers", content=chunks(), headers=headers)
        assert_error(r, 413, "body_too_large")

    async def test_unsigned(self, server: Server, http: httpx.AsyncClient) -> None:
        r = await http.post(
            "/api/v1/offers",
            content=good_offer(server),
            headers={"Content-Type": "application/msgpack"},
        )
        assert_error(r, 401, "unsigned")

    async def test_wrong_request_signature(self, server: Server, http: httpx.AsyncClient) -> None:
        body = good_offer(server)
        headers = signed(server, "/api/v1/offers", body, sign_body=body + b"x")
        r = await http.post("/api/v1/offers", content=body, headers=headers)
        assert_error(r, 401, "bad_signature")

    async def test_signature_for_another_path(
        self, server: Server, http: httpx.AsyncClient
    ) -> None:
        body = good_offer(server)
        headers = signed(server, "/api/v1/receipts", body)
        r = await http.post("/api/v1/offers", content=body, headers=headers)
        assert_error(r, 401, "bad_signature")

    async def test_malformed_auth_headers(self, server: Server, http: httpx.AsyncClient) -> None:
        body = good_offer(server)
        for name, value, code in (
            (HEADER_SIGNATURE, "%%%not-base64%%%", "bad_auth_header"),
            ("X-Dgpu-Timestamp", "soon", "bad_auth_header"),
            ("X-Dgpu-Address", "0OIl-not-base58", "bad_auth_header"),
            (HEADER_SIGNATURE, "A" * 200, "bad_auth_header"),
        ):
            headers = signed(server, "/api/v1/offers", body) | {name: value}
            r = await http.post("/api/v1/offers", content=body, headers=headers)
            assert_error(r, 401, code)

    async def test_stale_request(self, server: Server, http: httpx.AsyncClient) -> None:
        body = good_offer(server)
        for skew in (-61, 61):
            stamp = int(server.clock()) + skew
            r = await http.post(
                "/api/v1/offers",
                content=body,
                headers=signed(server, "/api/v1/offers", body, timestamp=stamp),
            )
            assert_error(r, 401, "stale_request")

    async def test_expired_offer(self, server: Server, http: httpx.AsyncClient) -> None:
        body = offer_bytes(offer_for(PROVIDER, now=int(server.clock()) - 700, ttl_s=600))
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 422, "offer_expired")

    async def test_offer_from_the_future(self, server: Server, http: httpx.AsyncClient) -> None:
        body = offer_bytes(offer_for(PROVIDER, now=int(server.clock()) + 600))
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 422, "offer_not_yet_valid")

    async def test_tampered_offer(self, server: Server, http: httpx.AsyncClient) -> None:
        offer = offer_for(PROVIDER, now=int(server.clock()))
        body = encode(msgspec.structs.replace(offer, price_per_gpu_second=1))
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 422, "bad_offer_signature")

    async def test_offer_of_someone_else(self, server: Server, http: httpx.AsyncClient) -> None:
        body = offer_bytes(offer_for(Identity.from_label("hostile-other"), now=int(server.clock())))
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 403, "not_offer_provider")

    async def test_wrong_types_in_message(self, server: Server, http: httpx.AsyncClient) -> None:
        doc = msgspec.msgpack.decode(good_offer(server))
        doc["gpu_count"] = "eight"
        body = msgspec.msgpack.encode(doc)
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 400, "invalid_message")
        assert "gpu_count" in r.json()["error"]["message"]

    async def test_non_canonical_encoding(self, server: Server, http: httpx.AsyncClient) -> None:
        doc = msgspec.msgpack.decode(good_offer(server))
        body = msgspec.msgpack.encode(dict(reversed(list(doc.items()))))
        r = await http.post(
            "/api/v1/offers", content=body, headers=signed(server, "/api/v1/offers", body)
        )
        assert_error(r, 400, "invalid_message")

    @pytest.mark.parametrize(
        "payload",
        [b"[1, 2]", b'{"offer": 123}', b'{"offer": "***"}', b'{"nope": "AA=="}', b"{not json"],
    )
    async def test_wrong_json(
        self, server: Server, http: httpx.AsyncClient, payload: bytes
    ) -> None:
        headers = signed(server, "/api/v1/offers", payload, content_type="application/json")
        r = await http.post("/api/v1/offers", content=payload, headers=headers)
        assert_error(r, 400, "invalid_body")

    async def test_unsupported_media_type(self, server: Server, http: httpx.AsyncClient) -> None:
        body = good_offer(server)
        headers = signed(server, "/api/v1/offers", body, content_type="text/plain")
        r = await http.post("/api/v1/offers", content=body, headers=headers)
        assert_error(r, 415, "unsupported_media_type")


async def test_replayed_request_is_refused_and_stored_once(
    server: Server, http: httpx.AsyncClient
) -> None:
    body = offer_bytes(offer_for(PROVIDER, now=int(server.clock()), region="replay"))
    headers = signed(server, "/api/v1/offers", body)
    first = await http.post("/api/v1/offers", content=body, headers=headers)
    again = await http.post("/api/v1/offers", content=body, headers=headers)
    assert first.status_code == 201
    assert_error(again, 401, "replayed")
    assert server.count("offers", "region = 'replay'") == 1


async def test_json_offer_body_is_accepted(server: Server, http: httpx.AsyncClient) -> None:
    raw = offer_bytes(offer_for(PROVIDER, now=int(server.clock()), region="json-body"))
    payload = json.dumps({"offer": base64.b64encode(raw).decode()}).encode()
    headers = signed(server, "/api/v1/offers", payload, content_type="application/json")
    r = await http.post("/api/v1/offers", content=payload, headers=headers)
    assert r.status_code == 201, r.text
    assert server.count("offers", "region = 'json-body'") == 1


@pytest.mark.usefixtures("unchanged")
class TestReceipts:
    async def test_garbage(self, server: Server, http: httpx.AsyncClient) -> None:
        body = os.urandom(200)
        r = await http.post(
            "/api/v1/receipts", content=body, headers=signed(server, "/api/v1/receipts", body)
        )
        assert_error(r, 400, "invalid_message")

    async def test_bad_renter_signature(self, server: Server, http: httpx.AsyncClient) -> None:
        receipt = receipt_for(RENTER, channel=os.urandom(32), cumulative=10)
        forged = msgspec.structs.replace(receipt, cumulative=10_000)
        body = encode(forged)
        r = await http.post(
            "/api/v1/receipts", content=body, headers=signed(server, "/api/v1/receipts", body)
        )
        assert_error(r, 422, "bad_receipt_signature")

    async def test_receipt_of_another_kind(self, server: Server, http: httpx.AsyncClient) -> None:
        body = good_offer(server)
        r = await http.post(
            "/api/v1/receipts", content=body, headers=signed(server, "/api/v1/receipts", body)
        )
        assert_error(r, 400, "invalid_message")

    async def test_too_large_for_a_receipt(self, server: Server, http: httpx.AsyncClient) -> None:
        body = b"\x00" * 2000
        r = await http.post(
            "/api/v1/receipts", content=body, headers=signed(server, "/api/v1/receipts", body)
        )
        assert_error(r, 413, "message_too_large")

    async def test_bad_report(self, server: Server, http: httpx.AsyncClient) -> None:
        for doc in (
            {"job_id": "zz" * 16, "provider": PROVIDER.address, "outcome": "completed"},
            {"job_id": "00" * 16, "provider": PROVIDER.address, "outcome": "exploded"},
            {"job_id": "00" * 16, "provider": 7, "outcome": "completed"},
        ):
            body = json.dumps(doc).encode()
            headers = signed(server, "/api/v1/reports", body, content_type="application/json")
            r = await http.post("/api/v1/reports", content=body, headers=headers)
            assert_error(r, 400, "invalid_body")

    @pytest.mark.parametrize("path", ["/api/v1/reports", "/api/v1/offers", "/api/v1/receipts"])
    async def test_deeply_nested_json(
        self, server: Server, http: httpx.AsyncClient, path: str
    ) -> None:
        # D4: json.loads raised RecursionError, which nothing caught (500)
        body = b'{"offer": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        assert len(body) < server.config.max_body_bytes
        headers = signed(server, path, body, content_type="application/json")
        assert_error(await http.post(path, content=body, headers=headers), 400, "invalid_body")


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/api/v1/offers", {"limit": "-1"}, "invalid_parameter"),
        ("/api/v1/offers", {"limit": "100000"}, "invalid_parameter"),
        ("/api/v1/offers", {"min_score": "nan"}, "invalid_parameter"),
        ("/api/v1/offers", {"count": "1e9"}, "invalid_parameter"),
        ("/api/v1/offers", {"sort": "drop table"}, "invalid_parameter"),
        ("/api/v1/offers", {"max_price": "99999999999999999999999"}, "invalid_parameter"),
        ("/api/v1/offers/xyz", {}, "invalid_parameter"),
        ("/api/v1/providers/not-an-address", {}, "invalid_parameter"),
        ("/api/v1/channels/0OIl", {}, "invalid_parameter"),
        ("/api/v1/estimate", {"model": "H100", "duration": "0"}, "invalid_parameter"),
        # D3: a doubled sign passed the digit check and crashed int() with a 500
        ("/api/v1/offers", {"limit": "--5"}, "invalid_parameter"),
        ("/api/v1/offers", {"max_price": "-+5"}, "invalid_parameter"),
        ("/api/v1/offers", {"limit": "٣"}, "invalid_parameter"),
        ("/api/v1/estimate", {"model": "H100", "duration": "--5"}, "invalid_parameter"),
        ("/api/v1/settlements", {"limit": "--5"}, "invalid_parameter"),
        ("/api/v1/providers", {"limit": "--5"}, "invalid_parameter"),
        # values the OpenAPI document does not allow, which the server used to take
        ("/api/v1/offers", {"limit": ""}, "invalid_parameter"),
        ("/api/v1/settlements", {"offset": ""}, "invalid_parameter"),
        ("/api/v1/offers", {"simulated": "0"}, "invalid_parameter"),
        ("/api/v1/offers", {"sort": ""}, "invalid_parameter"),
        ("/api/v1/offers", {"min_score": "0_1"}, "invalid_parameter"),
        ("/api/v1/offers", {"min_score": " 1"}, "invalid_parameter"),
        ("/api/v1/offers", {"region": "EU West"}, "invalid_parameter"),
        ("/api/v1/offers/" + "00 " * 15 + "00", {}, "invalid_parameter"),
        ("/api/v1/estimate", {"model": "", "duration": "1"}, "invalid_parameter"),
    ],
)
async def test_bad_query_parameters(
    http: httpx.AsyncClient, path: str, params: dict[str, str], code: str
) -> None:
    assert_error(await http.get(path, params=params), 400, code)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        # values the OpenAPI document allows, which the server used to refuse with 400
        ("/api/v1/offers", {"max_price": str(U64_MAX)}),
        ("/api/v1/offers", {"min_score": "1.1754943508222875e-38", "simulated": "any"}),
        ("/api/v1/offers", {"gpu_model": "", "region": "", "provider": ""}),
        ("/api/v1/offers/" + "AB" * 16, {}),
        ("/api/v1/prices/history", {"model": "RTX 4090 (24 GB) ~x"}),
    ],
)
async def test_parameters_the_document_allows_are_accepted(
    http: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await http.get(path, params=params)
    assert response.status_code in (200, 404), response.text


async def test_a_wrong_method_names_every_allowed_one(http: httpx.AsyncClient) -> None:
    # GET and POST of /api/v1/offers were two routes: the 405 said `Allow: POST`
    for method in ("OPTIONS", "PUT", "DELETE"):
        response = await http.request(method, "/api/v1/offers")
        assert response.status_code == 405
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert {"GET", "POST"} <= allowed, allowed
    response = await http.request("PUT", "/api/v1/settlements")
    assert response.status_code == 405 and "GET" in response.headers["allow"]


async def test_rate_limits_answer_429_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = make_config(
        tmp_path_factory.mktemp("limits"),
        per_key_limit=RateLimit(per_second=0.01, burst=2),
        per_ip_limit=RateLimit(per_second=0.01, burst=6),
    )
    with running_server(config) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            statuses = []
            for k in range(3):
                body = offer_bytes(offer_for(PROVIDER, now=int(srv.clock()), region=f"rl{k}"))
                r = await http.post(
                    "/api/v1/offers", content=body, headers=signed(srv, "/api/v1/offers", body)
                )
                statuses.append(r.status_code)
            assert statuses == [201, 201, 429]
            assert_error(r, 429, "rate_limited")
            assert int(r.headers["Retry-After"]) >= 1
            assert srv.count("offers") == 2
            # Another key still gets through until the client address runs dry.
            other = Identity.from_label("hostile-other-key")
            ok = await http.post(
                "/api/v1/offers",
                content=b"x",
                headers=signed(srv, "/api/v1/offers", b"x", identity=other),
            )
            assert ok.status_code == 400
            reads = [(await http.get("/api/v1/prices")).status_code for _ in range(3)]
            assert reads[-1] == 429
            # D2: /healthz is public and unauthenticated, so it is limited like the rest;
            # the operator's scraper still reads /metrics.
            assert_error(await http.get("/healthz"), 429, "rate_limited")
            assert (await http.get("/metrics")).status_code == 200


async def test_invented_methods_do_not_add_metric_series(
    server: Server, http: httpx.AsyncClient
) -> None:
    def series(text: str) -> set[str]:
        return {
            line.split(" ")[0]
            for line in text.splitlines()
            if line.startswith("dgpu_coordinator_requests_total")
        }

    await http.get("/api/v1/prices")
    await http.get("/metrics")
    before = series((await http.get("/metrics")).text)
    for k in range(20):
        r = await http.request(f"FROB{k}", "/api/v1/prices")
        assert r.status_code == 405
    after = series((await http.get("/metrics")).text)
    new = after - before
    assert all('method="other"' in s for s in new), new
    assert not any("FROB" in s for s in after)


def _raw_post(url: str, path: str, headers: dict[str, str], declared: int) -> socket.socket:
    """A raw HTTP/1.1 request whose head promises ``declared`` body bytes."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {declared}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return sock


def _failures(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("dgpu_coordinator_failures_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_client_leaving_mid_body_is_not_a_failure(
    server: Server, http: httpx.AsyncClient
) -> None:
    # D5: the disconnect surfaced as a 500, logged as an error and counted as a failure
    before = _failures((await http.get("/metrics")).text)
    body = good_offer(server)
    sock = _raw_post(server.url, "/api/v1/offers", signed(server, "/api/v1/offers", body), 1000)
    sock.sendall(body[:10])
    sock.close()
    # The server notices the disconnect on its own loop; a later request sees the result.
    for _ in range(50):
        await trio.sleep(0.05)
        text = (await http.get("/metrics")).text
        if 'dgpu_coordinator_rejections_total{code="client_disconnected"}' in text:
            break
    assert 'dgpu_coordinator_rejections_total{code="client_disconnected"}' in text
    assert _failures(text) == before


async def test_a_slow_body_is_cut_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    config = make_config(tmp_path_factory.mktemp("slow"))
    config = dataclasses.replace(config, body_timeout_s=0.5)
    with running_server(config) as srv:
        body = good_offer(srv)
        sock = _raw_post(srv.url, "/api/v1/offers", signed(srv, "/api/v1/offers", body), len(body))
        answer = b""
        with sock:
            for byte in body[:40]:  # a byte every 0.1 s: never whole within the deadline
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                await trio.sleep(0.1)
                sock.setblocking(False)
                try:
                    answer += sock.recv(65536)
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
                if answer:
                    break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"body_timeout" in answer
        assert srv.count("offers") == 0
