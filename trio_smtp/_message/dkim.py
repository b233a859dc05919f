"""DKIM signing (RFC 6376) of outgoing messages, through dkimpy (the ``dkim`` extra).

Theory of operation: a message is signed once, when it is prepared (before anything is
written), over exactly the octets that go on the wire: the client's own header handling is
done first (an :class:`~email.message.EmailMessage` is serialised without Bcc, RFC 5322
§3.6.3), then every bare CR and LF becomes CRLF as the DATA encoder and the BDAT normaliser
would make it (RFC 5321 §2.3.8), then dkimpy computes the ``DKIM-Signature`` field, which is
put in front (RFC 6376 §5.6).  Dot-stuffing comes later and is undone by the server
(RFC 5321 §4.5.2), so the receiver hashes what was signed.

A streamed body (a file, an async iterable) is refused with ``ValueError`` before anything
is written: dkimpy takes the whole message in memory anyway, and signing in two passes
would need a source that can be read twice, which an async iterable is not.  So is a binary
body (RFC 3030 BINARYMIME) whose bare CRs or LFs the normalisation would change.

Key formats: RSA as PEM (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``, as
``openssl genpkey`` writes them), signed ``rsa-sha256``; Ed25519 (RFC 8463) as PKCS#8 PEM
(``openssl genpkey -algorithm ed25519``) or dkimpy's base64 of the 32-octet seed (what
``dknewkey --ktype ed25519`` writes), signed ``ed25519-sha256``.  The key is checked when the
:class:`DkimSigner` is made, by signing a small message.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from ..protocol import BodyInspector, BodyKind, normalize_line_endings
from .prepare import PreparedMessage

__all__ = ["DkimSigner", "choose_signer", "sign_prepared"]

_EXTRA_HINT = "pip install 'trio-smtp[dkim]'"
#: RFC 8410 §7: a PKCS#8 Ed25519 private key is this DER prefix then the 32-octet seed.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
#: RFC 6376 §3.1 selector and domain: dot-separated labels of letters, digits, "-" ("_" is
#: common in selectors).
_NAME = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\Z"
)
#: RFC 6376 §5.4: never sign these (trace fields change in transit; Bcc is not sent).
_NEVER_SIGN = frozenset(
    {"return-path", "received", "comments", "keywords", "bcc", "resent-bcc", "dkim-signature"}
)
_CANONICALIZATIONS = ("simple", "relaxed")
_PROBE = b"From: probe@example.org\r\nSubject: key check\r\n\r\nkey check\r\n"


class DkimSigner:
    """Signs outgoing messages with DKIM (RFC 6376): ``SmtpClient(dkim=DkimSigner(...))``,
    or per message (``send(..., dkim=...)``, ``OutgoingMessage(..., dkim=...)``).

    ``domain`` (the ``d=`` tag) and ``selector`` (``s=``) name the public key in DNS, at
    ``{selector}._domainkey.{domain}`` (see :meth:`dns_record`).  ``private_key`` is an RSA
    or Ed25519 key, ``str`` or ``bytes`` (see the how-to for the formats); the algorithm
    follows from it (``rsa-sha256`` or ``ed25519-sha256``).  ``headers`` are the header
    fields to sign (``h=``); by default those of RFC 6376 §5.4.1 present in the message
    (From, To, Cc, Subject, Date, Message-ID, MIME fields, ...), with From signed twice so
    that no From can be added.  ``canonicalization`` is ``(header, body)``, each
    ``"relaxed"`` (the default: survives re-folding by relays) or ``"simple"``.

    Raises ``ImportError`` naming the ``dkim`` extra when dkimpy (or, for Ed25519, PyNaCl)
    is missing, ``ValueError`` for a key that cannot sign, a malformed domain or selector,
    or ``headers`` without From or with a field that must not be signed.  ``repr()`` never
    shows the key.
    """

    __slots__ = ("_algorithm", "_dkim", "_key", "canonicalization", "domain", "headers", "selector")

    def __init__(
        self,
        domain: str,
        selector: str,
        private_key: str | bytes,
        *,
        headers: Sequence[str] | None = None,
        canonicalization: tuple[str, str] = ("relaxed", "relaxed"),
    ) -> None:
        self._dkim = _import_dkim()
        self.domain = _check_name(domain, "domain")
        self.selector = _check_name(selector, "selector")
        self.headers = _check_headers(headers)
        self.canonicalization = _check_canonicalization(canonicalization)
        self._key, self._algorithm = _load_key(private_key)
        if self._algorithm == b"ed25519-sha256":
            _import_nacl()
        try:
            self._signature(_PROBE)
        except self._dkim.DKIMException as exc:
            raise ValueError(f"the DKIM private key cannot sign: {exc}") from None

    @property
    def algorithm(self) -> str:
        """``"rsa-sha256"`` or ``"ed25519-sha256"`` (the ``a=`` tag)."""
        return self._algorithm.decode()

    def __repr__(self) -> str:
        return (
            f"DkimSigner(domain={self.domain!r}, selector={self.selector!r}, "
            f"algorithm={self.algorithm!r}, private_key=<hidden>)"
        )

    def sign(self, message: bytes) -> bytes:
        """The ``DKIM-Signature`` header field for ``message`` (CRLF line ends, final CRLF
        included), to put in front of it.  ``ValueError`` when it cannot be signed: no From
        field (RFC 6376 §5.4 requires signing it), or a field dkimpy refuses."""
        if not _has_from(message):
            raise ValueError("cannot DKIM-sign a message without a From field (RFC 6376 §5.4)")
        try:
            return self._signature(message)
        except self._dkim.DKIMException as exc:
            raise ValueError(f"cannot DKIM-sign the message: {exc}") from None

    def _signature(self, message: bytes) -> bytes:
        include = None if self.headers is None else [h.encode() for h in self.headers]
        signature: bytes = self._dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self._key,
            canonicalize=tuple(c.encode() for c in self.canonicalization),
            signature_algorithm=self._algorithm,
            include_headers=include,
            linesep=b"\r\n",
        )
        return signature

    def dns_record(self) -> tuple[str, str]:
        """``(name, value)`` of the DNS TXT record that publishes the public key (RFC 6376
        §3.6.1), e.g. ``("mail._domainkey.example.org", "v=DKIM1; k=rsa; p=MIIBIjAN...")``."""
        if self._algorithm == b"ed25519-sha256":
            kind, public = "ed25519", _ed25519_public(self._key)
        else:
            kind, public = "rsa", _rsa_public(self._dkim, self._key)
        value = f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode()}"
        return f"{self.selector}._domainkey.{self.domain}", value


def sign_prepared(prepared: PreparedMessage, signer: DkimSigner) -> PreparedMessage:
    """``prepared`` with a DKIM-Signature in front of its data, which is first given the
    CRLF line ends it would get on the wire.  ``ValueError`` for a streamed body."""
    if prepared.body is not None:
        raise ValueError(
            "DKIM signing needs the whole message in memory (an EmailMessage or bytes), "
            f"not a {prepared.body.description}: read it into bytes, or pass dkim=False "
            "to send it unsigned"
        )
    data = normalize_line_endings(prepared.data)
    if prepared.body_kind is BodyKind.BINARY and data[: len(prepared.data)] != prepared.data:
        # Without DKIM such a body may go unchanged (BDAT, BODY=BINARYMIME); signing needs
        # its octets fixed now, and changing bare CRs and LFs could corrupt binary content.
        raise ValueError(
            "cannot DKIM-sign a binary body (NUL octets or lines over 998 octets) that has "
            "bare CR or LF octets: encode its binary parts (base64) first"
        )
    signed = signer.sign(data) + data
    inspector = BodyInspector()
    inspector.feed(signed)
    return prepared._replace(data=signed, body_kind=inspector.kind)


def _has_from(message: bytes) -> bool:
    """True when the header section (RFC 5322 §2.1) has a From field."""
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    return any(line[:5].lower() == b"from:" for line in re.split(rb"\r?\n", head))


def choose_signer(default: DkimSigner | None, given: object) -> DkimSigner | None:
    """The signer for one message: ``given`` (a :class:`DkimSigner`; ``False``: none), or
    the client's ``default`` when ``given`` is None."""
    if given is None:
        return default
    if given is False:
        return None
    if not isinstance(given, DkimSigner):
        raise TypeError(f"dkim must be a DkimSigner, False or None, not {type(given).__name__}")
    return given


