"""Fault injection: what the testing server does instead of (or besides) the right thing.

A :class:`Fault` ties an *action* to a *trigger* — a command verb (``"MAIL"``, ``"RCPT"``,
``"STARTTLS"``, ...), ``"GREETING"`` (the connection's first reply) or ``"END_OF_DATA"`` (the
reply to a message's data: after the DATA terminator, or to the last BDAT chunk) — optionally
narrowed by ``match`` (a case-insensitive substring of the command's argument, or a predicate
on it), for at most ``times`` uses.  Register them with :meth:`SmtpServer.on`::

    server.on("RCPT", Respond(550, "5.1.1 No such user"), match="bad@example.org")
    server.on("STARTTLS", Inject(b"250 injected\\r\\n"))
    server.on("END_OF_DATA", Delay(600))               # with autojump_clock: instant

Actions:

- :class:`Respond` — reply with this code and text (multi-line with a list or ``"\\n"``).
  A 2xx/3xx reply still runs the normal handling and replaces its (first) reply, whatever
  that was; a 4xx/5xx reply means the command was not performed at all.
- :class:`Hangup` — close the connection without replying.
- :class:`Shutdown` — reply 421 and close (RFC 5321 §3.8).
- :class:`Delay` — sleep (``trio.sleep``, so ``autojump_clock`` skips it), then go on.
- :class:`Drip` — write the reply one byte at a time.
- :class:`Inject` — append raw bytes to the reply, in the same write.
- :class:`EarlyReply` — for DATA/BDAT: reply while the client is still sending, then stop
  reading.
- :class:`Handover` — hand the raw stream to a test coroutine; the connection is closed
  when it returns.

:class:`Delay`, :class:`Drip` and :class:`Inject` wrap another action (``then=``); without
one, the command is handled normally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import trio

__all__ = [
    "Action",
    "Delay",
    "Drip",
    "EarlyReply",
    "Fault",
    "Handover",
    "Hangup",
    "Inject",
    "Respond",
    "Shutdown",
]

#: Triggers that are not command verbs.
SPECIAL_TRIGGERS = frozenset({"GREETING", "END_OF_DATA"})


@dataclass(frozen=True, slots=True)
class Respond:
    """Reply ``code`` with ``text`` instead of the normal reply.

    ``text`` may be a list of lines or contain ``"\\n"`` for a multi-line reply.  Put an
    enhanced status code at the start of the text yourself if you want one.
    """

    code: int
    text: str | Sequence[str] = ""

    @property
    def performs_command(self) -> bool:
        """Positive replies still carry out the command; negative ones refuse it."""
        return self.code < 400


@dataclass(frozen=True, slots=True)
class Hangup:
    """Close the connection without a reply."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Reply ``421 text`` and close the connection (RFC 5321 §3.8)."""

    text: str = "4.3.2 Service shutting down, closing transmission channel"


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait ``seconds`` (``trio.sleep``), then do ``then`` (``None``: the normal handling)."""

    seconds: float
    then: Action | None = None


@dataclass(frozen=True, slots=True)
class Drip:
    """Write the reply one byte per write, sleeping ``interval`` between bytes."""

    interval: float = 0.0
    then: Action | None = None


@dataclass(frozen=True, slots=True)
class Inject:
    """Write ``data`` right after the reply, in the same write.

    On STARTTLS this is the response-injection attack of RFC 3207 §6 / CVE-2011-0411's mirror:
    bytes a client must not accept as coming from inside TLS.  The server then goes on with
    the TLS handshake as usual.
    """

    data: bytes
    then: Action | None = None


@dataclass(frozen=True, slots=True)
class EarlyReply:
    """For ``"DATA"`` or ``"BDAT"``: reply while the client is still sending, stop reading.

    On DATA the server sends 354, reads ``after`` more octets, then sends ``code text`` and
    reads nothing more; on BDAT it replies before reading the chunk.  The connection is then
    held open for ``hold`` seconds (``None``: until the server shuts down) and closed.
    """

    code: int = 554
    text: str | Sequence[str] = "5.3.0 Rejected during transfer"
    after: int = 0
    hold: float | None = None


#: ``async def handler(stream, pending)``: ``pending`` holds bytes already read from the
#: client and not yet processed.
HandoverHandler: TypeAlias = Callable[[trio.abc.Stream, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Handover:
    """Give the (possibly TLS-wrapped) stream to ``handler``; close when it returns.

    Replies already queued are written first.  An exception from the handler is recorded as
    a crash of the connection and surfaced to the test (see :meth:`SmtpServer.check`).
    """

    handler: HandoverHandler


Action: TypeAlias = "Respond | Hangup | Shutdown | Delay | Drip | Inject | EarlyReply | Handover"

Matcher: TypeAlias = "str | Callable[[str], bool] | None"


@dataclass(eq=False, slots=True)
class Fault:
    """One scripted misbehaviour.  ``hits`` counts how often it fired."""

    trigger: str
    action: Action
    match: Matcher = None
    #: Fire at most this many times (``None``: every time).
    times: int | None = None
    hits: int = field(default=0)

    def __post_init__(self) -> None:
        self.trigger = self.trigger.upper()
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for every time)")
        if not self.trigger.isalpha() and self.trigger not in SPECIAL_TRIGGERS:
            raise ValueError(f"not a command verb or a special trigger: {self.trigger!r}")

    @property
    def exhausted(self) -> bool:
        """True once the fault has fired ``times`` times."""
        return self.times is not None and self.hits >= self.times

    def matches(self, trigger: str, argument: str) -> bool:
        """Whether this fault applies to ``trigger`` with this ``argument``."""
        if self.exhausted or trigger != self.trigger:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match.lower() in argument.lower()
        return bool(self.match(argument))


class FaultTable:
    """The server's faults, first registered first consulted."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        if fault in self.faults:
            self.faults.remove(fault)

    def clear(self) -> None:
        self.faults.clear()

    def take(self, trigger: str, argument: str = "") -> Action | None:
        """The action of the first fault matching, counting the hit; ``None`` if none does."""
        for fault in self.faults:
            if fault.matches(trigger, argument):
                fault.hits += 1
                return fault.action
        return None
