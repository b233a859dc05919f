"""What the testing server saw: connections, commands and messages.

Records are plain mutable dataclasses that the server fills in as a session goes on; tests
read them.  Nothing in here does I/O.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

__all__ = [
    "CommandRecord",
    "ConnectionRecord",
    "Message",
    "ServerReply",
    "ServerStatistics",
    "trim",
]


@dataclass(frozen=True, slots=True)
class ServerReply:
    """A reply the server sent (or was told to send by a fault)."""

    code: int
    #: The text of each line, without code and separator (enhanced status code included).
    lines: tuple[str, ...]
    #: The exact bytes written, CRLFs included.
    raw: bytes

    @property
    def text(self) -> str:
        """The lines joined with ``"\\n"``."""
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass(slots=True)
class CommandRecord:
    """One command line as received.

    ``verb`` is upper-cased; ``argument`` is the rest of the line (no leading space).  For an
    AUTH continuation line ``verb`` is ``""``.  ``reply`` is ``None`` while the command is
    being handled, and stays ``None`` when the server closed without replying.
    """

    raw: bytes
    verb: str
    argument: str
    reply: ServerReply | None = None


@dataclass(slots=True)
class Message:
    """One message whose data the server received in full (DATA or BDAT LAST).

    ``data`` is exactly what the client meant to send: for DATA the bytes between the 354 and
    the terminator, dot-un-stuffed (RFC 5321 §4.5.2), final CRLF included; for BDAT the
    chunks concatenated.  ``reply`` is what the server answered; ``accepted`` says whether
    that was a 2xx.  Rejected messages (too large, bare LF, an injected failure) are recorded
    too, with ``data`` empty when the server did not keep it.
    """

    sender: str
    recipients: list[str]
    #: MAIL FROM parameters, keywords upper-cased (``{"SIZE": "123", "SMTPUTF8": None}``).
    mail_params: dict[str, str | None]
    #: RCPT TO parameters for each accepted recipient.
    rcpt_params: dict[str, dict[str, str | None]]
    data: bytes
    #: ``"DATA"`` or ``"BDAT"``.
    transfer: str
    reply: ServerReply | None = None
    #: The connection this message came over.
    connection: ConnectionRecord | None = field(default=None, repr=False)

    @property
    def accepted(self) -> bool:
        """True when the server answered the data with a 2xx reply."""
        return self.reply is not None and 200 <= self.reply.code < 300

    def as_email(self) -> EmailMessage:
        """Parse :attr:`data` as an :class:`email.message.EmailMessage`."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def headers(self) -> Mapping[str, str]:
        """The message's header fields (first occurrence of each), for quick assertions."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.compat32)
        result: dict[str, str] = {}
        for name, value in parsed.items():
            result.setdefault(name, str(value))
        return result


@dataclass(slots=True)
class ConnectionRecord:
    """Everything about one connection, in the order it happened."""

    #: Sequence number (1, 2, ...) in order of acceptance.
    number: int
    #: The peer's address as reported by the socket (``None`` for a plain stream).
    peer: object = None
    commands: list[CommandRecord] = field(default_factory=list)
    #: Replies that answered no command: the greeting, or a 421 sent on the server's own accord.
    unsolicited: list[ServerReply] = field(default_factory=list)
    #: The domain given with the last EHLO/HELO.
    helo: str | None = None
    #: ``"TLSv1.3"`` etc. once TLS is up (implicit or after STARTTLS), else ``None``.
    tls_version: str | None = None
    #: Cipher name once TLS is up.
    tls_cipher: str | None = None
    #: The authenticated user name, once AUTH succeeded.
    auth_identity: str | None = None
    #: The SASL mechanism that authenticated the client.
    auth_mechanism: str | None = None
    messages: list[Message] = field(default_factory=list)
    #: Plaintext octets the client had sent after STARTTLS, discarded (RFC 3207 §6).
    discarded_after_starttls: int = 0
    #: True once the session is over.
    closed: bool = False
    #: Why the connection ended: ``"quit"``, ``"peer"`` (the client closed or broke it),
    #: ``"fault"``, ``"errors"`` (too many errors), ``"timeout"`` (the client stayed silent
    #: for the idle timeout), ``"server"`` (the server shut down), ``"crash"``.
    close_reason: str | None = None
    #: The exception that ended the connection, if any (a crash or a broken stream).
    error: BaseException | None = None

    @property
    def verbs(self) -> list[str]:
        """The verbs received, in order (handy for assertions on command order)."""
        return [command.verb for command in self.commands]


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """Counters since the server started (:meth:`SmtpServer.statistics`).

    They count everything, also what is no longer kept in the records.
    """

    #: Connections accepted (and streams served), in total.
    connections: int
    #: Sessions running now.
    open_connections: int
    #: Messages whose data was received in full, accepted or not.
    messages: int
    #: Connection handlers that failed with an unexpected exception.
    crashes: int
    #: Times ``accept`` failed for lack of resources (EMFILE, ENFILE, ENOMEM, ENOBUFS), each
    #: followed by a short pause before accepting again.
    accept_errors: int


def trim(records: list[Any], keep: int | None) -> None:
    """Drop the oldest entries of ``records`` beyond the last ``keep`` (``None``: keep all)."""
    if keep is not None and len(records) > keep:
        del records[: len(records) - keep]
