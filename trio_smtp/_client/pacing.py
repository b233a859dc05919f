"""How an :class:`~trio_smtp.SmtpPool` paces itself: backoff, concurrency limit, rate limit.

Theory of operation: a refusal that means "not now" is an *overload signal*
(:func:`connect_overload` for a session that could not be opened, :func:`overload_signal`
for a refused message).  Each one lowers the concurrency limit to the connections the server
is taking (at least one) and holds new connections back for a :class:`Backoff` delay that
doubles with each signal in a row; ``Backoff.recovery`` seconds without a signal raise the
limit by one again (:meth:`ConcurrencyLimit.recover`); the pool's leases
(:mod:`~trio_smtp._client.leasing`) consult it.  The rate limit spaces message *starts*
evenly, ``1/rate`` seconds apart, so an idle spell never saves up a burst
(:meth:`RateLimit.pace`); the pool consults it before each message.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random

import trio

from .._errors import SmtpConnectError, SmtpError, SmtpResponseError, SmtpTimeoutError

__all__ = [
    "RATE_WINDOW",
    "Backoff",
    "ConcurrencyLimit",
    "RateLimit",
    "connect_overload",
    "overload_signal",
]

#: The window over which :attr:`PoolStatistics.rate` is measured, in seconds.
RATE_WINDOW = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """How an :class:`SmtpPool` backs off when the server says "not now".

    The n-th overload signal in a row delays new connections by ``min(maximum, first *
    2**(n-1))`` seconds times a random factor between 0.5 and 1 (jitter).  A send refused by
    an overload signal is tried ``attempts`` times in all.  After ``recovery`` seconds without
    a signal the concurrency limit rises by one connection.
    """

    #: The first delay, in seconds.
    first: float = 1.0
    #: The longest delay, in seconds.
    maximum: float = 60.0
    #: Tries per send (and per connection of a batch) before the refusal is its outcome.
    attempts: int = 4
    #: Seconds without an overload signal before one more connection is allowed.
    recovery: float = 30.0

    def __post_init__(self) -> None:
        if not (self.first >= 0 and self.maximum >= self.first and self.recovery >= 0):
            raise ValueError("Backoff needs 0 <= first <= maximum and recovery >= 0")
        if self.attempts < 1:
            raise ValueError("Backoff.attempts must be at least 1")

    def delay(self, signals: int) -> float:
        """The delay after ``signals`` overload signals in a row (jittered)."""
        base = min(self.maximum, self.first * 2.0 ** min(signals - 1, 64))
        return base * random.uniform(0.5, 1.0)


class ConcurrencyLimit:
    """How many connections a pool may hold now, and until when new ones wait (backoff).

    The pool's settings (``max_connections``, its :class:`Backoff`) are passed in at each
    call, where they are used.
    """

    def __init__(self, limit: int) -> None:
        #: Connections allowed now (``max_connections`` until an overload signal).
        self.limit = limit
        self.lowered_at = -math.inf
        self.signals = 0  # overload signals in a row
        self.not_before = -math.inf  # no new connection before this (backoff)

    def lower(self, current: int, taking: int, backoff: Backoff) -> None:
        """An overload signal: the limit drops below ``current`` to the ``taking``
        connections the server holds (at least one), and new ones wait out the backoff."""
        self.signals += 1
        now = trio.current_time()
        self.limit = max(1, min(current - 1, taking))
        self.lowered_at = now
        self.not_before = max(self.not_before, now + backoff.delay(self.signals))

    def recover(self, max_connections: int, recovery: float) -> int:
        """The limit, raised by one per ``recovery`` seconds without an overload signal
        since it was lowered (up to ``max_connections``)."""
        if self.limit < max_connections:
            now = trio.current_time()
            while self.limit < max_connections and now >= self.lowered_at + recovery:
                self.limit += 1
                self.lowered_at += recovery
        return self.limit

    def next_recovery(self, max_connections: int, recovery: float) -> float:
        """When the limit may next rise (``inf`` when it is at ``max_connections``)."""
        if self.limit >= max_connections:
            return math.inf
        return self.lowered_at + recovery


class RateLimit:
    """The rate limit (message starts evenly spaced) and the rate measured over the last
    :data:`RATE_WINDOW` seconds."""

    def __init__(self, rate: float | None) -> None:
        self.per_second = rate
        self.next_start = -math.inf  # the rate limit's next slot
        self.finished: collections.deque[float] = collections.deque()

    async def pace(self) -> None:
        """Wait for this message's start: ``1/rate`` seconds after the one before."""
        if self.per_second is None:
            return
        start = max(trio.current_time(), self.next_start)
        self.next_start = start + 1.0 / self.per_second
        await trio.sleep_until(start)

    def done(self) -> None:
        """A message finished (sent or failed), for :meth:`rate`."""
        now = trio.current_time()
        self.finished.append(now)
        while self.finished and self.finished[0] <= now - RATE_WINDOW:
            self.finished.popleft()

    def rate(self) -> float:
        """Messages finished per second over the last :data:`RATE_WINDOW` seconds."""
        now = trio.current_time()
        return sum(1 for t in self.finished if t > now - RATE_WINDOW) / RATE_WINDOW


def connect_overload(error: SmtpError) -> bool:
    """A failure to open a session that means "not now": no reply (refused, reset, timed
    out) or a 4xx one (RFC 5321 §3.1: 421 at the greeting)."""
    if not isinstance(error, (SmtpConnectError, SmtpTimeoutError)):
        return False  # TLS and authentication failures do not get better by waiting
    return error.reply is None or error.reply.code // 100 == 4


def overload_signal(error: SmtpError) -> bool:
    """A refusal of a message that means "not now" and delivered nothing: 421 (the server
    closes the session, RFC 5321 §3.8) or a 4xx to MAIL (its ``command``)."""
    if not isinstance(error, SmtpResponseError) or error.reply is None:
        return False
    code = error.reply.code
    return code == 421 or (code // 100 == 4 and error.command == "MAIL")
