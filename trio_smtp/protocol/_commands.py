"""Client commands: frozen objects, validated and serialised to one line of bytes.

Rule: nothing reaches the wire unvalidated.  ``bytes(cmd)`` is not used; the connection calls
:meth:`Command.to_bytes`, which raises :class:`~trio_smtp.protocol.LocalProtocolError` (a
``ValueError``) and produces nothing when an argument carries CR, LF, NUL or another control
character, a line would exceed 512 octets (RFC 5321 §4.5.3.1.4), a path breaks the RFC 5321
§4.5.3.1 limits (local part 64, domain 255, path 256 octets), or a non-ASCII address is sent
without SMTPUTF8 (RFC 6531).
"""

from __future__ import annotations

import base64
from typing import ClassVar, Literal

from ._errors import LocalProtocolError
from ._frozen import Frozen, set_field
from ._syntax import check_text, validate_address, validate_domain, xtext_encode

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
    "validate_domain",
    "xtext_encode",
]

#: RFC 5321 §4.5.3.1.4: a command line, CRLF included.
MAX_COMMAND_LINE = 512


#: RFC 4954 §4: a SASL response line may be longer than a command line.
MAX_AUTH_LINE = 12288
#: RFC 3461 §4.4: an ENVID is at most 100 characters.
MAX_ENVID = 100

_MAIL_BODIES = ("7BIT", "8BITMIME", "BINARYMIME")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def _finish(line: str, *, smtputf8: bool, limit: int = MAX_COMMAND_LINE) -> bytes:
    """Encode a validated line, add CRLF, enforce the length limit (octets, CRLF included)."""
    check_text(line, "command line", smtputf8=smtputf8)
    data = line.encode("utf-8") + b"\r\n"
    if len(data) > limit:
        raise LocalProtocolError(f"command line of {len(data)} octets exceeds {limit}")
    return data


class Command(Frozen):
    """Base class.  ``verb`` names the command; ``ends_group`` is True for the commands after
    which RFC 2920 §3.1 forbids pipelining more commands before the reply is read."""

    __slots__ = ()
    verb: ClassVar[str] = ""
    ends_group: ClassVar[bool] = True
    #: Whether the connection may keep this command's encoded bytes for an equal command
    #: sent later (False for commands that carry secrets or message data).
    cacheable: ClassVar[bool] = True

    def to_bytes(self, *, smtputf8: bool = False) -> bytes:
        """Validate and serialise, CRLF included.  ``smtputf8`` says whether the session
        uses SMTPUTF8 (non-ASCII arguments allowed, encoded as UTF-8)."""
        return _finish(self._render(smtputf8), smtputf8=smtputf8)

    def _render(self, smtputf8: bool) -> str:
        """The command line without CRLF, every argument validated."""
        return self.verb


class Ehlo(Command):
    """``EHLO domain`` (RFC 5321 §4.1.1.1); ``domain`` may be an address literal."""

    __slots__ = ("domain",)
    domain: str
    verb: ClassVar[str] = "EHLO"

    def __init__(self, domain: str) -> None:
        set_field(self, "domain", domain)

    def _render(self, smtputf8: bool) -> str:
        # RFC 6531 §3.7.1: the EHLO argument is sent before SMTPUTF8 is known: ASCII only.
        return f"{self.verb} {validate_domain(self.domain)}"


class Helo(Command):
    """``HELO domain``: the fallback when EHLO is refused with 500/502.  An address literal
    is accepted too (RFC 5321 §4.1.4 tolerates it from clients without a name)."""

    __slots__ = ("domain",)
    domain: str
    verb: ClassVar[str] = "HELO"

    def __init__(self, domain: str) -> None:
        set_field(self, "domain", domain)

    def _render(self, smtputf8: bool) -> str:
        return f"{self.verb} {validate_domain(self.domain)}"


class StartTls(Command):
    """``STARTTLS`` (RFC 3207).  Always ends a pipelining group."""

    __slots__ = ()
    verb: ClassVar[str] = "STARTTLS"


class Auth(Command):
    """``AUTH mechanism [initial-response]`` (RFC 4954).  ``initial_response`` is the raw
    (un-encoded) response; it is base64-encoded on the wire, ``b""`` becoming ``=``."""

    __slots__ = ("initial_response", "mechanism")
    mechanism: str
    initial_response: bytes | None
    verb: ClassVar[str] = "AUTH"
    cacheable: ClassVar[bool] = False

    def __init__(self, mechanism: str, initial_response: bytes | None = None) -> None:
        set_field(self, "mechanism", mechanism)
        set_field(self, "initial_response", initial_response)

    def _render(self, smtputf8: bool) -> str:
        # RFC 4422 §3.1: 1-20 of upper-case letters, digits, "-" and "_".
        mech = check_text(self.mechanism, "SASL mechanism").upper()
        if not 1 <= len(mech) <= 20 or not mech.replace("-", "").replace("_", "").isalnum():
            raise LocalProtocolError(f"invalid SASL mechanism name {self.mechanism!r}")
        if self.initial_response is None:
            return f"{self.verb} {mech}"
        # RFC 4954 §4: "=" is an empty initial response.  The whole line must still fit in
        # 512 octets; if it does not, send AUTH without it and answer the 334 instead.
        return f"{self.verb} {mech} {_b64(self.initial_response) or '='}"


class AuthResponse(Command):
    """A continuation line answering a 334 challenge: base64 of ``data``, or ``*`` to cancel.
    May exceed 512 octets (RFC 4954 §4)."""

    __slots__ = ("cancel", "data")
    data: bytes
    cancel: bool
    verb: ClassVar[str] = ""
    cacheable: ClassVar[bool] = False

    def __init__(self, data: bytes = b"", cancel: bool = False) -> None:
        set_field(self, "data", data)
        set_field(self, "cancel", cancel)

    def to_bytes(self, *, smtputf8: bool = False) -> bytes:
        """``*`` (cancel, RFC 4954 §4) or the base64 line, at most 12288 octets."""
        line = "*" if self.cancel else _b64(self.data)
        return _finish(line, smtputf8=False, limit=MAX_AUTH_LINE)


class Mail(Command):
    """``MAIL FROM:<sender> [params]``.  ``sender=""`` is the null reverse-path.

    Parameters: SIZE (RFC 1870), BODY (RFC 6152 / RFC 3030), SMTPUTF8 (RFC 6531),
    RET and ENVID (RFC 3461, ENVID xtext-encoded), REQUIRETLS (RFC 8689).
    """

    __slots__ = ("body", "envid", "requiretls", "ret", "sender", "size", "smtputf8")
    sender: str
    size: int | None
    body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None
    smtputf8: bool
    ret: Literal["FULL", "HDRS"] | None
    envid: str | None
    requiretls: bool
    verb: ClassVar[str] = "MAIL"
    ends_group: ClassVar[bool] = False

    def __init__(
        self,
        sender: str,
        size: int | None = None,
        body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None = None,
        smtputf8: bool = False,
        ret: Literal["FULL", "HDRS"] | None = None,
        envid: str | None = None,
        requiretls: bool = False,
    ) -> None:
        set_field(self, "sender", sender)
        set_field(self, "size", size)
        set_field(self, "body", body)
        set_field(self, "smtputf8", smtputf8)
        set_field(self, "ret", ret)
        set_field(self, "envid", envid)
        set_field(self, "requiretls", requiretls)

    # Hashed and compared for every message (the connection's encoded-command cache).
    def _key(self) -> tuple[object, ...]:
        return (
            self.sender,
            self.size,
            self.body,
            self.smtputf8,
            self.ret,
            self.envid,
            self.requiretls,
        )

    _hash_key = _key

    def to_bytes(self, *, smtputf8: bool = False) -> bytes:
        """As :meth:`Command.to_bytes`, but whether SMTPUTF8 is in use is this command's
        own ``smtputf8`` field (RFC 6531 §3.4: the MAIL parameter is what enables it);
        the argument is ignored."""
        return _finish(self._render(self.smtputf8), smtputf8=self.smtputf8)

    def _render(self, smtputf8: bool) -> str:
        sender = validate_address(self.sender, smtputf8=smtputf8, allow_empty=True)
        return " ".join([f"MAIL FROM:<{sender}>", *self._params()])

    def _params(self) -> list[str]:
        params = []
        if self.size is not None:
            if type(self.size) is not int or self.size < 0:
                raise LocalProtocolError(f"SIZE must be an int >= 0, not {self.size!r}")
            params.append(f"SIZE={self.size}")
        if self.body is not None:
            if self.body not in _MAIL_BODIES:
                raise LocalProtocolError(f"BODY must be one of {_MAIL_BODIES}")
            params.append(f"BODY={self.body}")
        if self.smtputf8:
            params.append("SMTPUTF8")
        if self.ret is not None:
            if self.ret not in ("FULL", "HDRS"):
                raise LocalProtocolError("RET must be 'FULL' or 'HDRS'")
            params.append(f"RET={self.ret}")
        if self.envid is not None:
            params.append(f"ENVID={_envid(self.envid)}")
        if self.requiretls:
            params.append("REQUIRETLS")
        return params


