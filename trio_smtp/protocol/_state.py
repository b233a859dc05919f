"""The client's states, the events that move them, and the transition table.

Rule 1: everything that changes the client's protocol state lives in this file; the
connection asks the table, it never decides.  Rule 2: the table is data (a mapping from
``(state, event)`` to the next state), not if-chains; a miss is a LocalProtocolError when
the caller sent something the state does not allow, and a RemoteProtocolError when a reply
makes no sense there (cf. h11/_state.py).  The docs build a state diagram from
:data:`TRANSITIONS`.

Events are plain immutable data, as h11's are: :class:`Sent` (a command left),
:class:`Replied` (the reply to a command came, with its :class:`Outcome`), and the
:class:`Signal` members for what is about no one command (a 421, the TLS handshake done,
EOF, an error).  They compare and hash by value, in C (tuples of ``str`` enums): every
command and every reply looks the table up.

Theory of operation (pipelining, RFC 2920): :class:`SessionState` keeps the one queue of
commands awaiting replies, oldest first, each :class:`Pending` entry holding the command
and the state the session will be in once it succeeds.  ``state`` is what the server's
replies have confirmed; ``expected`` is the newest entry's state (``state`` when nothing is
pending).  Sending is checked against ``expected`` (so MAIL, RCPT, RCPT, DATA can go out
in one group); each reply moves ``state`` from where it was, and when that is not where
the entry expected (a refused MAIL, say), the expectations of the commands still pending
are replayed from the new state (skipping those it no longer allows: the server will refuse
them too).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import NamedTuple, TypeAlias

from ._commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    EndOfData,
    Helo,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    Vrfy,
)
from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "EVENTS",
    "TRANSITIONS",
    "Event",
    "Outcome",
    "Pending",
    "Replied",
    "Sent",
    "SessionState",
    "Signal",
    "State",
    "Step",
    "command_step",
]


class State(enum.Enum):
    """Where the client's SMTP session stands."""

    # Members are singletons compared by identity: hash them by identity too, in C.  Enum's
    # own __hash__ is a Python function, and every command and every reply looks a state
    # up in the table (measured with it: 1 us more per transaction, 5% of the core's time).
    __hash__ = object.__hash__

    #: Connected, waiting for the 220 greeting.
    CONNECTED = "CONNECTED"
    #: The greeting refused the session (554, RFC 5321 §3.1): only QUIT is allowed.
    REFUSED = "REFUSED"
    #: Greeted (or TLS just established): EHLO/HELO must come next.
    GREETED = "GREETED"
    #: EHLO/HELO accepted; no transaction open.
    READY = "READY"
    #: STARTTLS got 220: wrap the stream in TLS, then call ``start_tls()`` (RFC 3207).
    STARTTLS = "STARTTLS"
    #: AUTH got 334: only an AuthResponse may be sent (RFC 4954 §4).
    AUTH = "AUTH"
    #: MAIL accepted (or pipelined): RCPT next.
    MAIL = "MAIL"
    #: At least one RCPT: more RCPT, DATA or BDAT next.
    RCPT = "RCPT"
    #: DATA got 354: message data, then the terminator.
    DATA = "DATA"
    #: Inside a BDAT sequence (RFC 3030).
    BDAT = "BDAT"
    #: QUIT or 421 answered, or the peer closed.
    CLOSED = "CLOSED"
    #: A protocol error, failed write or cancellation: close the connection.
    ERROR = "ERROR"


# ``str`` mixed in: members hash and compare as their value, in C (Enum's own __hash__ is
# a Python function, and events are hashed on every lookup in the table).
class Step(str, enum.Enum):
    """What a :class:`Sent` or :class:`Replied` event is about: a command (by name), the
    greeting, or message data."""

    #: The server's greeting (its "command" is the connection itself, RFC 5321 §3.1).
    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    #: A line answering AUTH's 334 challenge (RFC 4954 §4).
    AUTH_RESPONSE = "AUTH_RESPONSE"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    #: A chunk of message data after DATA's 354 (no reply of its own).
    MESSAGE = "MESSAGE"
    #: The ``CRLF.CRLF`` terminator after the message data.
    END_OF_DATA = "END_OF_DATA"
    #: A BDAT chunk that is not the last (RFC 3030).
    BDAT = "BDAT"
    #: ``BDAT n LAST``: ends the transaction.
    BDAT_LAST = "BDAT_LAST"
    RSET = "RSET"
    NOOP = "NOOP"
    VRFY = "VRFY"
    QUIT = "QUIT"


