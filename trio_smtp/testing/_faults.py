"""Fault injection: what the testing server does instead of (or besides) the right thing.

A :class:`Fault` ties an *action* to a *trigger* — a command verb (``"MAIL"``, ``"RCPT"``,
``"STARTTLS"``, ...), ``"GREETING"`` (the connection's first reply), or one of the two phases
of a message's data that cover both ways of sending it: ``"START_OF_DATA"`` (the DATA
command, or the first BDAT command of a message) and ``"END_OF_DATA"`` (the reply to a
message's data: after the DATA terminator, or to the last BDAT chunk).  The verbs ``"DATA"``
and ``"BDAT"`` fire only for their own command: a client that uses CHUNKING never sends DATA.

``match`` narrows a fault: a string is looked for, case-insensitively, in the command's
argument; a predicate is called with the parsed address for MAIL and RCPT (``"a@b.org"``,
without brackets or parameters; ``""`` for the null sender; a line that does not parse
matches no predicate) and with the argument for every other trigger.  ``times`` limits how
often it fires; ``required=True`` (or ``SmtpServer(require_faults_fired=True)`` for every
fault) makes a fault that never fired fail the test when the server's ``async with`` block
ends (:class:`FaultNotFiredError`).  Register them with :meth:`SmtpServer.on`::

    server.on("RCPT", Respond(550, "5.1.1 No such user"), match="bad@example.org")
    server.on("RCPT", Respond(450, "4.2.1 Later"), match=lambda a: a.startswith("user13@"))
    server.on("STARTTLS", Inject(b"250 injected\\r\\n"))
    server.on("END_OF_DATA", Delay(600), required=True)  # with autojump_clock: instant

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
    "FaultNotFiredError",
    "Handover",
    "Hangup",
    "Inject",
    "Respond",
    "Shutdown",
]

#: Triggers that are not command verbs.
SPECIAL_TRIGGERS = frozenset({"GREETING", "START_OF_DATA", "END_OF_DATA"})
#: Triggers whose ``match`` predicate gets the parsed address rather than the argument.
ADDRESS_TRIGGERS = frozenset({"MAIL", "RCPT"})


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
    #: Fail the test at the server's exit if the fault never fired (:class:`FaultNotFiredError`).
    required: bool = False

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

    def matches(self, trigger: str, argument: str, *, address: str | None = None) -> bool:
        """Whether this fault applies to ``trigger`` with this ``argument`` (and, for MAIL
        and RCPT, this parsed ``address``: ``None`` when the argument does not parse)."""
        if self.exhausted or trigger != self.trigger:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match.lower() in argument.lower()
        if trigger in ADDRESS_TRIGGERS:
            return address is not None and bool(self.match(address))
        return bool(self.match(argument))

    def describe(self) -> str:
        """``on("DATA", Delay(seconds=5))``-style, for error messages."""
        match = "" if self.match is None else f", match={self.match!r}"
        return f"on({self.trigger!r}, {self.action!r}{match})"


class FaultNotFiredError(AssertionError):
    """Faults that had to fire (``required=True``, or ``require_faults_fired=True`` on the
    server) never did; ``faults`` lists them.  An AssertionError, so it fails a test."""

    def __init__(self, faults: Sequence[Fault]) -> None:
        self.faults = list(faults)
        lines = [f"{len(self.faults)} fault(s) never fired:"]
        for fault in self.faults:
            lines.append(f"  {fault.describe()}{_HINTS.get(fault.trigger, '')}")
        super().__init__("\n".join(lines))


_HINTS = {
    "DATA": " (a client using CHUNKING sends BDAT, never DATA: START_OF_DATA covers both)",
    "BDAT": " (a client without CHUNKING sends DATA, never BDAT: START_OF_DATA covers both)",
}


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

    def take(self, *triggers: str, argument: str = "", address: str | None = None) -> Action | None:
        """The action of the first fault (in order of registration) matching any of
        ``triggers``, counting the hit; ``None`` if none does."""
        for fault in self.faults:
            if any(fault.matches(t, argument, address=address) for t in triggers):
                fault.hits += 1
                return fault.action
        return None

    def unfired(self, *, all_required: bool) -> list[Fault]:
        """Faults that are required (each, or all with ``all_required``) and never fired."""
        return [f for f in self.faults if f.hits == 0 and (f.required or all_required)]


@dataclass(slots=True)
class Modifiers:
    """How the next reply is changed by the fault being applied."""

    override: Respond | None = None
    drip: float | None = None
    inject: bytes = b""
    early: EarlyReply | None = None
