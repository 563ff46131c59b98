"""S3 storage against a real S3-protocol server (moto's, over HTTP)."""

from __future__ import annotations

import uuid

import pytest

from common.errors import StorageUnavailable
from common.settings import Settings
from common.storage import PROBE_PREFIX, S3Storage, storage_problem
from tests.support.servers import S3Server

pytestmark = pytest.mark.integration


def settings_for(s3: S3Server, bucket: str) -> Settings:
    return Settings(
        storage="s3",
        s3_endpoint_url=s3.url,
        s3_bucket=bucket,
        s3_access_key_id=s3.access_key,
        s3_secret_access_key=s3.secret_key,
    )


def test_a_missing_bucket_is_created_and_then_writable(s3_server: S3Server) -> None:
    bucket = f"new-{uuid.uuid4().hex[:12]}"
    assert storage_problem(settings_for(s3_server, bucket)) is None
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert bucket in names
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    assert listing.get("KeyCount", 0) == 0  # the write check cleaned up after itself


def test_the_write_check_really_writes(s3_server: S3Server) -> None:
    storage = S3Storage(settings_for(s3_server, s3_server.bucket))
    calls: list[str] = []
    real_put, real_delete = storage.client.put_object, storage.client.delete_object

    def put(**kwargs: object) -> object:
        calls.append(f"put {kwargs['Key']}")
        return real_put(**kwargs)

    def delete(**kwargs: object) -> object:
        calls.append(f"delete {kwargs['Key']}")
        return real_delete(**kwargs)

    storage.client.put_object, storage.client.delete_object = put, delete
    storage.check_writable()
    assert [c.split()[0] for c in calls] == ["put", "delete"]
    assert calls[0].split()[1].startswith(PROBE_PREFIX)


def test_unreachable_storage_is_named_as_the_problem() -> None:
    settings = Settings(storage="s3", s3_endpoint_url="http://127.0.0.1:9", s3_bucket="b")
    problem = storage_problem(settings)
    assert problem is not None and "storage" in problem
    with pytest.raises(StorageUnavailable):
        S3Storage(settings).check_writable()