class Outcome(str, enum.Enum):
    """How a reply went, by its first digit (RFC 5321 §4.2.1)."""

    #: 2xx.
    OK = "ok"
    #: 3xx: an intermediate reply (354 to DATA, 334 to AUTH).
    MORE = "more"
    #: 4xx or 5xx, except 421 (a :attr:`Signal.CLOSING`).
    FAIL = "fail"


class Sent(NamedTuple):
    """Event: the client sent ``step`` (a command, message data or the terminator)."""

    step: Step

    def __repr__(self) -> str:
        return f"Sent({self.step.name})"


class Replied(NamedTuple):
    """Event: the reply to ``step`` arrived, with ``outcome``."""

    step: Step
    outcome: Outcome

    def __repr__(self) -> str:
        return f"Replied({self.step.name}, {self.outcome.name})"


class Signal(str, enum.Enum):
    """Events about no one command."""

    #: A 421 reply, answering a command or unsolicited (RFC 5321 §3.8).
    CLOSING = "closing"
    #: The driver finished the TLS handshake after STARTTLS's 220 (RFC 3207).
    TLS_STARTED = "tls_started"
    #: The server closed the connection.
    EOF = "eof"
    #: A protocol error, or a write that failed or was cancelled.
    ERROR = "error"


#: What moves the state machine: the keys of :data:`TRANSITIONS` pair a state with one.
Event: TypeAlias = Sent | Replied | Signal


_S = State
# States in which commands flow, and those inside a mail transaction.
_SESSION = (_S.GREETED, _S.READY, _S.MAIL, _S.RCPT, _S.BDAT)
_TRANSACTION = (_S.MAIL, _S.RCPT, _S.BDAT)
_COMMANDS = tuple(step for step in Step if step not in (Step.GREETING, Step.MESSAGE))
OK, MORE, FAIL = Outcome.OK, Outcome.MORE, Outcome.FAIL


def _both(state: State, step: Step, target: State) -> dict[tuple[State, Event], State]:
    """A pipelinable command: sending it and its success lead to the same state."""
    return {(state, Sent(step)): target, (state, Replied(step, OK)): target}


