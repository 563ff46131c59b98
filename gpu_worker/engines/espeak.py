"""The built-in CPU engine: eSpeak NG through ctypes, from the `espeakng-loader` wheel.

No apt, no GPU: the wheel ships libespeak-ng and its data. It speaks English and Mandarin; a
text that mixes scripts is split into runs, each spoken with its own voice. eSpeak keeps global
state, so the library is initialised once per process and every engine shares it, one
synthesis at a time.
"""

from __future__ import annotations

import ctypes
import re
import threading

from common.errors import EngineInputError, EngineLoadError
from common.schemas.job_request import JobRequest
from common.schemas.workers import EngineCapabilities
from common.settings import Settings
from gpu_worker.engines.base import SynthesisOutput

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_CJK = re.compile(r"([\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+)")

#: `auto` picks Mandarin for Chinese characters and English for the rest.
VOICES = {"auto": None, "en": "en", "en-us": "en-us", "cmn": "cmn"}
#: eSpeak cannot speak in the voice of a recording: an uploaded voice gets the eSpeak voice its
#: metadata names (`voice_for`), as `<voice>+<variant>`.
_LANGUAGES = {"en": "en", "en-gb": "en", "en-us": "en-us", "zh": "cmn", "cmn": "cmn"}
_VARIANTS = {"female": "f3", "f": "f3", "male": "m3", "m": "m3"}
VOICE_MAPPING = (
    "an uploaded voice is spoken with the eSpeak voice for its metadata `language` (en, en-gb, "
    "en-us, zh; otherwise auto) in the variant for its metadata `gender` (female: f3, male: "
    "m3; otherwise the default); its audio is not used"
)


class _Library:
    """libespeak-ng, initialised once per process: it keeps global state (one output
    callback, one voice), and initialising it again under a live instance can crash it."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EngineLoadError("the espeak engine needs the espeakng-loader package") from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = int(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0))
        if self.sample_rate <= 0:
            raise EngineLoadError("eSpeak NG failed to initialise")
        version = ctypes.c_char_p()
        self.version = f"espeak-ng {(lib.espeak_Info(ctypes.byref(version)) or b'?').decode()}"
        self.lib = lib
        self.lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._collect)  # referenced for the process's lifetime
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int) -> int:
        if n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0

    def speak(self, text: str, voice: str) -> bytes:
        """One run of text in one voice; the caller holds `lock`."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EngineLoadError(f"eSpeak NG has no voice {voice!r}")
        data = text.encode()
        self._chunks = []
        status = self.lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        self.lib.espeak_Synchronize()
        if status != 0:
            raise EngineInputError(f"eSpeak NG refused the text (error {status})")
        return b"".join(self._chunks)


_library: _Library | None = None
_library_lock = threading.Lock()


def _the_library() -> _Library:
    global _library
    with _library_lock:
        if _library is None:
            _library = _Library()
        return _library


class EspeakEngine:
    name = "espeak"
    device = "cpu"

    def __init__(self, settings: Settings | None = None) -> None:
        self._espeak = _the_library()
        self.sample_rate = self._espeak.sample_rate
        self.model_version = self._espeak.version

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            engine=self.name,
            sample_rate=self.sample_rate,
            voices=sorted(VOICES),
            default_voice="auto",
            languages=["en", "zh"],
            voice_mapping=VOICE_MAPPING,
        )

    def voice_for(self, metadata: dict[str, str]) -> str:
        """The eSpeak voice an uploaded voice is spoken with (see VOICE_MAPPING)."""
        voice = _LANGUAGES.get(metadata.get("language", "").strip().lower(), "auto")
        variant = _VARIANTS.get(metadata.get("gender", "").strip().lower())
        return f"{voice}+{variant}" if variant else voice

    def warmup(self) -> None:
        self.synthesize(JobRequest(text="ok"))

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        voice, _, variant = (request.voice or "auto").partition("+")
        if voice not in VOICES or (variant and variant not in _VARIANTS.values()):
            raise EngineInputError(f"voice {voice!r} is not one of {sorted(VOICES)}")
        with self._espeak.lock:
            pcm = b"".join(self._speak(run, VOICES[voice], variant) for run in _runs(request.text))
        if not pcm:
            raise EngineInputError("the text produced no speech")
        return SynthesisOutput(pcm16=pcm, sample_rate=self.sample_rate)

    def _speak(self, text: str, voice: str | None, variant: str = "") -> bytes:
        if voice is None:
            voice = "cmn" if _CJK.fullmatch(text) else "en"
        return self._espeak.speak(text, f"{voice}+{variant}" if variant else voice)


def _runs(text: str) -> list[str]:
    """Split text into runs of one script: Chinese characters, or everything else."""
    return [part for part in _CJK.split(text) if part.strip()]
