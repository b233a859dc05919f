"""The ``trio-smtp`` command line.

Each subcommand is one ``add_<name>_parser`` function that registers its arguments and one
``run_<name>`` function that does the work: ``send`` (one message to a server given by URL),
``probe`` (what a server offers; the work is in :mod:`trio_smtp._probe`), ``serve`` (the
testing server as a local debugging server) and ``demo``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import email.utils
import getpass
import ipaddress
import mimetypes
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import trio

from ._client import SendResult, SmtpClient
from ._config import Security
from ._errors import (
    SmtpAuthenticationError,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpFailedRecipientError,
    SmtpFailedRecipientsError,
    SmtpTimeoutError,
    SmtpTlsError,
)
from ._options import DeliveryNotification, DsnReturn
from ._probe import (
    EXIT_CONNECTION,
    EXIT_FAILED,
    EXIT_MAYBE_DELIVERED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_probe_parser,
    add_proxy_argument,
    proxy_from_cli,
    split_user,
    tls_context,
)
from ._session import OAuth2
from ._url import parse_smtp_url

if TYPE_CHECKING:
    from .testing import Message, SmtpServer

__all__ = ["build_parser", "main", "serve"]


def build_parser() -> argparse.ArgumentParser:
    """The ``trio-smtp`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="trio-smtp", description="SMTP tools for Trio.")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_send_parser(subcommands)
    add_probe_parser(subcommands)
    add_serve_parser(subcommands)
    add_demo_parser(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trio-smtp`` and ``python -m trio_smtp``; returns the exit status."""
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


# -- send and probe ----------------------------------------------------------------------


_SEND_EPILOG = """\
The server URL is smtps://[user@]host[:port] (implicit TLS, port 465),
smtp://[user@]host[:port][?tls=opportunistic|none] (STARTTLS required unless tls=
says otherwise, port 587) or smtp+unix://[user@]/path/to/socket (a local socket).
With a user name, the password comes from the environment variable named by
--password-env, or is asked for when standard input is a terminal; it is never
taken from the command line or the URL.

exit status:
  0  every recipient accepted the message
  1  not delivered to everyone: a recipient, the sender or the message was refused
  2  usage error (bad option, URL, address or file); nothing was sent
  3  the connection broke, or the reply timed out, after the message was sent: it
     MAY have been delivered (check before sending it again)
  4  connection, TLS, authentication or timeout failure; nothing was delivered
"""


def add_send_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trio-smtp send``: a .eml file, or a message composed from options."""
    parser = subcommands.add_parser(
        "send",
        help="send a .eml file or a message composed from options",
        description="Send one message and print each recipient's outcome and the server's "
        "final reply.  Give a .eml file (or - for standard input), or compose a message "
        "with --from, --to, --subject, --body and --attach.",
        epilog=_SEND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("eml", nargs="?", metavar="EML", help=".eml file to send (- for stdin)")
    parser.add_argument("--server", required=True, metavar="URL", help="smtps://user@host:465")
    parser.add_argument("--from", dest="sender", metavar="ADDR", help="From header")
    for flag, what in (("--to", "To"), ("--cc", "Cc"), ("--bcc", "Bcc (not in the data)")):
        parser.add_argument(flag, action="append", default=[], metavar="ADDR", help=what)
    parser.add_argument("--subject", help="Subject header")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", help="the text of the message")
    body.add_argument("--body-file", type=Path, metavar="FILE", help="text file (- for stdin)")
    parser.add_argument(
        "--attach", action="append", default=[], type=Path, metavar="FILE",
        help="attach FILE (repeatable; MIME type guessed from its name)",
    )  # fmt: skip
    parser.add_argument("--envelope-from", metavar="ADDR", help="MAIL FROM instead of From")
    parser.add_argument(
        "--envelope-to", action="append", metavar="ADDR",
        help="RCPT TO instead of To/Cc/Bcc (repeatable)",
    )  # fmt: skip
    dsn = parser.add_argument_group("delivery status notifications (RFC 3461) and REQUIRETLS")
    dsn.add_argument(
        "--notify", type=_notify, metavar="WHEN",
        help="success,failure,delay (any of them, comma-separated) or never",
    )  # fmt: skip
    dsn.add_argument("--ret", choices=["full", "headers"], help="what a failure report returns")
    dsn.add_argument("--envid", metavar="ID", help="identifier returned in every report")
    dsn.add_argument("--requiretls", action="store_true", help="TLS on every hop (RFC 8689)")
    parser.add_argument(
        "--password-env", default="TRIO_SMTP_PASSWORD", metavar="NAME",
        help="environment variable holding the password (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--oauth2", action="store_true",
        help="the secret is an OAuth 2.0 access token (OAUTHBEARER or XOAUTH2), not a password",
    )  # fmt: skip
    parser.add_argument("--ca-file", type=Path, metavar="PEM", help="trust only this CA")
    add_proxy_argument(parser)
    parser.set_defaults(handler=run_send)


def run_send(args: argparse.Namespace) -> int:
    """Run ``trio-smtp send``; returns one of the EXIT_* statuses."""
    try:
        message = read_message(args) if args.eml is not None else compose_message(args)
        user, url = split_user(args.server)
        client = SmtpClient.from_url(url, **_client_options(args, url, user))
    except (UsageError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"trio-smtp send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = {
        "sender": args.envelope_from,
        "recipients": args.envelope_to,
        "notify": args.notify,
        "ret": {"full": DsnReturn.FULL, "headers": DsnReturn.HEADERS}.get(args.ret or ""),
        "envid": args.envid,
        "requiretls": args.requiretls,
    }
    return trio.run(_send, client, message, options)


def _notify(text: str) -> DeliveryNotification:
    """``--notify success,failure,delay`` or ``never`` -> the flag."""
    names = {
        "success": DeliveryNotification.ON_SUCCESS,
        "failure": DeliveryNotification.ON_FAILURE,
        "delay": DeliveryNotification.DELAY,
        "never": DeliveryNotification.NEVER,
    }
    flag = DeliveryNotification.NONE
    for word in text.lower().split(","):
        if word.strip() not in names:
            raise argparse.ArgumentTypeError(f"{word!r} is not one of {', '.join(names)}")
        flag |= names[word.strip()]
    return flag


def _client_options(args: argparse.Namespace, url: str, user: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.proxy is not None:
        options["proxy"] = proxy_from_cli(args.proxy)
    if parse_smtp_url(url)["security"] is not Security.NONE:
        options["ssl_context"] = tls_context(args.ca_file)
    if user is not None:
        secret = _password(args.password_env, user)
        options["credentials"] = OAuth2(user, secret) if args.oauth2 else (user, secret)
    elif args.oauth2:
        raise UsageError("--oauth2 needs the user name in the URL: smtp://user@host")
    return options


def _password(variable: str, user: str) -> str:
    password = os.environ.get(variable)
    if password is not None:
        return password
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"password for {user}: ")
    raise UsageError(f"no password for {user}: set the environment variable {variable}")


_COMPOSING = ("sender", "to", "cc", "bcc", "subject", "body", "body_file", "attach")


def read_message(args: argparse.Namespace) -> EmailMessage:
    """The .eml file (or stdin) as an EmailMessage; its Bcc is dropped when it is sent."""
    used = [name for name in _COMPOSING if getattr(args, name)]
    if used:
        flags = ", ".join("--" + name.replace("_", "-") for name in used)
        raise UsageError(f"{flags} cannot be combined with a .eml file (use --envelope-*)")
    data = sys.stdin.buffer.read() if args.eml == "-" else Path(args.eml).read_bytes()
    if not data.strip():
        raise UsageError(f"the message in {args.eml} is empty")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def compose_message(args: argparse.Namespace) -> EmailMessage:
    """A text message with attachments, from --from/--to/--subject/--body/--attach."""
    if not args.sender:
        raise UsageError("give a .eml file, or --from (and --to) to compose a message")
    message = EmailMessage()
    message["From"] = args.sender
    for header, values in (("To", args.to), ("Cc", args.cc), ("Bcc", args.bcc)):
        if values:
            message[header] = ", ".join(values)
    if args.subject is not None:
        message["Subject"] = args.subject
    message["Date"] = email.utils.formatdate(localtime=True)
    domain = args.sender.rpartition("@")[2].strip(" >") or "localhost"
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    message.set_content(_body_text(args))
    for path in args.attach:
        attach_file(message, path)
    return message


def _body_text(args: argparse.Namespace) -> str:
    if args.body_file is None:
        return str(args.body or "")
    if str(args.body_file) == "-":
        return sys.stdin.read()
    return Path(args.body_file).read_text(encoding="utf-8")


def attach_file(message: EmailMessage, path: Path) -> None:
    """Attach ``path`` with the MIME type its name suggests (application/octet-stream
    when unknown or compressed: a .gz is not text)."""
    kind, encoding = mimetypes.guess_type(path.name)
    if kind is None or encoding is not None:
        kind = "application/octet-stream"
    maintype, _, subtype = kind.partition("/")
    message.add_attachment(
        path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name
    )


async def _send(client: SmtpClient, message: EmailMessage, options: dict[str, Any]) -> int:
    try:
        async with client:
            result = await client.send(message, **options)
    except SmtpFailedRecipientsError as exc:
        _print_outcome(exc.result, exc.failures)
        return EXIT_FAILED
    except (ValueError, TypeError) as exc:  # the message or an address: nothing was sent
        print(f"trio-smtp send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SmtpError as exc:
        return _report_error(exc)
    _print_outcome(result, [])
    return EXIT_OK


def _print_outcome(result: SendResult | None, failures: list[SmtpFailedRecipientError]) -> None:
    for recipient in result.accepted if result else ():
        print(f"accepted: {recipient}")
    for failure in failures:
        print(f"refused:  {failure.recipient}: {failure.reply}")
    if result is None:
        print("not sent: every recipient was refused")
    elif result.reply is not None:
        print(f"reply:    {result.reply}")


def _report_error(exc: SmtpError) -> int:
    # Also SmtpDeliveryTimeoutError: a timeout waiting for the reply to the end of data is
    # as uncertain as a lost connection.
    if isinstance(exc, SmtpDeliveryUnknownError):
        print(f"trio-smtp send: MAYBE DELIVERED: {exc}", file=sys.stderr)
        return EXIT_MAYBE_DELIVERED
    connection = (SmtpConnectError, SmtpTlsError, SmtpAuthenticationError, SmtpTimeoutError)
    print(f"trio-smtp send: {type(exc).__name__}: {exc}", file=sys.stderr)
    if isinstance(exc, connection):
        return EXIT_CONNECTION
    return EXIT_FAILED


# -- demo ----------------------------------------------------------------------------------


def add_demo_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trio-smtp demo``: one real send through the client to the testing server."""
    parser = subcommands.add_parser(
        "demo",
        help="send one message to the embedded testing server (loopback, STARTTLS, AUTH)",
        description=(
            "Start the testing server on 127.0.0.1 with STARTTLS and AUTH, send one message "
            "with SmtpClient.send_async, and print the completion event and the message as "
            "the server received it."
        ),
    )
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """Run ``trio-smtp demo``; 0 when the message was delivered."""
    from ._demo import run_demo

    return trio.run(run_demo)


# -- serve ---------------------------------------------------------------------------------


def add_serve_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trio-smtp serve``: a local debugging server that prints what it receives."""
    parser = subcommands.add_parser(
        "serve",
        help="run a local debugging SMTP server that prints each message",
        description="Run trio_smtp.testing's server on loopback and print each message "
        "received (envelope and headers).  Nothing is relayed anywhere.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8025, help="TCP port (0: any free port)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--starttls",
        dest="tls",
        action="store_const",
        const="starttls",
        help="offer STARTTLS with a throw-away certificate (needs trustme)",
    )
    tls.add_argument(
        "--tls",
        dest="tls",
        action="store_const",
        const="implicit",
        help="implicit TLS from the first byte (needs trustme)",
    )
    parser.set_defaults(tls="none")
    parser.add_argument(
        "--ca-file",
        type=Path,
        help="with --tls/--starttls: write the CA certificate here for clients",
    )
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="accept these credentials (repeatable); AUTH is offered only then",
    )
    parser.add_argument(
        "--auth-mechanism",
        dest="auth_mechanisms",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this SASL mechanism (repeatable; 'all' for every one the server speaks: "
        "SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN, OAUTHBEARER, XOAUTH2); "
        "default: all but SCRAM-SHA-1 and OAUTHBEARER",
    )
    parser.add_argument("--require-auth", action="store_true", help="refuse MAIL before AUTH")
    parser.add_argument(
        "--maildir", type=Path, metavar="DIR", help="also store each message as DIR/<time>-<n>.eml"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow listening on an address other than loopback",
    )
    parser.set_defaults(handler=run_serve)  # fmt: skip


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` until interrupted (Ctrl-C)."""
    if not args.allow_remote and not _is_loopback(args.host):
        print(f"trio-smtp serve: refusing to listen on {args.host}, which is not a loopback "
              "address (pass --allow-remote to do it anyway)", file=sys.stderr)  # fmt: skip
        return 2
    credentials = {}
    for item in args.auth:
        user, sep, password = item.partition(":")
        if not sep or not user:
            print(f"trio-smtp serve: --auth needs USER:PASSWORD, not {item!r}", file=sys.stderr)
            return 2
        credentials[user] = password
    try:
        _auth_mechanisms(args.auth_mechanisms)  # checked before anything listens
    except ValueError as exc:
        print(f"trio-smtp serve: {exc}", file=sys.stderr)
        return 2
    try:
        error = trio.run(_serve_until_signalled, args, credentials)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the handler was installed
        error = None
    if error is not None:
        print(f"trio-smtp serve: {error}", file=sys.stderr)
        return 1
    print("stopped", file=sys.stderr)
    return 0


def _auth_mechanisms(names: list[str]) -> tuple[str, ...] | None:
    """``--auth-mechanism`` values, checked; None when none was given (the default set)."""
    from .testing import ALL_MECHANISMS

    chosen: list[str] = []
    for name in names:
        upper = name.upper()
        if upper == "ALL":
            chosen.extend(ALL_MECHANISMS)
        elif upper in ALL_MECHANISMS:
            chosen.append(upper)
        else:
            raise ValueError(
                f"unknown --auth-mechanism {name!r} (one of {', '.join(ALL_MECHANISMS)}, or all)"
            )
    return tuple(dict.fromkeys(chosen)) or None


async def _serve_until_signalled(
    args: argparse.Namespace, credentials: dict[str, str]
) -> OSError | RuntimeError | None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then shut down cleanly.

    The signals are received as events (trio.open_signal_receiver) rather than as a
    KeyboardInterrupt raised wherever the main task happens to be, so the server's nursery
    always closes in order and the exit status does not depend on timing.
    """
    error: OSError | RuntimeError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_first_signal, signals, nursery.cancel_scope)
            try:
                await serve(args, credentials)
            except (OSError, RuntimeError) as exc:  # e.g. the port is taken
                error = exc
            nursery.cancel_scope.cancel()
    return error


