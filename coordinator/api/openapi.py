"""The OpenAPI 3.0 document of ``/api/v1`` (hand-written: bodies are signed bytes)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Final

from dgpu.coordinator.api.address_pattern import key_address_pattern
from dgpu.coordinator.api.common import BASE58, HEX32, PRINTABLE, REGION
from dgpu.coordinator.api.offers import MAX_VRAM_MB
from dgpu.coordinator.store.offers import SORTS
from dgpu.protocol.http_auth import HEADER_ADDRESS, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from dgpu.protocol.messages import U64_MAX

INT: Final = {"type": "integer", "minimum": 0}
STR: Final = {"type": "string"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def _pattern(regex: re.Pattern[str], **limits: int) -> dict[str, Any]:
    """A string schema whose ``pattern`` is the regex the server fullmatches."""
    return {"type": "string", "pattern": f"^{regex.pattern}$", **limits}


# A base58 ed25519 public key, by its exact pattern (see address_pattern).
ADDRESS: Final = {
    "type": "string",
    "pattern": f"^{key_address_pattern()}$",
    "description": "base58 of a 32-byte ed25519 public key",
}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS: Final = {
    code: _json(_ref("Error"), text)
    for code, text in {
        "400": "malformed request",
        "401": "missing, stale, replayed or bad request signature",
        "403": "signer not allowed",
        "404": "not found",
        "409": "conflicts with stored state",
        "413": "body too large",
        "415": "unsupported content type",
        "422": "well-formed but invalid (signature, expiry, ...)",
        "429": "rate limited (see Retry-After)",
    }.items()
}


def _page(max_page: int) -> list[dict[str, Any]]:
    return [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": max_page}, "page size"),
        _query("offset", {"type": "integer", "minimum": 0, "maximum": 1000000}, "rows to skip"),
    ]


_SIGNED: Final[list[dict[str, list[str]]]] = [
    {"dgpuAddress": [], "dgpuTimestamp": [], "dgpuSignature": []}
]


def _signed_message_body(field: str, kind: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            # OpenAPI 3.0 has no `description` on a media type: it goes on the schema.
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": f"the canonical MessagePack {kind} "
                    "(application/msgpack works too)",
                },
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": [field],
                    "properties": {field: {"type": "string", "format": "byte"}},
                    "description": f"base64 of the canonical MessagePack {kind}",
                }
            },
        },
    }


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    codes = {"200": responses.pop("200")} if "200" in responses else {}
    codes.update(responses)
    codes.update({k: v for k, v in ERRORS.items() if k not in codes})
    return {"summary": summary, "responses": codes, **extra}


MODEL: Final = _pattern(PRINTABLE, maxLength=64)


def _offer_filters(max_page: int) -> list[dict[str, Any]]:
    return [
        _query("gpu_model", MODEL, "model name (matched loosely); empty: any"),
        _query(
            "count", {"type": "integer", "minimum": 1, "maximum": 64}, "at least this many GPUs"
        ),
        _query(
            "min_vram_mb",
            {"type": "integer", "minimum": 0, "maximum": MAX_VRAM_MB},
            "at least this much VRAM per GPU",
        ),
        _query(
            "max_price",
            {"type": "integer", "minimum": 0, "maximum": U64_MAX},
            "base units per GPU-second, at most",
        ),
        _query("region", _pattern(REGION, maxLength=32), "region, exactly; empty: any"),
        _query(
            "min_score", {"type": "number", "minimum": 0, "maximum": 1}, "provider score, at least"
        ),
        _query("simulated", {"type": "string", "enum": ["true", "false", "any"]}, "simulated GPUs"),
        _query("provider", _pattern(BASE58, maxLength=44), "one provider's address; empty: any"),
        _query(
            "verified",
            {"type": "string", "enum": ["true", "false", "any"]},
            "true: only providers with a recent verified probe verdict",
        ),
        _query("sort", {"type": "string", "enum": list(SORTS)}, "ordering"),
        *_page(max_page),
    ]


@cache
def openapi_document(max_page: int = 200) -> dict[str, Any]:
    """The document of a coordinator whose pages hold at most ``max_page`` rows (cached:
    callers must not change it)."""
    obj = {"type": "object"}
    paths: dict[str, Any] = {
        "/api/v1/offers": {
            "get": _op(
                "Search live offers (each provider's current one: an offer its provider has"
                " replaced is not listed, although still signed and unexpired)",
                {"200": _json(_ref("OfferPage"), "matching live offers")},
                parameters=_offer_filters(max_page),
            ),
            "post": _op(
                "Index a signed offer (idempotent by offer_id)",
                {
                    "200": _json(_ref("IngestResult"), "already known (duplicate/stale/refreshed)"),
                    "201": _json(_ref("IngestResult"), "new offer"),
                },
                requestBody=_signed_message_body("offer", "Offer"),
                security=_SIGNED,
            ),
        },
        "/api/v1/offers/{offer_id}": {
            "get": _op(
                "One offer (live or recently expired)",
                {"200": _json(_ref("Offer"), "the offer")},
                parameters=[_path("offer_id", _pattern(HEX32), "32 hex digits")],
            )
        },
        "/api/v1/receipts": {
            "post": _op(
                "Hand in a renter-signed receipt (posted by the channel's provider)",
                {
                    "200": _json(obj, "known or superseded (duplicate/stale/raised)"),
                    "201": _json(obj, "first receipt of this channel opening"),
                },
                requestBody=_signed_message_body("receipt", "Receipt"),
                security=_SIGNED,
            )
        },
        "/api/v1/receipts/batch": {
            "post": _op(
                "Hand in up to 256 receipts in one signed request; answered receipt by receipt",
                {"200": _json(obj, "per receipt: accepted (with the stored status) or refused")},
                requestBody={
                    "required": True,
                    "description": "a MessagePack array of the receipts' canonical bytes",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"},
                        }
                    },
                },
                security=_SIGNED,
            )
        },
        "/api/v1/channels/{channel}": {
            "get": _op(
                "Best receipt and settled mark of a channel",
                {"200": _json(obj, "the channel's openings")},
                parameters=[_path("channel", ADDRESS, "base58 address")],
            )
        },
        "/api/v1/reports": {
            "post": _op(
                "Report a job's outcome (renter or provider of the job)",
                {"200": _json(obj, "recorded")},
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Report")}},
                },
                security=_SIGNED,
            )
        },
        "/api/v1/verdicts": {
            "post": _op(
                "Store a probe verdict (posted by the renter that signed it, once the probe "
                "job's receipts reached the index; 409 unknown_job before)",
                {
                    "200": _json(obj, "this job's verdict was already stored"),
                    "201": _json(obj, "recorded"),
                },
                requestBody=_signed_message_body("verdict", "ProbeVerdict"),
                security=_SIGNED,
            )
        },
        "/api/v1/prices": {
            "get": _op("Reference prices per model", {"200": _json(obj, "reference prices")})
        },
        "/api/v1/prices/history": {
            "get": _op(
                "Reference price snapshots",
                {"200": _json(obj, "snapshots")},
                parameters=[
                    _query(
                        "since_s", {"type": "integer", "minimum": 1, "maximum": 2592000}, "window"
                    ),
                    _query("model", MODEL, "one model; empty: all"),
                ],
            )
        },
        "/api/v1/estimate": {
            "get": _op(
                "Cost estimate of a job (fee shown separately)",
                {"200": _json(obj, "estimates at the reference and the market median")},
                parameters=[
                    _query("model", {**MODEL, "minLength": 1}, "GPU model (card name)", True),
                    _query("count", {"type": "integer", "minimum": 1, "maximum": 64}, "GPUs"),
                    _query(
                        "duration", {"type": "integer", "minimum": 1, "maximum": 2592000}, "s", True
                    ),
                ],
            )
        },
        "/api/v1/providers": {
            "get": _op(
                "Providers by score", {"200": _json(obj, "providers")}, parameters=_page(max_page)
            )
        },
        "/api/v1/providers/{address}": {
            "get": _op(
                "A provider's profile, score and its parts",
                {"200": _json(obj, "profile")},
                parameters=[_path("address", ADDRESS, "base58 address")],
            )
        },
        "/api/v1/settlements": {
            "get": _op(
                "Settlement batches", {"200": _json(obj, "batches")}, parameters=_page(max_page)
            )
        },
        "/api/v1/settlements/run": {
            "post": _op(
                "Run a settlement round now (admins only)",
                {"200": _json(obj, "round report"), "503": _json(_ref("Error"), "no chain")},
                security=_SIGNED,
            )
        },
        "/api/v1/overview": {
            "get": _op(
                "The explorer overview's live figures (counters, recent settlement batches)",
                {"200": _json(obj, "figures; *_text fields are the explorer's display form")},
            )
        },
        "/healthz": {"get": _op("Liveness and database check", {"200": _json(obj, "ok")})},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "dgpu coordinator",
            "version": "1",
            "description": (
                "Offer index, reference prices, receipt intake and batched settlement. "
                "Amounts are integers in token base units (1 dGPU = 10^9). Writes are signed: "
                f"{HEADER_ADDRESS}, {HEADER_TIMESTAMP}, {HEADER_SIGNATURE}, "
                f"optional {HEADER_NONCE} (see dgpu.coordinator.auth)."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "dgpuAddress": {"type": "apiKey", "in": "header", "name": HEADER_ADDRESS},
                "dgpuTimestamp": {"type": "apiKey", "in": "header", "name": HEADER_TIMESTAMP},
                "dgpuSignature": {"type": "apiKey", "in": "header", "name": HEADER_SIGNATURE},
                "dgpuNonce": {"type": "apiKey", "in": "header", "name": HEADER_NONCE},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": STR, "message": STR},
                        }
                    },
                },
                "Offer": {
                    "type": "object",
                    "properties": {
                        "offer_id": STR,
                        "provider": STR,
                        "gpu_model": STR,
                        "gpu_count": INT,
                        "vram_mb": INT,
                        "simulated": {"type": "boolean"},
                        "price_per_gpu_second": INT,
                        "region": STR,
                        "expires_at": INT,
                        "provider_score": {"type": "number"},
                        "provider_proven": {"type": "boolean"},
                        "admitted": {"type": "boolean"},
                        "gpu_vendor": {
                            "type": "string",
                            "enum": ["nvidia", "amd", "apple", "unknown"],
                        },
                        "gpu_name": STR,
                        "driver_version": STR,
                        "gpu_uuids": {"type": "array", "items": STR},
                        "executor": {"type": "string", "enum": ["docker", "local"]},
                    },
                },
                "OfferPage": {
                    "type": "object",
                    "required": ["total", "offers"],
                    "properties": {
                        "total": INT,
                        "limit": INT,
                        "offset": INT,
                        "offers": {"type": "array", "items": _ref("Offer")},
                    },
                },
                "IngestResult": {
                    "type": "object",
                    "properties": {
                        "status": {
                            "type": "string",
                            "enum": ["created", "refreshed", "duplicate", "stale"],
                        },
                        "offer_id": STR,
                        "provider": STR,
                        "expires_at": INT,
                        "admission": {"type": "string", "enum": ["admitted", "pending"]},
                    },
                },
                "Report": {
                    "type": "object",
                    "required": ["job_id", "provider", "outcome"],
                    "properties": {
                        "job_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        "provider": STR,
                        "outcome": {
                            "type": "string",
                            "enum": ["completed", "provider_fault", "renter_cancelled"],
                        },
                    },
                },
            },
        },
    }
