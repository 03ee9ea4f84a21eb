"""The broker benchmark fills a partition on a real embedded broker and fetches from its tail."""

from __future__ import annotations

from har_stream.bench import broker_bench


def test_each_level_is_filled_and_fetched_side_by_side() -> None:
    levels = broker_bench.measure((3, 12), fetch_s=0.2)
    assert [lv.batches for lv in levels] == [3, 12]
    for level in levels:  # a fetch that returned nothing would not count
        assert level.grown.per_s > 0 and level.small.per_s > 0
        assert level.grown.cpu_ms >= 0 and level.produce_cpu_us >= 0
    text = broker_bench.levels_table(levels)
    assert text.splitlines()[2].startswith("| 3 | ") and text.count("\n") == 3
