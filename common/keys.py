"""Every Redis key, queue and task name ttsq uses, in one place.

Keys are namespaced `ttsq:`; nothing else in the code spells a key.
"""

PREFIX = "ttsq"

#: Celery queue the GPU worker consumes (concurrency 1, prefetch 1).
SYNTH_QUEUE = "ttsq.synth"
#: Celery queue the I/O worker consumes: uploads now, webhook deliveries later.
IO_QUEUE = "ttsq.io"
#: Celery queue of webhook deliveries, also consumed by `ttsq io` (a slow receiver never
#: holds up the upload messages behind it in one list).
WEBHOOK_QUEUE = "ttsq.webhooks"

#: Task names; the API sends by name and never imports the worker.
TASK_SYNTHESIZE = "ttsq.synthesize"
TASK_UPLOAD = "ttsq.upload"
TASK_DELIVER_WEBHOOK = "ttsq.deliver_webhook"
TASK_MERGE_TRACKS = "ttsq.merge_tracks"


def job(job_id: str) -> str:
    """The job record, a JSON `JobRecord`."""
    return f"{PREFIX}:job:{job_id}"


def job_audio_handoff(job_id: str) -> str:
    """WAV bytes synthesised but not yet in storage (the GPU's hand-off to the I/O worker)."""
    return f"{PREFIX}:job:{job_id}:handoff"


def track_merge(job_id: str) -> str:
    """What the I/O worker joins into the track `job_id` (a JSON `TrackMerge`), until it has."""
    return f"{PREFIX}:merge:{job_id}"


def request_job(owner: str, request_key: str) -> str:
    """The job an owner's repeated request joins (a drop-in `/synthesize` retried by its
    client): the request's fingerprint names the job id, for the job's lifetime."""
    return f"{PREFIX}:owner:{owner}:request:{request_key}"


def owner_jobs(owner: str) -> str:
    """Sorted set of one API key's job ids, scored by creation time (listing, newest first)."""
    return f"{PREFIX}:owner:{owner}:jobs"


#: Sorted set of queued job ids by priority, then acceptance time (`priority.queued_score`);
#: a job's rank is its `queue_position`.
QUEUED = f"{PREFIX}:queued"
#: List of the engine seconds of the latest syntheses, newest first (capped; `common/jobs/eta.py`).
RECENT_SYNTH_S = f"{PREFIX}:recent-synth-s"
#: Sorted set of running job ids (synthesising or uploading) by start time; the sweeper's view.
RUNNING = f"{PREFIX}:running"
#: The outbox: sorted set of queued job ids whose message is not known to be sent, scored by
#: when the sweeper must send it (the API's grace after submit, or a retry's due time).
UNPUBLISHED = f"{PREFIX}:unpublished"
#: Sorted set of ended job ids by expiry time; the janitor removes them and their audio.
EXPIRY = f"{PREFIX}:expiry"
#: Pub/sub channel: each message is the id of a job that just ended (published in the ending
#: transaction). API processes subscribe so `Prefer: wait` and `/synthesize` need no polling.
JOB_ENDED_CHANNEL = f"{PREFIX}:events:job-ended"


#: Held (SET NX, expiring) by the one sweeper running now, so no stuck job is resent twice.
SWEEP_LOCK = f"{PREFIX}:sweep:lock"
#: Hash of queued job ids seen with no broker message, and when; resent if still so later.
SWEEP_SUSPECTS = f"{PREFIX}:sweep:suspects"
#: Hash of counters: how many jobs the sweeper found stuck, by kind.
SWEEP_COUNTS = f"{PREFIX}:sweep:counts"
#: Hash of storage keys whose delete failed (a job canceled mid-upload); the sweeper retries.
ORPHAN_OBJECTS = f"{PREFIX}:orphan-objects"

#: Kombu's own Redis keys for the broker (its defaults): the unacked-message hash, its index
#: (a sorted set of delivery tags scored by when each was delivered), and the separator of a
#: queue's priority lists. The sweeper reads them to find jobs with no message.
BROKER_UNACKED = "unacked"
BROKER_UNACKED_INDEX = "unacked_index"
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


#: A set of the instance names that wrote a heartbeat: read with one `MGET` of their keys, so
#: finding the live workers costs the same however many jobs are stored (a `SCAN` for the
#: heartbeat keys walked the whole keyspace). Readers drop names whose key has expired.
WORKERS = f"{PREFIX}:workers"
#: When a synthesis worker last wrote its heartbeat (Unix seconds), loading or ready; kept
#: after it stops, so the drop-in route can tell a restart from a stack with no engine.
SYNTH_SEEN = f"{PREFIX}:synth:seen"


def voice(voice_id: str) -> str:
    """An uploaded voice's record, a JSON `VoiceRecord`."""
    return f"{PREFIX}:voice:{voice_id}"


def owner_voices(owner: str) -> str:
    """Sorted set of one API key's voice ids, scored by creation time (listing, newest first)."""
    return f"{PREFIX}:owner:{owner}:voices"


def voice_object_users(sha256: str) -> str:
    """Set of the voice ids whose audio is the stored object `voices/<sha256>.wav`: the object
    is deleted with the last of them (two keys may upload the same audio)."""
    return f"{PREFIX}:voice-object:{sha256}:users"


def voice_object_lock(sha256: str) -> str:
    """A lock held while the object `voices/<sha256>.wav` is stored and its user added, or its
    last user removed and the object deleted (`VoiceStore.object_lock`)."""
    return f"{PREFIX}:voice-object:{sha256}:lock"


# -- webhooks, batches, idempotency (common/webhooks.py, batchstore.py, idempotency.py) -------


def webhook_delivery(delivery_id: str) -> str:
    """One webhook delivery (JSON `Delivery`): its event, payload and every attempt."""
    return f"{PREFIX}:webhook:{delivery_id}"


def subject_deliveries(subject_id: str) -> str:
    """List of the delivery ids of one job or batch, oldest first."""
    return f"{PREFIX}:webhooks-of:{subject_id}"


#: The webhook outbox: sorted set of pending delivery ids, scored by when the next attempt is
#: due (or, while one is in flight, when its lease ends and it may be sent again).
WEBHOOKS_DUE = f"{PREFIX}:webhooks:due"
#: Random key the per-owner webhook secrets derive from when TTS_WEBHOOK_SECRET is unset.
WEBHOOK_MASTER_KEY = f"{PREFIX}:webhooks:master-key"


def batch(batch_id: str) -> str:
    """A batch (JSON `BatchRecord`): its items' refs and job ids, its webhook."""
    return f"{PREFIX}:batch:{batch_id}"


#: Sorted set of batches one of whose items ended since the last look, scored by how many
#: ended; the I/O worker sends `batch.completed` once all have.
BATCHES_TO_CHECK = f"{PREFIX}:batches:to-check"


def result(cache_key: str) -> str:
    """The result cache's entry for one key (JSON `CacheEntry`), expiring before its job."""
    return f"{PREFIX}:result:{cache_key}"


def idempotency(owner: str, key: str) -> str:
    """What one owner's Idempotency-Key made (JSON `IdempotencyEntry`), kept 24 h."""
    return f"{PREFIX}:owner:{owner}:idempotency:{key}"


def metric(name: str) -> str:
    """One job metric the workers record for the API's `/metrics`: a hash whose layout
    `common/metrics.py` describes (counters by label, histogram buckets)."""
    return f"{PREFIX}:metrics:{name}"
