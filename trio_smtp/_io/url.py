"""``smtp://``, ``smtps://``, ``smtp+unix://`` and ``pickup://`` URLs ->
:class:`~trio_smtp.SmtpClient` keyword arguments.

Grammar (RFC 3986 syntax; the schemes follow common client practice and RFC 8314)::

    smtps://[user[:password]@]host[:port][/][?local_hostname=NAME]
    smtp://[user[:password]@]host[:port][/][?tls=starttls|opportunistic|none]
                                          [&local_hostname=NAME]
    smtp+unix://[user[:password]@]/absolute/socket/path[?local_hostname=NAME]
    pickup:///absolute/directory/path

``smtp`` and ``smtps`` also take ``proxy=URL`` (a SOCKS or HTTP CONNECT proxy, see
:mod:`trio_smtp._io.proxy`), percent-encoded as a whole: its "@", "&" and "+" at least must be
written %40, %26 and %2B (``urllib.parse.quote(proxy_url, safe="")`` does it).

``smtp+unix`` (as in ``http+unix``) connects to a Unix-domain socket, without TLS: the
peer is on this machine, so credentials may be sent (as to loopback).  Its path is
percent-decoded; an "@" in it must be written ``%40``.

``pickup`` is not a server: each message is written as an ``.eml`` file into the
directory (:attr:`DeliveryMethod.PICKUP_DIRECTORY <trio_smtp.DeliveryMethod>`), for a
relay or a test to pick up.  Its path is percent-decoded; it takes no user, host or
parameter.

``smtps`` is implicit TLS (default port 465); ``smtp`` is STARTTLS, required unless ``tls=``
says otherwise (default port 587 for STARTTLS, 25 for the others, as :func:`default_port`).
User name and password are percent-decoded as UTF-8.  IPv6 literals go in brackets.

Every problem is a :exc:`ValueError` naming it; no message (nor any chained exception)
ever contains the password.
"""

from __future__ import annotations

import ipaddress
from typing import TypedDict
from urllib.parse import parse_qsl, unquote

from .._config import DeliveryMethod, Security, default_port

__all__ = ["SmtpUrlConfig", "parse_smtp_url"]


class _PickupKeys(TypedDict, total=False):
    #: Only for ``pickup://``: ``DeliveryMethod.PICKUP_DIRECTORY``.
    delivery_method: DeliveryMethod
    #: Only for ``pickup://``: the directory.
    pickup_directory: str


class SmtpUrlConfig(_PickupKeys):
    """Keyword arguments for :class:`~trio_smtp.SmtpClient`, as parsed from a URL
    (``delivery_method`` and ``pickup_directory`` only for ``pickup://``)."""

    host: str
    #: None for ``smtp+unix``.
    port: int | None
    security: Security
    credentials: tuple[str, str] | None
    local_hostname: str | None
    #: The socket path for ``smtp+unix``, else None.
    unix_socket: str | None
    #: The ``proxy=`` parameter (a proxy URL, percent-decoded once), else None.
    proxy: str | None


_SCHEMES = {"smtp": Security.STARTTLS, "smtps": Security.IMPLICIT_TLS}
_UNIX_SCHEME = "smtp+unix"
_PICKUP_SCHEME = "pickup"
_TLS_VALUES = {
    "starttls": Security.STARTTLS,
    "opportunistic": Security.STARTTLS_OPPORTUNISTIC,
    "none": Security.NONE,
    "implicit": Security.IMPLICIT_TLS,
}
_PARAMETERS = ("tls", "local_hostname", "proxy")


def decode_component(value: str, what: str) -> str:
    """Percent-decode one URL component as strict UTF-8 (also for proxy URLs); the error
    names *what* it was and never quotes the value."""
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        pass
    # Raised outside the except block: a UnicodeDecodeError kept as __context__ (even with
    # `from None`) would carry the decoded bytes, password included.
    raise ValueError(f"the {what} in the URL is not valid percent-encoded UTF-8")


def _has_control(value: str) -> bool:
    return any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value)


