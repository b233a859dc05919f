"""The client's states and its transition table.

Rule 1: everything that changes the client's protocol state lives in this file; the
connection asks the table, it never decides.  Rule 2: the table is data (a mapping from
``(state, event)`` to the next state), not if-chains; a miss is a LocalProtocolError when
the caller sent something the state does not allow, and a RemoteProtocolError when a reply
makes no sense there (cf. h11/_state.py).  The docs build a state diagram from
:data:`TRANSITIONS`.

Theory of operation (pipelining, RFC 2920): :class:`SessionState` keeps two states.
``state`` is what the server's replies have confirmed so far; ``expected`` is where the
session will be once every command still awaiting a reply succeeds.  Sending is checked
against ``expected`` (so MAIL, RCPT, RCPT, DATA can go out in one group); each reply moves
``state`` from the state its command was sent in, and ``expected`` is recomputed by
replaying the commands still pending (skipping those the new state no longer allows: the
server will refuse them too).
"""

from __future__ import annotations

import enum
from collections import deque

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

__all__ = ["EVENTS", "TRANSITIONS", "SessionState", "State", "event_name", "reply_outcome"]


class State(enum.Enum):
    """Where the client's SMTP session stands."""

    # Members are singletons compared by identity: hash them by identity too, in C.
    # Enum's own __hash__ is a Python function, and every command and reply looks states
    # up in TRANSITIONS several times (a fifth of the sans-IO core's time per message).
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


_S = State
# States in which commands flow, and those inside a mail transaction.
_SESSION = (_S.GREETED, _S.READY, _S.MAIL, _S.RCPT, _S.BDAT)
_TRANSACTION = (_S.MAIL, _S.RCPT, _S.BDAT)
_COMMANDS = (
    *("EHLO", "HELO", "STARTTLS", "AUTH", "AUTH_RESPONSE", "MAIL", "RCPT", "DATA"),
    *("END_OF_DATA", "BDAT", "BDAT_LAST", "RSET", "NOOP", "VRFY", "QUIT"),
)


def _both(state: State, name: str, target: State) -> dict[tuple[State, str], State]:
    """A pipelinable command: sending it and its success lead to the same state."""
    return {(state, f"send:{name}"): target, (state, f"reply:{name}:ok"): target}


