"""Per-phase deadlines and the one mapping of errors into SmtpErrors, for the driver.

Theory of operation: RFC 5321 §4.5.3.2 gives each phase of a session its own time limit,
covering the whole reply rather than each read.  There is one mechanism, :class:`Phases`: a
``trio.CancelScope`` entered once -- for a whole transaction of in-memory data, or for one
read or write outside it (:func:`deadline`) -- whose deadline is armed again at each phase
(moving a deadline costs a third of entering a scope).  A client's :class:`Watchdog` only
changes *how* an armed deadline is enforced (it is not even moved).  Only these scopes' own
deadlines are caught: a user's cancel scope, and ``send_async_cancel``, pass through
untouched.  :class:`map_errors` is the single place where Trio, ``ssl`` and protocol-core
errors become the library's.
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
    seconds: float | None, what: str, error: type[SmtpTimeoutError] = SmtpTimeoutError
) -> Phases:
    """``with deadline(seconds, what):`` fails with :class:`SmtpTimeoutError` (or ``error``)
    when ``what`` takes longer than ``seconds`` (None: no limit): a :class:`Phases` scope
    with one phase, armed now."""
    phases = Phases(None)
    phases.arm(seconds, what, error)
    return phases


class Watchdog:
    """One task per client that enforces the deadline of the :class:`Phases` scope in use,
    so that starting a phase is an assignment instead of moving a Trio deadline.

    Moving a ``CancelScope`` deadline costs about 3 us (Trio re-files it in its deadline
    heap); a small message in ``send_many`` has two phases and one in ``send`` four, which
    made deadlines a sixth of the client's time per message.  Here a phase only records
    its deadline.  The watchdog sleeps until a wake-up time that is never later than the
    current phase's deadline: when it wakes and that deadline has passed, it cancels the
    scope; otherwise it sleeps on until that deadline.  Only a phase whose deadline is
    *earlier* than the wake-up time moves the wake-up (a Trio deadline again), and budgets
    are minutes long, so that happens about once per budget, not once per phase.

    A deadline that passed just as its phase completed does not fire: the next phase has
    already replaced it.  When the watchdog stops (the client closes, or everything is
    cancelled) with a phase still running, that phase's deadline moves onto the scope
    itself, so no phase is ever left without a limit.
    """

    __slots__ = ("_alarm", "_closed", "_deadline", "_target", "_wake", "running")

    def __init__(self) -> None:
        self._deadline = math.inf  # the current phase's deadline
        self._wake = math.inf  # when the watchdog wakes; always <= _deadline
        self._target: trio.CancelScope | None = None  # the Phases scope in use
        self._alarm: trio.CancelScope | None = None  # the watchdog's sleep
        self._closed = False
        #: False once :meth:`run` has returned: Phases then move their own deadlines.
        self.running = True

    async def run(self) -> None:
        """The watchdog's task (in the client's nursery) until :meth:`close`."""
        try:
            while not self._closed:
                with trio.CancelScope(deadline=self._wake) as alarm:
                    self._alarm = alarm
                    await trio.sleep_forever()
                self._alarm = None
                if self._target is not None and trio.current_time() >= self._deadline:
                    self._target.cancel()
                    self._deadline = math.inf
                self._wake = self._deadline
        finally:
            self.running = False
            self._alarm = None
            if self._target is not None and self._deadline < self._target.deadline:
                self._target.deadline = self._deadline

    def close(self) -> None:
        """Stop the task (the client is closing)."""
        self._closed = True
        if self._alarm is not None:
            self._alarm.cancel()

    def watch(self, scope: trio.CancelScope | None) -> None:
        """Enforce deadlines on ``scope`` from now on (None: on nothing)."""
        self._target = scope
        self._deadline = math.inf

    def set(self, when: float) -> None:
        """The current phase must be over by ``when`` (Trio time; inf: no limit)."""
        self._deadline = when
        if when < self._wake:
            self._wake = when
            if self._alarm is not None:
                self._alarm.deadline = when


class Phases:
    """``with transport.phases():`` one cancel scope for a whole transaction, whose deadline
    is moved at each phase instead of a scope per read and write.

    Each phase (a write, or a reply that is not already buffered) still gets its own budget
    from :class:`~trio_smtp.Timeouts`, covering the whole write or reply (RFC 5321
    §4.5.3.2): :meth:`arm` sets ``deadline = now + budget`` and records what is awaited, so
    an expiry is reported as the same :class:`SmtpTimeoutError` a per-phase scope would
    raise (``SmtpDeliveryTimeoutError`` for the reply to the end of data).  Entering and
    leaving a ``trio.CancelScope`` costs about three times as much as moving a deadline, and
    a small message has four phases.  When the transport has a running :class:`Watchdog`
    (an :class:`~trio_smtp.SmtpClient`'s transports do), the deadline is not even moved: the
    watchdog enforces it.

    Only this scope's own deadline can cancel it, so a user's cancel scope and
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

    __slots__ = ("_depth", "_error", "_register", "_scope", "_seconds", "_watchdog", "_what")

    def __init__(
        self,
        watchdog: Watchdog | None,
        register: Callable[[Phases | None], None] | None = None,
    ) -> None:
        self._depth = 0
        self._register = register
        self._scope = trio.CancelScope()
        self._seconds: float | None = None
        self._what = "the transaction"
        self._error: type[SmtpTimeoutError] = SmtpTimeoutError
        self._watchdog = watchdog if watchdog is not None and watchdog.running else None

    def __enter__(self) -> Phases:
        self._depth += 1
        if self._depth > 1:
            return self  # a phase inside the open scope: armed by the caller
        self._scope.__enter__()
        if self._register is not None:
            self._register(self)
        if self._watchdog is not None:
            self._watchdog.watch(self._scope)
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
        if self._watchdog is not None:
            self._watchdog.watch(None)
        self._scope.__exit__(exc_type, exc, tb)  # swallows only its own Cancelled
        if self._scope.cancelled_caught:
            raise timeout_error(self._error, self._seconds, self._what) from None

    def arm(self, seconds: float | None, what: str, error: type[SmtpTimeoutError]) -> None:
        """Start a phase: ``what`` must complete within ``seconds`` (None: no limit)."""
        scope = self._scope
        if scope.cancel_called:  # the previous phase's deadline passed as it completed
            raise timeout_error(self._error, self._seconds, self._what)
        self._seconds, self._what, self._error = seconds, what, error
        when = math.inf if seconds is None else trio.current_time() + seconds
        watchdog = self._watchdog
        if watchdog is not None and watchdog.running:
            watchdog.set(when)
        else:
            scope.deadline = when


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
    # The addresses tried, unless the only one is what the user typed.
    plain = [f"{peer.rpartition(':')[0].strip('[]')} port {peer.rpartition(':')[2]}"]
    detail = f" (tried {', '.join(tried)})" if tried and tried != plain else ""
    error = SmtpConnectError(f"cannot connect to {peer}: {'; '.join(reasons)}{detail}")
    if len(codes) == 1:
        error.errno = codes.pop()
    return error
