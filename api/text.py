"""What a job's text must be before it is accepted: not too long, and something to speak.

Checked at the API rather than in `JobRequest`, which also validates stored records: a rule
added here never makes an already-stored job unreadable.
"""

from __future__ import annotations

import re
import unicodedata

from common.errors import Unprocessable

#: What a script may not hold: every control character (Unicode's category Cc, a fixed set)
#: but tab and line breaks, and lone surrogates (Cs). One search finds the first.
REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def check_text(text: str, *, max_chars: int) -> None:
    """Refuse text over the limit, with a control character, or with nothing to speak.

    Punctuation, symbols and invisible characters alone would end `succeeded` with a few
    milliseconds of silence, so the text must hold a letter or a digit in some script.
    """
    if len(text) > max_chars:
        raise Unprocessable(
            f"text: {len(text)} characters, the limit is {max_chars}", code="text_too_long"
        )
    refused = REFUSED.search(text)
    if refused is not None:
        raise Unprocessable(
            f"text: control character U+{ord(refused.group()):04X} at position "
            f"{refused.start()}; only tab and line breaks are allowed",
            code="text_not_speakable",
        )
    if not any(unicodedata.category(char)[0] in "LN" for char in text):
        raise Unprocessable(
            "text: no letter or digit to speak (only punctuation, symbols or spaces)",
            code="text_not_speakable",
        )
