"""ClientConnection: the sans-IO SMTP client.

Theory of operation (cf. h11/_connection.py, httpcore's ``_receive_event``): the driver calls
:meth:`ClientConnection.send` with a command and writes the bytes it gets back; it feeds what it
reads to :meth:`~ClientConnection.receive_data` and calls :meth:`~ClientConnection.next_event`
until it returns :data:`NEED_DATA`.  Each :class:`Reply` comes back with ``reply.command`` set
to the command it answers, in order (a FIFO of commands awaiting replies, RFC 2920).

Who decides what: :mod:`._state` owns every state change and the one queue of commands
awaiting replies; this class keeps what the state machine does not need to know (the
extensions, the data encoder, the reply parser, the encoded commands) and translates: a
command out of turn is a LocalProtocolError and nothing is produced; anything wrong in the
server's bytes is a RemoteProtocolError and the session enters ERROR, as does a write the
driver reports failed (:meth:`send_failed`).  Wrong includes too many: a command is never
encoded while more replies were received than commands are pending (a reply the server sent
unasked, or before its command), and a 3xx is an intermediate reply only where one is
defined (354 to DATA, 334 to AUTH).
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ._commands import Auth, AuthResponse, Bdat, Command, Data, EndOfData, Mail, Rcpt, StartTls
from ._data import DataEncoder
from ._errors import LocalProtocolError, RemoteProtocolError
from ._extensions import Extensions
from ._frozen import Frozen
from ._replies import Reply, ReplyLimits, ReplyParser
from ._state import SessionState, State, Step, command_step

__all__ = ["NEED_DATA", "ClientConnection", "ConnectionClosed", "NeedData"]


# The members the checks made for every command and reply compare with, as module
# constants: up to Python 3.11 ``EnumType.__getattr__`` makes every ``State.ERROR`` a slow
# attribute lookup (about 75 ns, a global costs 10), and a message makes some thirty.
_ERROR, _CLOSED, _STARTTLS, _DATA = State.ERROR, State.CLOSED, State.STARTTLS, State.DATA
_MESSAGE, _END_OF_DATA = Step.MESSAGE, Step.END_OF_DATA


class NeedData:
    """Sentinel type: no complete event yet; read more and call receive_data."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class ConnectionClosed(Frozen):
    """The server closed the connection (``receive_data(b"")`` and nothing left to parse)."""

    __slots__ = ()


