"""Write an IndexTTS2 model dir of random weights, in the layout upstream reads, in seconds.

    .venv-indextts/bin/python tools/tiny_indextts.py OUT_DIR [--full] [--codes N]

Every network is built by upstream's own classes from the installed `indextts` package (and
transformers' for w2v-BERT and Qwen), then saved with `state_dict()`: nothing is downloaded
and nothing is copied from upstream. What comes out is `config.yaml` in upstream's shape,
`bpe.model` (a SentencePiece model trained here on generated Chinese and English lines),
`gpt.pth`, `s2mel.pth`, `wav2vec2bert_stats.pt`, `feat1.pt`, `feat2.pt`, a tiny Qwen emotion
model, and the four auxiliary models in the Hugging Face hub cache layout under `hf_cache/`
(the layout `tts-webui-index-tts` 2.0.1 reads) and in the flat layout newer upstream reads.

Small by default (a few hundred MB, most of it w2v-BERT, whose width 1024 and 17 layers the
code hard-codes, as it does the GPT's width 1280 and CAMPPlus's 192); `--full` writes the real
dimensions, for benchmarks on a GPU. Random weights never emit the stop token, so one is planted:
a direction of the residual stream that only the mel position embedding writes, from position
`--codes` on, and that only the stop row of the mel head reads. Generation therefore ends after
exactly that many codes unless `max_mel_tokens` comes first.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

#: The hub repos 2.0.1 reads, and the files it reads from each.
HUB = {
    "w2v_bert": ("facebook/w2v-bert-2.0", ("config.json", "model.safetensors")),
    "semantic_codec": ("amphion/MaskGCT", ("semantic_codec/model.safetensors",)),
    "campplus": ("funasr/campplus", ("campplus_cn_common.bin",)),
    "bigvgan": ("nvidia/bigvgan_v2_22khz_80band_256x", ("config.json", "bigvgan_generator.pt")),
}
REVISION = "0" * 40
EMO_NUM = [3, 17, 2, 8, 4, 5, 10, 24]
QWEN_DIR = "qwen0.6bemo4-merge"
STOP_DIM = 0  # the residual-stream direction that carries the planted stop


def config(full: bool) -> dict[str, Any]:
    """upstream's config.yaml, with small dimensions unless `full`."""
    small = not full
    codes = 8192 if full else 256
    return {
        "dataset": {"bpe_model": "bpe.model", "sample_rate": 24000, "squeeze": False},
        "gpt": {
            "model_dim": 1280,  # hard-coded downstream (s2mel's gpt_layer)
            "max_mel_tokens": 1815,
            "max_text_tokens": 600,
            "heads": 4 if small else 20,
            "use_mel_codes_as_input": True,
            "mel_length_compression": 1024,
            "layers": 1 if small else 24,
            "number_text_tokens": 12000 if full else 2048,
            "number_mel_codes": codes + 2,
            "start_mel_token": codes,
            "stop_mel_token": codes + 1,
            "start_text_token": 0,
            "stop_text_token": 1,
            "train_solo_embeddings": False,
            "condition_type": "conformer_perceiver",
            "condition_module": _conformer(full, 2048, 8, 6),
            "emo_condition_module": _conformer(full, 1024, 4, 4),
        },
        "semantic_codec": {
            "codebook_size": codes,
            "hidden_size": 1024,  # w2v-BERT's width
            "codebook_dim": 8,
            "vocos_dim": 384 if full else 32,
            "vocos_intermediate_dim": 2048 if full else 64,
            "vocos_num_layers": 12 if full else 1,
        },
        "s2mel": _s2mel(full),
        "gpt_checkpoint": "gpt.pth",
        "w2v_stat": "wav2vec2bert_stats.pt",
        "s2mel_checkpoint": "s2mel.pth",
        "emo_matrix": "feat2.pt",
        "spk_matrix": "feat1.pt",
        "emo_num": EMO_NUM,
        "qwen_emo_path": QWEN_DIR + "/",
        "vocoder": {"type": "bigvgan", "name": HUB["bigvgan"][0]},
        "version": "tiny-random" if small else "full-random",
    }


def _conformer(full: bool, units: int, heads: int, blocks: int) -> dict[str, Any]:
    return {
        "output_size": 512 if full else 64,
        "linear_units": units if full else 128,
        "attention_heads": heads if full else 2,
        "num_blocks": blocks if full else 1,
        "input_layer": "conv2d2",
        "perceiver_mult": 2,
    }


