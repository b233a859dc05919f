"""Per-phase deadlines and the one mapping of errors into SmtpErrors, for the driver.

Theory of operation: RFC 5321 §4.5.3.2 gives each phase of a session its own time limit,
covering the whole reply rather than each read.  There is one mechanism: a :class:`Phases`
scope -- a ``trio.CancelScope`` entered once, for a whole transaction of in-memory data, for
a session's handshake, or for one step outside them (:func:`deadline`) -- records the
deadline of its current phase (:meth:`Phases.arm`, an assignment), and the run's one
:class:`Watchdog` task cancels a scope whose phase is past its deadline.  No Trio deadline
is moved per phase, and no scope sets one of its own.  Every budget of
:class:`~trio_smtp.Timeouts` goes through it, the waits while streamed data is watched and
QUIT's included; only waits that are no phase keep a plain Trio scope (a readable TLS
socket's few milliseconds for a record, the local host name lookup before EHLO, closing a
file after a send, design rule 9).  Only these scopes' own cancellations are caught: a
user's cancel scope, and ``send_async_cancel``, pass through untouched.  :class:`map_errors`
is the single place where Trio, ``ssl`` and protocol-core errors become the library's.
"""

from __future__ import annotations

import errno
import math
import re
import socket
import ssl
from collections.abc import Callable
from types import TracebackType

import trio

from .._errors import (
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpProtocolError,
    SmtpTimeoutError,
    SmtpTlsError,
)
from ..protocol import RemoteProtocolError

__all__ = [
    "Phases",
    "Watchdog",
    "connect_error",
    "deadline",
    "map_errors",
    "mapped_error",
    "timeout_error",
]


def timeout_error(
    error: type[SmtpTimeoutError], seconds: float | None, what: str
) -> SmtpTimeoutError:
    limit = "?" if seconds is None else f"{seconds:g}"  # 30 s, not 30.0 s
    text = f"timed out after {limit} s waiting for {what}"
    if issubclass(error, SmtpDeliveryUnknownError):
        text += "; the message may have been delivered"
    return error(text)


def deadline(
    seconds: float | None,
    what: str,
    error: type[SmtpTimeoutError] = SmtpTimeoutError,
    *,
    shield: bool = False,
) -> Phases:
    """``with deadline(seconds, what):`` fails with :class:`SmtpTimeoutError` (or ``error``)
    when ``what`` takes longer than ``seconds`` (None: no limit): a :class:`Phases` scope
    with one phase, armed now.  ``shield``: a shielded scope (design rule 9's cleanups),
    rather than a shielded scope around this one."""
    phases = Phases(shield=shield)
    phases.arm(seconds, what, error)
    return phases


#: The watchdog of the current Trio run (see :meth:`Watchdog.current`).
_RUN_WATCHDOG: trio.lowlevel.RunVar[Watchdog] = trio.lowlevel.RunVar("trio_smtp.watchdog")


class Watchdog:
    """The one enforcer of every :class:`Phases` deadline: one system task per Trio run.

    Starting a phase is an assignment (:meth:`Phases.arm`), not a move of a Trio deadline,
    which costs about 3 us (Trio re-files it in its deadline heap; a small message in
    ``send`` has three phases and its scope, ``send_many`` two): measured with
    ``bench/client_cpu.py``, moving the deadline per phase instead cost 8.5 us per message
    in the ``send`` loop (93.6 -> 102.1 us) and 7.8 us in ``send_many`` (66.6 -> 74.4 us).

    The watchdog sleeps until a wake-up time never later than the deadline of any open
    :class:`Phases` scope.  When it wakes it cancels the scopes whose current phase is past
    its deadline and sleeps until the earliest of the others.  Only a phase whose deadline
    is *earlier* than the wake-up time moves the wake-up (a Trio deadline again), and
    budgets are minutes long, so that happens about once per budget, not once per phase.
    A deadline that passed just as its phase completed does not fire: the next phase has
    already replaced it (:meth:`Phases.arm` reports one that fired meanwhile).

    It is a system task (``trio.lowlevel.spawn_system_task``), started by the first scope
    of the run: it needs no nursery of the caller's, so a transport used on its own, a
    client, a pool and the session's own steps all share it, and it outlives every scope it
    watches (system tasks are cancelled only once the run's main task has returned).
    """

    __slots__ = ("_alarm", "_wake", "_watched")

    def __init__(self) -> None:
        self._wake = math.inf  # when the watchdog wakes; <= every watched deadline
        self._alarm: trio.CancelScope | None = None  # the watchdog's sleep
        self._watched: set[Phases] = set()  # the open scopes

    @staticmethod
    def current() -> Watchdog:
        """The watchdog of the current Trio run, started on first use."""
        try:
            return _RUN_WATCHDOG.get()
        except LookupError:  # the run's first scope
            watchdog = Watchdog()
            _RUN_WATCHDOG.set(watchdog)
            trio.lowlevel.spawn_system_task(watchdog._run, name="trio_smtp deadlines")
        return watchdog

    async def _run(self) -> None:
        while True:  # until the run ends (its system tasks are cancelled then)
            with trio.CancelScope(deadline=self._wake) as alarm:
                self._alarm = alarm
                await trio.sleep_forever()
            self._alarm = None
            now = trio.current_time()
            wake = math.inf
            for phases in list(self._watched):
                when = phases.expire_by(now)
                if when < wake:
                    wake = when
            self._wake = wake

    def watch(self, phases: Phases) -> None:
        """Enforce ``phases``' deadlines from now on (its scope is entered)."""
        self._watched.add(phases)

    def forget(self, phases: Phases) -> None:
        """``phases``' scope is left: nothing more to enforce."""
        self._watched.discard(phases)

    def armed(self, when: float) -> None:
        """A phase must be over by ``when`` (Trio time): wake up no later than that."""
        if when < self._wake:
            self._wake = when
            if self._alarm is not None:
                self._alarm.deadline = when