# -- keys ------------------------------------------------------------------------------------


def _load_key(private_key: str | bytes) -> tuple[bytes, bytes]:
    """-> (the key as dkimpy takes it, the algorithm)."""
    if isinstance(private_key, str):
        private_key = private_key.encode("ascii", "replace")
    if not isinstance(private_key, bytes):
        raise TypeError(f"private_key must be str or bytes, not {type(private_key).__name__}")
    text = private_key.replace(b"\r\n", b"\n").strip()
    if text.startswith(b"-----BEGIN PRIVATE KEY-----"):
        der = _pem_body(text)
        if der.startswith(_ED25519_PKCS8_PREFIX) and len(der) == len(_ED25519_PKCS8_PREFIX) + 32:
            return base64.b64encode(der[-32:]), b"ed25519-sha256"
        return text + b"\n", b"rsa-sha256"  # PKCS#8 RSA: dkimpy reads it
    if text.startswith(b"-----BEGIN RSA PRIVATE KEY-----"):
        return text + b"\n", b"rsa-sha256"
    if text.startswith(b"-----"):
        raise ValueError("private_key: an RSA or Ed25519 PEM private key was expected")
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) != 32:
        raise ValueError(
            "private_key: expected a PEM private key (RSA or Ed25519) or the base64 of an "
            "Ed25519 seed (32 octets)"
        )
    return text, b"ed25519-sha256"