def _s2mel(full: bool) -> dict[str, Any]:
    width = 512 if full else 64
    return {
        "preprocess_params": {
            "sr": 22050,
            "spect_params": {
                "n_fft": 1024,
                "win_length": 1024,
                "hop_length": 256,
                "n_mels": 80,
                "fmin": 0,
                "fmax": "None",
            },
        },
        "dit_type": "DiT",
        "reg_loss_type": "l1",
        "style_encoder": {"dim": 192},  # CAMPPlus's embedding size, hard-coded upstream
        "length_regulator": {
            "channels": width,
            "is_discrete": False,
            "in_channels": 1024,
            "content_codebook_size": 2048,
            "sampling_ratios": [1, 1, 1, 1],
            "vector_quantize": False,
            "n_codebooks": 1,
            "quantizer_dropout": 0.0,
            "f0_condition": False,
            "n_f0_bins": 512,
        },
        "DiT": {
            "hidden_dim": width,
            "num_heads": 8 if full else 2,
            "depth": 13 if full else 2,
            "class_dropout_prob": 0.1,
            "block_size": 8192,
            "in_channels": 80,
            "style_condition": True,
            "final_layer_type": "wavenet",
            "target": "mel",
            "content_dim": width,
            "content_codebook_size": 1024,
            "content_type": "discrete",
            "f0_condition": False,
            "n_f0_bins": 512,
            "content_codebooks": 1,
            "is_causal": False,
            "long_skip_connection": True,
            "zero_prompt_speech_token": False,
            "time_as_token": False,
            "style_as_token": False,
            "uvit_skip_connection": True,
            "add_resblock_in_transformer": False,
        },
        "wavenet": {
            "hidden_dim": width,
            "num_layers": 8 if full else 2,
            "kernel_size": 5,
            "dilation_rate": 1,
            "p_dropout": 0.2,
            "style_condition": True,
        },
    }


def bigvgan_config(full: bool) -> dict[str, Any]:
    """BigVGAN v2's hyperparameters (22 kHz, 80 bands, 256x); narrower unless `full`."""
    return {
        "resblock": "1",
        "num_mels": 80,
        "upsample_rates": [4, 4, 2, 2, 2, 2] if full else [8, 8, 4],
        "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4] if full else [16, 16, 8],
        "upsample_initial_channel": 1536 if full else 32,
        "resblock_kernel_sizes": [3, 7, 11] if full else [3],
        "resblock_dilation_sizes": [[1, 3, 5]] * (3 if full else 1),
        "activation": "snakebeta",
        "snake_logscale": True,
        "use_tanh_at_final": False,
        "use_bias_at_final": False,
        "sampling_rate": 22050,
        "n_fft": 1024,
        "hop_size": 256,
        "win_size": 1024,
        "fmin": 0,
        "fmax": None,
    }


def corpus(lines: int, seed: int) -> list[str]:
    """Chinese and English lines, tokenised as upstream tokenises them (CJK char by char,
    English upper-cased), for training the BPE model."""
    rng = random.Random(seed)
    # The 3,500 commonest Chinese characters are not at hand offline; a contiguous block of
    # the CJK range plus the characters the tests speak covers what the tests send.
    hanzi = [chr(c) for c in range(0x4E00, 0x4E00 + 1500)] + list(
        "你好世界我们明天早上九点出发今天的会议取消了欢迎收听这是一个测试生气高兴悲伤惊讶"
    )
    words = str.split(
        "THE A AND OF TO IN IS IT THAT THIS HELLO WORLD NARRATOR LONG LINE WILL NOT FIT "
        "FIFTY MEL TOKENS AT ALL GET OUT HERE WELCOME PROGRAMME TEST SPEECH VOICE QUICK "
        "BROWN FOX JUMPS OVER LAZY DOG ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN"
    )
    out = []
    for _ in range(lines):
        if rng.random() < 0.5:
            out.append(" ".join(rng.choice(hanzi) for _ in range(rng.randint(4, 16))) + " .")
        else:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) + " .")
    return out


def write_bpe(out: Path, vocab: int, seed: int) -> None:
    import sentencepiece as spm

    text = out / "bpe-corpus.txt"
    text.write_text("\n".join(corpus(4000, seed)) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(out / "bpe"),
        vocab_size=vocab,
        model_type="bpe",
        character_coverage=1.0,
        user_defined_symbols=[",", ".", "?", "!", "'", "-"],
        minloglevel=2,
    )
    text.unlink()
    (out / "bpe.vocab").unlink()


def plant_stop(gpt: Any, cfg: dict[str, Any], codes: int) -> None:
    """Make the GPT emit the stop token after `codes` codes (see the module docstring)."""
    import torch

    k, stop = STOP_DIM, cfg["gpt"]["stop_mel_token"]
    with torch.no_grad():
        for block in gpt.gpt.h:  # nothing inside a block writes to direction k
            block.attn.c_proj.weight[:, k] = 0
            block.attn.c_proj.bias[k] = 0
            block.mlp.c_proj.weight[:, k] = 0
            block.mlp.c_proj.bias[k] = 0
        gpt.mel_embedding.weight[:, k] = 0
        pos = gpt.mel_pos_embedding.emb.weight
        pos[:, k] = 0
        pos[codes + 1 :, k] = 1000.0  # position 0 holds the start token
        gpt.mel_head.weight[:, k] = 0
        gpt.mel_head.weight[stop] = 0
        gpt.mel_head.weight[stop, k] = 1.0
        gpt.mel_head.bias[stop] = -10.0


