"""The public exception hierarchy: the seed's failure table in Python (docs/dotnet.rst).

Every protocol-level failure is an :class:`SmtpError` carrying an :class:`SmtpStatusCode` and,
when the server said something, its :class:`~trio_smtp.protocol.Reply`.  Some also inherit a
builtin so generic handlers work: :class:`SmtpConnectError` is a ``ConnectionError`` and
:class:`SmtpTimeoutError` a ``TimeoutError``.  Validation of the caller's input raises plain
``TypeError``/``ValueError`` before anything is written.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .protocol import Reply

if TYPE_CHECKING:
    from ._results import SendResult

__all__ = [
    "SmtpAuthenticationError",
    "SmtpConnectError",
    "SmtpDeliveryTimeoutError",
    "SmtpDeliveryUnknownError",
    "SmtpError",
    "SmtpFailedRecipientError",
    "SmtpFailedRecipientsError",
    "SmtpProtocolError",
    "SmtpResponseError",
    "SmtpStatusCode",
    "SmtpTimeoutError",
    "SmtpTlsError",
]


class SmtpStatusCode(enum.IntEnum):
    """The SMTP reply codes, named as .NET's ``System.Net.Mail.SmtpStatusCode``."""

    #: No reply code applies (connection failure, timeout, local error).
    GENERAL_FAILURE = -1
    SYSTEM_STATUS = 211
    HELP_MESSAGE = 214
    SERVICE_READY = 220
    SERVICE_CLOSING_TRANSMISSION_CHANNEL = 221
    AUTHENTICATION_SUCCESSFUL = 235
    OK = 250
    USER_NOT_LOCAL_WILL_FORWARD = 251
    CANNOT_VERIFY_USER_WILL_ATTEMPT_DELIVERY = 252
    AUTHENTICATION_CHALLENGE = 334
    START_MAIL_INPUT = 354
    SERVICE_NOT_AVAILABLE = 421
    MAILBOX_BUSY = 450
    LOCAL_ERROR_IN_PROCESSING = 451
    INSUFFICIENT_STORAGE = 452
    CLIENT_NOT_PERMITTED = 454
    COMMAND_UNRECOGNIZED = 500
    SYNTAX_ERROR = 501
    COMMAND_NOT_IMPLEMENTED = 502
    BAD_COMMAND_SEQUENCE = 503
    COMMAND_PARAMETER_NOT_IMPLEMENTED = 504
    MUST_ISSUE_START_TLS_FIRST = 530
    AUTHENTICATION_FAILED = 535
    MAILBOX_UNAVAILABLE = 550
    USER_NOT_LOCAL_TRY_ALTERNATE_PATH = 551
    EXCEEDED_STORAGE_ALLOCATION = 552
    MAILBOX_NAME_NOT_ALLOWED = 553
    TRANSACTION_FAILED = 554

    @classmethod
    def from_code(cls, code: int | None) -> SmtpStatusCode:
        """The member for ``code``, or GENERAL_FAILURE for ``None`` or an unnamed code."""
        if code is None:
            return cls.GENERAL_FAILURE
        try:
            return cls(code)
        except ValueError:
            return cls.GENERAL_FAILURE


class SmtpError(Exception):
    """Base class of every SMTP failure.

    ``status_code`` is the reply code as an :class:`SmtpStatusCode` (GENERAL_FAILURE when
    no reply applies); ``reply`` is the server's reply, when there was one.
    """

    def __init__(
        self,
        message: str | SmtpStatusCode,
        reply: Reply | None = None,
        *,
        status_code: SmtpStatusCode | None = None,
    ) -> None:
        # The documented form, SmtpError(status_code, reply), is accepted as well as a message:
        # like .NET's SmtpException(SmtpStatusCode), the message is then derived.
        if isinstance(message, SmtpStatusCode):
            status_code = message if status_code is None else status_code
            message = message.name.replace("_", " ").lower()
        super().__init__(message)
        self.message = message
        self.reply = reply
        if status_code is None:
            status_code = SmtpStatusCode.from_code(reply.code if reply else None)
        self.status_code = status_code

    @property
    def is_transient(self) -> bool:
        """True when trying again later may succeed (a 4xx reply, a timeout, a lost
        connection); False for a 5xx reply and for local errors."""
        if self.reply is not None:
            return self.reply.is_transient
        return False

    def __str__(self) -> str:
        if self.reply is not None:
            return f"{self.message}: {self.reply}"
        return self.message


class SmtpConnectError(SmtpError, ConnectionError):
    """The connection to the server could not be made, or was lost before any delivery."""

    @property
    def is_transient(self) -> bool:
        return self.reply is None or self.reply.is_transient


