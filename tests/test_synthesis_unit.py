"""`run_synthesis`, `Synthesizer` and `run_upload` called directly, with a fake engine and fake
storage."""

from __future__ import annotations

from common.errors import EngineInputError, StorageUnavailable, TransientError
from common.jobs.store import JobStore
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobStatus, Stage
from common.schemas.workers import EngineCapabilities
from common.worker.delivery import UploadHere, UploadPolicy, run_upload
from gpu_worker.engines.base import SynthesisOutput
from gpu_worker.synthesis import Next, Synthesizer, run_synthesis

POLICY = UploadPolicy(max_attempts=3, backoff_s=0.1, backoff_max_s=1)


class FakeEngine:
    name, device, model_version = "fake", "cpu", "0"

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.calls = error, 0

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            engine="fake", sample_rate=100, voices=["v"], default_voice="v", languages=["en"]
        )

    def warmup(self) -> None: ...

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        self.calls += 1
        if self.error:
            raise self.error
        return SynthesisOutput(pcm16=b"\x01\x02" * 100, sample_rate=100, warnings=["w"])


class FakeStorage:
    def __init__(self, failures: int = 0) -> None:
        self.failures, self.objects = failures, dict[str, bytes]()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("storage upload failed: 503")
        self.objects[key] = data

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def url(self, key: str, ttl_s: int) -> str:
        return key

    def check_writable(self) -> None: ...


def synth(store: JobStore, job_id: str, engine: FakeEngine, max_attempts: int = 3) -> Next:
    return run_synthesis(
        job_id,
        store=store,
        engine=engine,
        instance="w",
        is_alive=lambda _: True,
        max_attempts=max_attempts,
    ).next


def upload(store: JobStore, job_id: str, storage: FakeStorage, attempt: int = 0) -> object:
    return run_upload(job_id, store=store, storage=storage, attempt=attempt, policy=POLICY)


def test_a_job_goes_from_engine_to_storage(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    assert synth(store, job.id, FakeEngine()) == Next.upload
    storage = FakeStorage()
    upload(store, job.id, storage)
    done = store.get(job.id)
    assert done and done.status == JobStatus.succeeded and done.warnings == ["w"]
    assert storage.objects[f"audio/{job.id}.wav"][:4] == b"RIFF"


def test_running_a_finished_job_again_does_nothing(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    engine = FakeEngine()
    synth(store, job.id, engine)
    upload(store, job.id, FakeStorage())
    assert synth(store, job.id, engine) == Next.done and engine.calls == 1


def test_engine_rejection_is_permanent(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    assert synth(store, job.id, FakeEngine(EngineInputError("nope"))) == Next.done
    failed = store.get(job.id)
    assert failed and failed.status == JobStatus.failed
    assert failed.error and failed.error.code == "engine_rejected_input"


def test_transient_engine_errors_retry_then_fail_visibly(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    engine = FakeEngine(TransientError("CUDA out of memory"))
    assert synth(store, job.id, engine, max_attempts=2) == Next.retry
    assert store.get(job.id).status == JobStatus.queued  # type: ignore[union-attr]
    assert synth(store, job.id, engine, max_attempts=2) == Next.done
    failed = store.get(job.id)
    assert failed and failed.status == JobStatus.failed and engine.calls == 2
    assert failed.error and "after 2 attempts" in failed.error.message


def test_an_unknown_engine_crash_is_bounded_and_named(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    engine = FakeEngine(RuntimeError("segment index out of range"))
    while synth(store, job.id, engine) == Next.retry:
        pass
    failed = store.get(job.id)
    assert failed and failed.error and failed.error.code == "engine_error"
    assert "index" not in failed.error.message  # internal detail stays in the log


def test_storage_errors_back_off_then_fail_with_storage_unavailable(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    synth(store, job.id, FakeEngine())
    storage = FakeStorage(failures=10)
    delays = [upload(store, job.id, storage, attempt).retry_in for attempt in range(2)]  # type: ignore[attr-defined]
    assert delays == [0.1, 0.2]
    upload(store, job.id, storage, attempt=2)
    failed = store.get(job.id)
    assert failed and failed.status == JobStatus.failed
    assert failed.error and failed.error.code == "storage_unavailable"
    assert store.handoff_audio(job.id) is None


def test_storage_that_recovers_before_the_limit_succeeds(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    synth(store, job.id, FakeEngine())
    storage = FakeStorage(failures=1)
    assert upload(store, job.id, storage, 0).retry_in == 0.1  # type: ignore[attr-defined]
    upload(store, job.id, storage, 1)
    assert store.get(job.id).status == JobStatus.succeeded  # type: ignore[union-attr]


def test_lost_handoff_audio_sends_the_job_back_to_synthesis(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    synth(store, job.id, FakeEngine())
    store.redis.delete(f"ttsq:job:{job.id}:handoff")
    assert upload(store, job.id, FakeStorage()).resynthesize  # type: ignore[attr-defined]
    again = store.get(job.id)
    assert again and again.status == JobStatus.queued and again.stage is None
    assert Stage.uploading != again.stage


def finisher(store: JobStore, storage: FakeStorage, *, idle: bool) -> Synthesizer:
    """A synthesis worker whose upload message goes to the list `uploads`, and which uploads
    itself when `idle` (`Synthesizer.upload_here`)."""
    return Synthesizer(
        store=store,
        engine=FakeEngine(),
        instance="w",
        is_alive=lambda _: True,
        max_attempts=3,
        upload_message=lambda job: ("uploads", job.id.encode()),
        upload_here=UploadHere(store, storage, POLICY),
        engine_idle=lambda: idle,
    )


def test_an_idle_engine_s_process_uploads_the_audio_itself(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    storage = FakeStorage()
    assert finisher(store, storage, idle=True).run(job.id).next == Next.done
    done = store.get(job.id)
    assert done and done.status == JobStatus.succeeded and done.warnings == ["w"]
    assert storage.objects[f"audio/{job.id}.wav"][:4] == b"RIFF"
    assert store.redis.llen("uploads") == 0  # the I/O worker was never asked


def test_a_busy_engine_s_process_leaves_the_upload_to_the_io_worker(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    storage = FakeStorage()
    assert finisher(store, storage, idle=False).run(job.id).next == Next.uploading
    assert store.redis.lrange("uploads", 0, -1) == [job.id.encode()]
    waiting = store.get(job.id)
    assert waiting and waiting.stage == Stage.uploading and not storage.objects


def test_an_upload_that_fails_here_goes_to_the_io_worker(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="hi"))
    storage = FakeStorage(failures=1)
    assert finisher(store, storage, idle=True).run(job.id).next == Next.upload  # caller sends it
    waiting = store.get(job.id)
    assert waiting and waiting.stage == Stage.uploading and store.handoff_audio(job.id)
    upload(store, job.id, storage)  # the I/O worker's attempt
    done = store.get(job.id)
    assert done and done.status == JobStatus.succeeded


def test_audio_that_cannot_be_delivered_here_fails_the_job_with_the_reason(
    store: JobStore,
) -> None:
    """The delivery runs on its own thread while the hand-off is written; its error still
    ends the job as the I/O worker's would."""
    job = store.create("o", JobRequest(text="hi"))
    storage = FakeStorage()
    worker = finisher(store, storage, idle=True)
    worker.engine = EmptyEngine()
    assert worker.run(job.id).next == Next.done
    failed = store.get(job.id)
    assert failed and failed.status == JobStatus.failed and failed.error
    assert failed.error.code == "postprocess_failed" and not storage.objects


class EmptyEngine(FakeEngine):
    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        return SynthesisOutput(pcm16=b"", sample_rate=100)