class ClientConnection:
    """The client side of one SMTP session, with no I/O."""

    def __init__(self, *, limits: ReplyLimits | None = None) -> None:
        self._parser = ReplyParser(limits)
        # The state and the queue of commands awaiting replies (with the greeting).
        self._session = SessionState()
        # Replies parsed ahead (by the check before a send, see _check_unsolicited) and
        # not yet returned, oldest first, and the octets they took: never more replies
        # than commands pending.
        self._parsed: deque[Reply] = deque()
        self._parsed_octets = 0
        self._extensions = Extensions()
        # extensions.pipelining, asked before every pipelined command: kept with them.
        self._pipelining = False
        self._encoder: DataEncoder | None = None
        self._smtputf8 = False  # the current transaction's MAIL carried SMTPUTF8
        self._binarymime = False  # ... and BODY=BINARYMIME (then DATA is forbidden)
        self._eof = False
        # This connection's encoded commands (see _encoded).
        self._encoded_commands: dict[tuple[Command, bool], tuple[bytes, tuple[str, ...]]] = {}

    @property
    def state(self) -> State:
        """The state the server's replies have confirmed."""
        return self._session.state

    @property
    def expected_state(self) -> State:
        """The state once every pending command succeeds (what sends are checked against)."""
        return self._session.expected

    @property
    def extensions(self) -> Extensions:
        """What the last EHLO advertised; empty before EHLO, after HELO and after STARTTLS."""
        return self._extensions

    @property
    def pending(self) -> int:
        """Commands sent whose replies have not been returned yet."""
        return sum(entry.command is not None for entry in self._session.pending)

    @property
    def pending_commands(self) -> tuple[Command, ...]:
        """The commands awaiting replies, oldest first."""
        return tuple(e.command for e in self._session.pending if e.command is not None)

    @property
    def eof_received(self) -> bool:
        """True once ``receive_data(b"")`` said the server closed the connection."""
        return self._eof

    @property
    def buffered(self) -> int:
        """Octets received from the server and not yet returned as a reply."""
        return self._parser.buffered + self._parsed_octets

    def early_reply(self) -> Reply | ConnectionClosed | None:
        """In DATA, before the terminator: what the server already said, if anything.

        Nothing the server sends then can answer the terminator, so any reply is an early
        one: a refusal of the message, or 421 before closing.  Returns that reply (complete
        replies only), ConnectionClosed after EOF, or None when nothing complete came.  On
        a reply or EOF the session enters ERROR: the terminator must never follow, and the
        driver closes the connection (RFC 5321 §4.1.1.4 gives no way to resume).
        """
        if self._session.state is not _DATA:
            raise LocalProtocolError("early_reply() is only meaningful in DATA")
        if self._session.pending:  # in DATA only the terminator can be awaiting its reply
            raise LocalProtocolError("early_reply() after end_data()")
        try:
            reply = self._parser.next_reply()
        except RemoteProtocolError:
            self._fail()
            raise
        if reply is None and not self._eof:
            return None
        self._fail()
        return ConnectionClosed() if reply is None else reply

    def send(self, command: Command) -> bytes:
        """Validate ``command`` against the state and its own rules; return its bytes.

        Raises LocalProtocolError (nothing produced) when the state does not allow it, when
        pipelining would break RFC 2920 (a command after one that ends a group, or any
        command while replies are outstanding and PIPELINING was not advertised), when it
        uses an extension the server did not advertise (STARTTLS, AUTH, BDAT, and MAIL/RCPT
        parameters: RFC 5321 §4.1.1.11), or when an argument is invalid.  Non-ASCII
        arguments are allowed only after a MAIL with ``smtputf8=True`` in the current
        transaction.  For :class:`Bdat` the bytes are the command line and the chunk.

        Raises RemoteProtocolError (and enters ERROR) when the bytes received so far hold
        more than the replies owed to the commands already sent: this command's reply
        cannot have come yet, so they are unsolicited and would be read as its reply
        (design rule 11).  The driver feeds what the socket holds before each write.
        """
        step = command_step(command)
        after = self._check_may_send(step)
        data, needs = self._encoded(command, self._smtputf8 and isinstance(command, Rcpt))
        if needs:  # RFC 5321 §4.1.1.11: no extension the server did not advertise
            missing = [keyword for keyword in needs if keyword not in self._extensions]
            if missing:
                raise LocalProtocolError(
                    f"{command.verb} needs {', '.join(missing)}, not advertised"
                )
        if self._binarymime and isinstance(command, Data):
            raise LocalProtocolError("BODY=BINARYMIME needs BDAT, not DATA (RFC 3030 §3)")
        if isinstance(command, Bdat):
            data += command.chunk
        # Nothing below can fail: the command is committed.
        self._session.sent(command, step, after)
        if isinstance(command, Mail):
            self._smtputf8 = command.smtputf8
            self._binarymime = command.body == "BINARYMIME"
        return data

    def send_data(self, chunk: bytes | memoryview) -> bytes:
        """In DATA (after 354): encode a chunk of the message (see DataEncoder)."""
        self._check_may_send(_MESSAGE)
        return self._data_encoder().encode(chunk)

    def end_data(self) -> bytes:
        """In DATA: the rest of the encoded message and the terminator; awaits its reply,
        which comes back with ``reply.command == EndOfData()``."""
        after = self._check_may_send(_END_OF_DATA)
        data = self._data_encoder().finish()
        self._encoder = None
        self._session.sent(EndOfData(), _END_OF_DATA, after)
        return data

    def send_failed(self) -> None:
        """The driver could not write (or was cancelled writing) the last bytes: ERROR.

        The server may have seen part of a command, so the session can never be trusted
        again (cf. h11's ``send_failed``)."""
        self._fail()

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server; ``b""`` means EOF.

        Raises LocalProtocolError for data fed after EOF."""
        if self._eof and data:
            raise LocalProtocolError("receive_data() after EOF")
        if data:
            self._parser.receive_data(data)
        else:
            self._eof = True

    def next_event(self) -> Reply | NeedData | ConnectionClosed:
        """The next reply (matched to its command), NEED_DATA, or ConnectionClosed.

        Raises RemoteProtocolError (and enters ERROR) on a malformed reply, a reply nobody
        asked for, or bytes already received after the 220 answering STARTTLS.  EOF gives
        ConnectionClosed once every complete reply has been returned, even if commands are
        still pending or a reply was cut short; so does any call in CLOSED (after 221 or
        421).  Calling it in ERROR raises LocalProtocolError.
        """
        state = self._session.state
        if state is _ERROR:
            raise LocalProtocolError("the connection is in ERROR; close it")
        if state is _CLOSED:
            return ConnectionClosed()
        try:
            if state is _STARTTLS and self._parser.buffered:
                raise RemoteProtocolError("bytes received before the TLS handshake (injection)")
            reply = self._next_parsed() if self._parsed else self._parser.next_reply()
            if reply is None:
                if not self._eof:
                    return NEED_DATA
                self._session.eof()
                return ConnectionClosed()
            return self._dispatch(reply)
        except RemoteProtocolError:
            self._fail()
            raise

    def start_tls(self) -> None:
        """After the driver has wrapped the stream in TLS: back to GREETED, extensions
        forgotten, EHLO required again (RFC 3207 §4.2).

        Raises RemoteProtocolError (and enters ERROR) if any byte was fed after the 220,
        even when :meth:`next_event` was not called since: those bytes came in plaintext
        and must never be parsed as if they had come through TLS (RFC 3207 §5)."""
        self._session.start_tls()
        if self._parser.buffered:
            self._fail()
            raise RemoteProtocolError("bytes received before the TLS handshake (injection)")
        self._set_extensions(Extensions())

    # ---- internals ----

    def _check_may_send(self, step: Step) -> State:
        """Raise LocalProtocolError unless ``step`` may be sent now; the state it leads to."""
        # step.value (an enum property, ~0.5 us) only when a message needs it: this runs
        # for every command and every data chunk.
        if self._session.state in (_ERROR, _CLOSED):
            raise LocalProtocolError(f"cannot send in state {self._session.state.name}")
        if self._eof:
            raise LocalProtocolError(f"cannot send {step.value}: the server closed the connection")
        if self._parser.buffered:
            self._check_unsolicited(step.value)
        pending = self._session.pending
        last = pending[-1].command if pending else None
        if last is not None:
            # RFC 2920 §3.1: only without a group-ending command pending, and only with
            # PIPELINING, may a command go out before the previous replies are in.
            if last.ends_group:
                raise LocalProtocolError(
                    f"cannot send {step.value} before the reply to {last.verb}"
                )
            if not self._pipelining:
                raise LocalProtocolError(
                    f"cannot send {step.value}: replies pending, no PIPELINING"
                )
        return self._session.check_send(step)

    def check_unsolicited(self, before: str) -> None:
        """Raise RemoteProtocolError (and enter ERROR) if what was received holds more
        than the replies owed to the commands sent (RFC 5321 §4.2, RFC 2920 §3.2).

        :meth:`send` checks this itself; the driver also asks right after the reply that
        decides a message's outcome, with whatever had already arrived fed in: a surplus
        then means the replies are out of step with the commands (a stray line came
        before that reply), so that reply may answer another command.  ``before`` names
        what comes next, for the message.  A malformed reply among those owed is not
        reported here: :meth:`next_event` raises it when its turn comes, after the replies
        before it (the parser keeps the error)."""
        if self._parser.buffered:
            self._check_unsolicited(before, defer_malformed=True)

    def _check_unsolicited(self, name: str, *, defer_malformed: bool = False) -> None:
        """Before a send: every octet received must belong to a reply to a command already
        sent (RFC 5321 §4.2: one reply per command; RFC 2920 §3.2: in order).  The reply
        to this command cannot be here yet, so replies beyond the pending commands -- a
        line after a final reply, a reply before its command, chunks answered ahead -- are
        unsolicited: read as replies they would answer the wrong commands.  Parses the
        pending commands' replies ahead (kept for next_event); anything left over is a
        RemoteProtocolError and the session enters ERROR (design rule 11)."""
        parser, parsed, pending = self._parser, self._parsed, self._session.pending
        try:
            while len(parsed) < len(pending):
                before = parser.buffered
                reply = parser.next_reply()
                if reply is None:
                    return  # the start of a pending command's reply: more is coming
                parsed.append(reply)
                self._parsed_octets += before - parser.buffered
        except RemoteProtocolError:
            if defer_malformed:
                return
            self._fail()
            raise
        if parser.buffered:
            self._fail()
            raise RemoteProtocolError(
                f"the server sent a reply no command asked for before {name} was sent"
            )

    def _encoded(self, command: Command, smtputf8: bool) -> tuple[bytes, tuple[str, ...]]:
        """``command``'s bytes (for BDAT: its command line) and the extension keywords it
        needs; raises LocalProtocolError for an invalid argument.

        A command's bytes are a pure function of its (frozen) fields and whether SMTPUTF8
        is in use, and so are the extensions it needs; validating and encoding them is most
        of what sending MAIL and RCPT costs (measured: 2 us of a message's 60 in
        bench/client_cpu.py).  So a connection encodes the MAIL and RCPT of a sender
        writing to the same people, message after message, once.  Commands carrying
        secrets or data (AUTH, AUTH responses, BDAT) are never kept."""
        if not command.cacheable:
            return command.to_bytes(smtputf8=smtputf8), _needed_extensions(command)
        key, known_commands = (command, smtputf8), self._encoded_commands
        try:
            known = known_commands.get(key)
        except TypeError:  # a field given as a list (unhashable): encode it every time
            return command.to_bytes(smtputf8=smtputf8), _needed_extensions(command)
        if known is None:
            known = (command.to_bytes(smtputf8=smtputf8), _needed_extensions(command))
            if len(known_commands) >= _ENCODED_MAX:
                known_commands.clear()
            known_commands[key] = known
        return known

    def _next_parsed(self) -> Reply:
        reply = self._parsed.popleft()
        if not self._parsed:
            self._parsed_octets = 0
        return reply

    def _data_encoder(self) -> DataEncoder:
        if self._encoder is None:
            self._encoder = DataEncoder()
        return self._encoder

    def _fail(self) -> None:
        self._session.error()
        self._parsed.clear()
        self._parsed_octets = 0
        self._encoder = None

    def _dispatch(self, reply: Reply) -> Reply:
        code, pending = reply.code, self._session.pending
        if code // 100 == 3 and pending:
            # RFC 5321 §4.3.2, RFC 4954 §4: DATA goes on after 354 only, AUTH after 334
            # only.  Another 3xx leaves unknown whether the server now reads data.
            command = pending[0].command
            if code != _INTERMEDIATE.get(type(command)):
                raise RemoteProtocolError(f"unexpected {code} reply to {_verb(command)}")
        command = self._session.replied(code)
        if code != 421 and (command is None or command.verb in _LEARNS_FROM):
            self._learn(command, reply)
        # The constructor, not dataclasses.replace: this runs for every reply (4x faster).
        return Reply(reply.code, reply.lines, reply.enhanced_status, command)

    def _learn(self, command: Command | None, reply: Reply) -> None:
        """Side effects of a reply beyond the state: extensions, STARTTLS safety."""
        if self._session.state is State.STARTTLS:
            self._set_extensions(Extensions())
            # RFC 3207 §5 / CVE-2011-0411: anything after the 220 was sent in plaintext
            # and would be read as if it came through TLS.
            if self._parser.buffered or self._parsed:
                raise RemoteProtocolError("bytes received after STARTTLS 220 (injection)")
        elif reply.code == 250 and command is not None and command.verb == "EHLO":
            self._set_extensions(Extensions.from_ehlo_reply(reply))
        elif reply.code // 100 == 2 and command is not None and command.verb in ("EHLO", "HELO"):
            self._set_extensions(Extensions())

    def _set_extensions(self, extensions: Extensions) -> None:
        self._extensions = extensions
        self._pipelining = extensions.pipelining


#: How many encoded commands a connection keeps (emptied when full).
_ENCODED_MAX = 64


#: The one intermediate (3xx) reply each command that has one may get.
_INTERMEDIATE: dict[type[Command | None], int] = {Data: 354, Auth: 334, AuthResponse: 334}


def _verb(command: Command | None) -> str:
    return "the greeting" if command is None else command.verb


#: The commands whose replies teach the connection something (see ``_learn``).
_LEARNS_FROM = frozenset({"EHLO", "HELO", "STARTTLS"})


def _needed_extensions(command: Command) -> tuple[str, ...]:
    if isinstance(command, Mail):
        return tuple(_mail_extensions(command))
    if isinstance(command, Rcpt):
        return () if command.notify is None and command.orcpt is None else ("DSN",)
    if isinstance(command, StartTls):
        return ("STARTTLS",)
    if isinstance(command, Auth):
        return ("AUTH",)
    if isinstance(command, Bdat):
        return ("CHUNKING",)
    return ()


def _mail_extensions(mail: Mail) -> list[str]:
    needed = []
    if mail.size is not None:
        needed.append("SIZE")
    if mail.body is not None:
        needed.append("BINARYMIME" if mail.body == "BINARYMIME" else "8BITMIME")
    if mail.smtputf8:
        needed.append("SMTPUTF8")
    if mail.ret is not None or mail.envid is not None:
        needed.append("DSN")
    if mail.requiretls:
        needed.append("REQUIRETLS")
    return needed
