"""De-duplication with bounded memory: the most recent identities, forgotten oldest first.

A redelivered record arrives soon after its first copy (the recognizer replays at most what
it published since its last commit, seconds of output), so remembering the latest
`capacity` identities catches every duplicate in practice while memory stays fixed: at the
default 100,000 identities, about 30 MB (tracemalloc, result ids) whatever the stream's length.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class Deduplicator:
    """`first(key)` is True the first time a key is seen among the latest `capacity` keys."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._seen)

    def first(self, key: Hashable) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True
