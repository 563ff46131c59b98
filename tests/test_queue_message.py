"""The synthesis and upload messages the job store pushes itself (`common/queue.task_message`)
are the ones Celery's `send_task` pushes, and a real worker runs them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from common import keys
from common.broker import (
    make_celery,
    publish_synthesis,
    publish_upload,
    synthesis_message,
    upload_message,
)
from common.settings import Settings
from tests.support.servers import RedisServer

VARYING = {"id", "root_id", "origin"}


def shape(raw: bytes) -> dict[str, Any]:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    message["headers"] = {k: v for k, v in message["headers"].items() if k not in VARYING}
    props = message["properties"]
    for varying in ("correlation_id", "reply_to", "delivery_tag"):
        assert props.pop(varying) is not None
    return message


@pytest.mark.parametrize("priority", [0, 6])
def test_the_message_is_the_one_send_task_pushes(tmp_path: Path, priority: int) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        app = make_celery(Settings(redis_url=server.url))
        client = redis.Redis.from_url(server.url)
        job_id = "0123456789abcdef0123456789abcdef"
        publish_synthesis(app, job_id, priority=priority)
        queue_list, ours = synthesis_message(app, job_id, priority)
        assert client.keys(f"{keys.SYNTH_QUEUE}*") == [queue_list.encode()]
        (theirs,) = client.lrange(queue_list, 0, -1)
        assert shape(ours) == shape(theirs)
        headers = json.loads(ours)["headers"]
        assert (
            headers["id"] == headers["root_id"] == json.loads(ours)["properties"]["correlation_id"]
        )
    finally:
        server.stop()


def test_the_upload_message_is_the_one_send_task_pushes(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        app = make_celery(Settings(redis_url=server.url))
        client = redis.Redis.from_url(server.url)
        job_id = "0123456789abcdef0123456789abcdef"
        publish_upload(app, job_id)
        queue_list, ours = upload_message(app, job_id)
        assert queue_list == keys.IO_QUEUE
        (theirs,) = client.lrange(queue_list, 0, -1)
        assert shape(ours) == shape(theirs)
    finally:
        server.stop()