class Phases:
    """``with transport.phases():`` one cancel scope for a whole transaction, armed again
    at each phase instead of a scope per read and write.

    Each phase (a write, or a reply that is not already buffered) still gets its own budget
    from :class:`~trio_smtp.Timeouts`, covering the whole write or reply (RFC 5321
    §4.5.3.2): :meth:`arm` records ``now + budget`` and what is awaited, so an expiry is
    reported as the same :class:`SmtpTimeoutError` a per-phase scope would raise
    (``SmtpDeliveryTimeoutError`` for the reply to the end of data).  The run's
    :class:`Watchdog` enforces it; the scope's own Trio deadline is never set.  Entering
    and leaving a ``trio.CancelScope`` costs about three times as much as moving a
    deadline, and a small message has three phases.

    Only this scope's cancellation is caught, so a user's cancel scope and
    ``send_async_cancel`` behave exactly as before: their Cancelled passes through.  One
    difference from a scope per phase is handled in :meth:`arm`: a deadline that expired just
    as its phase completed (the reply and the expiry in the same scheduler tick) leaves this
    scope cancelled; the next phase then reports the previous one as timed out instead of
    failing later under the wrong name.  Streamed bodies do not use it (their source's reads
    are not phases): :meth:`Transport.send_stream` suspends it.

    ``register`` is told this object on entry and None on exit: the transport that made it
    (:meth:`Transport.phases`) arms it from then on instead of opening a scope per phase.
    Entering it again while it is open (the transport's reads and writes inside the
    transaction) only counts: the scope is entered and left once, by the outermost ``with``.
    """

    __slots__ = (
        "_depth",
        "_error",
        "_expired",
        "_register",
        "_scope",
        "_seconds",
        "_watchdog",
        "_what",
        "_when",
    )

    def __init__(
        self,
        register: Callable[[Phases | None], None] | None = None,
        watchdog: Watchdog | None = None,
        *,
        shield: bool = False,
    ) -> None:
        self._depth = 0
        self._expired = False  # the watchdog cancelled the scope
        self._register = register
        self._scope = trio.CancelScope(shield=shield)
        self._seconds: float | None = None
        self._what = "the transaction"
        self._error: type[SmtpTimeoutError] = SmtpTimeoutError
        self._when = math.inf  # the current phase's deadline (Trio time)
        #: The run's (:meth:`Watchdog.current`); a transport passes the one it looked up.
        self._watchdog = watchdog if watchdog is not None else Watchdog.current()

    def __enter__(self) -> Phases:
        self._depth += 1
        if self._depth > 1:
            return self  # a phase inside the open scope: armed by the caller
        self._scope.__enter__()
        if self._register is not None:
            self._register(self)
        self._watchdog.watch(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth:
            return  # the outermost exit turns this scope's own Cancelled into the timeout
        if self._register is not None:
            self._register(None)
        self._watchdog.forget(self)
        self._scope.__exit__(exc_type, exc, tb)  # swallows only its own Cancelled
        if self._scope.cancelled_caught:
            raise timeout_error(self._error, self._seconds, self._what) from None

    def arm(self, seconds: float | None, what: str, error: type[SmtpTimeoutError]) -> None:
        """Start a phase: ``what`` must complete within ``seconds`` (None: no limit)."""
        if self._expired:  # the previous phase's deadline passed as it completed
            raise timeout_error(self._error, self._seconds, self._what)
        self._seconds, self._what, self._error = seconds, what, error
        if seconds is None:
            self._when = math.inf
        else:
            self._when = when = trio.current_time() + seconds
            self._watchdog.armed(when)

    def expire_by(self, now: float) -> float:
        """For the :class:`Watchdog`: cancel the scope if the current phase's deadline is
        ``now`` or earlier; the deadline still to watch (inf: none)."""
        if self._when <= now:
            self._when = math.inf
            self._expired = True
            self._scope.cancel()
        return self._when


class map_errors:
    """The one place where Trio, ssl and protocol-core errors become SmtpErrors.

    ``tls`` is True during STARTTLS and the handshake: then a broken connection or a
    protocol violation (bytes injected after the 220, RFC 3207 §5) is an SmtpTlsError.
    ``connect_to`` names the peer while connecting: an ``OSError`` then becomes the
    :class:`SmtpConnectError` of :func:`connect_error`, which says what happened.
    """

    __slots__ = ("_connect_to", "_tls", "_what")

    def __init__(self, what: str, *, tls: bool = False, connect_to: str | None = None) -> None:
        self._what = what
        self._tls = tls
        self._connect_to = connect_to

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        connecting = self._connect_to is not None
        if connecting and isinstance(exc, OSError) and not isinstance(exc, SmtpError):
            raise connect_error(exc, str(self._connect_to)) from exc
        error = mapped_error(exc, self._what, tls=self._tls)
        if error is not None:
            raise error from exc


def mapped_error(exc: BaseException, what: str, *, tls: bool = False) -> SmtpError | None:
    """The SmtpError that ``exc`` becomes (see :class:`map_errors`), or None when it stays
    as it is (already an SmtpError, Cancelled, a bug).  For hot paths that catch instead of
    entering a context manager."""
    if isinstance(exc, SmtpError):
        return None
    if isinstance(exc, RemoteProtocolError):
        error_class = SmtpTlsError if tls else SmtpProtocolError
        return error_class(f"the server broke the protocol during {what}: {exc}")
    if isinstance(exc, ssl.SSLError):  # before OSError: SSLError is one
        return SmtpTlsError(f"TLS failed during {what}: {exc}")
    if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError, OSError)):
        # Trio wraps ssl errors in BrokenResourceError.  Outside the handshake they mean
        # a lost connection (a ragged EOF, a reset), not a failure of TLS itself.
        if tls:
            return SmtpTlsError(f"TLS failed during {what}: {exc.__cause__ or exc}")
        return SmtpConnectError(f"connection lost during {what}: {exc or type(exc).__name__}")
    return None


