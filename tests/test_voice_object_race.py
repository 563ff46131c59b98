"""Two keys with the same voice audio share one stored object. One key deleting its voice while
the other uploads the same audio must not leave the second key's voice without its audio: the
delete's "last user? then delete the object" and the upload's "store the object, add the user"
run under one lock per object (`VoiceStore.object_lock`)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from api.voice_upload import CheckedVoice, delete_voice_and_audio, store_voice
from common.jobs.store import JobStore
from common.schemas.voices import voice_object_key
from common.storage import LocalStorage
from common.voicestore import VoiceStore


class SlowDelete(LocalStorage):
    """Local storage whose deletes take a while, and that says when one has begun."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, base_url="http://t", signing_key=b"k" * 32)
        self.deleting = threading.Event()

    def delete(self, key: str) -> None:
        self.deleting.set()
        time.sleep(0.5)  # a duration: the window in which bob's upload lands mid-delete
        super().delete(key)


def test_an_upload_during_the_last_users_delete_keeps_its_audio(
    store: JobStore, tmp_path: Path
) -> None:
    voices, storage = VoiceStore(store.redis), SlowDelete(tmp_path / "objects")
    wav = b"RIFF" + b"\x01" * 4000
    checked = CheckedVoice(wav, hashlib.sha256(wav).hexdigest(), 2.0, 16000, [])
    alice, _ = store_voice(voices, storage, "alice", checked, name="a", metadata={})

    deleting = threading.Thread(
        target=delete_voice_and_audio, args=(voices, storage, alice.id, "alice")
    )
    deleting.start()
    assert storage.deleting.wait(5)  # alice's delete found her the last user
    bob, new = store_voice(voices, storage, "bob", checked, name="b", metadata={})
    deleting.join(10)

    assert new and voices.get(bob.id) is not None and voices.get(alice.id) is None
    assert storage.get(voice_object_key(checked.sha256)) == wav  # bob's audio is there
