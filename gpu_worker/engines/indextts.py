"""IndexTTS2 and IndexTTS-2.5 behind the engine interface.

Checked against upstream `index-tts/index-tts` at commit
ee40fa7d6c6b8a2c7f06105f9f1e65775b74868c (2026-08-18). Upstream is not on PyPI: install it from
git at that commit (README, "IndexTTS2"). Also handled: `tts-webui-index-tts` 2.0.1 from PyPI,
a copy of upstream from September 2025 whose constructor has only the first six arguments and
whose `infer` returns float audio in ±1. Not supported: `indextts2-inference`, an unofficial
port whose constructor downloads weights when `model_dir` is None and needs transformers 5.

The constructor gained arguments over time (`is_fp16` became `use_fp16`; `use_deepspeed`,
`use_accel`, `use_torch_compile`, `aux_paths`, `use_qwen_emo` were added). The installed
signature is read, never assumed: a switch the operator sets that the installed version lacks
stops the worker at start with a message saying so.

Where the model dir keeps the auxiliary models depends on the version too
(`indextts_layout`); what importing upstream does to the process is undone in `indextts_compat`.
Any failure to build the model is an `EngineLoadError` that names what is missing.

torch is imported here only, when the model is built, in the process that runs the jobs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import re
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from common.errors import EngineInputError, EngineLoadError, TransientError
from common.schemas.job_request import JobRequest
from common.schemas.workers import EngineCapabilities
from common.settings import Settings
from gpu_worker.engines import indextts_layout as layouts
from gpu_worker.engines.base import (
    ProgressListener,
    SynthesisOutput,
    progress_to,
    report_progress,
)
from gpu_worker.engines.indextts_batch import GptBatcher
from gpu_worker.engines.indextts_compat import pin_hub_cache, tagger_cache
from gpu_worker.voices import VoiceCache

log = logging.getLogger(__name__)

UPSTREAM_COMMIT = "ee40fa7d6c6b8a2c7f06105f9f1e65775b74868c"
GET_WEIGHTS = (
    "get them with `hf download IndexTeam/IndexTTS-2 --local-dir {dir}` (set "
    "HF_ENDPOINT=https://hf-mirror.com for a mirror) or `modelscope download "
    "--model IndexTeam/IndexTTS-2 --local_dir {dir}`; the auxiliary models go under "
    "{dir}/hf_cache (run upstream once with network, or see README)"
)
#: Generation settings upstream reads from `**generation_kwargs`.
SAMPLING = (
    "temperature",
    "top_p",
    "top_k",
    "num_beams",
    "repetition_penalty",
    "length_penalty",
    "max_mel_tokens",
)
_CJK = re.compile(r"[\u3400-\u9fff]")
#: Upstream's progress text as a segment starts: "speech synthesis 3/10...".
_SEGMENT_STARTS = re.compile(r"speech synthesis (\d+)/(\d+)")


class IndexTTS2Engine:
    name = "index_tts2"
    module_name = "indextts.infer_v2"
    languages: ClassVar[list[str]] = ["zh", "en"]
    required_files: ClassVar[tuple[str, ...]] = (
        "config.yaml",
        "gpt.pth",
        "s2mel.pth",
        "wav2vec2bert_stats.pt",
        "bpe.model",
        "feat1.pt",
        "feat2.pt",
    )
    #: The auxiliary models, by upstream's `aux_paths` key, relative to the model dir.
    aux_files: ClassVar[dict[str, str]] = layouts.FLAT
    #: The same models where versions without `aux_paths` read them: the hub cache.
    hub_repos: ClassVar[dict[str, tuple[str, ...]]] = layouts.HUB
    #: The precision switch, by what versions have called it.
    precision_args: ClassVar[tuple[str, ...]] = ("use_fp16", "is_fp16")
    switches: ClassVar[dict[str, str]] = {
        "use_cuda_kernel": "indextts_use_cuda_kernel",
        "use_deepspeed": "indextts_use_deepspeed",
        "use_accel": "indextts_use_accel",
        "use_torch_compile": "indextts_use_torch_compile",
        "use_qwen_emo": "indextts_use_qwen_emo",
    }

    # -- start ---------------------------------------------------------------------------

    @classmethod
    def layout(
        cls, model_dir: Path, params: layouts.Params | None, use_qwen_emo: bool | None
    ) -> layouts.Layout:
        return layouts.check(
            model_dir, cls.required_files, cls.aux_files, cls.hub_repos, params, use_qwen_emo
        )

    @classmethod
    def preflight(cls, settings: Settings) -> None:
        """Check the weights are all there, in the layout the installed version reads,
        without importing torch (the worker's parent)."""
        model_dir = settings.indextts_model_dir
        params = layouts.constructor_params(cls.module_name)
        found = cls.layout(model_dir, params, settings.indextts_use_qwen_emo)
        where = {
            "flat": "the flat layout (hf_cache/w2v-bert-2.0, ...; upstream with `aux_paths`)",
            "hub": "the hub cache layout (hf_cache/models--<org>--<name>/snapshots/<rev>/...; "
            "versions without `aux_paths`, such as tts-webui-index-tts 2.0.1)",
        }[found.name]
        if found.missing:
            message = (
                f"{cls.name}: the model dir {model_dir} is read in {where} and lacks "
                f"{', '.join(found.missing)}; " + GET_WEIGHTS.format(dir=model_dir)
            )
            if layouts.QWEN_DIR + "/" in found.missing:
                message += "; " + cls._without_qwen(params)
            raise EngineLoadError(message)
        log.info("%s: model dir %s, complete in %s", cls.name, model_dir, where)

    @classmethod
    def _without_qwen(cls, params: layouts.Params | None) -> str:
        qwen = layouts.QWEN_DIR + "/"
        if params is not None and layouts.QWEN_SWITCH not in params:
            return (
                f"the installed {cls.module_name} has no `{layouts.QWEN_SWITCH}`, so it always "
                f"loads {qwen}; upgrade indextts (checked against {UPSTREAM_COMMIT[:10]}) to "
                "start without it"
            )
        setting = cls.switches[layouts.QWEN_SWITCH].upper()
        return (
            f"or set TTS_{setting}=false to start without {qwen} (emotion from text is then "
            "refused)"
        )

    def __init__(self, settings: Settings) -> None:
        self.preflight(settings)
        self.settings = settings
        self.model_dir = settings.indextts_model_dir
        pin_hub_cache(self.model_dir / "hf_cache")
        # Upstream's import silences UserWarning and FutureWarning for the whole process;
        # the filters in force before it come back when the model is built.
        with warnings.catch_warnings():
            try:
                module = importlib.import_module(self.module_name)
            except ImportError as exc:
                raise EngineLoadError(
                    f"{self.name}: cannot import {self.module_name} ({exc}); install upstream "
                    f"index-tts at {UPSTREAM_COMMIT[:10]} (README, 'IndexTTS2')"
                ) from exc
            model_cls = module.IndexTTS2
            self._torch = _optional_torch()
            kwargs = self.constructor_kwargs(inspect.signature(model_cls).parameters, settings)
            log.info("building %s.IndexTTS2 with %s", self.module_name, kwargs)
            self.model = self._build(model_cls, kwargs)
        # Upstream reports to its web UI's progress bar through this hook; so it reports to us.
        self.model.gr_progress = _upstream_progress
        self._infer_params = set(inspect.signature(self.model.infer).parameters)
        self.batcher = GptBatcher(self.model, max_batch=settings.engine_batch)
        self.device = str(getattr(self.model, "device", settings.indextts_device or "auto"))
        #: What the model outputs; read from its first audio (warm-up), not assumed.
        self.sample_rate: int | None = None
        self.model_version = self._version()
        voices_dir = settings.voices_dir or settings.data_dir / "voices"
        self.voices = VoiceCache(
            voices_dir,
            settings.data_dir / "voice-cache",
            max_files=settings.voice_cache_files,
            make_default=_espeak_reference,
        )

    def _build(self, model_cls: Any, kwargs: dict[str, Any]) -> Any:
        """The model, or an EngineLoadError naming what stopped it: the worker must not live
        on without an engine."""
        try:
            with tagger_cache(self.settings.data_dir / "indextts-tagger-cache"):
                return model_cls(**kwargs)
        except Exception as exc:  # anything upstream raises while loading is fatal
            raise EngineLoadError(
                f"{self.name}: building the model from {self.model_dir} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def constructor_kwargs(self, params: Any, settings: Settings) -> dict[str, Any]:
        cfg = settings.indextts_cfg_path or self.model_dir / "config.yaml"
        kwargs: dict[str, Any] = {"cfg_path": str(cfg), "model_dir": str(self.model_dir)}
        precision = next((p for p in self.precision_args if p in params), None)
        if precision is not None:
            kwargs[precision] = settings.indextts_use_fp16
        elif settings.indextts_use_fp16:
            raise EngineLoadError(
                f"{self.name}: the installed version has no half precision "
                "switch; set INDEXTTS_USE_FP16=false"
            )
        if settings.indextts_device and "device" not in params:
            raise EngineLoadError(
                f"INDEXTTS_DEVICE={settings.indextts_device}, but the installed "
                f"{self.module_name} takes no device; unset it (the model picks its own)"
            )
        if settings.indextts_device:
            kwargs["device"] = settings.indextts_device
        for arg, setting in self.switches.items():
            value = getattr(settings, setting)
            if value is None:
                continue
            if arg in params:
                kwargs[arg] = value
            elif value:
                raise EngineLoadError(
                    f"TTS_{setting.upper()}=true, but the installed {self.module_name} has no "
                    f"`{arg}`; upgrade indextts (checked against {UPSTREAM_COMMIT[:10]}) "
                    "or unset it"
                )
        if "aux_paths" in params:
            kwargs["aux_paths"] = {k: str(self.model_dir / v) for k, v in self.aux_files.items()}
        return kwargs

    def _version(self) -> str:
        dist = "?"
        for name in ("indextts", "tts-webui.index-tts", "tts-webui-index-tts"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                dist = f"{name} {metadata.version(name)}"
                break
        cfg = getattr(self.model, "cfg", None)
        weights = getattr(cfg, "version", None) if cfg is not None else None
        return f"{dist} ({self.module_name}); weights {weights or '?'} from {self.model_dir}"

    def warmup(self) -> None:
        hello = JobRequest(text="你好。", language="zh")
        self.synthesize(hello)
        if self.batcher.max_batch > 1:  # and the batch's threads, whose first run is slower
            self.synthesize_many([hello] * self.batcher.max_batch, [None] * self.batcher.max_batch)

    # -- what it can do --------------------------------------------------------------------

    def capabilities(self) -> EngineCapabilities:
        p = self._infer_params
        emotion = [
            field
            for field, arg in (
                ("audio", "emo_audio_prompt"),
                ("alpha", "emo_alpha"),
                ("vector", "emo_vector"),
                ("random", "use_random"),
            )
            if arg in p
        ]
        if "use_emo_text" in p and getattr(self.model, "qwen_emo", None) is not None:
            emotion.append("text")
        generation = list(SAMPLING)
        generation += [a for a in ("interval_silence", "duration_factor") if a in p]
        if self._segment_arg():
            generation.append("max_text_tokens_per_segment")
        return EngineCapabilities(
            engine=self.name,
            sample_rate=self.sample_rate or 0,
            voices=self.voices.voice_ids(),
            default_voice="default",
            languages=self.languages,
            emotion=sorted(emotion),
            generation=sorted(generation),
            voice_cloning=True,
        )

    def _segment_arg(self) -> str | None:
        for arg in ("max_text_tokens_per_segment", "max_text_tokens_per_sentence"):
            if arg in self._infer_params:
                return arg
        return None

    # -- synthesis -----------------------------------------------------------------------

    def infer_kwargs(self, request: JobRequest) -> dict[str, Any]:
        """Exactly the controls the client sent, under upstream's names; nothing else."""
        kwargs: dict[str, Any] = {}
        emo = request.emotion
        if emo is not None:
            if emo.audio is not None:
                kwargs["emo_audio_prompt"] = self.voices.path(emo.audio)
            if emo.alpha is not None:
                kwargs["emo_alpha"] = emo.alpha
            if emo.vector is not None:
                kwargs["emo_vector"] = emo.vector.as_list()
            if emo.text is not None:
                kwargs["use_emo_text"], kwargs["emo_text"] = True, emo.text
            if emo.random is not None:
                kwargs["use_random"] = emo.random
        gen = request.generation
        if gen is not None:
            for field in gen.model_fields_set:
                value = getattr(gen, field)
                if value is None:
                    continue
                arg = self._segment_arg() if field == "max_text_tokens_per_segment" else field
                kwargs[str(arg)] = value
        return kwargs

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        speaker = self.voices.path(request.voice)
        kwargs = self.infer_kwargs(request)
        with self._inference_mode(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            truncated = False
            try:
                result = self._infer(speaker, request, kwargs)
            except Exception as exc:
                if not self._truncation_crash(exc, caught):
                    raise self._classify(exc) from exc
                # 2.0.1 warns that it hit max_mel_tokens, then fails on its own bookkeeping
                # of the uncut codes. Forcing the stop token at the limit gives it the codes
                # it expects, so the job gets the audio up to the limit, with the warning.
                log.warning(
                    "max_mel_tokens reached and upstream crashed (%s); retrying with "
                    "the stop token forced at the limit",
                    exc,
                )
                truncated = True
                forced = {**kwargs, "forced_eos_token_id": self.model.stop_mel_token}
                try:
                    result = self._infer(speaker, request, forced)
                except Exception as again:
                    raise self._classify(again) from again
        return self._output(result, truncated or _warned_truncation(caught), kwargs)

    def synthesize_many(
        self, requests: Sequence[JobRequest], listeners: Sequence[ProgressListener | None]
    ) -> list[SynthesisOutput | Exception]:
        """Several requests at once, their GPT stages batched (`indextts_batch`); each answer
        is its audio or its error. An item that fails in the batch runs again alone, through
        `synthesize`, so it gets exactly what it would have got unbatched (the 2.0.1
        truncation retry included)."""
        if len(requests) == 1:
            return [self._alone(requests[0], listeners[0])]

        def item(request: JobRequest, listener: ProgressListener | None) -> Any:
            speaker = self.voices.path(request.voice)
            kwargs = self.infer_kwargs(request)
            with self._inference_mode(), progress_to(listener):
                return self._infer(speaker, request, kwargs), kwargs

        calls = [functools.partial(item, r, p) for r, p in zip(requests, listeners, strict=True)]
        # Upstream warns of a truncation per call; the batcher tells which item it was.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcomes = self.batcher.run(calls)
        answers: list[SynthesisOutput | Exception] = []
        for request, listener, outcome in zip(requests, listeners, outcomes, strict=True):
            if outcome.error is not None or outcome.value is None:
                answers.append(self._alone(request, listener))
                continue
            result, kwargs = outcome.value
            try:
                answers.append(self._output(result, outcome.truncated, kwargs))
            except EngineInputError as exc:
                answers.append(exc)
        return answers

    def _alone(
        self, request: JobRequest, listener: ProgressListener | None
    ) -> SynthesisOutput | Exception:
        try:
            with progress_to(listener):
                return self.synthesize(request)
        except Exception as exc:
            return exc

    def _output(self, result: Any, truncated: bool, kwargs: dict[str, Any]) -> SynthesisOutput:
        if result is None:
            raise EngineInputError("text: the model produced no audio for it")
        sample_rate, wav = result
        notes = []
        if truncated:
            limit = kwargs.get("max_mel_tokens", "the engine's default")
            notes.append(
                f"truncated: generation stopped at max_mel_tokens ({limit}), so the audio may "
                "end early; lower generation.max_text_tokens_per_segment or raise "
                "generation.max_mel_tokens"
            )
        self.sample_rate = int(sample_rate)
        return SynthesisOutput(pcm16=to_pcm16(wav), sample_rate=int(sample_rate), warnings=notes)

    def _infer(self, speaker: str, request: JobRequest, kwargs: dict[str, Any]) -> Any:
        return self.model.infer(speaker, request.text, None, **kwargs)

    def _inference_mode(self) -> contextlib.AbstractContextManager[Any]:
        if self._torch is None:
            return contextlib.nullcontext()
        return self._torch.inference_mode()  # type: ignore[no-any-return]

    def _truncation_crash(self, exc: Exception, caught: list[warnings.WarningMessage]) -> bool:
        return (
            isinstance(exc, RuntimeError)
            and "Sizes of tensors must match" in str(exc)
            and _warned_truncation(caught)
            and hasattr(self.model, "stop_mel_token")
        )

    def _classify(self, exc: Exception) -> Exception:
        text = str(exc)
        if type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text:
            if self._torch is not None and self._torch.cuda.is_available():
                self._torch.cuda.empty_cache()
            return TransientError(f"CUDA out of memory on {self.device}")
        return exc

    def memory_mb(self) -> float:
        torch = self._torch
        if torch is None or not torch.cuda.is_available():
            return 0.0
        return float(torch.cuda.memory_reserved()) / 2**20


class IndexTTS25Engine(IndexTTS2Engine):
    """IndexTTS-2.5: the same interface, plus a language and a duration factor."""

    name = "index_tts2_5"
    module_name = "indextts.infer_v2_5"
    languages: ClassVar[list[str]] = ["zh", "en", "ja", "ar", "es"]
    required_files: ClassVar[tuple[str, ...]] = ("config.yaml", "codec.pth")
    aux_files: ClassVar[dict[str, str]] = {
        "w2v_bert": "hf_cache/w2v-bert-2.0",
        "campplus": "hf_cache/campplus_cn_common.bin",
        "bigvgan": "hf_cache/bigvgan",
    }
    hub_repos: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def layout(
        cls, model_dir: Path, params: layouts.Params | None, use_qwen_emo: bool | None
    ) -> layouts.Layout:
        # Only the flat layout: no published copy of 2.5 reading the hub cache was found.
        missing = [n for n in cls.required_files if not (model_dir / n).exists()]
        return layouts.Layout("flat", missing + layouts.flat_missing(model_dir, cls.aux_files))

    precision_args: ClassVar[tuple[str, ...]] = ("use_bf16",)

    def _infer(self, speaker: str, request: JobRequest, kwargs: dict[str, Any]) -> Any:
        lang = request.language or ("zh" if _CJK.search(request.text) else "en")
        return self.model.infer(speaker, request.text, None, lang, **kwargs)


def _warned_truncation(caught: list[warnings.WarningMessage]) -> bool:
    return any("max_mel_tokens" in str(w.message) for w in caught)


def to_pcm16(wav: Any) -> bytes:
    """Upstream returns int16 [T, 1]; the PyPI copy returns float in ±1. Both become PCM16."""
    import numpy as np

    arr = np.asarray(wav)
    if arr.dtype.kind == "f":
        arr = (np.clip(arr, -1.0, 1.0) * 32767.0).round()
    return bytes(arr.astype("<i2").reshape(-1).tobytes())


def _upstream_progress(value: float, desc: str | None = None) -> None:
    # Upstream calls this as segment k of n starts, so k - 1 are done; the float is its own
    # weighting of the steps, and its other steps ("text processing...") carry no count.
    starts = _SEGMENT_STARTS.search(desc or "")
    if starts is not None:
        report_progress(int(starts[1]) - 1, int(starts[2]))


def _optional_torch() -> Any:
    try:
        import torch
    except ImportError:  # only the test suite's fake upstream runs without torch
        return None
    return torch


def _espeak_reference() -> bytes:
    """A built-in default speaker reference, made with eSpeak NG (no audio ships in the repo)."""
    from common.audio.wav import encode_wav
    from gpu_worker.engines.espeak import EspeakEngine

    out = EspeakEngine().synthesize(
        JobRequest(text="你好，欢迎收听。Hello, and welcome to the programme.")
    )
    return encode_wav(out.pcm16, out.sample_rate)