TRANSITIONS: dict[tuple[State, Event], State] = {
    # A refused command changes nothing (RFC 5321 §4.2): every failure in a session state
    # is a self-loop unless overridden below.
    **{(s, Replied(c, FAIL)): s for s in _SESSION for c in _COMMANDS},
    # RFC 5321 §3.1: the greeting.
    (_S.CONNECTED, Replied(Step.GREETING, OK)): _S.GREETED,
    (_S.CONNECTED, Replied(Step.GREETING, FAIL)): _S.REFUSED,
    # EHLO / HELO, with HELO as the fallback when EHLO fails (RFC 5321 §4.1.1.1).
    **{(s, Sent(c)): s for s in (_S.GREETED, _S.READY) for c in (Step.EHLO, Step.HELO)},
    **{
        (s, Replied(c, OK)): _S.READY
        for s in (_S.GREETED, _S.READY)
        for c in (Step.EHLO, Step.HELO)
    },
    # RFC 3207: STARTTLS, then the TLS handshake, then back to needing EHLO.
    (_S.READY, Sent(Step.STARTTLS)): _S.READY,
    (_S.READY, Replied(Step.STARTTLS, OK)): _S.STARTTLS,
    (_S.STARTTLS, Signal.TLS_STARTED): _S.GREETED,
    # RFC 4954: AUTH and its 334 continuation rounds.
    (_S.READY, Sent(Step.AUTH)): _S.READY,
    (_S.READY, Replied(Step.AUTH, MORE)): _S.AUTH,
    (_S.READY, Replied(Step.AUTH, OK)): _S.READY,
    (_S.AUTH, Sent(Step.AUTH_RESPONSE)): _S.AUTH,
    (_S.AUTH, Replied(Step.AUTH_RESPONSE, MORE)): _S.AUTH,
    (_S.AUTH, Replied(Step.AUTH_RESPONSE, OK)): _S.READY,
    (_S.AUTH, Replied(Step.AUTH_RESPONSE, FAIL)): _S.READY,
    # RFC 5321 §3.3: MAIL -> RCPT* -> DATA.
    **_both(_S.READY, Step.MAIL, _S.MAIL),
    **_both(_S.MAIL, Step.RCPT, _S.RCPT),
    **_both(_S.RCPT, Step.RCPT, _S.RCPT),
    (_S.RCPT, Sent(Step.DATA)): _S.RCPT,
    # 354 means the server reads data now, whatever we thought of the earlier replies (all
    # recipients refused, even MAIL refused): we must send at least the terminator (rule 6).
    **{(s, Replied(Step.DATA, MORE)): _S.DATA for s in (_S.READY, _S.MAIL, _S.RCPT)},
    (_S.DATA, Sent(Step.MESSAGE)): _S.DATA,
    # Whatever its reply (2xx, 4xx, 5xx), the terminator ends the transaction (RFC 5321
    # §4.1.1.4), so once it is sent the session is expected READY: with PIPELINING the next
    # MAIL may follow it in the same group (RFC 2920 §3.1).  Its reply confirms READY.
    (_S.DATA, Sent(Step.END_OF_DATA)): _S.READY,
    (_S.DATA, Replied(Step.END_OF_DATA, OK)): _S.READY,
    (_S.DATA, Replied(Step.END_OF_DATA, FAIL)): _S.READY,
    # RFC 3030: BDAT chunks; LAST ends the transaction.  After a failed chunk no more may
    # be sent (§2): back to READY, where RSET is allowed and advisable.
    **_both(_S.RCPT, Step.BDAT, _S.BDAT),
    **_both(_S.BDAT, Step.BDAT, _S.BDAT),
    **_both(_S.RCPT, Step.BDAT_LAST, _S.READY),
    **_both(_S.BDAT, Step.BDAT_LAST, _S.READY),
    **{(s, Replied(c, FAIL)): _S.READY for s in _TRANSACTION for c in (Step.BDAT, Step.BDAT_LAST)},
    # RSET, NOOP, VRFY: allowed whenever a command may be sent (RFC 5321 §4.1.4).
    **_both(_S.GREETED, Step.RSET, _S.GREETED),
    **{k: v for s in (_S.READY, *_TRANSACTION) for k, v in _both(s, Step.RSET, _S.READY).items()},
    **{k: v for s in _SESSION for c in (Step.NOOP, Step.VRFY) for k, v in _both(s, c, s).items()},
    # QUIT: whatever the reply, the session is over.
    **{(s, Sent(Step.QUIT)): s for s in (_S.REFUSED, *_SESSION)},
    **{(s, Replied(Step.QUIT, o)): _S.CLOSED for s in (_S.REFUSED, *_SESSION) for o in (OK, FAIL)},
    # RFC 5321 §3.8: 421 (answering anything, or unsolicited) closes the session.
    **{(s, Signal.CLOSING): _S.CLOSED for s in _S if s is not _S.ERROR},
    **{(s, Signal.EOF): _S.CLOSED for s in _S if s is not _S.ERROR},
    **{(s, Signal.ERROR): _S.ERROR for s in _S},
}
"""(state, event) -> next state.  The events:

- ``Sent(step)``: the client sends a command (``EHLO HELO STARTTLS AUTH AUTH_RESPONSE MAIL
  RCPT DATA BDAT BDAT_LAST RSET NOOP VRFY QUIT``), a chunk of message data (``MESSAGE``) or
  the terminator (``END_OF_DATA``).
- ``Replied(step, outcome)``: the reply to that command (or to the ``GREETING``) arrived,
  its outcome being ``OK`` (2xx), ``MORE`` (3xx: 334, 354) or ``FAIL`` (4xx/5xx except 421).
- ``Signal.CLOSING``: a 421 reply, solicited or not (RFC 5321 §3.8).
- ``Signal.TLS_STARTED``: the driver finished the TLS handshake after STARTTLS's 220.
- ``Signal.EOF``: the server closed the connection.
- ``Signal.ERROR``: a protocol error, or a write that failed or was cancelled.

Failed commands are self-loops (a refused command changes nothing); a diagram may
leave self-loops out.
"""

#: Every event that occurs in :data:`TRANSITIONS`, sorted by its repr.
EVENTS: tuple[Event, ...] = tuple(sorted({event for _, event in TRANSITIONS}, key=repr))

# TRANSITIONS split by kind and keyed by the parts of the event, for the lookups made on
# every command and reply (no event to build each time).  Derived, never edited:
# TRANSITIONS stays the one table.
_ON_SEND: dict[tuple[State, Step], State] = {
    (state, event.step): target
    for (state, event), target in TRANSITIONS.items()
    if isinstance(event, Sent)
}
_ON_REPLY: dict[tuple[State, Step, Outcome], State] = {
    (state, event.step, event.outcome): target
    for (state, event), target in TRANSITIONS.items()
    if isinstance(event, Replied)
}

