"""Per-device state held in slot arrays, so a step can gather and scatter many devices at once.

Each device owns one slot (row) in every field array. Fields are declared by the stages
that use them (filters, ring buffer, model state, counts), so this registry knows nothing
about signal processing or models. A device's state serialises to bytes with `snapshot`
and comes back with `restore`: that one mechanism serves crash recovery, rebalances
(state moves with partitions) and idle eviction.

Snapshot format: b"HARS" | u32 header length | JSON header (field name, dtype, shape) |
the fields' raw little-endian bytes in header order. No pickle: restoring foreign bytes
can fail with `StateFormatError` but cannot execute anything.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MAGIC = b"HARS"
_GROWTH = 1.5


class StateFormatError(ValueError):
    """A snapshot does not match this registry's fields (other version or corrupt bytes)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One per-device array: its shape per device and its dtype."""

    shape: tuple[int, ...]
    dtype: str  # numpy dtype string, little-endian, e.g. "<f4"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


class DeviceRegistry:
    """Slot arrays for every device, a name → slot map, and a last-seen clock for eviction."""

    def __init__(self, fields: Mapping[str, Field], capacity: int = 256) -> None:
        self.fields = dict(fields)
        self._header = self._encode_header()
        self._layout: list[tuple[str, int, int]] = []  # each field: (name, start, end) in a body
        offset = 0
        for name, spec in self.fields.items():
            self._layout.append((name, offset, offset + spec.nbytes))
            offset += spec.nbytes
        self._body_size = offset
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._capacity = 0
        self._min_capacity = max(capacity, 1)
        self.arrays: dict[str, np.ndarray] = {}
        self.last_seen = np.zeros(0, np.float64)
        self._grow(max(capacity, 1))

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._slots

    def device_ids(self) -> list[str]:
        return list(self._slots)

    def get(self, device_id: str) -> int | None:
        """The device's slot, or None for a device without state."""
        return self._slots.get(device_id)

    def slot(self, device_id: str) -> int:
        """The device's slot, allocating a zeroed one for a new device."""
        slot = self._slots.get(device_id)
        if slot is None:
            if not self._free:
                self._grow(int(self._capacity * _GROWTH) + 1)
            slot = self._free.pop()
            for array in self.arrays.values():
                array[slot] = 0
            self._slots[device_id] = slot
        return slot

    def slots(self, device_ids: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._slots[d] for d in device_ids), np.int64)

    def find(self, device_ids: Sequence[str]) -> np.ndarray:
        """Slots of `device_ids`, -1 for devices without state (one dict lookup each)."""
        get = self._slots.get
        return np.fromiter((get(d, -1) for d in device_ids), np.int64, len(device_ids))

    def remove(self, device_id: str) -> None:
        slot = self._slots.pop(device_id, None)
        if slot is not None:
            self._free.append(slot)

    def shrink(self) -> bool:
        """Give memory back once at most a quarter of the slots are in use; True if it did.

        Every device moves to the lowest slots of arrays sized for twice the devices held (at
        least the initial capacity), so after a wave of devices went idle and was evicted the
        memory returns (large numpy arrays go back to the OS when freed). Slot numbers change:
        call it between steps, never while a caller holds slots (the service calls it after
        evicting or dropping devices).
        """
        used = len(self._slots)
        if self._capacity <= self._min_capacity or 4 * used > self._capacity:
            return False
        capacity = max(self._min_capacity, 2 * used)
        devices = list(self._slots)
        old = np.fromiter(self._slots.values(), np.int64, used)
        for name, array in self.arrays.items():
            shrunk = np.zeros((capacity, *array.shape[1:]), array.dtype)
            shrunk[:used] = array[old]
            self.arrays[name] = shrunk
        seen = np.zeros(capacity, np.float64)
        seen[:used] = self.last_seen[old]
        self.last_seen = seen
        self._slots = dict(zip(devices, range(used), strict=True))
        self._free = list(range(capacity - 1, used - 1, -1))
        self._capacity = capacity
        return True

    @property
    def capacity(self) -> int:
        """Slots allocated (held devices plus free slots)."""
        return self._capacity

    def nbytes(self) -> int:
        """Bytes held by the slot arrays."""
        return sum(a.nbytes for a in self.arrays.values()) + self.last_seen.nbytes

    def touch(self, slots: np.ndarray, now_s: float) -> None:
        self.last_seen[slots] = now_s

    def idle(self, now_s: float, ttl_s: float) -> list[str]:
        """Devices not touched for more than `ttl_s` seconds."""
        limit = now_s - ttl_s
        return [d for d, s in self._slots.items() if self.last_seen[s] < limit]

    def snapshot(self, device_id: str) -> bytes:
        slot = self._slots[device_id]
        body = b"".join(self.arrays[name][slot].tobytes() for name in self.fields)
        return MAGIC + struct.pack("<I", len(self._header)) + self._header + body

    def restore(self, device_id: str, data: bytes, now_s: float = 0.0) -> None:
        """Replace the device's state with a snapshot; raises StateFormatError if foreign."""
        header, body = self._split(data)
        if header != self._header:
            raise StateFormatError("snapshot fields differ from this registry's fields")
        if len(body) != self._body_size:
            raise StateFormatError(f"snapshot body has {len(body)} bytes, "
                                   f"expected {self._body_size}")
        slot = self.slot(device_id)
        for name, start, end in self._layout:
            array = self.arrays[name]
            array[slot] = np.frombuffer(body, array.dtype, offset=start,
                                        count=(end - start) // array.itemsize
                                        ).reshape(array.shape[1:])
        self.last_seen[slot] = now_s

    def nbytes_per_device(self) -> int:
        return self._body_size + self.last_seen.itemsize

    def _encode_header(self) -> bytes:
        spec = [[n, np.dtype(f.dtype).str, list(f.shape)] for n, f in self.fields.items()]
        return json.dumps(spec, separators=(",", ":")).encode()

    @staticmethod
    def _split(data: bytes) -> tuple[bytes, bytes]:
        if len(data) < 8 or data[:4] != MAGIC:
            raise StateFormatError("not a har-stream state snapshot")
        (size,) = struct.unpack_from("<I", data, 4)
        if 8 + size > len(data):
            raise StateFormatError("truncated snapshot header")
        return bytes(data[8:8 + size]), bytes(data[8 + size:])

    def _grow(self, capacity: int) -> None:
        for name, spec in self.fields.items():
            grown = np.zeros((capacity, *spec.shape), spec.dtype)
            if name in self.arrays:
                grown[: self._capacity] = self.arrays[name]
            self.arrays[name] = grown
        seen = np.zeros(capacity, np.float64)
        seen[: self._capacity] = self.last_seen
        self.last_seen = seen
        self._free.extend(range(capacity - 1, self._capacity - 1, -1))
        self._capacity = capacity
