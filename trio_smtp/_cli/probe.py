"""``trio-smtp probe``: what a server offers, without authenticating or sending mail.

Theory of operation: the probe drives the same pieces as a real session
(:func:`~trio_smtp._io.connect.open_transport` and the session's EHLO and STARTTLS steps in
:mod:`trio_smtp._delivery.session`), but stops short of AUTH and MAIL and records what it saw on the
way: the greeting, the EHLO reply before and after TLS, the TLS version and cipher and the
server's certificate.  It then says QUIT.  A server that does not meet the URL's security
(``smtp://`` without STARTTLS) is still described; :attr:`ProbeReport.problem` says why a
client would refuse it.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import ssl
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .._config import Security, Timeouts
from .._delivery.session import SessionConfig, ehlo_domain, ehlo_or_helo, negotiate_starttls
from .._errors import SmtpConnectError, SmtpError, SmtpTlsError
from .._io.connect import open_transport
from .._io.proxy import Proxy, parse_proxy
from .._io.stream import TlsFacts
from .._io.transport import Transport
from .._io.url import parse_smtp_url
from ..protocol import Command, Ehlo, Extensions, Helo, Reply, StartTls
from .common import (
    EXIT_CONNECTION,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_proxy_argument,
    add_timeout_option,
    cli_timeouts,
    failure_hint,
    proxy_from_cli,
    server_address,
    split_user,
    tls_context,
    url_argument,
)

__all__ = [
    "CertificateInfo",
    "ProbeReport",
    "TlsInfo",
    "add_probe_parser",
    "format_report",
    "probe",
    "run_probe",
    "tls_info",
]


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The server certificate: decoded by the ``ssl`` module when it was verified, else by
    ``cryptography`` when installed (names in RFC 4514 short form), else only its digest."""

    subject: str
    issuer: str
    not_before: str
    not_after: str
    #: subjectAltName entries as ``"DNS:name"`` / ``"IP Address:addr"``.
    alt_names: tuple[str, ...]
    #: SHA-256 of the DER certificate, hex with colons.
    sha256: str


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """The TLS session: how it was set up and what the server presented."""

    #: ``"implicit"`` (smtps://) or ``"STARTTLS"``.
    how: str
    version: str | None
    cipher: str | None
    bits: int | None
    #: False when the probe ran with verification switched off (``--insecure``).
    verified: bool
    certificate: CertificateInfo | None


@dataclass(slots=True)
class ProbeReport:
    """Everything the probe learned, in the order it learned it."""

    host: str
    #: ``None`` with a Unix socket.
    port: int | None
    security: Security
    #: The socket path for ``smtp+unix://``, else ``None``.
    unix_socket: str | None = None
    greeting: Reply | None = None
    #: The EHLO (or HELO) reply on the plaintext connection; ``None`` with implicit TLS.
    ehlo_before_tls: Reply | None = None
    #: The reply to STARTTLS, when it was sent.
    starttls_reply: Reply | None = None
    tls: TlsInfo | None = None
    #: The EHLO reply inside TLS (implicit TLS or after STARTTLS).
    ehlo_after_tls: Reply | None = None
    #: The extensions a client would use (the last EHLO's).
    extensions: Extensions = field(default_factory=Extensions)
    #: Why a client with this URL would refuse this server (e.g. STARTTLS not offered).
    problem: str | None = None


async def probe(
    report: ProbeReport,
    *,
    context: ssl.SSLContext | None,
    timeouts: Timeouts,
    local_hostname: str | None = None,
    proxy: Proxy | None = None,
) -> ProbeReport:
    """Connect to ``report.host``, read the greeting, EHLO, STARTTLS when
    ``report.security`` asks for it, EHLO again, QUIT; fill in ``report`` on the way.

    Raises :class:`~trio_smtp.SmtpConnectError`, :class:`~trio_smtp.SmtpTlsError` or
    :class:`~trio_smtp.SmtpTimeoutError` when the server cannot be reached or TLS fails
    (including a certificate that does not verify, unless ``context`` skips verification);
    ``report`` then still holds what was learned before (the greeting, the plaintext EHLO).
    ``proxy``: connect through it (see :mod:`trio_smtp._io.proxy`).
    """
    transport = await open_transport(
        report.host,
        report.port or 0,
        security=report.security,
        context=context,
        timeouts=timeouts,
        unix_socket=report.unix_socket,
        proxy=proxy,
    )
    try:
        with _recording(transport) as replies:
            await _converse(transport, report, replies, context, local_hostname)
    except BaseException:
        await transport.aclose()
        raise
    await transport.quit()
    return report


