"""The OAUTHBEARER client response (RFC 7628 §3.1), parsed for the testing server::

client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep
gs2-header  = gs2-cbind-flag "," [ authzid ] ","        ; RFC 5801 §4
kvpair      = key "=" value kvsep
key         = 1*(ALPHA)
value       = *(VCHAR / SP / HTAB / CR / LF)
kvsep       = %x01
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KVSEP", "BearerRequest", "MalformedRequest", "parse_request"]

#: RFC 7628 §3.1: the separator of the key/value pairs; alone, it is the client's answer
#: to an error challenge (§3.2.3).
KVSEP = b"\x01"

_KEY = re.compile(r"[A-Za-z]+")
_VALUE = re.compile(r"[\x21-\x7e \t\r\n]*")


class MalformedRequest(ValueError):
    """The client response does not follow RFC 7628 §3.1; the message says how."""


@dataclass(frozen=True, slots=True)
class BearerRequest:
    """What an OAUTHBEARER client response carries."""

    #: The GS2 authzid (``a=``), unescaped; None when the client left it out.
    authzid: str | None
    #: The bearer token from ``auth=Bearer <token>``.
    token: str
    host: str | None
    port: int | None


def parse_request(message: bytes) -> BearerRequest:
    """Parse an OAUTHBEARER client response; :class:`MalformedRequest` if it is not one."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("not UTF-8") from None
    header, sep, rest = text.partition("\x01")
    if not sep:
        raise MalformedRequest("no kvsep after the GS2 header")
    authzid = _gs2_authzid(header)
    pairs = _kvpairs(rest)
    return BearerRequest(authzid, _bearer_token(pairs.get("auth", "")), *_host_port(pairs))


def _gs2_authzid(header: str) -> str | None:
    """The authzid of ``gs2-cbind-flag "," [authzid] ","``, unescaped."""
    parts = header.split(",")
    if len(parts) != 3 or parts[2]:
        raise MalformedRequest("bad GS2 header")
    if parts[0] not in ("n", "y"):
        # RFC 7628 §3.1: OAUTHBEARER has no channel binding, so "p=..." is refused.
        raise MalformedRequest("channel binding requested")
    if not parts[1]:
        return None
    saslname = parts[1].removeprefix("a=")
    # RFC 5801 §4: "=" appears in a saslname only in the escapes "=2C" and "=3D".
    if (
        saslname == parts[1]
        or not saslname
        or "=" in saslname.replace("=2C", "").replace("=3D", "")
    ):
        raise MalformedRequest("bad authzid")
    return saslname.replace("=2C", ",").replace("=3D", "=")


def _kvpairs(rest: str) -> dict[str, str]:
    """``*kvpair kvsep`` as a dict; a repeated key is malformed."""
    if not rest.endswith("\x01"):
        raise MalformedRequest("no final kvsep")
    body = rest[:-1]
    if body and not body.endswith("\x01"):
        raise MalformedRequest("a key/value pair without its kvsep")
    pairs: dict[str, str] = {}
    for item in body.split("\x01")[:-1]:
        key, sep, value = item.partition("=")
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value) or key in pairs:
            raise MalformedRequest(f"bad key/value pair {item[:20]!r}")
        pairs[key] = value
    return pairs


def _bearer_token(auth: str) -> str:
    # RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; the scheme is case-insensitive.
    scheme, _, token = auth.partition(" ")
    token = token.lstrip(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise MalformedRequest("no auth=Bearer token")
    return token


def _host_port(pairs: dict[str, str]) -> tuple[str | None, int | None]:
    port = pairs.get("port")
    if port is not None and not (port.isascii() and port.isdigit()):
        raise MalformedRequest(f"port {port[:12]!r} is not a number")
    return pairs.get("host"), None if port is None else int(port)