#: What each errno means to a person who typed a host and a port.
_CONNECT_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timed out (no answer from the host)",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ECONNRESET: "connection reset by the peer",
    errno.EADDRNOTAVAIL: "address not available",
    errno.ENOENT: "no such socket file",
    errno.EACCES: "permission denied",
}
# Trio's "Error connecting to ('127.0.0.1', 25): ..." is the only place the address is named.
_ADDRESS = re.compile(r"connecting to \('([^']*)', (\d+)")


def connect_error(exc: OSError, peer: str) -> SmtpConnectError:
    """The :class:`SmtpConnectError` for a failed connect to ``peer`` (``host:port`` or a
    socket path): what happened (refused, unreachable, timed out, name not found) and the
    address of each attempt, e.g. ``cannot connect to localhost:8026: connection refused
    (tried ::1 port 8026, 127.0.0.1 port 8026)``.

    ``trio.open_tcp_stream`` raises one ``OSError`` whose ``__cause__`` groups one error per
    address tried (RFC 8305); a name that does not resolve is a ``socket.gaierror``.  The
    error's ``errno`` is the attempts' errno when they agree (``errno.ECONNREFUSED``...).
    """
    if isinstance(exc, socket.gaierror):
        reason = (
            "host name not found"
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
            else "host name lookup failed"
        )
        return SmtpConnectError(f"cannot connect to {peer}: {reason} ({exc.strerror})")
    grouped = getattr(exc.__cause__, "exceptions", None)  # an ExceptionGroup (3.10: backport)
    attempts: list[BaseException] = list(grouped) if grouped else [exc]
    reasons: list[str] = []
    tried: list[str] = []
    codes: set[int | None] = set()
    for attempt in attempts:
        code = getattr(attempt, "errno", None)
        codes.add(code)
        text = _CONNECT_REASONS.get(code) if code is not None else None
        text = text or getattr(attempt, "strerror", None) or str(attempt)
        if text not in reasons:
            reasons.append(text)
        found = _ADDRESS.search(str(attempt))
        if found:
            tried.append(f"{found[1]} port {found[2]}")
    # The addresses tried, unless the only one is what the user typed ("host:port", maybe
    # followed by " from SOURCE").
    target = peer.partition(" from ")[0]
    plain = [f"{target.rpartition(':')[0].strip('[]')} port {target.rpartition(':')[2]}"]
    detail = f" (tried {', '.join(tried)})" if tried and tried != plain else ""
    error = SmtpConnectError(f"cannot connect to {peer}: {'; '.join(reasons)}{detail}")
    if len(codes) == 1:
        error.errno = codes.pop()
    return error