@contextmanager
def _recording(transport: Transport) -> Iterator[list[Reply]]:
    """Keep every reply to a command the session steps send (they return none of them)."""
    replies: list[Reply] = []
    original = transport.command

    async def command(*args: Any, **kwargs: Any) -> Reply:
        reply = await original(*args, **kwargs)
        replies.append(reply)
        return reply

    setattr(transport, "command", command)  # noqa: B010 - an instance override, on purpose
    try:
        yield replies
    finally:
        delattr(transport, "command")


def _last(replies: list[Reply], *kinds: type[Command]) -> Reply | None:
    return next((r for r in reversed(replies) if isinstance(r.command, kinds)), None)


async def _converse(
    transport: Transport,
    report: ProbeReport,
    replies: list[Reply],
    context: ssl.SSLContext | None,
    local_hostname: str | None,
) -> None:
    timeouts = transport.timeouts
    report.greeting = await transport.read_reply("the greeting", timeouts.greeting)
    if report.greeting.code != 220:
        raise SmtpConnectError("the server refused the session", reply=report.greeting)
    domain = local_hostname or await ehlo_domain(transport)
    await ehlo_or_helo(transport, domain)  # EHLO, or HELO when EHLO is refused
    hello = _last(replies, Ehlo, Helo)
    report.extensions = transport.extensions
    if report.security is Security.IMPLICIT_TLS:
        report.tls = tls_info(transport.tls_facts(), "implicit", context)
        report.ehlo_after_tls = hello
    else:
        report.ehlo_before_tls = hello
        if report.security is not Security.NONE:
            await _probe_starttls(transport, report, replies, context, domain)
    report.extensions = transport.extensions


async def _probe_starttls(
    transport: Transport,
    report: ProbeReport,
    replies: list[Reply],
    context: ssl.SSLContext | None,
    domain: str,
) -> None:
    if not transport.extensions.starttls:
        if report.security is Security.STARTTLS:
            report.problem = "STARTTLS is required by the URL but the server does not offer it"
        return
    config = SessionConfig(
        host=report.host,
        port=report.port or 0,
        security=report.security,
        ssl_context=context,
        timeouts=transport.timeouts,
    )
    try:
        # The session's own STARTTLS step (RFC 3207): the same checks as a real send.
        await negotiate_starttls(transport, config, domain)
    except SmtpTlsError as exc:
        if exc.reply is None:
            raise  # the handshake or the certificate failed: nothing more to learn
        report.starttls_reply = exc.reply
        report.problem = f"the server refused STARTTLS: {exc.reply}"
        return
    report.starttls_reply = _last(replies, StartTls)
    if not transport.tls:  # opportunistic and refused: plaintext goes on
        return
    report.tls = tls_info(transport.tls_facts(), "STARTTLS", context)
    report.ehlo_after_tls = _last(replies, Ehlo)


def tls_info(facts: TlsFacts | None, how: str, context: ssl.SSLContext | None) -> TlsInfo:
    """The report's view of a TLS connection's ``facts`` (see :meth:`Transport.tls_facts
    <trio_smtp._io.transport.Transport.tls_facts>`): version, cipher and certificate, decoded
    by ``ssl`` when it was verified, else by ``cryptography``."""
    assert facts is not None  # only asked once TLS is up
    verified = context is not None and context.verify_mode is not ssl.CERT_NONE
    der = facts.certificate_der
    certificate = None
    if der:
        decoded = facts.certificate  # empty unless the certificate was verified
        certificate = _certificate(decoded, der) if decoded else _unverified_certificate(der)
    return TlsInfo(
        how=how,
        version=facts.version,
        cipher=facts.cipher,
        bits=facts.bits,
        verified=verified,
        certificate=certificate,
    )


def _certificate(decoded: Mapping[str, Any], der: bytes) -> CertificateInfo:
    return CertificateInfo(
        subject=_name(decoded.get("subject", ())),
        issuer=_name(decoded.get("issuer", ())),
        not_before=str(decoded.get("notBefore", "?")),
        not_after=str(decoded.get("notAfter", "?")),
        alt_names=tuple(f"{kind}:{value}" for kind, value in decoded.get("subjectAltName", ())),
        sha256=_fingerprint(der),
    )


def _fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _name(rdns: Any) -> str:
    """``((('commonName', 'x'),), ...)`` -> ``"commonName=x, ..."``."""
    return ", ".join(f"{key}={value}" for rdn in rdns for key, value in rdn) or "(empty)"


#: What an unverified certificate shows when ``cryptography`` is not installed.
NOT_DECODED = "(not decoded: pip install 'trio-smtp[probe]' to see it)"


