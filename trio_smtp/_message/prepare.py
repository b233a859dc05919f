"""A message to send -> an :class:`Envelope` and the exact bytes of its data.

Theory of operation: :func:`prepare_message` runs synchronously, before anything is written to
the wire, and is the only place where the caller's input is validated (``TypeError`` for
something that is not a message, ``ValueError`` for a missing sender, no recipients or an
invalid address).  Nothing is sent to a subset in silence (design rule 13): when a header
field the envelope is read from holds a part that is not an address (``a@x;b@y``,
``b@@x``, ``foo``), the stdlib records a defect and yields the other addresses; that defect
is a ``ValueError`` naming the field and the part, as is an empty or unparsable ``sender=``
or ``recipients=`` entry.  Fields the envelope is not read from are not parsed for this.
An :class:`~email.message.EmailMessage` is serialised exactly once, with CRLF line ends
and without its Bcc fields, by :mod:`trio_smtp._message.serialise` (the caller's object is never
mutated).  What the server must support is decided here too: SMTPUTF8
when an address is non-ASCII (RFC 6531), and the body's
:class:`~trio_smtp.protocol.BodyKind` for BODY=8BITMIME (RFC 6152).  Matching that against
what a server offers is :func:`check_against_server`.
"""

from __future__ import annotations

import email.errors
import email.utils
from collections.abc import Callable, Iterable, Mapping, Sequence
from email.message import Message

from .._errors import SmtpError, SmtpStatusCode
from ..protocol import BodyInspector, BodyKind, Extensions, validate_address
from ..protocol._frozen import Frozen, set_field
from .addresses import default_policy, every_address, fetch_header
from .options import (
    NO_OPTIONS,
    DeliveryNotification,
    DeliveryOptions,
    DsnReturn,
    delivery_options,
)
from .sources import StreamedBody, streamed_body

__all__ = [
    "Envelope",
    "PreparedMessage",
    "check_against_server",
    "prepare_message",
]

#: The header fields whose values are addresses (RFC 5322 §3.6.2, §3.6.3, §3.6.6).
_ADDRESS_FIELDS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
)


class Envelope(Frozen):
    """The SMTP envelope (RFC 5321 §2.3.1): who the message is from and whom it goes to."""

    __slots__ = ("recipients", "sender")
    #: The reverse-path for MAIL FROM (``""`` is the null reverse-path).
    sender: str
    #: The forward-paths for RCPT TO, without duplicates, in the order given.
    recipients: tuple[str, ...]

    def __init__(self, sender: str, recipients: tuple[str, ...]) -> None:
        set_field(self, "sender", sender)
        set_field(self, "recipients", recipients)


