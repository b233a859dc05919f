"""The mail transaction: MAIL, RCPT, DATA and BDAT (RFC 5321 §3.3, RFC 3030).

Strict on purpose: commands out of order get 503, unknown or unadvertised parameters 555,
a declared SIZE over the limit 552 at MAIL, data over the limit 552 after the data, a bare LF
or an over-long line in DATA is refused.  Every refusal is made after the data was read to
its end, so the session stays in step with the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..protocol import ProtocolError, validate_address
from . import _grammar
from ._faults import Action, EarlyReply
from ._records import Message, trim

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._config import ServerConfig
    from ._faults import FaultTable, Modifiers
    from ._io import ServerIO
    from ._records import ConnectionRecord, ServerReply

__all__ = ["Transaction"]

# RFC 3461 §4.1/§4.2 and RFC 4954 §5 parameters, with the extension each needs.
_MAIL_PARAMS = {"SIZE": "SIZE", "BODY": "", "SMTPUTF8": "SMTPUTF8", "RET": "DSN"}
_MAIL_PARAMS |= {"ENVID": "DSN", "AUTH": "AUTH", "REQUIRETLS": "REQUIRETLS"}
_RCPT_PARAMS = {"NOTIFY": "DSN", "ORCPT": "DSN"}
_BODY_TYPES = {"7BIT": "", "8BITMIME": "8BITMIME", "BINARYMIME": "BINARYMIME"}


class OwningSession(Protocol):
    """What a transaction uses of its session (:class:`~._session.Session`, which owns it):
    declared here so that the two modules do not import each other."""

    config: ServerConfig
    record: ConnectionRecord
    io: ServerIO
    faults: FaultTable
    mods: Modifiers
    authenticated: str | None
    tls_active: bool
    esmtp: bool
    junk: int
    last_reply: ServerReply | None
    on_message: Callable[[Message], None]

    def ehlo_lines(self) -> list[str]: ...

    async def reply(self, code: int, enhanced: str | None, text: str | Sequence[str]) -> None: ...

    async def reply_raw(self, code: int, text: str | Sequence[str]) -> None: ...

    async def hold_and_close(self, hold: float | None) -> None: ...

    async def apply(self, action: Action | None, normal: Callable[[], Awaitable[None]]) -> None: ...


class Transaction:
    """The transaction state of one session and the commands that drive it."""

    def __init__(self, session: OwningSession) -> None:
        self.session = session
        #: Messages finished in this session (the records may keep fewer).
        self.finished = 0
        self.reset()

    def reset(self) -> None:
        """RSET, EHLO, STARTTLS and a finished message all end the transaction."""
        self.sender: str | None = None
        self.mail_params: dict[str, str | None] = {}
        self.recipients: list[str] = []
        self.rcpt_params: dict[str, dict[str, str | None]] = {}
        self.chunks: bytearray | None = None  # BDAT data so far, None before the first
        self.chunks_overflow = False

    @property
    def active(self) -> bool:
        """A MAIL command was accepted and the message is not finished."""
        return self.sender is not None

    # -- MAIL ------------------------------------------------------------------------------

    async def mail(self, argument: str) -> None:
        s = self.session
        refusal = self._mail_refusal()
        if refusal is not None:
            await s.reply(*refusal)
            return
        path = _grammar.parse_path(argument, "FROM")
        if path.error is not None or path.params is None:
            await s.reply(501, "5.5.4", path.error or "Syntax error")
            return
        problem = self._check_params(path.params, _MAIL_PARAMS) or self._check_mail(path.params)
        if problem is None:
            problem = self._check_address(path.address, path.params, "5.1.7", allow_empty=True)
        if problem is not None:
            await s.reply(*problem)
            return
        self.sender, self.mail_params = path.address, path.params
        await s.reply(250, "2.1.0", "Sender ok")

    def _mail_refusal(self) -> tuple[int, str, str] | None:
        s, config = self.session, self.session.config
        if s.record.helo is None:
            return (503, "5.5.1", "Error: send HELO/EHLO first")
        if config.require_tls and not s.tls_active:
            return (530, "5.7.0", "Must issue a STARTTLS command first")
        if config.require_auth and s.authenticated is None:
            return (530, "5.7.0", "Authentication required")
        if self.active:
            return (503, "5.5.1", "Error: nested MAIL command")
        return None

    def _check_params(
        self, params: dict[str, str | None], known: dict[str, str]
    ) -> tuple[int, str, str] | None:
        # RFC 5321 §4.1.1.11: only parameters of extensions advertised in this session (so
        # not REQUIRETLS before TLS, RFC 8689 §4), and only after EHLO; RFC 1869 §6: 555.
        advertised = {line.split()[0] for line in self.session.ehlo_lines()[1:]}
        for key in params:
            needs = known.get(key)
            if needs is None or (needs and needs not in advertised) or not self.session.esmtp:
                return (555, "5.5.4", f"Unsupported parameter {key}")
        return None

    def _check_mail(self, params: dict[str, str | None]) -> tuple[int, str, str] | None:
        config = self.session.config
        size = params.get("SIZE")
        if "SIZE" in params and (size is None or not _is_number(size)):
            return (501, "5.5.4", "Bad SIZE parameter")
        if size is not None and int(size) > config.max_message_size:
            # RFC 1870 §6.1: a declared size over the limit is refused at MAIL.
            return (552, "5.3.4", "Message size exceeds fixed maximum message size")
        body = params.get("BODY", "7BIT")
        needs = _BODY_TYPES.get((body or "").upper())
        if needs is None or (needs and not config.offers(needs)):
            return (555, "5.5.4", f"Unsupported BODY={body}")
        if params.get("SMTPUTF8") is not None:
            return (501, "5.5.4", "SMTPUTF8 takes no value")
        return None

    def _check_address(
        self, address: str, params: dict[str, str | None], status: str, *, allow_empty: bool
    ) -> tuple[int, str, str] | None:
        smtputf8 = "SMTPUTF8" in (self.mail_params if self.active else params)
        if not address.isascii() and not smtputf8:
            # RFC 6531 §3.5: non-ASCII addresses only in SMTPUTF8 transactions.
            return (553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
        if allow_empty and address == "":
            return None
        if not self.active and address.lower() == "postmaster":
            return None
        try:
            validate_address(address, smtputf8=smtputf8, allow_empty=allow_empty)
        except (ProtocolError, ValueError) as exc:
            return (553, status, f"Bad address syntax: {exc}")
        return None

    # -- RCPT ------------------------------------------------------------------------------

    async def rcpt(self, argument: str) -> None:
        s = self.session
        if not self.active:
            await s.reply(503, "5.5.1", "Error: need MAIL command")
            return
        path = _grammar.parse_path(argument, "TO")
        if path.error is not None or path.params is None:
            await s.reply(501, "5.5.4", path.error or "Syntax error")
            return
        problem = self._check_params(path.params, _RCPT_PARAMS)
        if problem is None and path.address.lower() != "postmaster":
            problem = self._check_address(path.address, path.params, "5.1.3", allow_empty=False)
        if problem is None and len(self.recipients) >= s.config.max_recipients:
            problem = (452, "4.5.3", "Error: too many recipients")  # RFC 5321 §4.5.3.1.10
        if problem is not None:
            await s.reply(*problem)
            return
        self.recipients.append(path.address)
        self.rcpt_params[path.address] = path.params
        await s.reply(250, "2.1.5", "Recipient ok")

    # -- DATA (RFC 5321 §4.1.1.4) ----------------------------------------------------------

    async def data(self, argument: str) -> None:
        s = self.session
        refusal = self._data_refusal(argument)
        if refusal is not None:
            await s.reply(*refusal)
            return
        early = s.mods.early
        await s.reply(354, None, "End data with <CR><LF>.<CR><LF>")
        if early is not None:
            await s.io.flush()
            await s.io.read_exact(early.after, keep=False)
            await s.reply_raw(early.code, early.text)
            await s.hold_and_close(early.hold)
        result = await s.io.read_data(s.config.max_message_size)
        problem = None
        data = b""
        if result.body is None:
            problem = (552, "5.3.4", "Error: message too large")
        elif result.terminator != b".\r\n" or result.body.count(b"\n") != result.body.count(
            b"\r\n"
        ):
            # RFC 5321 §2.3.8; refused as Postfix's smtpd_forbid_bare_newline does.
            problem = (550, "5.5.2", "Error: bare <LF> received")
        elif _longest_line(result.body) > s.config.max_data_line:
            problem = (554, "5.6.0", "Error: message line too long (RFC 5321 §4.5.3.1.6)")
        else:
            data = _grammar.decode_data(result.body)
            if len(data) > s.config.max_message_size:
                problem = (552, "5.3.4", "Error: message too large")
        await self._finish("DATA", data, problem)

    def _data_refusal(self, argument: str) -> tuple[int, str, str] | None:
        if argument:
            return (501, "5.5.4", "Syntax: DATA")
        if not self.active:
            return (503, "5.5.1", "Error: need MAIL command")
        if not self.recipients:
            return (554, "5.5.1", "Error: no valid recipients")
        if self.chunks is not None:
            return (503, "5.5.1", "Error: DATA after BDAT")  # RFC 3030 §2
        if (self.mail_params.get("BODY") or "").upper() == "BINARYMIME":
            return (503, "5.5.1", "Error: BINARYMIME needs BDAT")  # RFC 3030 §3
        return None

    async def _finish(
        self, transfer: str, data: bytes, problem: tuple[int, str, str] | None
    ) -> None:
        """Reply to a complete message (faults on END_OF_DATA apply) and record it."""
        s = self.session
        message = Message(
            sender=self.sender or "",
            recipients=list(self.recipients),
            mail_params=dict(self.mail_params),
            rcpt_params=dict(self.rcpt_params),
            data=data if problem is None else b"",
            transfer=transfer,
            connection=s.record,
        )
        self.reset()
        if problem is None:
            s.junk = 0  # as Postfix: the junk command count restarts after a delivery
        s.last_reply = None
        action = s.faults.take("END_OF_DATA")
        self.finished += 1
        number = self.finished

        async def normal() -> None:
            if problem is not None:
                await s.reply(*problem)
            else:
                await s.reply(250, "2.0.0", f"Ok: queued as {s.record.number}.{number}")

        try:
            await s.apply(action, normal)
        finally:
            message.reply = s.last_reply
            s.record.messages.append(message)
            trim(s.record.messages, s.config.max_kept_messages)
            s.on_message(message)

    # -- BDAT (RFC 3030 §2) ----------------------------------------------------------------

    async def bdat(self, argument: str, action: Action | None) -> None:
        s = self.session
        words = argument.split()
        last = len(words) == 2 and words[1].upper() == "LAST"
        if not 1 <= len(words) <= 2 or not _is_number(words[0]) or (len(words) == 2 and not last):
            await s.reply(501, "5.5.4", "Syntax: BDAT size [LAST]")
            return
        if isinstance(action, EarlyReply):
            await s.reply_raw(action.code, action.text)
            await s.hold_and_close(action.hold)
        size = int(words[0])
        total = (len(self.chunks) if self.chunks is not None else 0) + size
        keep = self.active and not self.chunks_overflow and total <= s.config.max_message_size
        chunk = await s.io.read_exact(size, keep=keep)
        if action is None and last:
            await self._bdat_last(chunk, keep)
            return
        await s.apply(action, lambda: self._bdat_chunk(chunk, keep, last))

    async def _bdat_chunk(self, chunk: bytes, kept: bool, last: bool) -> None:
        s = self.session
        if not s.config.offers("CHUNKING"):
            await s.reply(502, "5.5.1", "Error: BDAT not available")
        elif not self.active or not self.recipients:
            await s.reply(503, "5.5.1", "Error: need MAIL and RCPT before BDAT")
        elif not kept:
            self.reset()
            await s.reply(552, "5.3.4", "Error: message too large")
        elif last:
            await self._bdat_last(chunk, kept)
        else:
            if self.chunks is None:
                self.chunks = bytearray()
            self.chunks += chunk  # in place: many tiny chunks must not cost O(n²) copies
            await s.reply(250, "2.0.0", f"{len(chunk)} octets received")

    async def _bdat_last(self, chunk: bytes, kept: bool) -> None:
        s = self.session
        if not s.config.offers("CHUNKING") or not self.active or not self.recipients or not kept:
            await self._bdat_chunk(chunk, kept, last=False)
            return
        chunks = self.chunks if self.chunks is not None else bytearray()
        chunks += chunk  # in place: one copy of the message for the record, not two
        await self._finish("BDAT", bytes(chunks), None)


def _is_number(text: str) -> bool:
    """ASCII digits only (RFC 1870 / RFC 3030 size-value): ``str.isdigit`` also admits
    "²" (which ``int`` refuses) and other scripts' digits (which no SMTP grammar allows)."""
    return text.isascii() and text.isdigit()


def _longest_line(body: bytes) -> int:
    """Length of the longest line, CRLF included."""
    return max((len(line) + 2 for line in body.split(b"\r\n")), default=0)
