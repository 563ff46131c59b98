"""A fake of upstream `indextts` with its signatures (commit ee40fa7d6c), for the test suite.

It has no weights and no torch: `infer` speaks the text with eSpeak NG, returns what upstream
returns (22050, int16 [T, 1]), and appends every call, with its arguments, to the JSON-lines
file named by FAKE_INDEXTTS_LOG. It mimics upstream's observable behaviour: the max_mel_tokens
RuntimeWarning, CUDA out-of-memory errors, audio for text that is only punctuation, the
one-speaker cache keyed by the prompt's path string, and (checked against the real
tts-webui-index-tts 2.0.1 in tests/test_real_indextts.py) what importing `infer_v2` does to the
process: HF_HUB_CACHE set to ./checkpoints/hf_cache, UserWarning and FutureWarning ignored.
"""
