"""Cross-job batching for upstream IndexTTS2: many `infer()` calls, one batched GPT stage.

The GPT stage (text to semantic codes, one token at a time) is most of a segment's time, and
at batch 1 it leaves a GPU mostly idle: each step is a handful of small matrix products.
Upstream's `UnifiedVoice.inference_speech` already takes a batch (it left-pads the text with an
attention mask, and Hugging Face's `generate` stops each row at its own stop token); only
`infer()` calls it one segment at a time.

`GptBatcher.run` runs N unchanged `infer()` calls, one thread each, and answers their
`inference_speech` calls together: every call that arrives waits until each other live call
has arrived too (or finished), then one batched call answers them all. Everything else in
`infer()` (the speaker and emotion caches, emotion vectors, the s2mel and vocoder stages, the
joins and silences) is upstream's own code, run by one thread at a time: the threads pass a
single lock (the *baton*) among themselves and hold it whenever they run upstream code, so
the model object is never used by two at once. Upstream reads its speaker cache into locals
before the GPT stage, so another thread replacing the cache while one waits changes nothing.

Calls batch together when their generation settings are equal and no argument needs a
per-call tensor this module does not know how to stack; the others run on their own. If the
batched call raises (out of memory, say), each call of it runs again alone, so an item that
fails fails alone.

What batching changes: the speaker conditions are zero-padded to the longest in the batch
(the conformer reads the lengths, so padding is masked), and the text is left-padded. Under
deterministic decoding the codes equal the unbatched ones and the audio differs by float
rounding (`tests/test_indextts_batch.py`). Under sampling the random draws are shared by the
batch, so an item's sample differs from its unbatched one, as any two samples do.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: `inference_speech`'s per-item audio conditions, and the lengths that mask their frames.
_CONDITIONS = (("speech_condition", "cond_lengths"), ("emo_speech_condition", "emo_cond_lengths"))
#: The arguments stacked along the batch; any other tensor argument makes a call run alone.
_STACKED = (*(name for pair in _CONDITIONS for name in pair), "text_inputs", "emo_vec")


@dataclass
class _Call:
    args: dict[str, Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None
    truncated: bool = False


@dataclass
class GptBatcher:
    """Batches the GPT stage of concurrent `infer()` calls on one upstream model."""

    model: Any
    #: The largest batch one generate call gets (GPU memory bounds it, not this module).
    max_batch: int = 8
    #: The most calls one batched GPT call has answered so far.
    largest_batch: int = 0
    _baton: threading.Condition = field(default_factory=threading.Condition)
    _pending: list[_Call] = field(default_factory=list)
    _live: int = 0
    _local: threading.local = field(default_factory=threading.local)
    _threads: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._threads = ThreadPoolExecutor(self.max_batch, thread_name_prefix="indextts-batch")

    def run(self, calls: Sequence[Callable[[], T]]) -> list[_Outcome[T]]:
        """Run the calls, `max_batch` at a time, each on a thread of the batcher's own,
        their GPT stages batched; each outcome is its call's value or the error it raised,
        and whether its codes hit the length limit (no stop token)."""
        outcomes: list[_Outcome[T]] = []
        for start in range(0, len(calls), self.max_batch):
            outcomes += self._run(calls[start : start + self.max_batch])
        return outcomes

    def _run(self, calls: Sequence[Callable[[], T]]) -> list[_Outcome[T]]:
        gpt = self.model.gpt
        original = gpt.inference_speech
        signature = inspect.signature(original)
        outcomes = [_Outcome[T]() for _ in calls]

        def batched(*args: Any, **kwargs: Any) -> Any:
            call = _Call(_named(signature, args, kwargs))
            self._pending.append(call)
            if len(self._pending) >= self._live:
                self._flush(original)
            else:
                self._baton.wait_for(lambda: call.done)
            if call.error is not None:
                raise call.error
            if not (call.result[0] == self.model.stop_mel_token).any():
                self._local.truncated = True
            return call.result

        def item(i: int) -> None:
            with self._baton:
                self._local.truncated = False
                try:
                    outcomes[i].value = calls[i]()
                except BaseException as exc:  # reported in the outcome, per item
                    outcomes[i].error = exc
                outcomes[i].truncated = self._local.truncated
                self._live -= 1
                if self._pending and len(self._pending) >= self._live:
                    self._flush(original)

        self._live = len(calls)
        gpt.inference_speech = batched
        try:
            # Threads kept from batch to batch: a new thread's first tensor operations cost
            # more (its CPU thread pools and caches start cold), about 0.2 s on a small model.
            for future in [self._threads.submit(item, i) for i in range(len(calls))]:
                future.result()
        finally:
            del gpt.inference_speech  # the class's method again
        return outcomes

    def _flush(self, original: Callable[..., Any]) -> None:
        """Answer every waiting call (the baton is held): batched where they agree."""
        calls, self._pending = self._pending, []
        for group in _groups(calls):
            for start in range(0, len(group), self.max_batch):
                self._answer(original, group[start : start + self.max_batch])
        self._baton.notify_all()

    def _answer(self, original: Callable[..., Any], calls: list[_Call]) -> None:
        if len(calls) > 1:
            try:
                codes, latents = original(**self._stack(calls))
            except Exception:  # each runs alone below, so only a bad item fails
                log.warning(
                    "a batch of %s GPT calls failed; each runs alone", len(calls), exc_info=True
                )
            else:
                self.largest_batch = max(self.largest_batch, len(calls))
                log.info("GPT stage: %s segments in one batch", len(calls))
                for i, call in enumerate(calls):
                    call.result = (self._row(codes[i]), latents[i : i + 1])
                    call.done = True
                return
        for call in calls:
            try:
                call.result = original(**call.args)
            except BaseException as exc:
                call.error = exc
            call.done = True

    def _stack(self, calls: list[_Call]) -> dict[str, Any]:
        import torch
        import torch.nn.functional as F

        args = dict(calls[0].args)
        for condition, lengths in _CONDITIONS:
            if args.get(condition) is None:
                continue
            parts = [c.args[condition] for c in calls]
            parts = [p.unsqueeze(0) if p.ndim == 2 else p for p in parts]
            frames, axis = _frames(parts)
            if axis is not None:  # zero-pad the frames; the lengths mask the padding
                parts = [_pad(p, axis, max(frames)) for p in parts]
                given = [c.args[lengths] for c in calls]
                if any(g is None for g in given):
                    raise ValueError(f"{condition}: padded, but {lengths} not given")
                # Upstream passes the feature width as the length, so "every frame": the
                # same as each item's own frame count once they are padded.
                args[lengths] = torch.cat(
                    [g.clamp(max=n) for g, n in zip(given, frames, strict=True)]
                )
            elif args.get(lengths) is not None:
                args[lengths] = torch.cat([c.args[lengths] for c in calls])
            args[condition] = torch.cat(parts)
        texts = [c.args["text_inputs"] for c in calls]
        width = max(t.shape[-1] for t in texts)
        stop = self.model.gpt.stop_text_token
        args["text_inputs"] = torch.cat(
            [F.pad(t, (0, width - t.shape[-1]), value=stop) for t in texts]
        )
        if args.get("emo_vec") is not None:
            args["emo_vec"] = torch.cat([c.args["emo_vec"] for c in calls])
        return args

    def _row(self, codes: Any) -> Any:
        """One item's codes as an unbatched call returns them: up to its first stop token
        (which the batch pads its finished rows with), or all of them if it never stopped."""
        stops = (codes == self.model.stop_mel_token).nonzero()
        end = int(stops[0, 0]) + 1 if len(stops) else codes.shape[-1]
        return codes[:end].unsqueeze(0)


def _frames(parts: list[Any]) -> tuple[list[int], int | None]:
    """The frame counts of same-rank conditions, and their frames' axis: the one axis whose
    size differs (None when all are the same shape)."""
    shapes = {tuple(p.shape) for p in parts}
    if len(shapes) == 1:
        return [], None
    axes = [a for a in range(1, parts[0].ndim) if len({p.shape[a] for p in parts}) > 1]
    if len(axes) != 1:
        raise ValueError(f"conditions differ in more than their frames: {sorted(shapes)}")
    return [p.shape[axes[0]] for p in parts], axes[0]


def _pad(tensor: Any, axis: int, size: int) -> Any:
    import torch.nn.functional as F

    pad = [0, 0] * (tensor.ndim - 1 - axis) + [0, size - tensor.shape[axis]]
    return F.pad(tensor, pad)


def _named(signature: inspect.Signature, args: Any, kwargs: Any) -> dict[str, Any]:
    """A call's arguments by name (`**hf_generate_kwargs` spread out), to call it again with."""
    bound = signature.bind(*args, **kwargs)
    named = dict(bound.arguments)
    for name, param in signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            named.update(named.pop(name, {}))
    return named


def _groups(calls: list[_Call]) -> list[list[_Call]]:
    """The calls that can share one batched call: equal settings, known tensors only."""
    groups: dict[str, list[_Call]] = {}
    alone: list[list[_Call]] = []
    for call in calls:
        key = _key(call.args)
        if key is None:
            alone.append([call])
        else:
            groups.setdefault(key, []).append(call)
    return [*groups.values(), *alone]


def _key(args: dict[str, Any]) -> str | None:
    parts = []
    for name, value in sorted(args.items()):
        if name in _STACKED:
            if value is not None and not _one_item(name, value):
                return None
            parts.append(f"{name}={value is None}")
        elif hasattr(value, "shape"):  # a tensor this module does not stack
            return None
        else:
            parts.append(f"{name}={value!r}")
    return ";".join(parts)


def _one_item(name: str, value: Any) -> bool:
    """Whether a stacked argument holds one item (a 2-D condition is one item's frames)."""
    if name.endswith("condition") and value.ndim == 2:
        return True
    return bool(value.shape[0] == 1)