def _unverified_certificate(der: bytes) -> CertificateInfo:
    """A certificate that was not verified (``--insecure``), decoded by ``cryptography``.

    The ``ssl`` module decodes only what it verified (``getpeercert()`` is empty otherwise),
    and its decoder is private; ``cryptography`` (the ``probe`` extra) reads the DER bytes.
    Names come in RFC 4514 short form (``O=``, ``CN=``), in the certificate's order.  Without
    ``cryptography`` only the fingerprint is shown.
    """
    try:
        from cryptography import x509  # an optional dependency: only --insecure needs it
    except ImportError:
        return CertificateInfo(NOT_DECODED, NOT_DECODED, "?", "?", (), _fingerprint(der))
    try:
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alt_names = tuple(_general_name(name) for name in san)
    except x509.ExtensionNotFound:
        alt_names = ()
    except ValueError:  # DER the server sent that does not parse: say so, show the digest
        return CertificateInfo("(malformed)", "(malformed)", "?", "?", (), _fingerprint(der))
    return CertificateInfo(
        subject=_x509_name(cert.subject),
        issuer=_x509_name(cert.issuer),
        not_before=_asn1_time(cert.not_valid_before_utc),
        not_after=_asn1_time(cert.not_valid_after_utc),
        alt_names=alt_names,
        sha256=_fingerprint(der),
    )


def _x509_name(name: Any) -> str:
    """A ``cryptography`` Name -> ``"O=x, OU=y"`` (short names, the certificate's order)."""
    parts = [f"{a.rfc4514_attribute_name}={a.value}" for rdn in name.rdns for a in rdn]
    return ", ".join(parts) or "(empty)"


def _general_name(name: Any) -> str:
    """A subjectAltName entry, labelled as ``getpeercert()`` labels it."""
    from cryptography import x509

    kinds = (
        (x509.DNSName, "DNS"),
        (x509.IPAddress, "IP Address"),
        (x509.RFC822Name, "email"),
        (x509.UniformResourceIdentifier, "URI"),
    )
    label = next((label for kind, label in kinds if isinstance(name, kind)), type(name).__name__)
    return f"{label}:{name.value}"


def _asn1_time(moment: datetime.datetime) -> str:
    """The ``ssl`` module's form, ``"Jan  1 00:00:00 2000 GMT"`` (what :func:`expires_in` reads)."""
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return f"{month[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S} {moment.year} GMT"


def expires_in(not_after: str, now: datetime.datetime | None = None) -> str:
    """``"in 89 days"`` or ``"EXPIRED 3 days ago"`` for an ``ssl`` notAfter string."""
    try:
        seconds = ssl.cert_time_to_seconds(not_after)
    except ValueError:
        return "unknown"
    expiry = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    days = (expiry - (now or datetime.datetime.now(datetime.timezone.utc))).days
    return f"in {days} days" if days >= 0 else f"EXPIRED {-days} days ago"


# -- printing --------------------------------------------------------------------------------


def format_report(report: ProbeReport) -> str:
    """The report as ``trio-smtp probe`` prints it."""
    return "\n".join(_lines(report))


def _lines(report: ProbeReport) -> Iterator[str]:
    where = report.unix_socket or f"{report.host}:{report.port}"
    yield f"server:     {where} ({_describe_security(report.security)})"
    if report.greeting is not None:
        yield f"greeting:   {_one_line(report.greeting)}"
    if report.ehlo_before_tls is not None:
        yield from _ehlo("EHLO (before TLS):", report.ehlo_before_tls)
    if report.starttls_reply is not None:
        yield f"STARTTLS:   {_one_line(report.starttls_reply)}"
    if report.tls is not None:
        yield from _tls_lines(report.tls)
    if report.ehlo_after_tls is not None:
        yield from _ehlo("EHLO (after TLS):", report.ehlo_after_tls)
    mechanisms = report.extensions.params("AUTH")
    if "AUTH" in report.extensions:
        yield f"AUTH:       {' '.join(mechanisms) or '(no mechanism listed)'}"
    else:
        yield "AUTH:       not offered" + ("" if report.tls else " (before TLS)")
    if report.problem is not None:
        yield f"PROBLEM:    {report.problem}"


def _describe_security(security: Security) -> str:
    return {
        Security.IMPLICIT_TLS: "implicit TLS",
        Security.STARTTLS: "STARTTLS required",
        Security.STARTTLS_OPPORTUNISTIC: "STARTTLS if offered",
        Security.NONE: "no TLS",
    }[security]


