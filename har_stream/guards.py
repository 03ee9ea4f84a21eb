"""Limits that hold under hostile input: devices per process and per-device sample rate.

`DeviceLimit`: each device costs a fixed amount of state (about 5 KB), so the number of
devices bounds memory. Messages of a device beyond the limit go to the dead-letter topic with
reason `too_many_devices` instead of growing the registry until the process is killed for
lack of memory; devices already held are unaffected, and idle eviction frees room.

`RateGuard`: a device cannot record faster than 50 Hz, so one whose samples arrive much
faster is misconfigured, replayed, or forged. Arrival is measured on the records' broker
timestamps (not the consumer's clock, which races ahead while a backlog is read): a token
bucket per device refills at `rate_hz * factor` samples per second of record time and holds
one full message of burst. A device that overdraws it is flagged (metric
`har_devices_rate_flagged_total`, reason `rate_exceeded` in the log), at most once per
`flag_period_s`; its data is still processed, since nothing is known to be wrong with it.
Record timestamps are set by the producer unless the topic uses `LogAppendTime`; use that
setting when devices are not trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Container

from har_stream.core.logsafe import escape
from har_stream.service import metrics

log = logging.getLogger(__name__)

TOO_MANY_DEVICES = "too_many_devices"
RATE_EXCEEDED = "rate_exceeded"
APP_REASONS = (TOO_MANY_DEVICES,)
"""Dead-letter reasons decided by the service rather than the codec."""


class DeviceLimit:
    """Admits a new device only while fewer than `max_devices` have state (0: no limit)."""

    def __init__(self, max_devices: int) -> None:
        self.max_devices = max_devices
        self._admitted: set[str] = set()  # new devices admitted since `reset`

    def admit(self, device_id: str, known: Container[str], held: int) -> bool:
        """True when the device has state already or there is room for one more."""
        if self.max_devices <= 0 or device_id in known or device_id in self._admitted:
            return True
        if held + len(self._admitted) >= self.max_devices:
            return False
        self._admitted.add(device_id)
        return True

    def reset(self) -> None:
        """Forget the admissions of a step (its devices are in the registry now)."""
        self._admitted.clear()


class RateGuard:
    """Flags devices whose samples arrive far above their sampling rate (see the module doc)."""

    def __init__(self, rate_hz: float, factor: float, burst_samples: int,
                 flag_period_s: float = 60.0) -> None:
        self.enabled = factor > 0
        self.limit_hz = rate_hz * factor
        self.burst = float(burst_samples)
        self.flag_period_ms = flag_period_s * 1000.0
        self._buckets: dict[str, list[float]] = {}  # -> [tokens, last ts ms, flagged at ms]
        self._recent: list[str] = []

    def observe(self, device_id: str, samples: int, ts_ms: int) -> bool:
        """Account for one message; True when it makes the device flagged."""
        if not self.enabled or ts_ms <= 0:
            return False
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = [self.burst, float(ts_ms), -1e300]
        elapsed_s = max(ts_ms - bucket[1], 0.0) / 1000.0
        bucket[0] = min(self.burst, bucket[0] + elapsed_s * self.limit_hz) - samples
        bucket[1] = max(bucket[1], float(ts_ms))
        if bucket[0] >= 0:
            return False
        bucket[0] = 0.0
        if ts_ms - bucket[2] < self.flag_period_ms:
            return False
        bucket[2] = float(ts_ms)
        metrics.DEVICES_RATE_FLAGGED.inc()
        if len(self._recent) < 1000:
            self._recent.append(device_id)
        return True

    def report(self) -> list[str]:
        """Log the devices flagged since the last report, in one line; them."""
        flagged, self._recent = self._recent, []
        if flagged:
            shown = ", ".join(escape(d, 64) for d in flagged[:5])
            log.warning("%s: %d device(s) sent samples faster than %g Hz (e.g. %s)",
                        RATE_EXCEEDED, len(flagged), self.limit_hz, shown)
        return flagged

    def prune(self, keep: Container[str]) -> None:
        """Forget devices not in `keep` (evicted or moved away), so memory stays bounded."""
        for device_id in [d for d in self._buckets if d not in keep]:
            del self._buckets[device_id]
