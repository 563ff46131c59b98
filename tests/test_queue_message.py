"""The synthesis and upload messages the job store pushes itself (`common/queue.task_message`)
are the ones Celery's `send_task` pushes, and a real worker runs them."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import redis

from common import keys
from common.broker import (
    _template,
    celery_message,
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


@pytest.mark.parametrize("priority", [0, 6])
def test_a_message_from_the_template_is_the_one_celery_builds_for_the_same_ids(
    priority: int,
) -> None:
    app = make_celery(Settings())
    job_id, task_id, tag = "fedcba9876543210fedcba9876543210", "1-2-3", "4-5-6"
    body, message = celery_message(
        app, keys.TASK_SYNTHESIZE, keys.SYNTH_QUEUE, job_id, priority, task_id=task_id, tag=tag
    )
    template = _template(app, keys.TASK_SYNTHESIZE, keys.SYNTH_QUEUE, priority, os.getpid())
    _, filled = template.fill(job_id, task_id=task_id, tag=tag)
    built = {"body": base64.b64encode(json.dumps(body).encode()).decode(), **message}
    assert json.loads(filled) == built
    assert job_id in json.loads(filled)["headers"]["argsrepr"]


def test_two_messages_differ_in_their_task_ids_and_tags() -> None:
    app = make_celery(Settings())
    job_id = "fedcba9876543210fedcba9876543210"
    one, two = (json.loads(synthesis_message(app, job_id)[1]) for _ in range(2))
    assert one["headers"]["id"] != two["headers"]["id"]
    assert one["properties"]["delivery_tag"] != two["properties"]["delivery_tag"]
    assert one["body"] == two["body"]


def test_only_a_job_id_is_filled_in() -> None:
    with pytest.raises(ValueError, match="not a job id"):
        synthesis_message(make_celery(Settings()), 'x", "y')
