"""Per-message delivery options: DSN (RFC 3461) and REQUIRETLS (RFC 8689).

Theory of operation: :func:`delivery_options` turns the keyword arguments of
``SmtpClient.send``/``send_async`` into a frozen :class:`DeliveryOptions`, validating
everything synchronously (``TypeError``/``ValueError`` before any I/O).  What the server must
offer is checked before MAIL by :meth:`DeliveryOptions.check_server`: asking for a DSN from a
server without DSN, or REQUIRETLS without TLS or without the extension, is refused locally
and nothing is sent -- a DSN request is never silently dropped (RFC 3461 §4: a client must
not send the parameters to a server that did not advertise them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar, Literal

from .._errors import SmtpError, SmtpStatusCode, SmtpTlsError
from ..protocol import Extensions, LocalProtocolError, Mail, Rcpt, xtext_encode
from ..protocol._frozen import Frozen, set_field

__all__ = ["DeliveryNotification", "DeliveryOptions", "DsnReturn", "delivery_options"]


class DeliveryNotification(enum.Flag):
    """When the recipient's server should send a delivery status notification (RFC 3461
    §4.1 NOTIFY), as .NET's ``DeliveryNotificationOptions``.

    Combine ``ON_SUCCESS | ON_FAILURE | DELAY``; ``NEVER`` cannot be combined with them;
    ``NONE`` sends no NOTIFY parameter (the server's default applies).
    """

    NONE = 0
    ON_SUCCESS = enum.auto()
    ON_FAILURE = enum.auto()
    DELAY = enum.auto()
    NEVER = enum.auto()


class DsnReturn(enum.Enum):
    """What a failure DSN returns of the message (RFC 3461 §4.3 RET)."""

    #: The whole message.
    FULL = "FULL"
    #: Only the header section.
    HEADERS = "HDRS"


_KEYWORDS = (
    (DeliveryNotification.ON_SUCCESS, "SUCCESS"),
    (DeliveryNotification.ON_FAILURE, "FAILURE"),
    (DeliveryNotification.DELAY, "DELAY"),
)

Notify = DeliveryNotification | Mapping[str, DeliveryNotification] | None


def _notify_keywords(flag: object) -> tuple[str, ...] | None:
    if not isinstance(flag, DeliveryNotification):
        raise TypeError(f"notify must be a DeliveryNotification, not {type(flag).__name__}")
    if not flag.value:
        return None
    if flag.value & DeliveryNotification.NEVER.value:
        if flag.value != DeliveryNotification.NEVER.value:
            raise ValueError("DeliveryNotification.NEVER cannot be combined with other options")
        return ("NEVER",)
    return tuple(keyword for member, keyword in _KEYWORDS if flag.value & member.value)


class DeliveryOptions(Frozen):
    """Validated DSN/REQUIRETLS options for one message."""

    __slots__ = ("envid", "notify", "orcpt", "requiretls", "ret")
    _not_hashed: ClassVar[frozenset[str]] = frozenset({"notify", "orcpt"})
    #: recipient -> NOTIFY keywords (absent: no NOTIFY for that recipient).
    notify: Mapping[str, tuple[str, ...]]
    ret: Literal["FULL", "HDRS"] | None
    envid: str | None
    orcpt: Mapping[str, str] | None
    requiretls: bool

    def __init__(
        self,
        notify: Mapping[str, tuple[str, ...]],
        ret: Literal["FULL", "HDRS"] | None = None,
        envid: str | None = None,
        orcpt: Mapping[str, str] | None = None,
        requiretls: bool = False,
    ) -> None:
        set_field(self, "notify", notify)
        set_field(self, "ret", ret)
        set_field(self, "envid", envid)
        set_field(self, "orcpt", orcpt)
        set_field(self, "requiretls", requiretls)

    @property
    def wants_dsn(self) -> bool:
        """True when any DSN parameter will be sent."""
        return bool(self.notify or self.ret or self.envid is not None or self.orcpt)

    def check_server(self, extensions: Extensions, *, tls: bool) -> None:
        """Refuse locally (before MAIL) what this server cannot honour."""
        if self.wants_dsn and "DSN" not in extensions:
            raise SmtpError(
                "delivery status notifications were asked for, but the server does not "
                "offer DSN (RFC 3461)",
                status_code=SmtpStatusCode.COMMAND_PARAMETER_NOT_IMPLEMENTED,
            )
        if self.requiretls and not tls:
            raise SmtpTlsError("REQUIRETLS needs a TLS session (RFC 8689 §4.1)")
        if self.requiretls and "REQUIRETLS" not in extensions:
            raise SmtpTlsError("REQUIRETLS was asked for, but the server does not offer it")

    def mail(self, mail: Mail) -> Mail:
        """``mail`` with RET, ENVID and REQUIRETLS added."""
        return Mail(
            mail.sender,
            size=mail.size,
            body=mail.body,
            smtputf8=mail.smtputf8,
            ret=self.ret,
            envid=self.envid,
            requiretls=self.requiretls,
        )

    def rcpt(self, recipient: str) -> Rcpt:
        """The RCPT command for ``recipient``, with its NOTIFY and ORCPT."""
        orcpt = self.orcpt.get(recipient) if self.orcpt else None
        return Rcpt(recipient, notify=self.notify.get(recipient), orcpt=orcpt)


#: No options at all (the common case, shared).
NO_OPTIONS = DeliveryOptions(notify={})


def delivery_options(
    recipients: tuple[str, ...],
    *,
    notify: Notify = None,
    ret: DsnReturn | None = None,
    envid: str | None = None,
    orcpt: Mapping[str, str] | None = None,
    requiretls: bool = False,
) -> DeliveryOptions:
    """Validate the keyword options of ``send``; ``TypeError``/``ValueError`` when wrong."""
    if notify is None and ret is None and envid is None and orcpt is None and not requiretls:
        return NO_OPTIONS
    if ret is not None and not isinstance(ret, DsnReturn):
        raise TypeError(f"ret must be a DsnReturn, not {type(ret).__name__}")
    if not isinstance(requiretls, bool):
        raise TypeError("requiretls must be True or False")
    per_recipient = _per_recipient(recipients, notify)
    if envid is not None:
        _check_envid(envid)
    if orcpt is not None:
        orcpt = _check_orcpt(recipients, orcpt)
    return DeliveryOptions(
        notify=per_recipient,
        ret="FULL" if ret is DsnReturn.FULL else "HDRS" if ret is DsnReturn.HEADERS else None,
        envid=envid,
        orcpt=orcpt,
        requiretls=requiretls,
    )


def _per_recipient(recipients: tuple[str, ...], notify: Notify) -> dict[str, tuple[str, ...]]:
    if notify is None:
        return {}
    if isinstance(notify, DeliveryNotification):
        keywords = _notify_keywords(notify)
        return {} if keywords is None else dict.fromkeys(recipients, keywords)
    if not isinstance(notify, Mapping):
        raise TypeError("notify must be a DeliveryNotification or a mapping of them")
    _check_known(recipients, notify, "notify")
    result = {}
    for recipient, flag in notify.items():
        keywords = _notify_keywords(flag)
        if keywords is not None:
            result[recipient] = keywords
    return result


def _check_known(recipients: tuple[str, ...], mapping: Mapping[str, object], what: str) -> None:
    unknown = [key for key in mapping if key not in recipients]
    if unknown:
        raise ValueError(f"{what} names addresses that are not recipients: {unknown}")


def _check_envid(envid: object) -> None:
    if not isinstance(envid, str):
        raise TypeError(f"envid must be a string, not {type(envid).__name__}")
    try:
        Mail("", envid=envid).to_bytes()  # RFC 3461 §4.4: printable ASCII, <= 100 chars
    except LocalProtocolError as exc:
        raise ValueError(f"invalid envid: {exc}") from None


def _check_orcpt(recipients: tuple[str, ...], orcpt: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(orcpt, Mapping):
        raise TypeError("orcpt must be a mapping of recipient -> original address")
    _check_known(recipients, orcpt, "orcpt")
    for original in orcpt.values():
        if not isinstance(original, str):
            raise TypeError("orcpt values must be strings")
        if not original or not original.isascii() or not original.isprintable():
            raise ValueError(f"invalid orcpt address {original!r} (printable ASCII only)")
        xtext_encode(original)
    return dict(orcpt)