TRANSITIONS: dict[tuple[State, str], State] = {
    # A refused command changes nothing (RFC 5321 §4.2): every failure in a session state
    # is a self-loop unless overridden below.
    **{(s, f"reply:{c}:fail"): s for s in _SESSION for c in _COMMANDS},
    # RFC 5321 §3.1: the greeting.
    (_S.CONNECTED, "reply:greeting:ok"): _S.GREETED,
    (_S.CONNECTED, "reply:greeting:fail"): _S.REFUSED,
    # EHLO / HELO, with HELO as the fallback when EHLO fails (RFC 5321 §4.1.1.1).
    **{(s, f"send:{c}"): s for s in (_S.GREETED, _S.READY) for c in ("EHLO", "HELO")},
    **{(s, f"reply:{c}:ok"): _S.READY for s in (_S.GREETED, _S.READY) for c in ("EHLO", "HELO")},
    # RFC 3207: STARTTLS, then the TLS handshake, then back to needing EHLO.
    (_S.READY, "send:STARTTLS"): _S.READY,
    (_S.READY, "reply:STARTTLS:ok"): _S.STARTTLS,
    (_S.STARTTLS, "start_tls"): _S.GREETED,
    # RFC 4954: AUTH and its 334 continuation rounds.
    (_S.READY, "send:AUTH"): _S.READY,
    (_S.READY, "reply:AUTH:more"): _S.AUTH,
    (_S.READY, "reply:AUTH:ok"): _S.READY,
    (_S.AUTH, "send:AUTH_RESPONSE"): _S.AUTH,
    (_S.AUTH, "reply:AUTH_RESPONSE:more"): _S.AUTH,
    (_S.AUTH, "reply:AUTH_RESPONSE:ok"): _S.READY,
    (_S.AUTH, "reply:AUTH_RESPONSE:fail"): _S.READY,
    # RFC 5321 §3.3: MAIL -> RCPT* -> DATA.
    **_both(_S.READY, "MAIL", _S.MAIL),
    **_both(_S.MAIL, "RCPT", _S.RCPT),
    **_both(_S.RCPT, "RCPT", _S.RCPT),
    (_S.RCPT, "send:DATA"): _S.RCPT,
    # 354 means the server reads data now, whatever we thought of the earlier replies (all
    # recipients refused, even MAIL refused): we must send at least the terminator (rule 6).
    **{(s, "reply:DATA:more"): _S.DATA for s in (_S.READY, _S.MAIL, _S.RCPT)},
    (_S.DATA, "send:MESSAGE"): _S.DATA,
    # Whatever its reply (2xx, 4xx, 5xx), the terminator ends the transaction (RFC 5321
    # §4.1.1.4), so once it is sent the session is expected READY: with PIPELINING the next
    # MAIL may follow it in the same group (RFC 2920 §3.1).  Its reply confirms READY.
    (_S.DATA, "send:END_OF_DATA"): _S.READY,
    (_S.DATA, "reply:END_OF_DATA:ok"): _S.READY,
    (_S.DATA, "reply:END_OF_DATA:fail"): _S.READY,
    # RFC 3030: BDAT chunks; LAST ends the transaction.  After a failed chunk no more may
    # be sent (§2): back to READY, where RSET is allowed and advisable.
    **_both(_S.RCPT, "BDAT", _S.BDAT),
    **_both(_S.BDAT, "BDAT", _S.BDAT),
    **_both(_S.RCPT, "BDAT_LAST", _S.READY),
    **_both(_S.BDAT, "BDAT_LAST", _S.READY),
    **{(s, f"reply:{c}:fail"): _S.READY for s in _TRANSACTION for c in ("BDAT", "BDAT_LAST")},
    # RSET, NOOP, VRFY: allowed whenever a command may be sent (RFC 5321 §4.1.4).
    **_both(_S.GREETED, "RSET", _S.GREETED),
    **{k: v for s in (_S.READY, *_TRANSACTION) for k, v in _both(s, "RSET", _S.READY).items()},
    **{k: v for s in _SESSION for c in ("NOOP", "VRFY") for k, v in _both(s, c, s).items()},
    # QUIT: whatever the reply, the session is over.
    **{(s, "send:QUIT"): s for s in (_S.REFUSED, *_SESSION)},
    **{(s, f"reply:QUIT:{o}"): _S.CLOSED for s in (_S.REFUSED, *_SESSION) for o in ("ok", "fail")},
    # RFC 5321 §3.8: 421 (answering anything, or unsolicited) closes the session.
    **{(s, "reply:closing"): _S.CLOSED for s in _S if s is not _S.ERROR},
    **{(s, "eof"): _S.CLOSED for s in _S if s is not _S.ERROR},
    **{(s, "error"): _S.ERROR for s in _S},
}
"""(state, event) -> next state.  The events:

- ``"send:NAME"``: the client sends command NAME, one of ``EHLO HELO STARTTLS AUTH
  AUTH_RESPONSE MAIL RCPT DATA BDAT BDAT_LAST RSET NOOP VRFY QUIT``, or ``MESSAGE`` (a
  chunk of message data) and ``END_OF_DATA`` (the terminator).
- ``"reply:NAME:OUTCOME"``: the reply to NAME (or to the ``greeting``) arrived, OUTCOME
  being ``ok`` (2xx), ``more`` (3xx: 334, 354) or ``fail`` (4xx/5xx except 421).
- ``"reply:closing"``: a 421 reply, solicited or not (RFC 5321 §3.8).
- ``"start_tls"``: the driver finished the TLS handshake after STARTTLS's 220.
- ``"eof"``: the server closed the connection.
- ``"error"``: a protocol error, or a write that failed or was cancelled.

Failed commands are self-loops (a refused command changes nothing); a diagram may
leave self-loops out.
"""

#: Every event name that occurs in :data:`TRANSITIONS`, sorted.
EVENTS: tuple[str, ...] = tuple(sorted({event for _, event in TRANSITIONS}))