def _one_line(reply: Reply) -> str:
    return f"{reply.code} {' | '.join(reply.lines)}"


def _ehlo(title: str, reply: Reply) -> Iterator[str]:
    yield f"{title} {reply.code} {reply.lines[0]}"
    for line in reply.lines[1:]:
        yield f"  {line}"


def _tls_lines(tls: TlsInfo) -> Iterator[str]:
    bits = f" ({tls.bits} bits)" if tls.bits else ""
    yield f"TLS:        {tls.version}, {tls.cipher}{bits} [{tls.how}]"
    cert = tls.certificate
    if cert is None:
        yield "certificate: none presented"
        return
    yield "certificate:"
    yield f"  subject:  {cert.subject}"
    yield f"  issuer:   {cert.issuer}"
    expiry = expires_in(cert.not_after)
    yield f"  valid:    {cert.not_before} to {cert.not_after} (expires {expiry})"
    if cert.alt_names:
        yield f"  names:    {', '.join(cert.alt_names)}"
    yield f"  sha256:   {cert.sha256}"
    if tls.verified:
        yield "  verified: yes (chain and host name)"
    else:
        yield "  verified: NO -- verification was switched off (--insecure)"


# -- the probe command ---------------------------------------------------------------------

_PROBE_EPILOG = """\
The probe connects, reads the greeting, says EHLO, starts TLS as the URL asks
(smtps:// implicit TLS, smtp:// STARTTLS; smtp+unix:///path is a local socket
without TLS), says EHLO again and QUIT.  It never
authenticates nor sends mail; a user name or password in the URL is ignored.

exit status:
  0  the server can be used with this URL
  1  it answered, but a client with this URL would refuse it (e.g. no STARTTLS)
  2  usage error
  4  connection, TLS (including certificate verification) or timeout failure
  130  interrupted (Ctrl-C)
"""


def add_probe_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trio-smtp probe URL``: what the server offers (see :mod:`trio_smtp._cli.probe`)."""
    parser = subcommands.add_parser(
        "probe",
        help="show a server's greeting, extensions, TLS, certificate and AUTH mechanisms",
        description="Connect to the server and print its greeting, its EHLO extensions "
        "before and after TLS, the TLS version, cipher and certificate, and its AUTH "
        "mechanisms.  Nothing is authenticated or sent.",
        epilog=_PROBE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url", metavar="URL", type=url_argument,
        help="smtp://host[:port], smtps://host[:port] or smtp+unix:///path",
    )  # fmt: skip
    verify = parser.add_mutually_exclusive_group()
    verify.add_argument("--ca-file", type=Path, metavar="PEM", help="trust only this CA")
    verify.add_argument(
        "--insecure", action="store_true",
        help="INSECURE: do not verify the certificate (to inspect a server whose "
        "certificate is wrong)",
    )  # fmt: skip
    add_timeout_option(parser, "connect, greeting, each reply, TLS")
    add_proxy_argument(parser)
    parser.set_defaults(handler=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    """Run ``trio-smtp probe``; returns one of the EXIT_* statuses."""
    try:
        _, url = split_user(args.url, allow_password=True)
        config = parse_smtp_url(url)
        if "pickup_directory" in config:
            raise UsageError("probe needs a server: a pickup:// URL names a directory")
        proxy_url = proxy_from_cli(args.proxy) or config["proxy"]
        proxy = parse_proxy(proxy_url) if proxy_url is not None else None
        context = None
        if config["security"] is not Security.NONE:
            context = tls_context(args.ca_file, insecure=args.insecure)
    except (UsageError, ValueError, ImportError) as exc:
        print(f"trio-smtp probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    timeouts = cli_timeouts(args.timeout)
    if args.insecure:
        print("WARNING: --insecure: the certificate is NOT verified", flush=True)
    report = ProbeReport(
        config["host"], config["port"], config["security"], unix_socket=config["unix_socket"]
    )
    probing = functools.partial(
        probe, report, context=context, timeouts=timeouts,
        local_hostname=config["local_hostname"], proxy=proxy,
    )  # fmt: skip
    try:
        trio.run(probing)
    except SmtpError as exc:
        if report.greeting is not None:
            print(format_report(report), flush=True)  # what was learned before the failure
        hint = failure_hint(exc, report.security, server_address(config))
        print(f"trio-smtp probe: {type(exc).__name__}: {exc}", file=sys.stderr)
        if hint is not None:
            print(f"hint: {hint}", file=sys.stderr)
        return EXIT_CONNECTION
    print(format_report(report))
    return EXIT_OK if report.problem is None else EXIT_FAILED
