"""The ``trio-smtp`` command line.

Each subcommand is one ``add_<name>_parser`` function that registers its arguments and one
``run_<name>`` function that does the work, so new subcommands slot in beside ``serve``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import trio

if TYPE_CHECKING:
    from .testing import Message, SmtpServer

__all__ = ["build_parser", "main", "serve"]


def build_parser() -> argparse.ArgumentParser:
    """The ``trio-smtp`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="trio-smtp", description="SMTP tools for Trio.")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_demo_parser(subcommands)
    add_serve_parser(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trio-smtp`` and ``python -m trio_smtp``; returns the exit status."""
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


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
        trio.run(lambda: serve(args, credentials))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    except (OSError, RuntimeError) as exc:
        print(f"trio-smtp serve: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(
    args: argparse.Namespace,
    credentials: dict[str, str],
    *,
    out: TextIO | None = None,
    task_status: trio.TaskStatus[SmtpServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve and print messages forever; ``task_status.started`` gets the server."""
    from .testing import SmtpServer

    out = out or sys.stdout
    server = SmtpServer(
        host=args.host,
        port=args.port,
        tls=args.tls,
        credentials=credentials,
        require_auth=args.require_auth,
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
