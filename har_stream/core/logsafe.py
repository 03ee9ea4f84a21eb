"""Log hygiene: values from the outside escaped and cut, and a flood of client warnings thinned.

Device ids, keys and broker error texts can hold anything a sender chose, including line breaks
and terminal escapes that would forge log lines (`escape`). Secret values never reach the
output, whoever logs them (`SecretFilter`). While the broker is down the Kafka
client logs the same warning several times a second; `RepeatFilter` lets one through per
period per message template and says how many it held back, so the service's own lines
("lost the connection to Kafka ...") stay readable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

MAX_CHARS = 200


def escape(value: object, limit: int = MAX_CHARS) -> str:
    """`value` as one line of printable ASCII of at most `limit` characters: odd characters
    escaped (`\\x1b`, `\\u202e`), a longer text cut with its length said. The one escaper
    of outside values, for log lines and for Kafka headers alike."""
    text = value if isinstance(value, str) else str(value)
    if not (text.isascii() and text.isprintable()):
        text = "".join(c if c.isascii() and c.isprintable() else _escaped(c)
                       for c in text[:limit + 1]) + ("x" if len(text) > limit + 1 else "")
    if len(text) <= limit:
        return text
    suffix = f"... ({len(value if isinstance(value, str) else str(value))} characters)"
    return text[:max(limit - len(suffix), 0)] + suffix[:limit]


def _escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else (
        f"\\U{code:08x}")


class RepeatFilter(logging.Filter):
    """Passes the first record of each (logger, template) per `period_s`, then a count.

    Only records of loggers under `prefix` are thinned; everything else passes untouched.
    """

    def __init__(self, prefix: str = "kafka", period_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix = prefix
        self.period_s = period_s
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], list[float]] = {}  # -> [window start, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.period_s:
                seen[1] += 1
                return False
            held = int(seen[1]) if seen is not None else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > 1000:  # templates are few; never let this grow
                self._seen = {key: self._seen[key]}
        if held:
            record.msg = f"{record.msg} ({held} similar messages in the last " \
                         f"{self.period_s:g} s not shown)"
        return True


class SecretFilter(logging.Filter):
    """Replaces every occurrence of the given secret values in a record's text by '***'.

    The service never logs a secret itself (settings print masked), but a library may: the
    Kafka admin client logs its whole configuration, passwords included, at DEBUG. Installed
    on the handlers, this holds whatever level a logger is set to.
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if any(secret in text for secret in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, ()
        return True
