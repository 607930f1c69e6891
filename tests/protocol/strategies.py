"""Hypothesis strategies producing valid messages of every kind."""

from __future__ import annotations

from dgpu.protocol import messages as m
from hypothesis import strategies as st

u63 = st.integers(min_value=0, max_value=m.U64_MAX)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
key = st.binary(min_size=32, max_size=32)
id16 = st.binary(min_size=16, max_size=16)
sig = st.binary(min_size=0, max_size=64)
model = st.from_regex(r"\A[A-Za-z0-9 ._-]{1,64}\Z")
region = st.from_regex(r"\A[a-z0-9-]{1,32}\Z")
short = st.text(max_size=64)
seconds = st.integers(min_value=1, max_value=30 * 24 * 3600)

device_text = st.from_regex(r"\A[ -~]{0,96}\Z")
gpu_uuid = st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z")


@st.composite
def _gpus(draw: st.DrawFn) -> tuple[int, list[str]]:
    """A GPU count and either no board UUIDs or one per GPU (an Offer's invariant)."""
    count = draw(st.integers(1, 64))
    with_uuids = draw(st.booleans())
    uuids = draw(st.lists(gpu_uuid, min_size=count, max_size=count)) if with_uuids else []
    return count, uuids


offers = _gpus().flatmap(
    lambda gpus: st.builds(
        m.Offer,
        provider=key,
        offer_id=id16,
        gpu_model=model,
        gpu_count=st.just(gpus[0]),
        vram_mb=st.integers(1, 4 * 1024 * 1024),
        power_w=st.integers(0, 10_000),
        simulated=st.booleans(),
        gpu_vendor=st.sampled_from(["nvidia", "amd", "apple", "unknown"]),
        gpu_name=device_text,
        driver_version=device_text,
        gpu_uuids=st.just(gpus[1]),
        executor=st.sampled_from(["docker", "local"]),
        price_per_gpu_second=u63,
        mint=key,
        region=region,
        max_duration_s=seconds,
        multiaddrs=st.lists(st.from_regex(r"\A/[a-z0-9/.]{0,40}\Z"), max_size=8),
        created_at=u63,
        expires_at=u63,
        sig=sig,
    )
)
job_requests = st.builds(
    m.JobRequest,
    job_id=id16,
    renter=key,
    provider=key,
    offer_id=id16,
    gpu_model=model,
    gpu_count=st.integers(1, 64),
    image=st.from_regex(r"\A[A-Za-z0-9./:@_-]{1,64}\Z"),
    command=st.lists(short, max_size=8),
    env=st.lists(
        st.builds(m.EnvVar, name=st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,20}\Z"), value=short),
        max_size=4,
    ),
    max_duration_s=seconds,
    max_price_per_gpu_second=u63,
    network=st.booleans(),
    output_dir=st.text(max_size=32),
    max_output_bytes=u63,
    created_at=u63,
    sig=sig,
)
quotes = st.builds(
    m.Quote,
    job_id=id16,
    provider=key,
    renter=key,
    request_hash=key,
    gpu_model=model,
    gpu_count=st.integers(1, 64),
    price_per_gpu_second=u63,
    mint=key,
    program_id=key,
    interval_s=st.integers(1, 3600),
    grace_s=st.integers(1, 3600),
    max_duration_s=seconds,
    deposit=u63,
    max_output_bytes=u63,
    bulk_addr=st.text(max_size=40),
    expires_at=u63,
    sig=sig,
)
agreements = st.builds(m.Agreement, job_id=id16, terms_hash=key, renter_sig=sig, provider_sig=sig)
channel_opened = st.builds(
    m.ChannelOpened,
    job_id=id16,
    channel=key,
    open_nonce=u63,
    deposit=u63,
    expires_at=u63,
    signature=st.text(max_size=88),
    sig=sig,
)
samples = st.builds(
    m.GpuSample,
    index=st.integers(0, 63),
    util_pct=st.integers(0, 100),
    mem_used_mb=st.integers(0, 1024 * 1024),
    power_mw=st.integers(0, 10_000_000),
    temp_c=st.integers(-50, 200),
)
usage_reports = st.builds(
    m.UsageReport,
    job_id=id16,
    seq=u32,
    elapsed_s=u32,
    amount_due=u63,
    samples=st.lists(samples, max_size=8),
    at=u63,
    sig=sig,
)
receipts = st.builds(
    m.Receipt,
    job_id=id16,
    seq=u32,
    renter=key,
    program_id=key,
    channel=key,
    open_nonce=u63,
    cumulative=u63,
    sig=sig,
)
receipt_acks = st.builds(m.ReceiptAck, job_id=id16, seq=u32, cumulative=u63)
cancels = st.builds(m.Cancel, job_id=id16, reason=short, sig=sig)
statuses = st.builds(
    m.JobStatus,
    job_id=id16,
    state=st.sampled_from(
        ["accepted", "starting", "running", "succeeded", "failed", "cancelled", "stopped"]
    ),
    exit_code=st.none() | st.integers(-255, 255),
    detail=short,
)
log_chunks = st.builds(
    m.LogChunk,
    job_id=id16,
    seq=u32,
    stream=st.sampled_from(["stdout", "stderr"]),
    data=st.binary(max_size=2048),
)
manifests = st.builds(
    m.OutputManifest,
    job_id=id16,
    files=st.lists(
        st.builds(
            m.OutputFile, path=st.from_regex(r"\A[a-z][a-z0-9/._-]{0,30}\Z"), sha256=key, size=u63
        ),
        max_size=8,
    ),
    sig=sig,
)
errors = st.builds(
    m.ErrorMessage,
    code=st.sampled_from(["bad_request", "expired", "internal", "no_capacity"]),
    message=short,
    job_id=st.none() | id16,
)
book_queries = st.builds(
    m.OfferBookQuery,
    gpu_model=model,
    limit=st.integers(1, m.MAX_BOOK_ANSWER),
)
book_pages = st.builds(m.OfferBookPage, offers=st.lists(offers, min_size=1, max_size=3))
any_message = st.one_of(
    offers,
    book_queries,
    book_pages,
    job_requests,
    quotes,
    agreements,
    channel_opened,
    usage_reports,
    receipts,
    receipt_acks,
    cancels,
    statuses,
    log_chunks,
    manifests,
    errors,
)
