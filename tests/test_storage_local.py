from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from common.errors import NotFound, StorageUnavailable
from common.settings import Settings
from common.storage import LocalStorage, audio_key, signing_key

JOB = "ab" * 16
OTHER = "cd" * 16


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    s = LocalStorage(tmp_path / "objects", base_url="http://t", signing_key=b"k" * 32)
    s.put(audio_key(JOB), b"RIFFjob", "audio/wav")
    s.put(audio_key(OTHER), b"RIFFother", "audio/wav")
    return s


def signed(storage: LocalStorage, key: str, ttl: int = 60) -> tuple[str, int, str]:
    url = urlparse(storage.url(key, ttl))
    q = parse_qs(url.query)
    return url.path.removeprefix("/v1/files/"), int(q["expires"][0]), q["sig"][0]


def test_a_signed_url_reaches_its_file(storage: LocalStorage) -> None:
    assert storage.verify(*signed(storage, audio_key(JOB))).read_bytes() == b"RIFFjob"


def test_a_signature_cannot_be_moved_to_another_file(storage: LocalStorage) -> None:
    _, expires, sig = signed(storage, audio_key(JOB))
    with pytest.raises(NotFound):
        storage.verify(audio_key(OTHER), expires, sig)


def test_a_later_expiry_breaks_the_signature(storage: LocalStorage) -> None:
    key, expires, sig = signed(storage, audio_key(JOB))
    with pytest.raises(NotFound):
        storage.verify(key, expires + 3600, sig)


def test_an_expired_url_is_refused(storage: LocalStorage) -> None:
    key, _, _ = signed(storage, audio_key(JOB))
    past = int(time.time()) - 1
    with pytest.raises(NotFound):
        storage.verify(key, past, storage.signature(key, past))


@pytest.mark.parametrize(
    "key",
    [
        "../signing.key",
        "audio/../../x.wav",
        "/etc/passwd",
        f"audio/{JOB}.wav/..",
        "audio/%2e%2e.wav",
    ],
)
def test_no_path_traversal_even_with_a_valid_signature(storage: LocalStorage, key: str) -> None:
    with pytest.raises(NotFound):
        storage.verify(key, int(time.time()) + 60, storage.signature(key, int(time.time()) + 60))


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_partial_file(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageUnavailable, match="No space left"):
        storage.put(audio_key(JOB), b"RIFFnew", "audio/wav")
    files = sorted(p.name for p in (storage.root / "audio").iterdir())
    assert files == [f"{JOB}.wav", f"{OTHER}.wav"]
    assert (storage.root / audio_key(JOB)).read_bytes() == b"RIFFjob"


def test_processes_starting_at_once_all_read_the_same_whole_signing_key(tmp_path: Path) -> None:
    for attempt in range(5):
        settings = Settings(data_dir=tmp_path / str(attempt))
        with ThreadPoolExecutor(8) as pool:
            seen = set(pool.map(lambda _: signing_key(settings), range(8)))
        assert len(seen) == 1 and len(seen.pop()) == 64
