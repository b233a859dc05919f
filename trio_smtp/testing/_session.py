"""One SMTP server session: the command loop, session state and replies.

Theory of operation: :meth:`Session.run` greets, then takes one command line at a time from
:class:`~._io.ServerIO` and answers it.  Replies are queued and written when the server next
waits for input, so a pipelined batch gets its replies in order, in one write (RFC 2920).
Before the normal handler runs, the fault table is consulted (:mod:`._faults`); the handler
never knows whether a fault changed its reply.  Mail transactions (MAIL, RCPT, DATA, BDAT)
live in :mod:`._transaction`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import trio

from ..protocol import format_reply
from . import _auth as sasl
from . import _grammar
from ._config import ServerConfig, TlsMode
from ._faults import (
    Action,
    Delay,
    Drip,
    EarlyReply,
    FaultTable,
    Handover,
    Hangup,
    Inject,
    Modifiers,
    Respond,
    Shutdown,
)
from ._io import ClientTimeout, ServerIO
from ._records import CommandRecord, ConnectionRecord, Message, ServerReply, trim
from ._transaction import Transaction

if TYPE_CHECKING:
    from ._tls import TlsMaterial

__all__ = ["Session", "SessionClosed"]

# Replies that count towards ``max_errors``: the client sent something wrong, or something
# it may not repeat for ever (no STARTTLS/AUTH yet, a failed AUTH, a bad address, too many
# recipients, no valid recipients): a flood of any of them ends in 421.
_ERROR_CODES = frozenset({452, 500, 501, 502, 503, 504, 530, 535, 553, 554, 555})
# Commands a client can repeat for ever without an error (Postfix's "junk commands", plus
# EHLO/HELO): past ``max_junk_commands`` each one counts as an error, so that a flood ends
# with 421 instead of growing the connection's record without bound.
_JUNK = frozenset({"NOOP", "VRFY", "RSET", "EHLO", "HELO"})


class SessionClosed(Exception):
    """Raised inside the session to end it after the server decided to close."""


class Session:
    """The server side of one connection."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        record: ConnectionRecord,
        *,
        config: ServerConfig,
        faults: FaultTable,
        tls: TlsMaterial | None,
        on_message: Callable[[Message], None],
        on_record: Callable[[], None] = lambda: None,
    ) -> None:
        self.io = ServerIO(stream, read_timeout=config.idle_seconds)
        self.record = record
        self.config = config
        self.faults = faults
        self._tls = tls
        self.on_message = on_message
        #: Called after each change to ``record`` (a command, a reply, TLS): it wakes the
        #: server's ``wait_for`` waiters, which re-check their predicate.
        self.on_record = on_record
        self.tls_active = False
        self.tls_pending = False  # inside a TLS handshake: no reply can be written
        self.esmtp = False
        self.authenticated: str | None = None
        self.refused = False
        self.errors = 0
        self.junk = 0
        self.close_reason: str | None = None
        self.mods = Modifiers()
        self.current: CommandRecord | None = None
        self.last_reply: ServerReply | None = None
        self.transaction = Transaction(self)

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until QUIT, a fault, or the client going away (PeerClosed propagates)."""
        try:
            if self.config.tls is TlsMode.IMPLICIT:
                await self.start_tls()
            await self.apply(self.faults.take("GREETING"), self._greet)
            # RFC 5321 §3.1: a 554 greeting refuses service; only QUIT is then honoured.
            self.refused = self.last_reply is not None and self.last_reply.code == 554
            while True:
                line = await self.read_command_line(self.config.max_command_line)
                await self._handle_line(line)
        except ClientTimeout:
            await self._timed_out()
        except SessionClosed:
            pass
        await self.io.flush()

    async def read_command_line(self, max_length: int) -> bytes | None:
        """:meth:`ServerIO.read_line` with one deadline for the whole line, so a client
        dripping a byte at a time cannot hold the session (RFC 5321 §4.5.3.2.7)."""
        with trio.move_on_after(self.config.idle_seconds):
            return await self.io.read_line(max_length)
        raise ClientTimeout

    async def _timed_out(self) -> None:
        # As Postfix does: an unsolicited 421 (if the client still reads), then close.
        self.close_reason = "timeout"
        self.current = None
        self.mods = Modifiers()
        if not self.tls_pending:
            with trio.move_on_after(self.config.idle_seconds):
                await self.reply_raw(421, f"4.4.2 {self.config.hostname} Error: timeout exceeded")
                await self.io.flush()

    async def _greet(self) -> None:
        # RFC 5321 §4.2: the greeting carries no enhanced status code.
        await self.reply(220, None, f"{self.config.hostname} {self.config.greeting}")

    async def _handle_line(self, line: bytes | None) -> None:
        self.mods = Modifiers()
        if line is None:
            self._start_command(b"", "", "")
            await self.reply(500, "5.5.2", "Error: line too long (RFC 5321 §4.5.3.1.4)")
            return
        parsed = _grammar.parse_command(line)
        command = self._start_command(line, parsed.verb, parsed.argument)
        if parsed.error is not None:
            await self.reply(500, "5.5.2", parsed.error)
            return
        if command.verb in _JUNK:
            self.junk += 1
            if self.junk > self.config.max_junk_commands:
                self.errors += 1  # the reply below says 421 once max_errors is reached
        action = self._take_fault(command.verb, command.argument)
        if command.verb == "BDAT":
            # RFC 3030 §2: the chunk is read whatever the reply; the handler applies faults.
            await self.transaction.bdat(command.argument, action)
            return
        await self.apply(action, lambda: self._dispatch(command.verb, command.argument))

    def _take_fault(self, verb: str, argument: str) -> Action | None:
        """The fault for this command: its verb, START_OF_DATA for the command that starts a
        message's data (DATA, or a message's first BDAT), and for MAIL and RCPT the parsed
        address for ``match`` predicates."""
        triggers = [verb]
        if verb == "DATA" or (verb == "BDAT" and self.transaction.chunks is None):
            triggers.append("START_OF_DATA")
        address = None
        if verb in ("MAIL", "RCPT"):
            path = _grammar.parse_path(argument, "FROM" if verb == "MAIL" else "TO")
            address = path.address if path.error is None else None
        return self.faults.take(*triggers, argument=argument, address=address)

    def _start_command(self, raw: bytes, verb: str, argument: str) -> CommandRecord:
        self.current = CommandRecord(raw=raw, verb=verb, argument=argument)
        self.record.commands.append(self.current)
        trim(self.record.commands, self.config.max_kept_commands)
        self.on_record()
        return self.current

    async def _dispatch(self, verb: str, argument: str) -> None:
        if self.refused and verb != "QUIT":
            # RFC 5321 §3.1: after a 554 greeting only QUIT is answered normally.
            await self.reply(503, "5.5.1", "Error: no SMTP service here")
            return
        handler = self._handlers().get(verb)
        if handler is None:
            await self.reply(500, "5.5.2", "Error: command not recognized")
            return
        await handler(argument)

    def _handlers(self) -> dict[str, Callable[[str], Awaitable[None]]]:
        t = self.transaction
        return {
            "EHLO": self._ehlo,
            "HELO": self._helo,
            "STARTTLS": self._starttls,
            "AUTH": self._auth,
            "MAIL": t.mail,
            "RCPT": t.rcpt,
            "DATA": t.data,
            "RSET": self._rset,
            "NOOP": self._noop,
            "VRFY": self._vrfy,
            "QUIT": self._quit,
        }

    # -- faults ----------------------------------------------------------------------------

    async def apply(self, action: Action | None, normal: Callable[[], Awaitable[None]]) -> None:
        """Carry out ``action`` around (or instead of) the ``normal`` handling."""
        while True:
            if action is None:
                await normal()
                return
            if isinstance(action, Delay):
                await trio.sleep(action.seconds)
                action = action.then
            elif isinstance(action, Drip):
                self.mods.drip = action.interval
                action = action.then
            elif isinstance(action, Inject):
                self.mods.inject += action.data
                action = action.then
            elif isinstance(action, EarlyReply) and self._in_data_command():
                self.mods.early = action
                await normal()
                return
            elif isinstance(action, Respond):
                if action.performs_command:
                    self.mods.override = action
                    await normal()
                else:
                    await self.reply_raw(action.code, action.text)
                return
            else:
                await self._terminal(action)
                return

    def _in_data_command(self) -> bool:
        return self.current is not None and self.current.verb == "DATA"

    async def _terminal(self, action: Hangup | Shutdown | EarlyReply | Handover) -> None:
        if isinstance(action, Hangup):
            await self.close("fault")
        elif isinstance(action, Shutdown):
            await self.reply_raw(421, action.text)
            await self.close("fault")
        elif isinstance(action, EarlyReply):
            # Only DATA and BDAT know when "during the transfer" is; elsewhere, reply now.
            await self.reply_raw(action.code, action.text)
            await self.hold_and_close(action.hold)
        else:
            await self.io.flush()
            await action.handler(self.io.stream, self.io.take_buffered())
            await self.close("fault")

    async def hold_and_close(self, hold: float | None) -> None:
        """Write what is queued, read nothing more, then close after ``hold`` seconds."""
        await self.io.flush()
        if hold is None:
            await trio.sleep_forever()
        await trio.sleep(hold)
        await self.close("fault")

    async def close(self, reason: str) -> None:
        """End the session: flush replies and stop."""
        self.close_reason = reason
        await self.io.flush()
        raise SessionClosed

    # -- replies ---------------------------------------------------------------------------

    async def reply(self, code: int, enhanced: str | None, text: str | Sequence[str]) -> None:
        """Send a reply, with the RFC 2034 enhanced code when the session negotiated it."""
        override = self.mods.override
        if override is not None:
            self.mods.override = None
            await self.reply_raw(override.code, override.text)
            return
        if code in _ERROR_CODES:
            self.errors += 1
        lines = [text] if isinstance(text, str) else list(text)
        if enhanced is not None and self.esmtp and self.config.offers("ENHANCEDSTATUSCODES"):
            lines = [f"{enhanced} {line}" for line in lines]
        await self.reply_raw(code, lines)
        if self.errors >= self.config.max_errors:
            self.current = None  # answers no command: recorded in ``unsolicited``
            await self.reply_raw(421, f"4.7.0 {self.config.hostname} Error: too many errors")
            await self.close("errors")

    async def reply_raw(self, code: int, text: str | Sequence[str]) -> None:
        """Send exactly this reply, applying the pending drip/inject modifiers."""
        lines = tuple(text.split("\n")) if isinstance(text, str) else tuple(text)
        raw = format_reply(code, list(lines))
        if code == 334 and raw == b"334\r\n":
            raw = b"334 \r\n"  # RFC 4954 §4: continue-req = "334" SP [base64]
        reply = ServerReply(code, lines, raw)
        self.last_reply = reply
        if self.current is not None and self.current.reply is None:
            self.current.reply = reply
        elif self.current is None:
            self.record.unsolicited.append(reply)
        self.on_record()  # also covers what a handler recorded before replying (HELO, AUTH)
        await self._write(raw)

    async def _write(self, raw: bytes) -> None:
        data = raw + self.mods.inject
        drip, self.mods.drip, self.mods.inject = self.mods.drip, None, b""
        if drip is not None:
            await self.io.drip(data, drip)
        else:
            self.io.queue(data)
            if len(data) > len(raw):
                await self.io.flush()  # injected bytes go out in the same write as the reply

    # -- session commands ------------------------------------------------------------------

    def ehlo_lines(self) -> list[str]:
        """The EHLO reply: greeting line, then one line per extension on offer."""
        config = self.config
        lines = [f"{config.hostname} greets {self.record.helo}"]
        for name in ("PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING", "BINARYMIME"):
            if config.offers(name):
                lines.append(name)
        if config.offers("SIZE"):
            lines.append(f"SIZE {config.max_message_size}")
        if config.offers("ENHANCEDSTATUSCODES"):
            lines.append("ENHANCEDSTATUSCODES")
        if self._starttls_available():
            lines.append("STARTTLS")
        if self.tls_active and config.offers("REQUIRETLS"):
            lines.append("REQUIRETLS")  # RFC 8689 §4: only on a TLS session
        if self._auth_available():
            lines.append("AUTH " + " ".join(config.auth_mechanisms))
        return lines

    def _starttls_available(self) -> bool:
        return (
            self.config.tls is TlsMode.STARTTLS
            and self.config.offers("STARTTLS")
            and not self.tls_active
        )

    def _auth_available(self) -> bool:
        config = self.config
        offered = config.offers("AUTH") and bool(config.credentials) and config.auth_mechanisms
        return bool(offered) and (self.tls_active or not config.require_tls)

    async def _ehlo(self, argument: str) -> None:
        if not argument:
            await self.reply(501, "5.5.4", "Syntax: EHLO hostname")
            return
        self.transaction.reset()
        self.record.helo = argument
        self.esmtp = True
        await self.reply(250, None, self.ehlo_lines())

    async def _helo(self, argument: str) -> None:
        if not argument:
            await self.reply(501, "5.5.4", "Syntax: HELO hostname")
            return
        self.transaction.reset()
        self.record.helo = argument
        self.esmtp = False
        await self.reply(250, None, self.config.hostname)

    async def _starttls(self, argument: str) -> None:
        if argument:
            await self.reply(501, "5.5.4", "Syntax: STARTTLS")
        elif self.tls_active:
            await self.reply(503, "5.5.1", "Error: TLS already active")
        elif not self._starttls_available():
            await self.reply(502, "5.5.1", "Error: STARTTLS not available")
        else:
            await self.reply(220, "2.0.0", "Ready to start TLS")
            # RFC 3207 §6 / CVE-2011-0411: plaintext pipelined after STARTTLS is discarded.
            self.record.discarded_after_starttls += len(self.io.take_buffered())
            await self.start_tls()
            # RFC 3207 §4.2: forget everything learned before TLS.
            self.record.helo = None
            self.esmtp = False
            self.authenticated = None
            self.transaction.reset()

    async def start_tls(self) -> None:
        """Wrap the stream in TLS (server side) and record what was negotiated."""
        assert self._tls is not None
        await self.io.flush()
        stream = trio.SSLStream(self.io.stream, self._tls.server_context, server_side=True)
        self.tls_pending = True
        with trio.move_on_after(self.config.idle_seconds):
            await stream.do_handshake()
            self.tls_pending = False
        if self.tls_pending:
            raise ClientTimeout
        self.io.stream = stream
        self.tls_active = True
        self.record.tls_version = stream.version()
        cipher = stream.cipher()
        self.record.tls_cipher = cipher[0] if cipher else None
        self.on_record()

    async def _rset(self, argument: str) -> None:
        if argument:
            await self.reply(501, "5.5.4", "Syntax: RSET")
            return
        self.transaction.reset()
        await self.reply(250, "2.0.0", "Ok")

    async def _noop(self, argument: str) -> None:
        await self.reply(250, "2.0.0", "Ok")

    async def _vrfy(self, argument: str) -> None:
        if not argument:
            await self.reply(501, "5.5.4", "Syntax: VRFY address")
            return
        # RFC 5321 §3.5.3: 252 when the server will not say but will accept mail.
        await self.reply(252, "2.5.2", "Cannot VRFY user, but will accept message")

    async def _quit(self, argument: str) -> None:
        await self.reply(221, "2.0.0", "Bye")
        await self.close("quit")

    # -- AUTH (RFC 4954) -------------------------------------------------------------------

    async def _auth(self, argument: str) -> None:
        refusal = self._auth_refusal()
        if refusal is not None:
            await self.reply(*refusal)
            return
        name, _, initial_text = argument.partition(" ")
        if name.upper() not in self.config.auth_mechanisms:
            await self.reply(504, "5.5.4", "Error: unsupported authentication mechanism")
            return
        config = self.config
        mechanism = sasl.make_mechanism(
            name, config.credentials, config.hostname, login_prompts=config.login_prompts
        )
        assert mechanism is not None
        response: bytes | None = None
        if initial_text:
            response = _b64decode(initial_text)
            if response is None:
                await self.reply(501, "5.5.2", "Error: cannot decode initial response")
                return
        await self._auth_exchange(mechanism, response)

    def _auth_refusal(self) -> tuple[int, str, str] | None:
        if not self.config.offers("AUTH") or not self.config.credentials:
            return (502, "5.5.1", "Error: authentication not enabled")
        if self.config.require_tls and not self.tls_active:
            return (530, "5.7.0", "Must issue a STARTTLS command first")
        if not self.esmtp:
            return (503, "5.5.1", "Error: send EHLO first")
        if self.authenticated is not None:
            return (503, "5.5.1", "Error: already authenticated")
        if self.transaction.active:
            return (503, "5.5.1", "Error: MAIL transaction in progress")
        return None

    async def _auth_exchange(self, mechanism: sasl.ServerMechanism, response: bytes | None) -> None:
        for _ in range(8):  # no mechanism here needs more rounds
            step = mechanism.step(response)
            if isinstance(step, sasl.Success):
                self.authenticated = step.identity
                self.record.auth_identity = step.identity
                self.record.auth_mechanism = mechanism.name
                await self.reply(235, "2.7.0", "Authentication successful")
                return
            if isinstance(step, sasl.Failure):
                await self.reply(535, "5.7.8", "Error: authentication failed")
                return
            await self.reply_raw(334, base64.b64encode(step.data).decode("ascii"))
            line = await self.read_command_line(self.config.max_auth_line)
            self.mods = Modifiers()
            if line is None:
                self._start_command(b"", "", "")
                await self.reply(500, "5.5.6", "Error: authentication exchange line too long")
                return
            text = line.rstrip(b"\r\n").decode("ascii", "replace")
            self._start_command(line, "", text)
            if text == "*":
                await self.reply(501, "5.7.0", "Authentication cancelled")
                return
            response = _b64decode(text)
            if response is None:
                await self.reply(501, "5.5.2", "Error: cannot decode response")
                return
        await self.reply(535, "5.7.8", "Error: too many authentication rounds")


def _b64decode(text: str) -> bytes | None:
    if text == "=":
        return b""  # RFC 4954 §4: "=" is an empty initial response
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
