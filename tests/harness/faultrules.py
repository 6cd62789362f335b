"""Fault rules for the fault-injecting proxy, and what it records.

A rule is (method, path regex, action, times). For each request the proxy
takes, in the order rules were added, every matching rule that has budget
left; a *terminal* action (an answer the proxy makes up itself) ends the
selection, so later rules neither apply nor lose budget. Non-terminal actions
(stalls, header and body tampering) combine.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Respond:
    """Answer ``status`` without asking the registry (429, 5xx, 405 to HEAD…)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    retry_after: str | None = None


@dataclass(frozen=True)
class Drop:
    """Close the connection after ``after_bytes`` body bytes (headers sent
    first), or with no answer at all when ``before_headers``. ``reset`` sends
    a TCP RST instead of a clean FIN."""

    after_bytes: int = 0
    before_headers: bool = False
    reset: bool = False


@dataclass(frozen=True)
class Stall:
    """Send nothing for ``seconds``: before answering at all
    (``after_bytes=None``) or after ``after_bytes`` body bytes. Then carry on."""

    seconds: float
    after_bytes: int | None = None


@dataclass(frozen=True)
class FlipByte:
    """XOR the body byte at ``offset`` with 0xFF."""

    offset: int


@dataclass(frozen=True)
class StripHeader:
    name: str = "Docker-Content-Digest"


@dataclass(frozen=True)
class AddHeader:
    """Add a header to the registry's answer (what a newer registry would send)."""

    name: str
    value: str


@dataclass(frozen=True)
class IgnoreRange:
    """Forward without ``Range`` so the registry sends 200 and the full body."""


@dataclass(frozen=True)
class Redirect:
    """Send the client to the redirect listener (another host) for this URL;
    the listener serves the same bytes, like a CDN with signed URLs."""

    status: int = 307


Action = Respond | Drop | Stall | FlipByte | StripHeader | AddHeader | IgnoreRange | Redirect


def is_terminal(action: Action) -> bool:
    return isinstance(action, Respond | Redirect) or (
        isinstance(action, Drop) and action.before_headers
    )


@dataclass
class Rule:
    action: Action
    method: str | None = None
    path: str = ""
    times: int | None = 1  # None: every matching request, forever
    hits: int = 0
    skip: int = 0  # let this many matching requests through untouched first
    passed: int = 0

    def __post_init__(self) -> None:
        self._re = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        return self._re.search(path) is not None


@dataclass(frozen=True)
class LoggedRequest:
    """One request as received: method, path (no query), query, headers."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    actions: tuple[Action, ...] = ()

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None


@dataclass
class Recorder:
    """Thread-safe counters and logs; read them after the client is done."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    log: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, entry: LoggedRequest) -> None:
        with self.lock:
            self.requests[(entry.method, entry.path)] += 1
            self.log.append(entry)

    def sent(self, path: str, n: int) -> None:
        with self.lock:
            self.bytes_sent[path] += n

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes_sent.clear()
            self.log.clear()


class RuleBook:
    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> list[Action]:
        """The actions for one request, consuming the rules' budgets."""
        out: list[Action] = []
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.passed < rule.skip:
                        rule.passed += 1
                        continue
                    rule.hits += 1
                    out.append(rule.action)
                    if is_terminal(rule.action):
                        break
        return out
