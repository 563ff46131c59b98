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


def owner_jobs(owner: str) -> str:
    """Sorted set of one API key's job ids, scored by creation time (listing, newest first)."""
    return f"{PREFIX}:owner:{owner}:jobs"


#: Sorted set of queued job ids by enqueue time; a job's rank is its `queue_position`.
QUEUED = f"{PREFIX}:queued"
#: Sorted set of running job ids (synthesising or uploading) by start time; the sweeper's view.
RUNNING = f"{PREFIX}:running"
#: Sorted set of job ids whose queue message may not have been published (API died mid-submit).
UNPUBLISHED = f"{PREFIX}:unpublished"
#: Sorted set of ended job ids by expiry time; the janitor removes them and their audio.
EXPIRY = f"{PREFIX}:expiry"


def worker_heartbeat(instance: str) -> str:
    """A synthesis or I/O worker's heartbeat (JSON `WorkerHeartbeat`), expiring on its own."""
    return f"{PREFIX}:worker:{instance}"


WORKER_HEARTBEAT_PATTERN = f"{PREFIX}:worker:*"