async def _cancel_on_first_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for _ in signals:
        scope.cancel()
        return


async def serve(
    args: argparse.Namespace,
    credentials: dict[str, str],
    *,
    out: TextIO | None = None,
    task_status: trio.TaskStatus[SmtpServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve and print messages forever; ``task_status.started`` gets the server."""
    from .testing import DEFAULT_MECHANISMS, SmtpServer

    out = out or sys.stdout
    server = SmtpServer(
        host=args.host,
        port=args.port,
        tls=args.tls,
        credentials=credentials,
        require_auth=args.require_auth,
        auth_mechanisms=_auth_mechanisms(args.auth_mechanisms) or DEFAULT_MECHANISMS,
    )
    async with server:
        print(f"listening on {server.host}:{server.port} (tls: {args.tls})", file=out, flush=True)
        if args.ca_file and args.tls != "none":
            server.write_ca_file(args.ca_file)
            print(f"CA certificate written to {args.ca_file}", file=out, flush=True)
        task_status.started(server)
        number = 0
        while True:
            number += 1
            message = await server.wait_for_message(number)
            print(describe_message(number, message), file=out, flush=True)
            if args.maildir is not None:
                path = await trio.to_thread.run_sync(store_message, args.maildir, number, message)
                print(f"stored as {path}", file=out, flush=True)


def describe_message(number: int, message: Message) -> str:
    """The envelope and headers of ``message``, as ``serve`` prints them."""
    connection = message.connection
    facts = []
    if connection is not None:
        facts.append(f"from {connection.peer}" if connection.peer else "from a stream")
        facts.append(connection.tls_version or "no TLS")
        if connection.auth_identity:
            facts.append(f"authenticated as {connection.auth_identity}")
    reply = message.reply
    lines = [
        f"=== message {number} ({', '.join(facts)}) -> {reply if reply else 'no reply'}",
        f"MAIL FROM:<{message.sender}>{_params(message.mail_params)}",
    ]
    for recipient in message.recipients:
        lines.append(f"RCPT TO:<{recipient}>{_params(message.rcpt_params.get(recipient, {}))}")
    lines.append(f"{len(message.data)} octets via {message.transfer}")
    header, _, _ = message.data.partition(b"\r\n\r\n")
    lines.append(header.decode("utf-8", "replace").replace("\r\n", "\n"))
    return "\n".join(lines)


def _params(params: dict[str, str | None]) -> str:
    return "".join(
        f" {key}" if value is None else f" {key}={value}" for key, value in params.items()
    )


def store_message(directory: Path, number: int, message: Message) -> Path:
    """Write the message data to ``directory`` as a new .eml file, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{time.time_ns()}-{os.getpid()}-{number}"
    temporary = directory / f".{stem}.tmp"
    target = directory / f"{stem}.eml"
    temporary.write_bytes(message.data)
    os.replace(temporary, target)  # readers never see a half-written file
    return target
