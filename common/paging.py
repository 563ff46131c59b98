"""Newest-first paging over a sorted set of ids scored by creation time.

Members are ordered by (score, id), both descending, as Redis orders equal scores; the cursor
is the last pair returned, so members that share a creation time are neither skipped nor
repeated. Jobs and voices page this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import redis

T = TypeVar("T")
Cursor = tuple[float, str]


def newest_first(
    client: redis.Redis,
    key: str,
    *,
    after: Cursor | None,
    limit: int,
    load: Callable[[str], T | None],
) -> tuple[list[T], Cursor | None]:
    """Up to `limit` items after `after`, each `load(id)` that is not None, and the cursor
    for the next page (None when this one reaches the end)."""
    found: list[T] = []
    cursor = after
    while True:
        top: float | str = "+inf"
        skip = 0
        if cursor is not None:
            top, last_id = cursor
            ties = cast(list[bytes], client.zrangebyscore(key, top, top))
            skip = sum(1 for member in ties if member.decode() >= last_id)
        batch = cast(
            list[tuple[bytes, float]],
            client.zrevrangebyscore(key, top, "-inf", start=skip, num=limit * 2, withscores=True),
        )
        if not batch:
            return found, None
        for member, score in batch:
            cursor = (score, member.decode())
            item = load(cursor[1])
            if item is not None:
                found.append(item)
                if len(found) == limit:
                    return found, cursor
