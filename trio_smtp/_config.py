"""Client configuration: :class:`Security`, :class:`Timeouts`, :class:`DeliveryMethod`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DeliveryMethod", "Security", "Timeouts", "default_port"]


class Security(enum.Enum):
    """How the connection is protected."""

    #: TLS from the first byte (``smtps``, port 465; RFC 8314).
    IMPLICIT_TLS = "implicit_tls"
    #: STARTTLS required: not advertised, or a reply other than 220, is an SmtpTlsError.
    STARTTLS = "starttls"
    #: STARTTLS when advertised, plaintext otherwise.  Only when asked for.
    STARTTLS_OPPORTUNISTIC = "starttls_opportunistic"
    #: No TLS at all.
    NONE = "none"


class DeliveryMethod(enum.Enum):
    """Where messages go (as .NET's ``SmtpDeliveryMethod``)."""

    #: To the SMTP server over the network.
    NETWORK = "network"
    #: As ``.eml`` files into ``pickup_directory``.
    PICKUP_DIRECTORY = "pickup_directory"


def default_port(security: Security) -> int:
    """465 for implicit TLS, 587 for STARTTLS (required), 25 otherwise."""
    if security is Security.IMPLICIT_TLS:
        return 465
    if security is Security.STARTTLS:
        return 587
    return 25


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-phase deadlines in seconds, each covering a whole reply (not each read).

    Defaults follow RFC 5321 §4.5.3.2 where it gives one; ``None`` disables a deadline.

    No wait inside the client outlasts the budget of its phase: after a write of message
    data fails, the server's reason is awaited only until that write's ``data_block``
    deadline; the rest of a reply that interrupts the data, within ``data_block``; the
    lookup of the EHLO name, within ``command``.  The one wait no field governs is local:
    closing a file the client opened from a path, once the send is over, shielded with a
    short deadline (5 s) after which the close is left to its worker thread.
    """

    #: TCP connect (happy eyeballs included).
    connect: float | None = 30.0
    #: The 220 greeting (RFC 5321 §4.5.3.2.1: 5 minutes).
    greeting: float | None = 300.0
    #: EHLO/HELO, STARTTLS, AUTH, RSET, NOOP replies.
    command: float | None = 300.0
    #: The TLS handshake.
    tls_handshake: float | None = 60.0
    #: MAIL (§4.5.3.2.2: 5 minutes).
    mail: float | None = 300.0
    #: Each RCPT (§4.5.3.2.3: 5 minutes).
    rcpt: float | None = 300.0
    #: The 354 reply to DATA (§4.5.3.2.4: 2 minutes).
    data_initiation: float | None = 120.0
    #: Each write of message data (§4.5.3.2.5: 3 minutes).
    data_block: float | None = 180.0
    #: The reply after the terminator (§4.5.3.2.6: 10 minutes).
    data_termination: float | None = 600.0
    #: QUIT on close (shielded, short).  ``None``: no limit, and then not shielded either,
    #: so a cancel ends it.
    quit: float | None = 5.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Timeouts.{name} must be positive or None, not {value!r}")
