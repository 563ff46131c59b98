"""Settings, read once per process from the environment (or `.env`).

Every name is `TTS_*`, except the original design's `INDEXTTS_*` names, which keep working.
Tests build `Settings(**overrides)`.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class SettingsError(ValueError):
    """The configuration is unsafe or inconsistent; the process refuses to start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TTS_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # -- API ---------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    #: One key, as in the original design; its jobs belong to the name "default".
    api_key: SecretStr | None = None
    #: Several keys as `name:key` pairs, comma separated; each name sees only its own jobs.
    api_keys: SecretStr | None = None
    #: Base of the URLs the API hands out; defaults to http://host:port.
    public_url: str | None = None
    #: Secret that signs local file URLs; random per data dir when unset.
    signing_key: SecretStr | None = None
    max_text_chars: int = Field(default=2000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: The largest body of `POST /v1/batches` and `POST /synthesize/batch`: up to 1000 items
    #: of long lines (2000 characters of Chinese are 6 KB of UTF-8).
    max_batch_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: The largest voice file `POST /v1/voices` takes (refused before it is read whole).
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: The longest voice it takes, in seconds.
    max_voice_s: float = Field(default=60.0, ge=1.0)
    max_wait_s: float = Field(default=60.0, ge=0, le=60)
    #: How long `POST /synthesize` holds the request (the dubbing client's own timeout is 600 s).
    synthesize_wait_s: float = Field(default=600.0, ge=0, le=3600)
    #: While no synthesis worker is ready, `POST /synthesize` (and the other drop-in routes)
    #: still queue the job and hold the request if one was seen (loading or ready) within
    #: this long: a restart, or an engine that takes minutes to load, costs the client no
    #: retries. Past it, 503 `engine_unavailable`.
    engine_grace_s: float = Field(default=300.0, ge=0)
    #: Serve `/docs`, `/redoc` and `/openapi.json` to anyone. Off: `/openapi.json` needs a key
    #: like every route, and the two browser pages (which cannot send one) are not served.
    #: Unset: on when the API listens on loopback only (`docs_served`), off beyond it.
    public_docs: bool | None = None
    #: Slow clients: a connection must deliver a request's headers this long after it starts
    #: waiting for one, and its body this long after the headers; else it is closed.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    #: Open connections at most; beyond it the one waiting longest for its headers is closed
    #: (or, when every one is mid-request, the new one gets a 503). Keep it below the open-file
    #: limit, which `ttsq api` raises toward the hard limit to fit it.
    max_connections: int = Field(default=1000, ge=1)

    # -- Queue ---------------------------------------------------------------------------
    #: Unset: `ttsq up` starts an embedded Redis under the data dir, on this port.
    redis_url: str | None = None
    embedded_redis_port: int = Field(default=6390, ge=1, le=65535)
    #: Must exceed the longest job; a late-acked message is redelivered after it.
    visibility_timeout_s: int = Field(default=3600, ge=1)
    #: How many times a job may be started (crash, restart, transient engine error).
    max_attempts: int = Field(default=3, ge=1, le=20)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    #: A worker whose heartbeat is older than this is dead; its running jobs go back.
    heartbeat_ttl_s: float = Field(default=20.0, gt=0)
    #: How often the sweeper looks for stuck jobs (it runs apart from the heartbeat; any value).
    sweep_interval_s: float = Field(default=5.0, gt=0)
    #: How long a job may look stuck (queued with no message, running on a worker that is not
    #: working on it, or stored but not yet published) before the sweeper sends it again.
    stuck_grace_s: float = Field(default=30.0, gt=0)
    #: The longest one upload attempt may take (S3 connect 5 s + read 30 s, with margin); the
    #: sweeper resends an upload only after this much silence past its scheduled attempt.
    upload_lease_s: float = Field(default=60.0, gt=0)
    #: How long the synthesis process may take to load and warm its engine.
    engine_start_timeout_s: float = Field(default=1800.0, gt=0)
    #: Upload attempts before a job fails with `storage_unavailable`.
    upload_max_attempts: int = Field(default=8, ge=1)
    upload_backoff_s: float = Field(default=1.0, gt=0)
    upload_backoff_max_s: float = Field(default=60.0, gt=0)
    #: The synthesis process makes the first upload attempt itself when its engine has no
    #: job waiting (one job at a time: no second Celery delivery); under load, and for every
    #: retry, the I/O worker uploads. Off: always the I/O worker.
    upload_when_idle: bool = True
    io_concurrency: int = Field(default=4, ge=1)
    #: Webhooks: the default signing secret (`whsec_…`) of every API key; per-key secrets as
    #: `name:whsec_…` pairs. Unset: each key's secret derives from a random key kept in Redis.
    #: Webhook URLs pass the same address guard as fetches (TTS_FETCH_ALLOW_CIDRS).
    webhook_secret: SecretStr | None = None
    webhook_secrets: SecretStr | None = None
    #: Seconds before each retry of a failed delivery (about 28 h in all), each ±jitter.
    webhook_retry_schedule_s: str = "5,300,1800,7200,18000,36000,36000"
    webhook_jitter: float = Field(default=0.2, ge=0, le=1)
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    #: How often the I/O worker looks for due deliveries and finished batches.
    webhook_poll_s: float = Field(default=1.0, gt=0)

    # -- Engine --------------------------------------------------------------------------
    #: A built-in engine (`espeak`, `index_tts2`, `index_tts2_5`) or `package.module:Class`.
    backend: str = "espeak"
    indextts_model_dir: Path = Field(
        default=Path("checkpoints"),
        validation_alias=AliasChoices("INDEXTTS_MODEL_DIR", "TTS_INDEXTTS_MODEL_DIR"),
    )
    indextts_device: str | None = Field(
        default=None, validation_alias=AliasChoices("INDEXTTS_DEVICE", "TTS_INDEXTTS_DEVICE")
    )
    indextts_use_fp16: bool = Field(
        default=True, validation_alias=AliasChoices("INDEXTTS_USE_FP16", "TTS_INDEXTTS_USE_FP16")
    )

    #: IndexTTS2 switches; unset means the installed version's own default. A switch set to
    #: true that the installed version lacks stops the worker at start (never ignored).
    indextts_cfg_path: Path | None = None
    indextts_use_cuda_kernel: bool | None = None
    indextts_use_deepspeed: bool | None = None
    indextts_use_accel: bool | None = None
    indextts_use_torch_compile: bool | None = None
    indextts_use_qwen_emo: bool | None = None
    #: Up to this many queued jobs (or script lines) go through the engine together: the
    #: synthesis process holds that many claimed jobs ready, and IndexTTS2 runs their GPT
    #: stage as one batch (`gpu_worker/engines/indextts_batch.py`). 1: one at a time. Engines
    #: without batching run a batch's items one after another.
    engine_batch: int = Field(default=1, ge=1, le=64)
    #: Time-stretching beyond this ratio either way is capped (the job warns by how much its
    #: target was missed).
    max_stretch: float = Field(default=1.5, ge=1.0, le=4.0)
    #: A job with a target lasts exactly that, to the sample (a job's `strict_duration` wins):
    #: what the capped stretch leaves short is padded with silence; what it leaves long is
    #: stretched further, up to `max_strict_stretch`, and the rest cut under a fade-out.
    #: `STRICT_DURATION` is the original service's name for it.
    strict_duration: bool = Field(
        default=False, validation_alias=AliasChoices("TTS_STRICT_DURATION", "STRICT_DURATION")
    )
    max_strict_stretch: float = Field(default=2.5, ge=1.0, le=4.0)
    #: Addresses a `voice_url` may resolve to although not public (e.g. `127.0.0.0/8` in
    #: tests, a MinIO on the private network), comma separated.
    fetch_allow_cidrs: str = ""
    fetch_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    fetch_timeout_s: float = Field(default=30.0, gt=0)
    #: Speaker references (`<voice id>.wav`); default `<data dir>/voices`.
    voices_dir: Path | None = None
    #: Content-addressed voice files kept on the worker.
    voice_cache_files: int = Field(default=256, ge=1)
    #: Replace the synthesis process after this many jobs (0: never).
    max_jobs_per_child: int = Field(default=0, ge=0)
    #: Replace the synthesis process after a job that leaves it above this much GPU memory
    #: (MiB reserved by torch; 0: never). The job in hand finishes first.
    recycle_gpu_memory_mb: int = Field(default=0, ge=0)

    # -- Storage -------------------------------------------------------------------------
    data_dir: Path = Path("./var")
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "ttsq"
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    #: Lifetime of the audio URLs handed out (fresh on every read).
    url_ttl_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    #: Jobs and their audio are removed this long after they end.
    job_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    #: Reuse an identical earlier job's audio (`common/resultcache.py`); a job opts out with
    #: `cache: false`.
    result_cache: bool = True

    #: `text` (`[job <id>]` lines) or `json` (one object a line, for log shippers); read by
    #: `ttsq` itself before the settings (ttsq/logs.py), declared here to be documented.
    log_format: Literal["text", "json"] = "text"

    flower_port: int = 5555
    #: Beyond loopback only with FLOWER_BASIC_AUTH set (Flower's own setting, user:password).
    flower_host: str = "127.0.0.1"

    #: Client addresses allowed to use the API (comma-separated CIDRs; unset: any), and the
    #: proxies whose `X-Forwarded-For` is believed.
    allowed_cidrs: str = ""
    trusted_proxies: str = ""
    #: What the GPU machine costs an hour (the design card's 4090: about ¥2–3), for
    #: `GET /v1/usage`'s estimate; 0 leaves the estimate out.
    gpu_price_per_hour: float = Field(default=0.0, ge=0)

    @field_validator("backend")
    @classmethod
    def _backend_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("TTS_BACKEND must name an engine")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("TTS_HEARTBEAT_TTL_S must exceed TTS_HEARTBEAT_INTERVAL_S")
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("TTS_STORAGE=s3 needs TTS_S3_BUCKET")
        self.parsed_api_keys()  # malformed pairs fail at start, not on the first request
        return self

    def parsed_api_keys(self) -> dict[str, str]:
        """Return `{key: name}`: TTS_API_KEY as "default", plus every TTS_API_KEYS pair."""
        keys: dict[str, str] = {}
        if self.api_key and self.api_key.get_secret_value():
            keys[self.api_key.get_secret_value()] = "default"
        if self.api_keys:
            for pair in self.api_keys.get_secret_value().split(","):
                if not pair.strip():
                    continue
                name, sep, key = pair.strip().partition(":")
                if not sep or not name or not key:
                    raise ValueError("TTS_API_KEYS must be comma-separated name:key pairs")
                keys[key] = name
        return keys

    @property
    def auth_enabled(self) -> bool:
        return bool(self.parsed_api_keys())

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def docs_served(self) -> bool:
        """Whether `/docs`, `/redoc` and `/openapi.json` are open to anyone."""
        return self.public_docs if self.public_docs is not None else is_loopback(self.host)

    def require_safe_exposure(self) -> None:
        """Refuse to serve beyond loopback without a key; warn when open on loopback."""
        if self.auth_enabled:
            return
        if not is_loopback(self.host):
            raise SettingsError(
                f"TTS_HOST={self.host} listens beyond loopback but no TTS_API_KEY or "
                "TTS_API_KEYS is set; refusing to start an open API"
            )
        log.warning("no API key configured: the API is open to anyone on this machine")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