class PreparedMessage(Frozen):
    """A validated message, ready for any server.  (Frozen, not a dataclass: see
    :mod:`trio_smtp.protocol._frozen`.)"""

    __slots__ = (
        "body",
        "body_kind",
        "data",
        "envelope",
        "has_nul",
        "message_id",
        "options",
        "progress",
        "smtputf8_required",
        "smtputf8_wanted",
    )
    envelope: Envelope
    #: The message exactly as it goes on the wire before dot-stuffing (``b""`` when the
    #: body is streamed from :attr:`body`).
    data: bytes
    #: True when an address is non-ASCII: the server must offer SMTPUTF8 (RFC 6531 §3.4).
    smtputf8_required: bool
    #: True when SMTPUTF8 should be used if offered (8-bit header bytes in a raw message).
    smtputf8_wanted: bool
    #: 7-bit, 8-bit or binary: decides BODY= (RFC 6152); None when streamed (unknown).
    body_kind: BodyKind | None
    #: The Message-ID header, if the message has one.
    message_id: str | None
    #: A body read at send time (file, path, async iterable) instead of :attr:`data`.
    body: StreamedBody | None
    #: DSN and REQUIRETLS options (see :mod:`trio_smtp._message.options`).
    options: DeliveryOptions
    #: True when the data holds a NUL octet: only BDAT with BODY=BINARYMIME carries it.
    has_nul: bool
    #: The caller's ``progress(sent, total)`` callback for this send, or None (see
    #: :mod:`trio_smtp._io.progress`).
    progress: Callable[[int, int | None], object] | None

    def __init__(
        self,
        envelope: Envelope,
        data: bytes,
        smtputf8_required: bool,
        smtputf8_wanted: bool,
        body_kind: BodyKind | None,
        message_id: str | None = None,
        body: StreamedBody | None = None,
        options: DeliveryOptions = NO_OPTIONS,
        has_nul: bool = False,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        set_field(self, "envelope", envelope)
        set_field(self, "data", data)
        set_field(self, "smtputf8_required", smtputf8_required)
        set_field(self, "smtputf8_wanted", smtputf8_wanted)
        set_field(self, "body_kind", body_kind)
        set_field(self, "message_id", message_id)
        set_field(self, "body", body)
        set_field(self, "options", options)
        set_field(self, "has_nul", has_nul)
        set_field(self, "progress", progress)

    def with_options(self, options: DeliveryOptions) -> PreparedMessage:
        """A copy with other delivery options."""
        return PreparedMessage(
            self.envelope,
            self.data,
            self.smtputf8_required,
            self.smtputf8_wanted,
            self.body_kind,
            self.message_id,
            self.body,
            options,
            self.has_nul,
            self.progress,
        )

    def with_progress(
        self, progress: Callable[[int, int | None], object] | None
    ) -> PreparedMessage:
        """A copy that reports the transfer of its data to ``progress`` (None: itself)."""
        if progress is None:
            return self
        if not callable(progress):
            raise TypeError(f"progress must be a callable(sent, total), not {progress!r}")
        return PreparedMessage(
            self.envelope,
            self.data,
            self.smtputf8_required,
            self.smtputf8_wanted,
            self.body_kind,
            self.message_id,
            self.body,
            self.options,
            self.has_nul,
            progress,
        )

    @property
    def size(self) -> int | None:
        """The message size as RFC 1870 counts it (CRLF line ends, before stuffing), or an
        estimate (a file's size) for a streamed body; None when unknown."""
        return len(self.data) if self.body is None else self.body.size


def prepare_message(
    message: object,
    sender: str | None = None,
    recipients: Sequence[str] | str | None = None,
) -> PreparedMessage:
    """Validate ``message`` and the explicit envelope; serialise the message once.

    Raises ``TypeError`` when ``message`` is not an :class:`email.message.Message`, bytes,
    a binary file object, an ``os.PathLike`` or an async iterable of bytes (a ``str`` is
    refused: pass a :class:`pathlib.Path`), ``ValueError`` when no sender or no recipient can
    be found or an address is invalid.
    """
    if isinstance(message, Message):
        return _prepare_email(message, sender, recipients)
    if isinstance(message, (bytes, bytearray, memoryview)):
        return _prepare_bytes(bytes(message), sender, recipients)
    body = streamed_body(message)
    if body is not None:
        return _prepare_streamed(body, sender, recipients)
    raise TypeError(
        "message must be an email.message.EmailMessage, bytes, a binary file, a path or an "
        f"async iterable of bytes, not {type(message).__name__}"
    )


def with_delivery_options(
    prepared: PreparedMessage,
    *,
    notify: DeliveryNotification | Mapping[str, DeliveryNotification] | None,
    ret: DsnReturn | None,
    envid: str | None,
    orcpt: Mapping[str, str] | None,
    requiretls: bool,
) -> PreparedMessage:
    """``prepared`` with ``send``'s DSN/REQUIRETLS options, validated (``TypeError``,
    ``ValueError``); the same object when they ask for nothing."""
    options = delivery_options(
        prepared.envelope.recipients,
        notify=notify,
        ret=ret,
        envid=envid,
        orcpt=orcpt,
        requiretls=requiretls,
    )
    if options is NO_OPTIONS:  # e.g. notify=DeliveryNotification.NONE
        return prepared
    return prepared.with_options(options)


def check_against_server(prepared: PreparedMessage, extensions: Extensions) -> None:
    """Refuse locally what the server would refuse (before MAIL is sent).

    RFC 6531 §3.4: a non-ASCII address needs SMTPUTF8.  RFC 1870 §4: a message larger than
    the server's SIZE is refused before MAIL.
    """
    if prepared.smtputf8_required and not extensions.smtputf8:
        raise SmtpError(
            "the message needs SMTPUTF8 (non-ASCII address) and the server does not offer it",
            status_code=SmtpStatusCode.MAILBOX_NAME_NOT_ALLOWED,
        )
    limit, size = extensions.max_size, prepared.size
    if limit is not None and size is not None and size > limit:
        raise SmtpError(
            f"the message is {size} octets; the server accepts at most {limit}",
            status_code=SmtpStatusCode.EXCEEDED_STORAGE_ALLOCATION,
        )


# -- explicit envelope -----------------------------------------------------------------------


def _explicit_recipients(recipients: Sequence[str] | str) -> list[str]:
    # A lone string is one recipient (as smtplib); iterating it would send to each letter.
    if isinstance(recipients, str):
        return [recipients]
    items = list(recipients)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"recipients must be strings, not {type(item).__name__}")
    return items


def _check_sender(sender: object) -> str:
    if not isinstance(sender, str):
        raise TypeError(f"sender must be a string, not {type(sender).__name__}")
    return sender


