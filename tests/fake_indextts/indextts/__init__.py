"""A fake of upstream `indextts` with its signatures (commit ee40fa7d6c), for the test suite.

It has no weights and no torch: `infer` speaks the text with eSpeak NG, returns what upstream
returns (22050, int16 [T, 1]), and appends every call, with its arguments, to the JSON-lines
file named by FAKE_INDEXTTS_LOG. It mimics upstream's observable behaviour: the max_mel_tokens
RuntimeWarning, CUDA out-of-memory errors, a RuntimeError on text with nothing to speak, and the
one-speaker cache keyed by the prompt's path string.
"""
