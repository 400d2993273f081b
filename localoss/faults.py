"""What the server does wrong on purpose: random faults, and exact rules a test names."""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field

# --- faults --------------------------------------------------------------------------------


ERROR_CODES = {
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    403: "AccessDenied",
    429: "Throttled",
}


@dataclass
class FaultRule:
    """One exact fault. The requests it matches: `method` ("*" for any), `key` (a glob on the object
    key), `operation` (an operation name such as put_object; "" for any). It lets the first `skip`
    matches through, then acts on the next `count` (None: on every later one): a delay of `delay_s`,
    then either an OSS error with HTTP `status`, or the connection cut after `reset_after` bytes
    of the response body (closed: every byte sent arrives, then the body ends short), or with 0 reset
    (a TCP RST) before any byte of it, with half the request body read.

    As a CLI flag: `METHOD KEYGLOB [op=NAME] [skip=N] [count=N|all] [delay=S] [status=N] [reset-after=N]`,
    e.g. `--fault "PUT */index.html count=all status=503"` or `--fault "* * skip=34 count=1 reset-after=0"`.
    """

    method: str = "*"
    key: str = "*"
    operation: str = ""
    skip: int = 0
    count: int | None = 1
    delay_s: float = 0.0
    status: int = 0
    reset_after: int | None = None
    matched: int = field(default=0, compare=False)

    @classmethod
    def parse(cls, text: str) -> FaultRule:
        words = text.split()
        if len(words) < 2:
            raise ValueError(f"a fault rule is METHOD KEYGLOB [name=value ...], got {text!r}")
        rule = cls(method=words[0].upper(), key=words[1])
        for word in words[2:]:
            name, _, value = word.partition("=")
            if name == "op":
                rule.operation = value
            elif name == "skip":
                rule.skip = int(value)
            elif name == "count":
                rule.count = None if value == "all" else int(value)
            elif name == "delay":
                rule.delay_s = float(value)
            elif name == "status":
                rule.status = int(value)
            elif name == "reset-after":
                rule.reset_after = int(value)
            else:
                raise ValueError(f"unknown fault rule setting {name!r} in {text!r}")
        if not rule.status and rule.reset_after is None and not rule.delay_s:
            raise ValueError(f"a fault rule needs status=, reset-after= or delay=: {text!r}")
        return rule

    def matches(self, method: str, key: str, operation: str) -> bool:
        return self.method in ("*", method) and fnmatch.fnmatchcase(key, self.key) and self.operation in ("", operation)


@dataclass
class Faults:
    """What the server does wrong on purpose, per request, for retry tests.

    error_rate: fraction answered 500/503; reset_rate: fraction whose connection is reset
    mid-body; corrupt_rate: fraction whose body is altered in flight (one byte flipped);
    latency_s: added before every request; only: operation names to apply faults to (empty: all);
    rules: exact faults (FaultRule), the first that fires wins.
    """

    error_rate: float = 0.0
    reset_rate: float = 0.0
    corrupt_rate: float = 0.0
    latency_s: float = 0.0
    only: frozenset[str] = frozenset()
    seed: int | None = None
    rules: list[FaultRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def fire(self, method: str, key: str, operation: str) -> FaultRule | None:
        """The rule that acts on this request, if any (counting the match)."""
        with self._lock:
            for rule in self.rules:
                if not rule.matches(method, key, operation):
                    continue
                rule.matched += 1
                nth = rule.matched - rule.skip
                if nth >= 1 and (rule.count is None or nth <= rule.count):
                    return rule
            return None

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate
