"""What the ``trio-smtp`` subcommands share: exit statuses, usage errors, the server URL,
user, proxy, CA and timeout options, and the hint after a connection failure.

Theory of operation: ``send`` (:mod:`trio_smtp._cli.main`, :mod:`trio_smtp._cli.bulk`),
``probe`` (:mod:`trio_smtp._cli.probe`) and ``serve`` (:mod:`trio_smtp._cli.serve`) read their
options and report their failures alike, so they share these pieces rather than import them
from one another.  Secrets never come from the command line, where every user can read
them: a password in a URL is refused (the environment or a prompt gives it).
"""

from __future__ import annotations

import argparse
import math
import os
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from .._config import Security, Timeouts
from .._errors import SmtpError, SmtpTimeoutError, SmtpTlsError
from .._io.proxy import parse_proxy
from .._io.url import parse_smtp_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXIT_CONNECTION",
    "EXIT_FAILED",
    "EXIT_MAYBE_DELIVERED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROXY_PASSWORD_ENV",
    "UsageError",
    "add_proxy_argument",
    "add_timeout_option",
    "cli_timeouts",
    "failure_hint",
    "port_number",
    "proxy_from_cli",
    "server_address",
    "split_user",
    "tls_context",
    "url_argument",
]

#: Exit statuses of ``send`` and ``probe`` (documented in their ``--help`` epilogs).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MAYBE_DELIVERED = 3
EXIT_CONNECTION = 4


class UsageError(Exception):
    """Bad command-line input: reported on stderr with exit status 2."""


def split_user(url: str, *, allow_password: bool = False) -> tuple[str | None, str]:
    """``smtp://user@host`` -> ``("user", "smtp://host")``; the user is percent-decoded.

    A password in the URL is refused (it would be visible in the process list and the shell
    history) unless ``allow_password``; it is then dropped.  The rest of the URL is left for
    :func:`~trio_smtp._io.url.parse_smtp_url` to check.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at:
        return None, url
    user, colon, _ = userinfo.partition(":")
    if colon and not allow_password:
        raise UsageError(
            "do not put the password in the URL: give smtp://user@host and set the "
            "password in the environment (--password-env) or type it when asked"
        )
    if not user:
        raise UsageError("the URL has an empty user name before '@'")
    return unquote(user), f"{scheme}://{hostpart}"


#: Where ``--proxy scheme://user@host:port`` finds the proxy's password.
PROXY_PASSWORD_ENV = "TRIO_SMTP_PROXY_PASSWORD"


def add_proxy_argument(parser: argparse.ArgumentParser) -> None:
    """``--proxy URL`` for send and probe (see :func:`proxy_from_cli`)."""
    parser.add_argument(
        "--proxy", metavar="URL",
        help="connect through this proxy: socks5://[user@]host[:port] (also socks5h, "
        f"socks4, socks4a), or http://[user@]host:port; password from ${PROXY_PASSWORD_ENV}",
    )  # fmt: skip


def proxy_from_cli(url: str | None) -> str | None:
    """``--proxy``'s URL, its password taken from :data:`PROXY_PASSWORD_ENV` (as the
    server's, never from the command line, where every user can read it)."""
    if url is None:
        return None
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if sep and at:
        if ":" in userinfo:
            raise UsageError(
                f"do not put the proxy's password in --proxy: set {PROXY_PASSWORD_ENV}"
            )
        password = os.environ.get(PROXY_PASSWORD_ENV)
        if password is not None:
            url = f"{scheme}://{userinfo}:{quote(password, safe='')}@{hostpart}"
        elif not scheme.lower().startswith("socks4"):  # SOCKS4 has no password
            raise UsageError(f"--proxy has a user name: set {PROXY_PASSWORD_ENV}")
    parse_proxy(url)  # a usage error now rather than a connection error later
    return url


def tls_context(ca_file: Path | None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client context: the system's CAs, only ``ca_file``'s, or no verification at all."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        # With cafile, create_default_context trusts that file only (no system CAs).
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the CA file {ca_file}: {exc}") from None


def port_number(text: str) -> int:
    """argparse type of a TCP port: 0 to 65535 (an out-of-range port is a usage error,
    never a port the kernel picks)."""
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return int(text)


def url_argument(text: str) -> str:
    """argparse type of a server URL: checked as :func:`parse_smtp_url` checks it (the user
    name is split off first; :func:`split_user` decides about a password later)."""
    try:
        parse_smtp_url(split_user(text, allow_password=True)[1])
    except (UsageError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


#: ``--timeout``'s default: long enough for a slow server, short enough that a command
#: talking to the wrong kind of port (see :func:`failure_hint`) does not seem to hang.
DEFAULT_TIMEOUT = 30.0


def add_timeout_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--timeout SECONDS`` (default :data:`DEFAULT_TIMEOUT`) for a network command."""
    parser.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"deadline for each step: {what} (default: %(default)g)",
    )  # fmt: skip


def cli_timeouts(seconds: float) -> Timeouts:
    """Every phase limited to ``seconds``, except the reply to the end of data.

    That reply keeps RFC 5321 §4.5.3.2.6's ten minutes unless ``seconds`` is longer: a
    timeout there leaves the message possibly delivered (exit status 3), the one outcome
    that impatience should not cause.
    """
    return Timeouts(
        connect=seconds, greeting=seconds, command=seconds, tls_handshake=seconds,
        mail=seconds, rcpt=seconds, data_initiation=seconds, data_block=seconds,
        data_termination=max(seconds, Timeouts().data_termination or 0.0),
        quit=min(seconds, 5.0),
    )  # fmt: skip


def server_address(config: Mapping[str, Any]) -> str:
    """``host:port`` (``[::1]:25`` for IPv6) or the socket path of a parsed URL."""
    if config["unix_socket"]:
        return str(config["unix_socket"])
    host = str(config["host"])
    return f"[{host}]:{config['port']}" if ":" in host else f"{host}:{config['port']}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def failure_hint(exc: SmtpError, security: Security, where: str) -> str | None:
    """What a person should try after ``exc``, when the failure says more than its text.

    A TLS-mode mismatch shows only indirectly (RFC 8314 §3.3): implicit TLS against a
    plain-text port fails the handshake with WRONG_VERSION_NUMBER (the greeting "220 ..."
    is read as a TLS record), and plain text against an implicit-TLS port waits for a
    greeting that never comes (the server waits for the TLS ClientHello).  A certificate
    that does not verify is the one TLS failure that --ca-file or --insecure address.
    """
    causes = list(_causes(exc))
    if isinstance(exc, SmtpTlsError) and security is Security.IMPLICIT_TLS:
        reasons = {getattr(c, "reason", None) for c in causes if isinstance(c, ssl.SSLError)}
        if "WRONG_VERSION_NUMBER" in reasons:
            return (
                f"the server did not answer in TLS: {where} probably speaks plain-text SMTP "
                f"(STARTTLS, or no TLS at all): try smtp://{where}"
            )
    greeting = isinstance(exc, SmtpTimeoutError) and "the greeting" in str(exc)
    if greeting and security is not Security.IMPLICIT_TLS and "/" not in where:  # not Unix
        return (
            f"no greeting: {where} probably expects implicit TLS (the server waits for "
            f"the client to start TLS): try smtps://{where}"
        )
    if isinstance(exc, SmtpTlsError) and "did not advertise" in str(exc):
        return (
            f"the server offers no STARTTLS: smtp://{where}?tls=opportunistic (or ?tls=none) "
            "sends in plain text, a password only to a loopback address"
        )
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        return "--ca-file to trust a private CA; probe --insecure to inspect it anyway"
    return None
