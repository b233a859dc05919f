"""Client commands: frozen objects, validated and serialised to one line of bytes.

Rule: nothing reaches the wire unvalidated.  ``bytes(cmd)`` is not used; the connection calls
:meth:`Command.to_bytes`, which raises :class:`~trio_smtp.protocol.LocalProtocolError` (a
``ValueError``) and produces nothing when an argument carries CR, LF, NUL or another control
character, a line would exceed 512 octets (RFC 5321 §4.5.3.1.4), a path breaks the RFC 5321
§4.5.3.1 limits (local part 64, domain 255, path 256 octets), or a non-ASCII address is sent
without SMTPUTF8 (RFC 6531).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "Auth",
    "AuthResponse",
    "Bdat",
    "Command",
    "Data",
    "Ehlo",
    "EndOfData",
    "Helo",
    "Mail",
    "Noop",
    "Quit",
    "Rcpt",
    "Rset",
    "StartTls",
    "Vrfy",
    "validate_address",
    "xtext_encode",
    "xtext_decode",
]

#: RFC 5321 §4.5.3.1.4: a command line, CRLF included.
MAX_COMMAND_LINE = 512


def xtext_encode(value: str) -> str:
    """RFC 3461 §4: xtext-encode ``value`` ("+" and chars outside 33..126 become ``+HH``)."""
    raise NotImplementedError


def xtext_decode(value: str) -> str:
    """Inverse of :func:`xtext_encode`; raises LocalProtocolError on a malformed ``+HH``."""
    raise NotImplementedError


def validate_address(address: str, *, smtputf8: bool = False, allow_empty: bool = False) -> str:
    """Check a mailbox for use in MAIL FROM/RCPT TO and return it unchanged.

    ``allow_empty`` admits the null reverse-path ``""`` (MAIL FROM:<>).  Raises
    LocalProtocolError for control characters, angle brackets, missing "@", over-long parts,
    or non-ASCII without ``smtputf8``.
    """
    raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Command:
    """Base class.  ``verb`` names the command; ``ends_group`` is True for the commands after
    which RFC 2920 §3.1 forbids pipelining more commands before the reply is read."""

    verb: ClassVar[str] = ""
    ends_group: ClassVar[bool] = True

    def to_bytes(self, *, smtputf8: bool = False) -> bytes:
        """Validate and serialise, CRLF included.  ``smtputf8`` says whether the session
        uses SMTPUTF8 (non-ASCII arguments allowed, encoded as UTF-8)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Ehlo(Command):
    """``EHLO domain`` (RFC 5321 §4.1.1.1); ``domain`` may be an address literal."""

    domain: str
    verb: ClassVar[str] = "EHLO"


@dataclass(frozen=True, slots=True)
class Helo(Command):
    """``HELO domain``: the fallback when EHLO is refused with 500/502."""

    domain: str
    verb: ClassVar[str] = "HELO"


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    """``STARTTLS`` (RFC 3207).  Always ends a pipelining group."""

    verb: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Auth(Command):
    """``AUTH mechanism [initial-response]`` (RFC 4954).  ``initial_response`` is the raw
    (un-encoded) response; it is base64-encoded on the wire, ``b""`` becoming ``=``."""

    mechanism: str
    initial_response: bytes | None = None
    verb: ClassVar[str] = "AUTH"


@dataclass(frozen=True, slots=True)
class AuthResponse(Command):
    """A continuation line answering a 334 challenge: base64 of ``data``, or ``*`` to cancel.
    May exceed 512 octets (RFC 4954 §4)."""

    data: bytes = b""
    cancel: bool = False
    verb: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Mail(Command):
    """``MAIL FROM:<sender> [params]``.  ``sender=""`` is the null reverse-path.

    Parameters: SIZE (RFC 1870), BODY (RFC 6152 / RFC 3030), SMTPUTF8 (RFC 6531),
    RET and ENVID (RFC 3461, ENVID xtext-encoded), REQUIRETLS (RFC 8689).
    """

    sender: str
    size: int | None = None
    body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    requiretls: bool = False
    verb: ClassVar[str] = "MAIL"
    ends_group: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Rcpt(Command):
    """``RCPT TO:<recipient> [NOTIFY=...] [ORCPT=rfc822;xtext]`` (RFC 3461).

    ``notify`` is a tuple of ``"SUCCESS"``, ``"FAILURE"``, ``"DELAY"``, or ``("NEVER",)``.
    ``orcpt`` is the original recipient address (the ``rfc822;`` type is added).
    """

    recipient: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None
    verb: ClassVar[str] = "RCPT"
    ends_group: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Data(Command):
    """``DATA``: expects 354, then the message and :class:`EndOfData`."""

    verb: ClassVar[str] = "DATA"


@dataclass(frozen=True, slots=True)
class EndOfData(Command):
    """Not a command line: stands for the ``CRLF.CRLF`` terminator, whose reply it matches.
    Produced by the connection's data methods, never sent through ``send``."""

    verb: ClassVar[str] = "."


@dataclass(frozen=True, slots=True)
class Bdat(Command):
    """``BDAT size [LAST]`` followed by exactly ``size`` octets of ``chunk`` (RFC 3030).
    ``to_bytes`` returns the command line only; the connection appends the chunk."""

    chunk: bytes | memoryview = b""
    last: bool = False
    verb: ClassVar[str] = "BDAT"
    ends_group: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Rset(Command):
    """``RSET``: abort the transaction."""

    verb: ClassVar[str] = "RSET"
    ends_group: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Noop(Command):
    """``NOOP``."""

    verb: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Vrfy(Command):
    """``VRFY string``."""

    argument: str
    verb: ClassVar[str] = "VRFY"


@dataclass(frozen=True, slots=True)
class Quit(Command):
    """``QUIT``: expects 221, then the server closes."""

    verb: ClassVar[str] = "QUIT"
