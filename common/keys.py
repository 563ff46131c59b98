"""Every Redis key, queue and task name ttsq uses, in one place.

Keys are namespaced `ttsq:`; nothing else in the code spells a key.
"""

PREFIX = "ttsq"

#: Celery queue the GPU worker consumes (concurrency 1, prefetch 1).
SYNTH_QUEUE = "ttsq.synth"
#: Celery queue the I/O worker consumes: uploads now, webhook deliveries later.
IO_QUEUE = "ttsq.io"

#: Task names; the API sends by name and never imports the worker.
TASK_SYNTHESIZE = "ttsq.synthesize"
TASK_UPLOAD = "ttsq.upload"


def job(job_id: str) -> str:
    """The job record, a JSON `JobRecord`."""
    return f"{PREFIX}:job:{job_id}"


def job_audio_handoff(job_id: str) -> str:
    """WAV bytes synthesised but not yet in storage (the GPU's hand-off to the I/O worker)."""
    return f"{PREFIX}:job:{job_id}:handoff"


def request_job(owner: str, request_key: str) -> str:
    """The job an owner's repeated request joins (a drop-in `/synthesize` retried by its
    client): the request's fingerprint names the job id, for the job's lifetime."""
    return f"{PREFIX}:owner:{owner}:request:{request_key}"


def owner_jobs(owner: str) -> str:
    """Sorted set of one API key's job ids, scored by creation time (listing, newest first)."""
    return f"{PREFIX}:owner:{owner}:jobs"


#: Sorted set of queued job ids by enqueue time; a job's rank is its `queue_position`.
QUEUED = f"{PREFIX}:queued"
#: Sorted set of running job ids (synthesising or uploading) by start time; the sweeper's view.
RUNNING = f"{PREFIX}:running"
#: The outbox: sorted set of queued job ids whose message is not known to be sent, scored by
#: when the sweeper must send it (the API's grace after submit, or a retry's due time).
UNPUBLISHED = f"{PREFIX}:unpublished"
#: Sorted set of ended job ids by expiry time; the janitor removes them and their audio.
EXPIRY = f"{PREFIX}:expiry"


#: Held (SET NX, expiring) by the one sweeper running now, so no stuck job is resent twice.
SWEEP_LOCK = f"{PREFIX}:sweep:lock"
#: Hash of queued job ids seen with no broker message, and when; resent if still so later.
SWEEP_SUSPECTS = f"{PREFIX}:sweep:suspects"
#: Hash of counters: how many jobs the sweeper found stuck, by kind.
SWEEP_COUNTS = f"{PREFIX}:sweep:counts"
#: Hash of storage keys whose delete failed (a job canceled mid-upload); the sweeper retries.
ORPHAN_OBJECTS = f"{PREFIX}:orphan-objects"

#: Kombu's own Redis keys for the broker (its defaults): the unacked-message hash, and the
#: separator of a queue's priority lists. The sweeper reads them to find jobs with no message.
BROKER_UNACKED = "unacked"
BROKER_PRIORITY_SEP = "\x06\x16"
BROKER_PRIORITY_STEPS = (0, 3, 6, 9)


def broker_queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps one queue's waiting messages in (one per priority step)."""
    return [
        queue if step == 0 else f"{queue}{BROKER_PRIORITY_SEP}{step}"
        for step in BROKER_PRIORITY_STEPS
    ]


def worker_heartbeat(instance: str) -> str:
    """A synthesis or I/O worker's heartbeat (JSON `WorkerHeartbeat`), expiring on its own."""
    return f"{PREFIX}:worker:{instance}"


WORKER_HEARTBEAT_PATTERN = f"{PREFIX}:worker:*"
