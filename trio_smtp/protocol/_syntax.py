"""RFC 5321 argument grammar: mailboxes, domains, xtext, and the checks every argument gets.

Everything here refuses rather than repairs: a caller who passes ``"a@b\\r\\nRCPT TO:<x>"``
gets a :class:`~trio_smtp.protocol.LocalProtocolError`, never a quietly cleaned string.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from ._errors import LocalProtocolError

__all__ = [
    "check_text",
    "validate_address",
    "validate_domain",
    "xtext_encode",
]

#: RFC 5321 §4.5.3.1.1-3: local part, domain and path (with "<" and ">") limits, in octets.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256
#: RFC 1035 §2.3.4: one label.
MAX_LABEL = 63


# Patterns only the slow paths need (an argument that is not printable ASCII, a quoted or
# non-ASCII local part, an address literal) are compiled on first use, like the SMTPUTF8
# forms below: together they were ~0.35 ms of every ``import trio_smtp``.  What every send
# needs (_COMMON_ADDRESS, _LABEL_ASCII for EHLO) is compiled with the module.


@functools.cache
def _control() -> re.Pattern[str]:
    """C0 controls, DEL and C1 controls: never allowed in a command argument."""
    return re.compile(r"[\x00-\x1f\x7f-\x9f]")


# RFC 5321 §4.1.2 atext / qtextSMTP / quoted-pairSMTP; RFC 6531 §3.3 adds UTF8-non-ascii.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_QTEXT = r"\x20\x21\x23-\x5b\x5d-\x7e"
_NON_ASCII = r"\u00a0-\U0010ffff"


def _local_part_re(extra: str) -> re.Pattern[str]:
    atom = f"[{_ATEXT}{extra}]+"
    quoted = rf'"(?:[{_QTEXT}{extra}]|\\[\x20-\x7e])*"'
    return re.compile(rf"{atom}(?:\.{atom})*|{quoted}")


@functools.cache
def _local_ascii() -> re.Pattern[str]:
    return _local_part_re("")


# RFC 5321 §4.1.2 sub-domain (Let-dig [Ldh-str]).  "_" is admitted too: real host names
# carry it, servers accept it, and it cannot break the command line.
_LABEL_ASCII = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


# The SMTPUTF8 forms are compiled on first use: their character classes span all of
# Unicode, and compiling the two took ~15 ms of every ``import trio_smtp`` (most programs
# never send an internationalised address).  The cache holds two immutable patterns.
@functools.cache
def _local_utf8() -> re.Pattern[str]:
    return _local_part_re(_NON_ASCII)


@functools.cache
def _label_utf8() -> re.Pattern[str]:
    return re.compile(
        rf"[A-Za-z0-9_{_NON_ASCII}](?:[A-Za-z0-9_{_NON_ASCII}-]*[A-Za-z0-9_{_NON_ASCII}])?"
    )


@functools.cache
def _general_literal() -> re.Pattern[str]:
    """RFC 5321 §4.1.3 General-address-literal: Standardized-tag ":" 1*dcontent."""
    return re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?:[\x21-\x5a\x5e-\x7e]+")


# The everyday address in one C-level match: an ASCII dot-string local part of at most
# MAX_LOCAL_PART octets, "@", ASCII labels of at most MAX_LABEL octets.  Everything it
# accepts the detailed checks accept too (a property test holds the two together); the rest
# (quoted local parts, literals, UTF-8, and every error with its message) goes the long way.
_ATOM = f"[{_ATEXT}]+"
_LABEL = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_COMMON_ADDRESS = re.compile(
    rf"(?=[^@]{{1,{MAX_LOCAL_PART}}}@){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*"
)


def check_text(value: object, what: str, *, smtputf8: bool = False) -> str:
    """Return ``value`` if it is a ``str`` without control characters (and ASCII unless
    ``smtputf8``); else raise LocalProtocolError naming ``what``."""
    # Fast path: printable ASCII (0x20-0x7E) is exactly ASCII without a control character.
    if type(value) is str and value.isascii() and value.isprintable():
        return value
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a str, not {type(value).__name__}")
    bad = _control().search(value)
    if bad is not None:
        raise LocalProtocolError(f"{what} contains the control character {bad.group()!r}")
    if not smtputf8 and not value.isascii():
        raise LocalProtocolError(f"{what} {value!r} is not ASCII and SMTPUTF8 is not in use")
    return value


def _octets(value: str) -> int:
    return len(value.encode("utf-8"))


def validate_domain(domain: str, *, smtputf8: bool = False, allow_literal: bool = True) -> str:
    """Check a domain (or, with ``allow_literal``, an RFC 5321 §4.1.3 address literal such as
    ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``) and return it unchanged.

    Non-ASCII labels (U-labels) only with ``smtputf8``.  Raises LocalProtocolError.
    """
    check_text(domain, "domain", smtputf8=smtputf8)
    if domain.startswith("["):
        if not allow_literal:
            raise LocalProtocolError(f"address literal {domain!r} not allowed here")
        _validate_literal(domain)
        return domain
    if not domain:
        raise LocalProtocolError("empty domain")
    if _octets(domain) > MAX_DOMAIN:
        raise LocalProtocolError(f"domain longer than {MAX_DOMAIN} octets")
    label_re = _label_utf8() if smtputf8 else _LABEL_ASCII
    for label in domain.split("."):
        if not label_re.fullmatch(label) or label.isspace():
            raise LocalProtocolError(f"invalid domain {domain!r}")
        if _octets(label) > MAX_LABEL:
            raise LocalProtocolError(f"domain label longer than {MAX_LABEL} octets")
    return domain


def _validate_literal(literal: str) -> None:
    if not literal.endswith("]"):
        raise LocalProtocolError(f"invalid address literal {literal!r}")
    inner = literal[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        elif ":" in inner:
            if not _general_literal().fullmatch(inner):
                raise ValueError(inner)
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        raise LocalProtocolError(f"invalid address literal {literal!r}") from None


def validate_address(address: str, *, smtputf8: bool = False, allow_empty: bool = False) -> str:
    """Check a mailbox for use in MAIL FROM/RCPT TO and return it unchanged.

    ``allow_empty`` admits the null reverse-path ``""`` (MAIL FROM:<>).  Raises
    LocalProtocolError for control characters, angle brackets, missing "@", a local part
    that is neither a dot-string nor a quoted string (RFC 5321 §4.1.2), over-long parts
    (local part 64, domain 255, path 256 octets: RFC 5321 §4.5.3.1), or non-ASCII without
    ``smtputf8`` (RFC 6531).
    """
    # Fast path; ASCII, so octets == characters, and the path adds "<" and ">".
    if (
        type(address) is str
        and len(address) <= MAX_PATH - 2
        and _COMMON_ADDRESS.fullmatch(address) is not None
    ):
        return address
    return _validate_address(address, smtputf8=smtputf8, allow_empty=allow_empty)


def _validate_address(address: str, *, smtputf8: bool, allow_empty: bool) -> str:
    """:func:`validate_address` in full, rule by rule, with the message for each."""
    check_text(address, "address", smtputf8=smtputf8)
    if address == "":
        if allow_empty:
            return address
        raise LocalProtocolError("empty address")
    if "<" in address or ">" in address:
        raise LocalProtocolError(f"address {address!r} contains an angle bracket")
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise LocalProtocolError(f"address {address!r} has no local part and domain")
    local_re = _local_utf8() if smtputf8 else _local_ascii()
    if not local_re.fullmatch(local):
        raise LocalProtocolError(f"invalid local part in {address!r}")
    if _octets(local) > MAX_LOCAL_PART:
        raise LocalProtocolError(f"local part longer than {MAX_LOCAL_PART} octets")
    validate_domain(domain, smtputf8=smtputf8)
    if _octets(address) + 2 > MAX_PATH:
        raise LocalProtocolError(f"path longer than {MAX_PATH} octets")
    return address


def xtext_encode(value: str) -> str:
    """RFC 3461 §4: xtext-encode ``value``.

    "+", "=" and characters outside 33..126 become ``+HH`` (upper-case hex); a non-ASCII
    character becomes its UTF-8 octets, each as ``+HH``.
    """
    out = []
    for char in value:
        if "!" <= char <= "~" and char not in "+=":
            out.append(char)
        else:
            out.extend(f"+{octet:02X}" for octet in char.encode("utf-8"))
    return "".join(out)
