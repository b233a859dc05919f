"""The ``trio-smtp`` command line.

Each subcommand is one ``add_<name>_parser`` function that registers its arguments and one
``run_<name>`` function that does the work: ``send`` (one message to a server given by URL),
``probe`` (what a server offers; the work is in :mod:`trio_smtp._cli.probe`), ``serve`` (the
testing server as a local debugging server; in :mod:`trio_smtp._cli.serve`) and ``demo``.
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
import sys
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trio

from .._client.client import SendResult, SmtpClient
from .._config import Security
from .._credentials import OAuth2
from .._errors import (
    SmtpAuthenticationError,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpError,
    SmtpFailedRecipientError,
    SmtpFailedRecipientsError,
    SmtpTimeoutError,
    SmtpTlsError,
)
from .._io.url import SmtpUrlConfig, parse_smtp_url
from .._message.addresses import parse_address_list
from .._message.options import DeliveryNotification, DsnReturn, delivery_options
from .bulk import is_bulk_source, run_bulk
from .common import (
    EXIT_CONNECTION,
    EXIT_FAILED,
    EXIT_MAYBE_DELIVERED,
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
from .probe import add_probe_parser
from .serve import add_serve_parser, have_trustme
from .transfer_bar import TransferBar

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``trio-smtp`` parser with every subcommand."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="trio-smtp", description="SMTP tools for Trio.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_send_parser(subcommands)
    add_probe_parser(subcommands)
    add_serve_parser(subcommands)
    add_demo_parser(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trio-smtp`` and ``python -m trio_smtp``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except BaseException as exc:  # Ctrl-C: no traceback (serve handles its own)
        if not _interrupted(exc):
            raise
        print(f"\ntrio-smtp {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result


def _interrupted(exc: BaseException) -> bool:
    """True for a KeyboardInterrupt, also when a nursery it crossed wrapped it in a group."""
    group = getattr(exc, "exceptions", None)
    if group:
        return all(_interrupted(member) for member in group)
    return isinstance(exc, KeyboardInterrupt)


#: Ctrl-C, as shells report a SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


# -- send and probe ----------------------------------------------------------------------


_SEND_EPILOG = """\
The server URL is smtps://[user@]host[:port] (implicit TLS, port 465),
smtp://[user@]host[:port][?tls=opportunistic|none] (STARTTLS required unless tls=
says otherwise, port 587), smtp+unix://[user@]/path/to/socket (a local socket) or
pickup:///path/to/dir (write the message as an .eml file into that directory).
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
  130  interrupted (Ctrl-C); after the message was sent, it MAY have been delivered
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
    parser.add_argument(
        "eml", nargs="?", metavar="EML",
        help=".eml file to send (- for stdin); or a directory of .eml files, a maildir or an "
        "mbox: every message in it, through a pool of connections",
    )  # fmt: skip
    parser.add_argument(
        "--server", required=True, metavar="URL", type=url_argument,
        help="smtps://user@host:465 (see below)",
    )  # fmt: skip
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
    dsn.add_argument(
        "--envid", type=_envid, metavar="ID", help="identifier returned in every report"
    )
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
    add_timeout_option(
        parser, "connect, greeting, each reply, TLS, each write; the reply to the end of the "
        "message waits at least 600 (RFC 5321)",
    )  # fmt: skip
    add_proxy_argument(parser)
    parser.add_argument(
        "--source-address", metavar="IP",
        help="connect from this local IP address (a machine with several)",
    )  # fmt: skip
    parser.add_argument(
        "--progress", action="store_true",
        help="a progress bar for the message data whatever its size (without it, only for "
        "a message over 1 MiB; either way only when stderr is a terminal and tqdm is "
        "installed: pip install 'trio-smtp[progress]')",
    )  # fmt: skip
    bulk = parser.add_argument_group("many messages (EML is a directory, a maildir or an mbox)")
    bulk.add_argument(
        "--connections", type=_positive_int, default=4, metavar="N",
        help="connections at once (default: %(default)s)",
    )  # fmt: skip
    bulk.add_argument(
        "--rate", type=_positive_float, metavar="PER_SECOND",
        help="at most this many messages per second, evenly spaced",
    )  # fmt: skip
    bulk.add_argument(
        "--report", type=Path, metavar="FILE",
        help="write one JSON line per message: its source, status and the server's replies",
    )  # fmt: skip
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar (there is none anyway unless stderr is a terminal and tqdm "
        "is installed)",
    )  # fmt: skip
    parser.set_defaults(handler=run_send)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def run_send(args: argparse.Namespace) -> int:
    """Run ``trio-smtp send``; returns one of the EXIT_* statuses."""
    args.ret_value = {"full": DsnReturn.FULL, "headers": DsnReturn.HEADERS}.get(args.ret or "")
    if args.eml is not None and is_bulk_source(args.eml):
        return _run_bulk(args)
    try:
        _check_recipients(args)
        message = read_message(args) if args.eml is not None else compose_message(args)
        user, url = split_user(args.server)
        config = parse_smtp_url(url)
        client = SmtpClient.from_url(url, **_client_options(args, config, user))
    except OSError as exc:  # the .eml, --body-file or an --attach file
        print(f"trio-smtp send: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ValueError, TypeError, ImportError) as exc:
        print(f"trio-smtp send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = {
        "sender": args.envelope_from,
        "recipients": args.envelope_to,
        "notify": args.notify,
        "ret": args.ret_value,
        "envid": args.envid,
        "requiretls": args.requiretls,
    }
    return trio.run(_send, client, message, options, config, args)


def _run_bulk(args: argparse.Namespace) -> int:
    """Many messages (see :mod:`trio_smtp._cli.bulk`)."""
    try:
        _no_composing(args, "a directory, maildir or mbox")
        user, url = split_user(args.server)
        options = _client_options(args, parse_smtp_url(url), user)
    except (UsageError, ValueError, TypeError, ImportError) as exc:
        print(f"trio-smtp send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_bulk(args, url, options)


def _notify(text: str) -> DeliveryNotification:
    """``--notify success,failure,delay`` or ``never`` -> the flag."""
    names = {
        "success": DeliveryNotification.ON_SUCCESS,
        "failure": DeliveryNotification.ON_FAILURE,
        "delay": DeliveryNotification.DELAY,
        "never": DeliveryNotification.NEVER,
    }
    flag = DeliveryNotification.NONE
    words = [word.strip() for word in text.lower().split(",")]
    for word in words:
        if word not in names:
            raise argparse.ArgumentTypeError(f"{word!r} is not one of {', '.join(names)}")
        flag |= names[word]
    if "never" in words and len(set(words)) > 1:
        raise argparse.ArgumentTypeError("never cannot be combined with success, failure or delay")
    return flag


def _envid(text: str) -> str:
    """``--envid``: checked as ``send(envid=)`` checks it, reported as this option."""
    try:
        delivery_options(("x@example.org",), envid=text)
    except ValueError as exc:
        detail = str(exc).removeprefix("invalid envid: ")
        raise argparse.ArgumentTypeError(f"not a valid envelope identifier: {detail}") from None
    return text


def _client_options(
    args: argparse.Namespace, config: SmtpUrlConfig, user: str | None
) -> dict[str, Any]:
    options: dict[str, Any] = {"timeouts": cli_timeouts(args.timeout)}
    if args.proxy is not None:
        options["proxy"] = proxy_from_cli(args.proxy)
    if args.source_address is not None:
        try:
            ipaddress.ip_address(args.source_address)
        except ValueError:
            raise UsageError(
                f"--source-address must be an IP address, not {args.source_address!r}"
            ) from None
        options["source_address"] = args.source_address
    if config["security"] is not Security.NONE:
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


def _check_recipients(args: argparse.Namespace) -> None:
    """A composed message needs a recipient: said in this command's options, before the
    library would say it in ``send()``'s arguments."""
    composed = args.eml is None and args.sender
    if composed and not (args.to or args.cc or args.bcc or args.envelope_to):
        raise UsageError("no recipients: give --to, --cc or --bcc (or --envelope-to)")


#: The library's validation errors name ``send()``'s arguments; this command's options are
#: their counterparts (``--envid`` and the others are checked when parsed).
_OPTION_FOR_ARGUMENT = {"sender=": "--envelope-from", "recipients=": "--envelope-to"}


def _in_cli_terms(error: Exception, args: argparse.Namespace) -> str:
    text = str(error)
    for argument, option in _OPTION_FOR_ARGUMENT.items():
        text = text.replace(argument, option)
    if args.eml is not None:
        text = text.replace("the message has", f"the message in {args.eml} has")
    return text


def read_message(args: argparse.Namespace) -> EmailMessage:
    """The .eml file (or stdin) as an EmailMessage; its Bcc is dropped when it is sent."""
    _no_composing(args, "a .eml file")
    data = sys.stdin.buffer.read() if args.eml == "-" else Path(args.eml).read_bytes()
    if not data.strip():
        raise UsageError(f"the message in {args.eml} is empty")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _no_composing(args: argparse.Namespace, what: str) -> None:
    used = [name for name in _COMPOSING if getattr(args, name)]
    if used:
        flags = ", ".join("--" + name.replace("_", "-") for name in used)
        raise UsageError(f"{flags} cannot be combined with {what} (use --envelope-*)")


def compose_message(args: argparse.Namespace) -> EmailMessage:
    """A text message with attachments, from --from/--to/--subject/--body/--attach."""
    if not args.sender:
        raise UsageError("give a .eml file, or --from (and --to) to compose a message")
    _check_addresses(args)
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


def _check_addresses(args: argparse.Namespace) -> None:
    """Each --from/--to/--cc/--bcc value must be addresses through and through: one the
    header parser cannot read would otherwise be dropped and the rest of the list used."""
    options = [("--from", [args.sender]), ("--to", args.to), ("--cc", args.cc)]
    for option, values in [*options, ("--bcc", args.bcc)]:
        for value in values:
            try:
                found = parse_address_list(value, f"{option} {value!r}")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if not found:
                raise UsageError(f"{option} {value!r} holds no address")


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


async def _send(
    client: SmtpClient,
    message: EmailMessage,
    options: dict[str, Any],
    config: SmtpUrlConfig,
    args: argparse.Namespace,
) -> int:
    bar = TransferBar(always=args.progress, never=args.no_progress)
    try:
        async with client:
            try:
                result = await client.send(message, progress=bar, **options)
            finally:
                bar.close()
    except SmtpFailedRecipientsError as exc:
        _print_outcome(exc.result, exc.failures)
        return EXIT_FAILED
    except (ValueError, TypeError) as exc:  # the message or an address: nothing was sent
        print(f"trio-smtp send: {_in_cli_terms(exc, args)}", file=sys.stderr)
        return EXIT_USAGE
    except SmtpError as exc:
        status = _report_error(exc)
        hint = failure_hint(exc, config["security"], server_address(config))
        if hint is not None:
            print(f"hint: {hint}", file=sys.stderr)
        return status
    _print_outcome(result, [])
    if "pickup_directory" in config:
        print(f"written:  into the pickup directory {config['pickup_directory']}")
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
    from .demo import run_demo

    if not have_trustme():
        print("trio-smtp demo: the demo's server needs trustme (for its TLS certificate), "
              "which comes with the test extra: pip install 'trio-smtp[test]'",
              file=sys.stderr)  # fmt: skip
        return 2
    return trio.run(run_demo)