_STEPS: dict[type[Command], Step] = {
    Ehlo: Step.EHLO,
    Helo: Step.HELO,
    StartTls: Step.STARTTLS,
    Auth: Step.AUTH,
    AuthResponse: Step.AUTH_RESPONSE,
    Mail: Step.MAIL,
    Rcpt: Step.RCPT,
    Data: Step.DATA,
    EndOfData: Step.END_OF_DATA,
    Rset: Step.RSET,
    Noop: Step.NOOP,
    Vrfy: Step.VRFY,
    Quit: Step.QUIT,
}


def command_step(command: Command) -> Step:
    """The :class:`Step` that ``command`` is in :data:`TRANSITIONS` events."""
    step = _STEPS.get(type(command))  # every command sent has one: the common case first
    if step is not None:
        return step
    if isinstance(command, Bdat):
        return Step.BDAT_LAST if command.last else Step.BDAT
    raise LocalProtocolError(f"unknown command type {type(command).__name__}")


#: A reply's outcome by its first digit; any other is a failure.
_OUTCOMES = {2: OK, 3: MORE}


class Pending:
    """A queue entry: ``command`` (None for the greeting) awaits its reply, and ``after`` is
    the state the session will be in once it succeeds (kept up to date by the session)."""

    __slots__ = ("after", "command", "step")

    def __init__(self, command: Command | None, step: Step, after: State) -> None:
        self.command = command
        self.step = step
        self.after = after

    def __repr__(self) -> str:
        return f"Pending({self.command!r}, {self.step.name}, after={self.after.name})"


class SessionState:
    """The table-driven state of one session: the commands awaiting replies, the confirmed
    ``state`` and the ``expected`` state once they all succeed."""

    def __init__(self) -> None:
        self.state = State.CONNECTED
        self.expected = State.CONNECTED
        #: Commands awaiting replies, oldest first: the one queue.  The greeting is awaited
        #: too.  Read it; only this class changes it.
        self.pending: deque[Pending] = deque([Pending(None, Step.GREETING, State.CONNECTED)])

    def check_send(self, step: Step) -> State:
        """The state ``step`` leads to if sent now; LocalProtocolError if it may not be."""
        after = _ON_SEND.get((self.expected, step))
        if after is None:
            raise LocalProtocolError(f"cannot send {step.value} in state {self.expected.name}")
        return after

    def sent(self, command: Command, step: Step, after: State) -> None:
        """``command`` was sent; ``after`` is what :meth:`check_send` returned for it."""
        self.pending.append(Pending(command, step, after))
        self.expected = after

    def replied(self, code: int) -> Command | None:
        """A reply with ``code`` arrived: it answers the oldest pending command, which is
        returned (None for the greeting, or a 421 with nothing pending)."""
        entry = self.pending.popleft() if self.pending else None
        if code == 421:
            self._apply(Signal.CLOSING)
        elif entry is None:
            # RFC 5321 §3.8 allows only an unsolicited 421.
            raise RemoteProtocolError(f"unexpected reply {code}: no command pending")
        else:
            outcome = _OUTCOMES.get(code // 100, FAIL)
            state = _ON_REPLY.get((self.state, entry.step, outcome))
            if state is None:
                raise RemoteProtocolError(
                    f"unexpected {outcome.value!r} reply to {entry.step.value}"
                )
            self.state = state
            if state is not entry.after:
                self._reproject()
        return None if entry is None else entry.command

    def start_tls(self) -> None:
        """The TLS handshake after STARTTLS is done."""
        if (self.state, Signal.TLS_STARTED) not in TRANSITIONS:
            raise LocalProtocolError(f"start_tls() in state {self.state.name}")
        self._apply(Signal.TLS_STARTED)

    def eof(self) -> None:
        """The server closed the connection."""
        self._apply(Signal.EOF)

    def error(self) -> None:
        """A protocol error or failed write: the session is unusable."""
        self._apply(Signal.ERROR)

    def _apply(self, signal: Signal) -> None:
        self.state = TRANSITIONS.get((self.state, signal), self.state)
        if self.state in (State.CLOSED, State.ERROR):
            self.pending.clear()
        self._reproject()

    def _reproject(self) -> None:
        """Replay the pending commands' sends from the confirmed state."""
        expected = self.state
        for entry in self.pending:
            expected = _ON_SEND.get((expected, entry.step), expected)
            entry.after = expected
        self.expected = expected