def build(out: Path, *, full: bool = False, codes: int = 40, seed: int = 0) -> Path:
    import numpy as np
    import torch
    import yaml  # type: ignore[import-untyped]

    torch.manual_seed(seed)
    np.random.seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config(full)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    write_bpe(out, 12000 if full else 2000, seed)

    from indextts.gpt.model_v2 import UnifiedVoice
    from indextts.s2mel.modules.commons import MyModel
    from omegaconf import OmegaConf

    ocfg = OmegaConf.create(cfg)
    gpt = UnifiedVoice(**ocfg.gpt)
    plant_stop(gpt, cfg, codes)
    torch.save(gpt.state_dict(), out / "gpt.pth")
    torch.save(
        {
            "net": {
                k: m.state_dict()
                for k, m in MyModel(ocfg.s2mel, use_gpt_latent=True).models.items()
            }
        },
        out / "s2mel.pth",
    )
    torch.save({"mean": torch.zeros(1024), "var": torch.ones(1024)}, out / "wav2vec2bert_stats.pt")
    rows = sum(EMO_NUM)
    torch.save(torch.randn(rows, 192), out / "feat1.pt")  # speaker styles (CAMPPlus)
    torch.save(torch.randn(rows, 1280) * 0.02, out / "feat2.pt")  # emotion vectors (GPT width)
    write_qwen(out / QWEN_DIR, full)
    write_aux(out, cfg, full)
    return out


def write_qwen(out: Path, full: bool) -> None:
    """A tiny Qwen3 that answers every prompt at once with end-of-text (its head is zero and
    end-of-text is token 0, so greedy decoding picks it), with a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [*corpus(200, 1), "system user assistant 文本情感分类"],
        trainers.WordLevelTrainer(special_tokens=specials),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_input_names=["input_ids", "attention_mask"],  # Qwen's generate takes no others
    )
    fast.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
        "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
    )
    fast.save_pretrained(out)
    qcfg = Qwen3Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        tie_word_embeddings=False,
        eos_token_id=0,
        pad_token_id=0,
        bos_token_id=1,
    )
    model = Qwen3ForCausalLM(qcfg)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(out)
    GenerationConfig(do_sample=False, eos_token_id=0, pad_token_id=0).save_pretrained(out)


def write_aux(out: Path, cfg: dict[str, Any], full: bool) -> None:
    """The four auxiliary models, in the hub cache layout and in the flat one."""
    import safetensors.torch
    import torch
    from indextts.s2mel.modules.bigvgan.bigvgan import BigVGAN
    from indextts.s2mel.modules.campplus.DTDNN import CAMPPlus
    from indextts.utils.maskgct_utils import build_semantic_codec
    from omegaconf import OmegaConf
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    snap = {key: _snapshot(out / "hf_cache", repo) for key, (repo, _) in HUB.items()}

    w2v_cfg = Wav2Vec2BertConfig(
        hidden_size=1024,
        num_hidden_layers=24 if full else 17,  # upstream reads hidden_states[17]
        num_attention_heads=16 if full else 4,
        intermediate_size=4096 if full else 64,
    )
    w2v = Wav2Vec2BertModel(w2v_cfg)
    # Every tensor is stored: left to from_pretrained's init, some came out NaN.
    w2v.save_pretrained(snap["w2v_bert"], safe_serialization=True)
    SeamlessM4TFeatureExtractor().save_pretrained(snap["w2v_bert"])

    codec = build_semantic_codec(OmegaConf.create(cfg["semantic_codec"]))
    (snap["semantic_codec"] / "semantic_codec").mkdir(parents=True, exist_ok=True)
    codec_file = snap["semantic_codec"] / "semantic_codec/model.safetensors"
    safetensors.torch.save_model(codec, str(codec_file))

    torch.save(
        CAMPPlus(feat_dim=80, embedding_size=192).state_dict(),
        snap["campplus"] / "campplus_cn_common.bin",
    )

    hp = bigvgan_config(full)
    (snap["bigvgan"] / "config.json").write_text(json.dumps(hp))
    vocoder = BigVGAN(_AttrDict(hp))
    torch.save({"generator": vocoder.state_dict()}, snap["bigvgan"] / "bigvgan_generator.pt")

    # The flat layout (upstream's `aux_paths`), as links into the snapshots.
    flat = out / "hf_cache"
    _link(flat / "w2v-bert-2.0", snap["w2v_bert"])
    _link(flat / "semantic_codec_model.safetensors", codec_file)
    _link(flat / "campplus_cn_common.bin", snap["campplus"] / "campplus_cn_common.bin")
    _link(flat / "bigvgan", snap["bigvgan"])


class _AttrDict(dict[str, Any]):
    """What BigVGAN's `load_hparams_from_json` hands the class: a dict read as attributes."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def _snapshot(cache: Path, repo: str) -> Path:
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    path = root / "snapshots" / REVISION
    path.mkdir(parents=True, exist_ok=True)
    return path


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink() if not link.is_dir() or link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(target.relative_to(link.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--full", action="store_true", help="the real dimensions (for bench/)")
    parser.add_argument("--codes", type=int, default=40, help="codes before the planted stop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.monotonic()
    build(args.out, full=args.full, codes=args.codes, seed=args.seed)
    print(f"wrote {args.out} in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