# TRANSITIONS split by kind and keyed by the parts of the event, for the lookups made on
# every command and reply (no event string to build each time).  Derived, never edited:
# TRANSITIONS stays the one table.
_SEND: dict[tuple[State, str], State] = {
    (state, event[len("send:") :]): target
    for (state, event), target in TRANSITIONS.items()
    if event.startswith("send:")
}
_REPLY: dict[tuple[State, str, str], State] = {
    (state, name, outcome): target
    for (state, event), target in TRANSITIONS.items()
    if event.startswith("reply:") and event != "reply:closing"
    for name, outcome in [event[len("reply:") :].rsplit(":", 1)]
}

_EVENT_NAMES: dict[type[Command], str] = {
    Ehlo: "EHLO",
    Helo: "HELO",
    StartTls: "STARTTLS",
    Auth: "AUTH",
    AuthResponse: "AUTH_RESPONSE",
    Mail: "MAIL",
    Rcpt: "RCPT",
    Data: "DATA",
    EndOfData: "END_OF_DATA",
    Rset: "RSET",
    Noop: "NOOP",
    Vrfy: "VRFY",
    Quit: "QUIT",
}


def event_name(command: Command) -> str:
    """The NAME used for ``command`` in :data:`TRANSITIONS` events."""
    name = _EVENT_NAMES.get(type(command))  # every command sent has one: the common case first
    if name is not None:
        return name
    if isinstance(command, Bdat):
        return "BDAT_LAST" if command.last else "BDAT"
    raise LocalProtocolError(f"unknown command type {type(command).__name__}")


def reply_outcome(code: int) -> str:
    """``"ok"``, ``"more"``, ``"fail"`` or ``"closing"`` for a reply code."""
    if code == 421:
        return "closing"
    return _OUTCOMES.get(code // 100, "fail")


_OUTCOMES = {2: "ok", 3: "more"}


class SessionState:
    """The table-driven state of one session: confirmed ``state``, ``expected`` state."""

    def __init__(self) -> None:
        self.state = State.CONNECTED
        self.expected = State.CONNECTED
        # Names of the commands awaiting replies, oldest first; the greeting is awaited too.
        self._pending: deque[str] = deque(["greeting"])

    def check_send(self, name: str) -> None:
        """Raise LocalProtocolError unless command NAME may be sent now."""
        if (self.expected, name) not in _SEND:
            raise LocalProtocolError(f"cannot send {name} in state {self.expected.name}")

    def sent(self, name: str, *, awaits_reply: bool = True) -> None:
        """Command NAME was sent (after :meth:`check_send`)."""
        self.expected = _SEND[(self.expected, name)]
        if awaits_reply:
            self._pending.append(name)

    def replied(self, outcome: str) -> None:
        """The reply to the oldest pending command arrived with ``outcome``."""
        if outcome == "closing":
            self._apply("reply:closing")
            return
        name = self._pending.popleft() if self._pending else "nothing"
        before = self.state
        state = _REPLY.get((before, name, outcome))
        if state is None:
            raise RemoteProtocolError(f"unexpected {outcome!r} reply to {name}")
        self.state = state
        # ``expected`` assumed this command would take ``before`` where its send goes: if
        # it did, replaying the commands still pending gives the same state again.
        if _SEND.get((before, name)) is not state:
            self._reproject()

    def start_tls(self) -> None:
        """The TLS handshake after STARTTLS is done."""
        if (self.state, "start_tls") not in TRANSITIONS:
            raise LocalProtocolError(f"start_tls() in state {self.state.name}")
        self._apply("start_tls")

    def eof(self) -> None:
        """The server closed the connection."""
        self._apply("eof")

    def error(self) -> None:
        """A protocol error or failed write: the session is unusable."""
        self._apply("error")

    def _apply(self, event: str) -> None:
        self.state = TRANSITIONS.get((self.state, event), self.state)
        if self.state in (State.CLOSED, State.ERROR):
            self._pending.clear()
        self._reproject()

    def _reproject(self) -> None:
        expected = self.state
        for name in self._pending:
            expected = _SEND.get((expected, name), expected)
        self.expected = expected
