"""Messages a device holds back until their predecessors arrive, kept only for devices that
hold something.

A held message is rare (a message overtaken by its successor), so held samples do not live
in fixed per-device registry fields (those cost 41 bytes per sample of allowance for every
device, in memory and in every snapshot, 10.5 KB at the default 256) but in a dict of the
devices that hold something. The store is attached to the device registry
(`DeviceRegistry.attach`): a device's held messages are part of its snapshot, come back
with `restore` and go with `remove` (eviction, partition loss), so slot reuse cannot hand
them to another device.

Bounded: the sequence checks hold a message only when it lies within
[expected, expected + allowance) of its device's stream, and a sample held twice replaces
the first copy, so a device holds at most `allowance` samples in at most `allowance`
pieces, whatever the input.

Snapshot bytes of one device (little-endian): u32 allowance | u32 pieces | per piece, in
seq order: i8 seq, i8 t0_ms, i8 record_ts, u32 samples, samples × RAW f4.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

import numpy as np

from har_stream.core.records import SAMPLE_PERIOD_MS
from har_stream.core.signal import RAW
from har_stream.core.state import StateFormatError

PERIOD_MS = int(SAMPLE_PERIOD_MS)
_HEAD = struct.Struct("<II")
_PIECE = struct.Struct("<qqqI")
_SAMPLE_BYTES = RAW * 4


@dataclass(slots=True)
class HeldPiece:
    """Consecutive held samples of one message (or of what a later copy left of it)."""

    seq: int  # seq of the first sample
    t0_ms: int  # time its message gives the first sample
    samples: np.ndarray  # float32 (n, RAW), n >= 1
    record_ts: int  # broker timestamp of its message

    @property
    def end(self) -> int:
        return self.seq + len(self.samples)

    def cut(self, start: int, stop: int) -> HeldPiece:
        """The part of seqs [start, stop) (within this piece)."""
        a, b = start - self.seq, stop - self.seq
        return HeldPiece(start, self.t0_ms + a * PERIOD_MS, self.samples[a:b], self.record_ts)


class Held:
    """One device's held pieces: seq-sorted, never overlapping."""

    __slots__ = ("count", "pieces")

    def __init__(self, pieces: list[HeldPiece] | None = None) -> None:
        self.pieces = pieces or []
        self.count = sum(len(p.samples) for p in self.pieces)  # samples held

    def put(self, seq: int, t0_ms: int, samples: np.ndarray, record_ts: int) -> int:
        """Hold a message's samples (a copy); how many were held already (duplicates,
        replaced by these)."""
        again = self.drop(seq, seq + len(samples))
        piece = HeldPiece(seq, t0_ms, np.array(samples, np.float32), record_ts)
        at = bisect.bisect(self.pieces, seq, key=lambda p: p.seq)
        self.pieces.insert(at, piece)
        self.count += len(samples)
        return again

    def drop(self, start: int, stop: int) -> int:
        """Forget held samples of seqs [start, stop) (the stream has them); how many."""
        if stop <= start or not self.count:
            return 0
        kept: list[HeldPiece] = []
        dropped = 0
        for p in self.pieces:
            if p.end <= start or p.seq >= stop:
                kept.append(p)
                continue
            dropped += min(p.end, stop) - max(p.seq, start)
            if p.seq < start:
                kept.append(p.cut(p.seq, start))
            if p.end > stop:
                kept.append(p.cut(stop, p.end))
        self.pieces = kept
        self.count -= dropped
        return dropped

    def first(self) -> int:
        """The smallest held seq."""
        return self.pieces[0].seq

    def holds(self, seq: int) -> bool:
        """Whether the sample `seq` is held, `seq` being the expected one (no held seq is
        smaller: the stream's samples are dropped from what is held)."""
        return bool(self.pieces) and self.pieces[0].seq == seq

    def take_run(self, seq: int) -> list[HeldPiece]:
        """Remove and return the consecutive held pieces from `seq` (a held piece's start) on."""
        pieces, end, i = self.pieces, seq, 0
        while i < len(pieces) and pieces[i].seq == end:
            end = pieces[i].end
            i += 1
        run, self.pieces = pieces[:i], pieces[i:]
        self.count -= end - seq
        return run


class HeldMessages:
    """Every device's held pieces, by device id; a registry store (`DeviceRegistry.attach`)."""

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self._by_device: dict[str, Held] = {}

    def __len__(self) -> int:
        """Devices holding something."""
        return len(self._by_device)

    def device_ids(self) -> list[str]:
        return list(self._by_device)

    def of(self, device_id: str) -> Held:
        """The device's held pieces, to change in place; `settle` after changing them."""
        held = self._by_device.get(device_id)
        return Held() if held is None else held

    def settle(self, device_id: str, held: Held) -> None:
        """Keep `held` for the device while it holds something, else forget the device."""
        if held.count:
            self._by_device[device_id] = held
        else:
            self._by_device.pop(device_id, None)

    # --- the registry's store interface -------------------------------------------------------

    def dump(self, device_id: str) -> bytes:
        held = self._by_device.get(device_id)
        if held is None:
            return b""
        parts = [_HEAD.pack(self.allowance, len(held.pieces))]
        for p in held.pieces:
            parts += [_PIECE.pack(p.seq, p.t0_ms, p.record_ts, len(p.samples)),
                      p.samples.astype("<f4", copy=False).tobytes()]
        return b"".join(parts)

    def load(self, device_id: str, data: bytes) -> None:
        """Replace the device's held pieces with dumped ones; StateFormatError (and no change)
        if they are corrupt or were held under another allowance."""
        held = Held(self._decode(data)) if data else Held()
        self.settle(device_id, held)

    def drop(self, device_id: str) -> None:
        self._by_device.pop(device_id, None)

    def nbytes(self) -> int:
        """Bytes of the held samples."""
        return sum(p.samples.nbytes for h in self._by_device.values() for p in h.pieces)

    def _decode(self, data: bytes) -> list[HeldPiece]:
        if len(data) < _HEAD.size:
            raise StateFormatError("truncated held messages")
        allowance, count = _HEAD.unpack_from(data)
        if allowance != self.allowance:
            raise StateFormatError(f"messages held with reorder allowance {allowance}, "
                                   f"this service's is {self.allowance}")
        pieces: list[HeldPiece] = []
        offset = _HEAD.size
        for _ in range(count):
            if offset + _PIECE.size > len(data):
                raise StateFormatError("truncated held messages")
            seq, t0_ms, record_ts, n = _PIECE.unpack_from(data, offset)
            offset += _PIECE.size
            size = n * _SAMPLE_BYTES
            if n < 1 or offset + size > len(data) or (pieces and seq < pieces[-1].end):
                raise StateFormatError("corrupt held messages")
            samples = np.frombuffer(data, "<f4", n * RAW, offset).reshape(n, RAW).copy()
            pieces.append(HeldPiece(seq, t0_ms, samples, record_ts))
            offset += size
        if offset != len(data) or not pieces or pieces[-1].end - pieces[0].seq > allowance:
            raise StateFormatError("corrupt held messages")
        return pieces
