"""``trio-smtp serve``: the testing server as a local debugging server.

Theory of operation: :func:`run_serve` checks the options (loopback only unless
``--allow-remote``, credentials, SASL mechanisms, trustme for TLS) before anything listens, then
runs :func:`serve` until SIGINT or SIGTERM, received as events so that the server's nursery
always closes in order.  :func:`serve` prints each message's envelope and headers as it arrives
(:func:`describe_message`) and, with ``--maildir``, stores it (:func:`store_message`).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import trio

from .common import port_number

if TYPE_CHECKING:
    from ..testing import Message, SmtpServer

__all__ = [
    "add_serve_parser",
    "describe_message",
    "have_trustme",
    "run_serve",
    "serve",
    "store_message",
]


def add_serve_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trio-smtp serve``: a local debugging server that prints what it receives."""
    parser = subcommands.add_parser(
        "serve",
        help="run a local debugging SMTP server that prints each message",
        description="Run trio_smtp.testing's server on loopback and print each message "
        "received (envelope and headers).  Nothing is relayed anywhere.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=port_number, default=8025, help="TCP port (0: any free port)"
    )
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
    _add_serve_limits(parser)
    parser.set_defaults(handler=run_serve)  # fmt: skip


def _add_serve_limits(parser: argparse.ArgumentParser) -> None:
    """``serve``'s bounds on what the server holds (SmtpServer's options of the same names)."""
    limits = parser.add_argument_group("limits, so that a long serve stays bounded (0: none)")
    limits.add_argument(
        "--max-connections",
        type=_count,
        default=100,
        metavar="N",
        help="sessions at once; then new clients wait (default 100)",
    )
    limits.add_argument(
        "--max-message-size",
        type=_size,
        default=10 * 1024 * 1024,
        metavar="OCTETS",
        help="largest message, advertised with SIZE and "
        "enforced while reading DATA and BDAT: 552 (default 10485760)",
    )
    limits.add_argument(
        "--max-kept-messages",
        type=_count,
        default=1000,
        metavar="N",
        help="messages kept in memory, the most recent (default 1000)",
    )
    limits.add_argument(
        "--max-kept-connections",
        type=_count,
        default=1000,
        metavar="N",
        help="connection records kept, the most recent (default 1000)",
    )


def _count(text: str) -> int | None:
    """A limit given on the command line: a whole number, 0 for no limit (None)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text) or None


def _size(text: str) -> int:
    """``--max-message-size``: a whole number of octets, at least 1."""
    size = _count(text)
    if size is None:
        raise argparse.ArgumentTypeError("the message size limit must be at least 1")
    return size


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
    if args.ca_file is not None and args.tls == "none":
        print("trio-smtp serve: --ca-file needs --tls or --starttls (a plain-text server "
              "has no certificate)", file=sys.stderr)  # fmt: skip
        return 2
    if args.tls != "none" and not have_trustme():
        flag = "--tls" if args.tls == "implicit" else "--starttls"
        print(f"trio-smtp serve: {flag} needs trustme (for a throw-away certificate), which "
              "comes with the test extra: pip install 'trio-smtp[test]'; without "
              f"{flag}, the server speaks plain text", file=sys.stderr)  # fmt: skip
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
    from ..testing import ALL_MECHANISMS

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
) -> str | None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then shut down cleanly.

    The signals are received as events (trio.open_signal_receiver) rather than as a
    KeyboardInterrupt raised wherever the main task happens to be, so the server's nursery
    always closes in order and the exit status does not depend on timing.
    """
    error: str | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_first_signal, signals, nursery.cancel_scope)
            try:
                await serve(args, credentials)
            except Exception as exc:  # e.g. the port is taken (inside the server's nursery)
                error = _listen_error(args, exc)
            nursery.cancel_scope.cancel()
    return error


def _listen_error(args: argparse.Namespace, exc: Exception) -> str:
    """The one error inside ``exc`` (the server's nursery may wrap it in a group), said in
    this command's options; anything else is a bug and is raised."""
    leaf: BaseException = exc
    while len(getattr(leaf, "exceptions", ())) == 1:
        leaf = leaf.exceptions[0]  # type: ignore[attr-defined]
    if not isinstance(leaf, (OSError, RuntimeError)):
        raise exc
    if isinstance(leaf, OSError) and leaf.errno in _LISTEN_REASONS:
        return f"cannot listen on {args.host}:{args.port}: {_LISTEN_REASONS[leaf.errno]}"
    return str(leaf)


_LISTEN_REASONS = {
    errno.EADDRINUSE: "the port is in use (choose another --port, or --port 0 for any free one)",
    errno.EACCES: "permission denied (ports below 1024 need privileges: choose another --port)",
    errno.EADDRNOTAVAIL: "no such address on this machine (choose another --host)",
}


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
    from ..testing import DEFAULT_MECHANISMS, SmtpServer

    out = out or sys.stdout
    server = SmtpServer(
        host=args.host,
        port=args.port,
        tls=args.tls,
        credentials=credentials,
        require_auth=args.require_auth,
        auth_mechanisms=_auth_mechanisms(args.auth_mechanisms) or DEFAULT_MECHANISMS,
        max_connections=args.max_connections,
        max_message_size=args.max_message_size,
        max_kept_messages=args.max_kept_messages,
        max_kept_connections=args.max_kept_connections,
        fail_on_crash=False,  # a crashed session is logged to stderr; the server goes on
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
            try:
                message = await server.wait_for_message(number)
            except LookupError:  # more than --max-kept-messages arrived while printing
                print(f"=== message {number}: no longer kept", file=out, flush=True)
                continue
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


def have_trustme() -> bool:
    """True when trustme imports: the testing server makes its certificates with it."""
    try:
        import trustme  # noqa: F401
    except ImportError:
        return False
    return True
