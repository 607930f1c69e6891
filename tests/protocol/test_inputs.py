"""Input trees: the rules a provider checks before quoting, in words; the negotiation agrees
the inputs' size and the tunnelled ports."""

from __future__ import annotations

import hashlib

import pytest
from dgpu.protocol.codec import decode, encode
from dgpu.protocol.errors import DecodeError
from dgpu.protocol.identity import Identity
from dgpu.protocol.inputs import InputRefused, InputsTooLarge, check_inputs
from dgpu.protocol.messages import InputFile, JobRequest
from dgpu.protocol.negotiation import (
    JobSpec,
    ProviderNegotiation,
    ProviderPolicy,
    Refused,
    RenterNegotiation,
)
from dgpu.protocol.offers import OfferTerms, make_offer
from dgpu.protocol.signing import sign

SHA = hashlib.sha256(b"x").digest()


def f(path: str, size: int = 1) -> InputFile:
    return InputFile(path=path, sha256=SHA, size=size)


def link(path: str, target: str) -> InputFile:
    return InputFile(path=path, sha256=b"", size=0, link=target)


def test_a_sound_tree_with_an_in_tree_symlink_is_taken() -> None:
    files = [f("data/a.bin", 10), f("data/sub/b.bin", 5), link("data/latest", "sub/b.bin")]
    assert check_inputs(files, 15) == 15
    assert check_inputs([link("d/x/up", "../y")], 0) == 0


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ([f("../etc/passwd")], "escapes"),
        ([f("a/../../b")], "escapes"),
        ([f("/etc/passwd")], "is absolute"),
        ([f("a//b")], "escapes or is not normalised"),
        ([f("./a")], "escapes or is not normalised"),
        ([f("a\\..\\b")], "backslash"),
        ([f("a\x00b")], "NUL"),
        ([f("a"), f("a")], "appears twice"),
        ([f("a"), f("a/b/c")], "both a file and a folder"),
        ([link("d/l", "../../etc")], "points out of the tree"),
        ([link("l", "/etc/shadow")], "points out of the tree"),
        ([InputFile(path="l", sha256=SHA, size=1, link="x")], "carries content"),
        ([InputFile(path="a", sha256=b"", size=1)], "has no sha256"),
    ],
)
def test_hostile_trees_are_refused_naming_the_path(files: list[InputFile], words: str) -> None:
    with pytest.raises(InputRefused, match=words):
        check_inputs(files, 10**9)


def test_over_the_limit_is_its_own_refusal() -> None:
    with pytest.raises(InputsTooLarge, match="over the limit of 10 bytes"):
        check_inputs([f("a", 6), f("b", 5)], 10)
    with pytest.raises(InputsTooLarge, match="takes no inputs"):
        check_inputs([f("a")], 0)


def test_a_job_request_with_inputs_and_ports_round_trips_canonically() -> None:
    renter = Identity.generate()
    request = sign(
        JobRequest(
            job_id=bytes(16),
            renter=renter.public_key,
            provider=bytes(32),
            offer_id=bytes(16),
            gpu_model="RTX 4090",
            gpu_count=1,
            image="busybox",
            command=["true"],
            max_duration_s=60,
            max_price_per_gpu_second=1,
            created_at=1,
            inputs=[f("a"), link("b", "a")],
            max_input_bytes=1,
            ports=[8888, 22],
        ),
        renter,
    )
    assert decode(encode(request)) == request
    with pytest.raises(DecodeError, match="ports"):
        decode(encode(request).replace(b"\xcd\x22\xb8", b"\xcd\x00\x00"))


def _pair(
    spec: JobSpec, policy: ProviderPolicy
) -> tuple[RenterNegotiation, ProviderNegotiation, JobRequest]:
    provider, renter = Identity.generate(), Identity.generate()
    offer = make_offer(
        provider,
        OfferTerms("RTX 4090", 1, 24_000, 10, policy.mint, "local", 600, simulated=True),
        multiaddrs=["/ip4/127.0.0.1/tcp/1"],
        now=100,
        ttl_s=60,
    )
    rn = RenterNegotiation(renter, offer, spec)
    request = rn.make_request(now=100, job_id=bytes(16))
    return rn, ProviderNegotiation(provider), request


SPEC = JobSpec(
    image="busybox",
    command=("true",),
    gpu_model="RTX 4090",
    gpu_count=1,
    max_duration_s=60,
    max_price_per_gpu_second=10,
)
POLICY = ProviderPolicy(
    price_per_gpu_second=10,
    gpu_model="RTX 4090",
    free_gpus=1,
    mint=bytes(32),
    program_id=bytes(32),
    max_duration_s=600,
    max_input_bytes=100,
    allow_ports=True,
)


def test_the_quote_agrees_the_input_size_and_the_ports() -> None:
    spec = JobSpec(**{**SPEC.__dict__, "inputs": (f("a", 60), f("b", 40)), "ports": (8888,)})
    rn, pn, request = _pair(spec, POLICY)
    assert request.max_input_bytes == 100
    quote = pn.on_request(request, POLICY, now=100)
    assert quote.max_input_bytes == 100 and quote.ports == [8888]
    rn.on_quote(quote, now=100, program_id=bytes(32))


@pytest.mark.parametrize(
    ("changes", "policy_changes", "code", "words"),
    [
        ({"inputs": (f("a", 101),)}, {}, "over_limit", "over the limit of 100 bytes"),
        ({"inputs": (f("../a"),)}, {}, "bad_request", "escapes"),
        ({"ports": (8888,)}, {"allow_ports": False}, "bad_request", "opens no ports"),
        ({"ports": (8888, 8888)}, {}, "bad_request", "asked twice"),
    ],
)
def test_the_provider_refuses_before_quoting(
    changes: dict[str, object], policy_changes: dict[str, object], code: str, words: str
) -> None:
    policy = ProviderPolicy(**{**POLICY.__dict__, **policy_changes})
    _rn, pn, request = _pair(JobSpec(**{**SPEC.__dict__, **changes}), policy)
    with pytest.raises(Refused, match=words) as caught:
        pn.on_request(request, policy, now=100)
    assert caught.value.code == code