#: Envelopes already validated (validation is a pure function of the addresses): a sender
#: of many messages to the same recipients validates them once.  Bounded: cleared when full.
_ENVELOPES: dict[tuple[str, tuple[str, ...]], tuple[Envelope, bool]] = {}
_ENVELOPES_MAX = 256


def _envelope(sender: str, recipients: list[str]) -> tuple[Envelope, bool]:
    """Validate every address; return the envelope and whether SMTPUTF8 is required."""
    key = (sender, tuple(recipients))
    known = _ENVELOPES.get(key)
    if known is not None:
        return known
    result = _validated_envelope(sender, recipients)
    if len(_ENVELOPES) >= _ENVELOPES_MAX:
        _ENVELOPES.clear()
    _ENVELOPES[key] = result
    return result


def _validated_envelope(sender: str, recipients: list[str]) -> tuple[Envelope, bool]:
    stripped = [r.strip() for r in recipients]
    if not all(stripped):  # header fields never yield an empty address: this is recipients=
        raise ValueError("recipients= holds an empty address; nothing is sent to the others")
    unique = tuple(dict.fromkeys(stripped))
    if not unique:
        raise ValueError("the message has no recipients (To, Cc, Bcc or recipients=)")
    utf8 = not all(a.isascii() for a in (sender, *unique))
    validate_address(sender, smtputf8=utf8, allow_empty=True)
    for address in unique:
        validate_address(address, smtputf8=utf8)
    return Envelope(sender, unique), utf8


# -- raw bytes -------------------------------------------------------------------------------


def _explicit_envelope(
    what: str, sender: str | None, recipients: Sequence[str] | str | None
) -> tuple[Envelope, bool]:
    if sender is None:
        raise ValueError(f"{what} needs sender=")
    if recipients is None:
        raise ValueError(f"{what} needs recipients=")
    return _envelope(_check_sender(sender), _explicit_recipients(recipients))


def _prepare_streamed(
    body: StreamedBody, sender: str | None, recipients: Sequence[str] | str | None
) -> PreparedMessage:
    envelope, utf8 = _explicit_envelope(f"a message from a {body.description}", sender, recipients)
    return PreparedMessage(
        envelope=envelope,
        data=b"",
        smtputf8_required=utf8,
        smtputf8_wanted=utf8,
        body_kind=None,  # known only once read: see _transaction's choice of BODY=
        body=body,
    )


def _prepare_bytes(
    data: bytes, sender: str | None, recipients: Sequence[str] | str | None
) -> PreparedMessage:
    envelope, utf8 = _explicit_envelope("a bytes message", sender, recipients)
    headers = data[: _header_end(data)]
    return PreparedMessage(
        envelope=envelope,
        data=data,
        smtputf8_required=utf8,
        # RFC 6532 §3: 8-bit header fields are only allowed in an SMTPUTF8 transaction.  The
        # caller's bytes are not rewritten, so use it when offered and send as is otherwise.
        smtputf8_wanted=utf8 or not headers.isascii(),
        body_kind=_body_kind(data),
        message_id=_raw_message_id(headers),
        has_nul=b"\0" in data,
    )


def _header_end(data: bytes) -> int:
    """The end of the header section (RFC 5322 §2.1), whatever the line ends: where the
    regex ``\\r?\\n\\r?\\n`` first matches in ``data`` (``len(data)`` if nowhere).

    Two C-level ``find`` calls instead of that regex (1.6 -> ~0.3 us per 1 KiB message, a
    fifth of what send_many spends preparing one): a match begins at its first LF, or at
    the CR just before it, and the earliest such LF gives the earliest match."""
    lf = data.find(b"\n\r\n")
    # Only a "\n\n" before that one matters: bound the scan (a CRLF message has none).
    bare = data.find(b"\n\n", 0, len(data) if lf < 0 else lf + 1)
    if bare >= 0:
        lf = bare
    if lf < 0:
        return len(data)
    return lf - 1 if lf and data[lf - 1] == 0x0D else lf


def _raw_message_id(headers: bytes) -> str | None:
    for line in headers.split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"message-id":
            return value.strip().decode("utf-8", "replace") or None
    return None


def _body_kind(data: bytes) -> BodyKind:
    inspector = BodyInspector()
    inspector.feed(data)
    return inspector.kind


# -- EmailMessage ----------------------------------------------------------------------------