def _split(url: str) -> tuple[str, str | None, str, str, str]:
    """-> scheme, userinfo (None without "@"), host[:port], path, query.

    Not urllib.parse.urlsplit: it silently drops tabs and newlines, and its errors can quote
    the URL, password included.  Everything before the *last* "@" is the user information,
    so a password with a raw "/", "?" or "#" is still read whole, and no text that could
    belong to a password is ever quoted in an error message.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    if _has_control(url):
        raise ValueError("the URL contains white space or control characters")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not an SMTP URL: expected smtp://host or smtps://host")
    userinfo, at, rest = rest.rpartition("@")
    if "#" in rest:
        raise ValueError("an SMTP URL has no fragment ('#')")
    rest, _, query = rest.partition("?")
    hostport, slash, path = rest.partition("/")
    return scheme.lower(), userinfo if at else None, hostport, slash + path, query


def _credentials(userinfo: str | None) -> tuple[str, str] | None:
    if userinfo is None:
        return None
    if not userinfo:
        raise ValueError("the URL has an empty user name before '@'")
    user, colon, password = userinfo.partition(":")
    if not colon:
        raise ValueError("the URL has a user name but no password (use user:password@host)")
    if not user:
        raise ValueError("the URL has a password but no user name")
    return decode_component(user, "user name"), decode_component(password, "password")


def host_and_port(hostport: str) -> tuple[str, int | None]:
    """``host[:port]`` or ``[IPv6]:port`` of an SMTP or proxy URL -> (host, port or None)."""
    if hostport.startswith("["):
        literal, bracket, tail = hostport[1:].partition("]")
        if not bracket:
            raise ValueError("unterminated '[' in the URL's host")
        # RFC 6874: a zone id is written "%25eth0" inside the brackets.
        host = decode_component(literal, "host")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {host!r}") from None
    else:
        raw_host = hostport.partition(":")[0]
        host, tail = decode_component(raw_host, "host"), hostport[len(raw_host) :]
        if any(c in host for c in "[]@:/%") or _has_control(host):
            raise ValueError(f"invalid host name in the URL: {host!r}")
    if not host:
        raise ValueError("the URL has no host")
    if not tail:
        return host, None
    if not tail.startswith(":"):
        raise ValueError("unexpected text after the host (expected ':port')")
    return host, _port(tail[1:])


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        # Not quoted: in "smtp://user:password" (no "@") the password sits here.
        raise ValueError("the port must be a number from 1 to 65535")
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    return port


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    if not query:
        return params
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("malformed query string in the URL") from None
    for name, value in pairs:
        if name not in _PARAMETERS:
            raise ValueError(f"unknown URL parameter {name!r} (known: {', '.join(_PARAMETERS)})")
        if name in params:
            raise ValueError(f"URL parameter {name!r} is given twice")
        params[name] = value
    return params


def _security(scheme: str, tls: str | None) -> Security:
    base = _SCHEMES[scheme]
    if tls is None:
        return base
    chosen = _TLS_VALUES.get(tls.lower())
    if chosen is None:
        raise ValueError(f"tls must be one of {', '.join(_TLS_VALUES)}, not {tls!r}")
    # smtps:// is TLS from the first byte, and smtp:// never is: anything else contradicts.
    if (base is Security.IMPLICIT_TLS) != (chosen is Security.IMPLICIT_TLS):
        hint = "use smtp:// for STARTTLS or none" if scheme == "smtps" else "use smtps://"
        raise ValueError(f"{scheme}:// contradicts tls={tls} ({hint})")
    return chosen


def _local_hostname(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or _has_control(value) or any(c in value for c in "<>@"):
        raise ValueError(f"invalid local_hostname in the URL: {value!r}")
    return value


def _unix_url(userinfo: str | None, hostport: str, path: str, query: str) -> SmtpUrlConfig:
    if hostport:
        raise ValueError("smtp+unix:// takes a socket path, not a host: smtp+unix:///path")
    socket_path = decode_component(path, "socket path")
    if socket_path in ("", "/") or _has_control(socket_path.replace(" ", "")):
        raise ValueError("smtp+unix:// needs the socket's absolute path: smtp+unix:///path")
    params = _query(query)
    if "tls" in params or "proxy" in params:
        raise ValueError("smtp+unix:// has no tls= or proxy= (it is a local socket)")
    return SmtpUrlConfig(
        host="",
        port=None,
        security=Security.NONE,
        credentials=_credentials(userinfo),
        local_hostname=_local_hostname(params.get("local_hostname")),
        unix_socket=socket_path,
        proxy=None,
    )


def _pickup_url(userinfo: str | None, hostport: str, path: str, query: str) -> SmtpUrlConfig:
    if userinfo is not None or hostport:
        raise ValueError("pickup:// takes a directory, not a user or host: pickup:///path")
    if query:
        raise ValueError("pickup:// takes no parameters")
    directory = decode_component(path, "directory")
    if directory in ("", "/") or _has_control(directory.replace(" ", "")):
        raise ValueError("pickup:// needs the directory's absolute path: pickup:///path/to/dir")
    return SmtpUrlConfig(
        host="",
        port=None,
        security=Security.NONE,
        credentials=None,
        local_hostname=None,
        unix_socket=None,
        proxy=None,
        delivery_method=DeliveryMethod.PICKUP_DIRECTORY,
        pickup_directory=directory,
    )


def parse_smtp_url(url: str) -> SmtpUrlConfig:
    """Parse an ``smtp://``, ``smtps://``, ``smtp+unix://`` or ``pickup://`` URL into
    :class:`~trio_smtp.SmtpClient` keyword arguments.

    ``SmtpClient(**parse_smtp_url(url))`` is what :meth:`SmtpClient.from_url` does.  The
    result always has ``host``, ``port`` (explicit, or :func:`default_port` of the
    security; None for a Unix socket), ``security``, ``credentials`` (``None`` when the URL
    has no user), ``local_hostname``, ``unix_socket`` and ``proxy``; a ``pickup://`` URL adds
    ``delivery_method`` and ``pickup_directory``.  Raises :exc:`ValueError` for an
    unknown scheme or parameter, a contradictory ``tls=``, a user without a password, a bad
    host, port or socket path; the password never appears in the message.
    """
    scheme, userinfo, hostport, path, query = _split(url)
    if userinfo is not None and ("?proxy=" in userinfo or "&proxy=" in userinfo):
        # The last "@" was the proxy's: its URL must be percent-encoded (no text quoted:
        # it holds passwords).
        raise ValueError(
            "percent-encode the proxy URL in ?proxy= (its '@' as %40): "
            "urllib.parse.quote(proxy_url, safe='')"
        )
    if scheme == _UNIX_SCHEME:
        return _unix_url(userinfo, hostport, path, query)
    if scheme == _PICKUP_SCHEME:
        return _pickup_url(userinfo, hostport, path, query)
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported URL scheme {scheme!r} (use smtp://, smtps://, smtp+unix:// or pickup://)"
        )
    if path not in ("", "/"):
        raise ValueError("an SMTP URL has no path (only an optional trailing '/')")
    credentials = _credentials(userinfo)
    host, port = host_and_port(hostport)
    params = _query(query)
    security = _security(scheme, params.get("tls"))
    return SmtpUrlConfig(
        host=host,
        port=port if port is not None else default_port(security),
        security=security,
        credentials=credentials,
        local_hostname=_local_hostname(params.get("local_hostname")),
        unix_socket=None,
        proxy=params.get("proxy"),
    )
