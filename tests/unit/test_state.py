"""Device registry: slots, snapshot/restore round trips, eviction, foreign snapshots."""

import numpy as np
import pytest

from har_stream.core.state import DeviceRegistry, Field, StateFormatError

FIELDS = {"ring": Field((4, 3), "<f4"), "n": Field((), "<i8"), "h": Field((2,), "<f4")}


def test_slots_are_stable_reused_and_grow_past_capacity() -> None:
    reg = DeviceRegistry(FIELDS, capacity=2)
    slots = [reg.slot(f"d{i}") for i in range(10)]
    assert len(set(slots)) == 10 and reg.slot("d3") == slots[3]
    reg.arrays["n"][reg.slot("d3")] = 7
    reg.remove("d3")
    assert "d3" not in reg and len(reg) == 9
    new = reg.slot("new")
    assert new == slots[3] and reg.arrays["n"][new] == 0  # a reused slot starts zeroed


def test_snapshot_restores_exactly_into_another_registry() -> None:
    a, b = DeviceRegistry(FIELDS), DeviceRegistry(FIELDS)
    s = a.slot("dev")
    a.arrays["ring"][s] = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    a.arrays["n"][s] = 123456789
    a.arrays["h"][s] = [np.nan, -0.0]
    b.slot("other")
    b.restore("dev", a.snapshot("dev"), now_s=5.0)
    t = b.get("dev")
    assert t is not None
    for name in FIELDS:
        assert a.arrays[name][s].tobytes() == b.arrays[name][t].tobytes()
    assert b.snapshot("dev") == a.snapshot("dev")


@pytest.mark.parametrize("mangle", [
    lambda d: b"XXXX" + d[4:],
    lambda d: d[:6],
    lambda d: d[:-1],
    lambda d: d + b"\0",
])
def test_foreign_or_corrupt_snapshots_are_refused(mangle) -> None:
    reg = DeviceRegistry(FIELDS)
    reg.slot("dev")
    with pytest.raises(StateFormatError):
        reg.restore("dev", mangle(reg.snapshot("dev")))


def test_snapshot_of_other_fields_is_refused() -> None:
    other = DeviceRegistry({**FIELDS, "h": Field((3,), "<f4")})
    other.slot("dev")
    with pytest.raises(StateFormatError, match="fields differ"):
        DeviceRegistry(FIELDS).restore("dev", other.snapshot("dev"))


def test_idle_lists_devices_untouched_for_longer_than_the_ttl() -> None:
    reg = DeviceRegistry(FIELDS)
    reg.touch(np.array([reg.slot("a"), reg.slot("b")]), 100.0)
    reg.touch(reg.slots(["b"]), 150.0)
    assert reg.idle(now_s=170.0, ttl_s=60.0) == ["a"]
    assert reg.idle(now_s=170.0, ttl_s=10.0) == ["a", "b"]