class _Headers:
    """The caller's header fields read in one pass, each value fetched (parsed) at most once.

    ``Message.get_all`` walks every field and the policy re-parses a parsed message's raw
    value on each access; reading the few fields needed here once is most of the cost of
    preparing a small message.  Values are exactly what ``message.get_all`` would return.
    """

    __slots__ = ("_fetched", "_fields", "_policy")

    def __init__(self, message: Message) -> None:
        self._policy = message.policy
        #: (lower-case name, name, raw value), in header order.
        self._fields = [(name.lower(), name, raw) for name, raw in message.raw_items()]
        self._fetched: dict[int, object] = {}

    def _value(self, index: int) -> object:
        if index not in self._fetched:
            _, name, raw = self._fields[index]
            self._fetched[index] = fetch_header(self._policy, name, raw)
        return self._fetched[index]

    def indices(self, key: str) -> list[int]:
        """Where the fields named ``key`` (lower case) are, in header order."""
        return [i for i, field in enumerate(self._fields) if field[0] == key]

    def first(self, key: str) -> object | None:
        """The first value of ``key``, as ``message.get``; None when absent."""
        for i, field in enumerate(self._fields):
            if field[0] == key:
                return self._value(i)
        return None

    def addresses(self, indices: Iterable[int]) -> list[str]:
        """The addr-specs of the address fields at ``indices``, in order; ValueError naming
        the field and the part when any part of one is not an address (rule 13)."""
        found: list[str] = []
        for i in indices:
            value = self._value(i)
            if not hasattr(value, "addresses"):  # compat32: a string; read it the same way
                value = fetch_header(default_policy(), self._fields[i][1], str(value))
            found.extend(every_address(value))
        return found

    def last_resent_block(self) -> dict[str, list[int]] | None:
        """The most recent Resent-* block, as field name (lower case) -> the indices of its
        fields; or None.

        RFC 5322 §3.6.6: each resending prepends a new block, so the most recent block is the
        first in the header.  A block ends at the first field that is not Resent-* or that
        repeats a field already in the block.
        """
        block: dict[str, list[int]] = {}
        for i, (key, _, _) in enumerate(self._fields):
            if not key.startswith("resent-"):
                if block:
                    break
                continue
            if key in block:
                break
            block[key] = [i]
        return block or None

    def need_utf8(self) -> bool:
        """True when an address field holds a non-ASCII address."""
        for i, (key, _, raw) in enumerate(self._fields):
            if key not in _ADDRESS_FIELDS:
                continue
            # An ASCII value yields ASCII addresses unless an RFC 2047 encoded word decodes
            # to more (a header object's value is already decoded and shows every addr-spec).
            if isinstance(raw, str) and raw.isascii() and "=?" not in raw:
                continue
            if not all(a.isascii() for a in _addresses([self._value(i)])):
                return True
        return False


def _prepare_email(
    message: Message, sender: str | None, recipients: Sequence[str] | str | None
) -> PreparedMessage:
    headers = _Headers(message)
    resent = headers.last_resent_block()
    if sender is None:
        sender = _sender_from_headers(headers, resent)
    rcpts = (
        _explicit_recipients(recipients)
        if recipients is not None
        else _recipients_from_headers(headers, resent)
    )
    envelope, utf8 = _envelope(_check_sender(sender), rcpts)
    # A non-ASCII addr-spec in a header cannot be written as an RFC 2047 encoded word
    # (RFC 2047 §5): only SMTPUTF8 carries it (RFC 6532).
    utf8 = utf8 or headers.need_utf8()
    from .serialise import serialise  # see addresses.default_policy

    data = serialise(message, utf8)
    message_id = headers.first("message-id")
    return PreparedMessage(
        envelope=envelope,
        data=data,
        smtputf8_required=utf8,
        smtputf8_wanted=utf8,
        body_kind=_body_kind(data),
        message_id=str(message_id).strip() if message_id is not None else None,
        has_nul=b"\0" in data,
    )


def _addresses(values: Sequence[object]) -> list[str]:
    """addr-specs from header values (EmailMessage header objects or strings)."""
    found: list[str] = []
    for value in values:
        parsed = getattr(value, "addresses", None)
        if parsed is not None:
            found.extend(a.addr_spec for a in parsed if a.addr_spec and a.addr_spec != "<>")
        else:
            found.extend(addr for _, addr in email.utils.getaddresses([str(value)]) if addr)
    return found


def _sender_from_headers(headers: _Headers, resent: dict[str, list[int]] | None) -> str:
    if resent is not None:
        fields = resent.get("resent-sender") or resent.get("resent-from") or []
        where = "Resent-Sender or Resent-From"
    else:
        fields = headers.indices("sender") or headers.indices("from")
        where = "Sender or From"
    addresses = headers.addresses(fields)
    if not addresses:
        raise ValueError(f"the message has no sender ({where} header, or sender=)")
    return addresses[0]


def _recipients_from_headers(headers: _Headers, resent: dict[str, list[int]] | None) -> list[str]:
    if resent is not None:
        fields = [i for f in ("resent-to", "resent-cc", "resent-bcc") for i in resent.get(f, [])]
    else:
        fields = [i for f in ("to", "cc", "bcc") for i in headers.indices(f)]
    return headers.addresses(fields)