def _pem_body(text: bytes) -> bytes:
    lines = [line for line in text.splitlines() if not line.startswith(b"-----")]
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except binascii.Error:
        raise ValueError("private_key: the PEM data is not valid base64") from None


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (X.690 §8.1)."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _rsa_public(dkim: Any, key: bytes) -> bytes:
    """SubjectPublicKeyInfo (RFC 5280 §4.1) of the RSA key: what ``p=`` holds."""
    private = dkim.crypto.parse_pem_private_key(key)
    rsa_key = _der(0x30, _der_int(private["modulus"]) + _der_int(private["publicExponent"]))
    # rsaEncryption (1.2.840.113549.1.1.1), NULL parameters.
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    return _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_key))


def _ed25519_public(seed_b64: bytes) -> bytes:
    """RFC 8463 §4.2: ``p=`` is the raw 32-octet public key."""
    nacl_signing = _import_nacl()
    signing_key = nacl_signing.SigningKey(base64.b64decode(seed_b64))
    return bytes(signing_key.verify_key)


# -- arguments and imports -------------------------------------------------------------------


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"DKIM {what} must be a str, not {type(value).__name__}")
    if not _NAME.match(value):
        raise ValueError(f"invalid DKIM {what} {value!r} (ASCII labels separated by dots)")
    return value


def _check_headers(headers: Sequence[str] | None) -> tuple[str, ...] | None:
    if headers is None:
        return None
    if isinstance(headers, str):
        raise TypeError("headers must be a sequence of field names, not one str")
    names = tuple(headers)
    for name in names:
        if not isinstance(name, str) or not name or not re.fullmatch(r"[!-9;-~]+", name):
            raise ValueError(f"invalid header field name in headers: {name!r}")
    lowered = {name.lower() for name in names}
    if "from" not in lowered:
        raise ValueError("headers must include From (RFC 6376 §5.4)")
    never = sorted(lowered & _NEVER_SIGN)
    if never:
        raise ValueError(f"these header fields must not be signed: {', '.join(never)}")
    return names


def _check_canonicalization(value: tuple[str, str]) -> tuple[str, str]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or any(part not in _CANONICALIZATIONS for part in value)
    ):
        raise ValueError(
            f"canonicalization must be (header, body), each 'relaxed' or 'simple', not {value!r}"
        )
    return value


def _import_dkim() -> Any:
    try:
        import dkim
        import dkim.crypto
    except ImportError as exc:
        raise ImportError(
            f"DKIM signing needs the dkimpy package: {_EXTRA_HINT}", name=exc.name
        ) from exc
    return dkim


def _import_nacl() -> Any:
    try:
        import nacl.signing
    except ImportError as exc:
        raise ImportError(
            f"Ed25519 DKIM signing needs the PyNaCl package: {_EXTRA_HINT}", name=exc.name
        ) from exc
    return nacl.signing
