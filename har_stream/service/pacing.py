"""How many messages one poll may take, so that handling them never outlasts the poll interval.

The Kafka consumer leaves its group when two polls are further apart than
`max.poll.interval.ms`; its partitions move, it rejoins at the next poll, and a step that is
always too long turns into a rebalance storm. The time between two polls is the work on the
polled messages plus, at most, a checkpoint (two flushes, each bounded by the produce timeout)
and a restore (bounded by the restore timeout); `Settings` checks that those bounds leave a
positive `work_budget_s`. This class keeps the work within it: it measures the seconds per
message of each step and lets the next poll take only as many messages as fit in the budget,
rising at once when messages get dearer, relaxing slowly when they get cheaper. The first poll
takes a few messages only, because nothing is measured yet.
"""

from __future__ import annotations

import math


class WorkBudget:
    """The `max_records` of the next poll (see the module doc)."""

    def __init__(self, max_records: int, budget_s: float, first: int = 16,
                 relax: float = 0.2) -> None:
        self.max_records = max(int(max_records), 1)
        self.budget_s = budget_s
        self.relax = relax
        self.seconds_per_record: float | None = None
        self.limit = min(self.max_records, max(first, 1))

    def observe(self, records: int, seconds: float) -> int:
        """Account for a step that handled `records` messages in `seconds`; the next limit."""
        if records <= 0:
            return self.limit
        cost = max(seconds, 0.0) / records
        previous = self.seconds_per_record
        self.seconds_per_record = cost if previous is None or cost > previous else (
            previous + self.relax * (cost - previous))
        if self.seconds_per_record <= 0:
            self.limit = self.max_records
        else:
            fits = math.floor(self.budget_s / self.seconds_per_record)
            self.limit = min(self.max_records, max(fits, 1))
        return self.limit