class SmtpTimeoutError(SmtpError, TimeoutError):
    """A phase deadline (see :class:`~trio_smtp.Timeouts`) expired; the connection is closed."""

    @property
    def is_transient(self) -> bool:
        return True


class SmtpTlsError(SmtpError):
    """TLS could not be established: STARTTLS required but not advertised or refused, bytes
    injected after the 220 reply, or a failed handshake or certificate check.  No credential
    and no envelope was sent."""


class SmtpAuthenticationError(SmtpError):
    """The server refused the credentials (``reply`` is its answer), no offered mechanism is
    supported, or credentials would have gone over an unencrypted non-loopback link."""


class SmtpProtocolError(SmtpError):
    """The server broke the protocol (malformed, over-long or unexpected reply); the
    connection was closed and will not be reused."""


class SmtpResponseError(SmtpError):
    """The server refused a command (MAIL, DATA, the end of data, ...) with ``reply``.

    ``command`` names what was refused: ``"MAIL"`` (the sender: no transaction began, so
    nothing was delivered), ``"DATA"``, ``"BDAT"`` (a chunk before the last), ``"RSET"``,
    or ``"end of data"`` (the message itself: the reply to the terminator or to ``BDAT n
    LAST``); None when the reply answers no one command: a 421 (the server closing the
    connection, whatever was asked, RFC 5321 §3.8) or a reply during the message data.
    """

    def __init__(
        self,
        message: str | SmtpStatusCode,
        reply: Reply | None = None,
        *,
        status_code: SmtpStatusCode | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, reply, status_code=status_code)
        self.command = command


class SmtpDeliveryUnknownError(SmtpError):
    """The connection broke after the end of data and before the server's reply: the message
    may have been delivered.  It is never retried automatically."""

    @property
    def is_transient(self) -> bool:
        return False


class SmtpDeliveryTimeoutError(SmtpDeliveryUnknownError, SmtpTimeoutError):
    """The deadline for the reply to the end of data (or to ``BDAT ... LAST``) expired
    (:attr:`Timeouts.data_termination <trio_smtp.Timeouts.data_termination>`): the server
    has the whole message and may have delivered it (RFC 5321 §4.1.1.4, §4.5.3.2.6).

    Both a :class:`SmtpDeliveryUnknownError` -- so ``except SmtpDeliveryUnknownError``
    catches every "maybe delivered" outcome -- and a :class:`SmtpTimeoutError` (hence a
    ``TimeoutError``).  :attr:`~SmtpError.is_transient` is False, as for every "maybe delivered"
    error: retrying could deliver the message twice, so it is never retried silently.
    The connection is closed."""

    @property
    def is_transient(self) -> bool:
        return False


class SmtpFailedRecipientError(SmtpError):
    """One recipient refused: ``recipient`` and the server's ``reply``."""

    def __init__(self, recipient: str, reply: Reply) -> None:
        super().__init__(f"recipient {recipient!r} refused", reply=reply)
        self.recipient = recipient


#: At most this many refused recipients are named in the message (``failures`` has them all).
_SHOWN = 20


class SmtpFailedRecipientsError(SmtpError):
    """Some or all recipients were refused.

    ``failures`` lists one :class:`SmtpFailedRecipientError` per refused recipient, each
    with its own reply; the message names each recipient with its reply (``some recipients
    refused: a@x: 450 4.2.1 later; b@x: 550 5.1.1 no such user``).  ``result`` is the
    :class:`~trio_smtp.SendResult` when the message was delivered to the others, or
    ``None`` when every recipient was refused (nothing was delivered).

    ``reply`` and ``status_code`` are those of the first refusal.  ``is_transient`` is
    True only when *every* refusal is transient (4xx): sending the same message again later
    may then reach them all.  When refusals are mixed (one 450, one 550) it is False, since
    retrying as is would fail again; retry only the failures whose own ``is_transient`` is
    True.
    """

    def __init__(
        self,
        failures: list[SmtpFailedRecipientError],
        result: SendResult | None = None,
    ) -> None:
        each = [f"{f.recipient}: {f.reply}" for f in failures[:_SHOWN]]
        if len(failures) > _SHOWN:
            each.append(f"and {len(failures) - _SHOWN} more")
        what = "some recipients refused" if result is not None else "all recipients refused"
        super().__init__(
            f"{what}: {'; '.join(each)}", reply=failures[0].reply if failures else None
        )
        self.failures = failures
        self.result = result

    @property
    def is_transient(self) -> bool:
        """True when every refusal is transient (4xx); False when any is permanent."""
        return all(f.is_transient for f in self.failures)

    def __str__(self) -> str:
        return self.message  # each recipient's reply is already in it