class Rcpt(Command):
    """``RCPT TO:<recipient> [NOTIFY=...] [ORCPT=rfc822;xtext]`` (RFC 3461).

    ``notify`` is a tuple of ``"SUCCESS"``, ``"FAILURE"``, ``"DELAY"``, or ``("NEVER",)``.
    ``orcpt`` is the original recipient address (the ``rfc822;`` type is added).
    """

    __slots__ = ("notify", "orcpt", "recipient")
    recipient: str
    notify: tuple[str, ...] | None
    orcpt: str | None
    verb: ClassVar[str] = "RCPT"
    ends_group: ClassVar[bool] = False

    def __init__(
        self, recipient: str, notify: tuple[str, ...] | None = None, orcpt: str | None = None
    ) -> None:
        set_field(self, "recipient", recipient)
        set_field(self, "notify", notify)
        set_field(self, "orcpt", orcpt)

    # Hashed and compared for every recipient (the connection's encoded-command cache).
    def _key(self) -> tuple[object, ...]:
        return (self.recipient, self.notify, self.orcpt)

    _hash_key = _key

    def _render(self, smtputf8: bool) -> str:
        rcpt = self.recipient
        # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain is a valid forward-path.
        if not (isinstance(rcpt, str) and rcpt.lower() == "postmaster"):
            validate_address(rcpt, smtputf8=smtputf8)
        params = [f"RCPT TO:<{rcpt}>"]
        if self.notify is not None:
            params.append(f"NOTIFY={_notify(self.notify)}")
        if self.orcpt is not None:
            orcpt = check_text(self.orcpt, "ORCPT")
            if not orcpt:
                raise LocalProtocolError("empty ORCPT")
            # RFC 3461 §4.2: addr-type ";" xtext.  Non-ASCII would need RFC 6533's
            # utf-8-addr-xtext, which is not supported: refused by check_text above.
            params.append(f"ORCPT=rfc822;{xtext_encode(orcpt)}")
        return " ".join(params)


class Data(Command):
    """``DATA``: expects 354, then the message and :class:`EndOfData`."""

    __slots__ = ()
    verb: ClassVar[str] = "DATA"


class EndOfData(Command):
    """Not a command line: stands for the ``CRLF.CRLF`` terminator, whose reply it matches.
    Produced by the connection's data methods, never sent through ``send``.

    It does not end a group: RFC 2920 §3.1 explicitly allows the transfer of message content
    to be the first "command" of a group, so with PIPELINING the next transaction's MAIL,
    RCPT and DATA may follow the terminator before its reply is read."""

    __slots__ = ()
    verb: ClassVar[str] = "."
    ends_group: ClassVar[bool] = False

    def to_bytes(self, *, smtputf8: bool = False) -> bytes:
        """Always refused: the terminator comes from ``ClientConnection.end_data``."""
        raise LocalProtocolError("EndOfData is produced by end_data(), not sent as a command")


class Bdat(Command):
    """``BDAT size [LAST]`` followed by exactly ``size`` octets of ``chunk`` (RFC 3030).
    ``to_bytes`` returns the command line only; the connection appends the chunk."""

    __slots__ = ("chunk", "last")
    chunk: bytes | memoryview
    last: bool
    verb: ClassVar[str] = "BDAT"
    cacheable: ClassVar[bool] = False
    ends_group: ClassVar[bool] = False

    def __init__(self, chunk: bytes | memoryview = b"", last: bool = False) -> None:
        # Only octets have an exact size on the wire (RFC 3030 §2); a str has no byte count
        # until encoded, so it is refused like any other invalid argument.
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"BDAT chunk must be bytes-like, not {type(chunk).__name__}")
        set_field(self, "chunk", chunk)
        set_field(self, "last", last)

    @property
    def size(self) -> int:
        """The chunk's size in octets, as sent on the command line."""
        return memoryview(self.chunk).nbytes

    def _render(self, smtputf8: bool) -> str:
        return f"BDAT {self.size} LAST" if self.last else f"BDAT {self.size}"


class Rset(Command):
    """``RSET``: abort the transaction."""

    __slots__ = ()
    verb: ClassVar[str] = "RSET"
    ends_group: ClassVar[bool] = False


class Noop(Command):
    """``NOOP``."""

    __slots__ = ()
    verb: ClassVar[str] = "NOOP"


class Vrfy(Command):
    """``VRFY string``."""

    __slots__ = ("argument",)
    argument: str
    verb: ClassVar[str] = "VRFY"

    def __init__(self, argument: str) -> None:
        set_field(self, "argument", argument)

    def _render(self, smtputf8: bool) -> str:
        if not check_text(self.argument, "VRFY argument", smtputf8=smtputf8).strip():
            raise LocalProtocolError("empty VRFY argument")
        return f"VRFY {self.argument}"


class Quit(Command):
    """``QUIT``: expects 221, then the server closes."""

    __slots__ = ()
    verb: ClassVar[str] = "QUIT"


def _b64(data: bytes) -> str:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise LocalProtocolError(f"SASL data must be bytes, not {type(data).__name__}")
    return base64.b64encode(data).decode("ascii")


def _envid(envid: str) -> str:
    # RFC 3461 §4.4: printable ASCII, at most 100 characters, xtext-encoded.
    if not check_text(envid, "ENVID") or len(envid) > MAX_ENVID:
        raise LocalProtocolError(f"ENVID must be 1-{MAX_ENVID} ASCII characters")
    return xtext_encode(envid)


def _notify(notify: tuple[str, ...]) -> str:
    # RFC 3461 §4.1: "NEVER" alone, or a non-empty set of SUCCESS, FAILURE, DELAY.
    values = tuple(check_text(v, "NOTIFY value").upper() for v in notify)
    if values == ("NEVER",):
        return "NEVER"
    if not values or len(set(values)) != len(values) or not _NOTIFY.issuperset(values):
        raise LocalProtocolError(f"invalid NOTIFY {notify!r}")
    return ",".join(values)
