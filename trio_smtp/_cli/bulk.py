"""``trio-smtp send`` with many messages: a directory of .eml files, an mbox or a maildir,
sent through an :class:`~trio_smtp.SmtpPool`.

Theory of operation: the messages are read lazily (the stdlib :mod:`mailbox` module for mbox
and maildir), one :class:`~trio_smtp.OutgoingMessage` each, and sent with
:meth:`SmtpPool.send_many_as_completed <trio_smtp.SmtpPool.send_many_as_completed>`.  Every
outcome is classified the moment it is known -- delivered, refused (a permanent refusal: do
not retry), maybe delivered (check before sending again), failed (transient, or not a valid
message: fix and retry) -- counted, shown on a progress bar and written as one JSON line to
the ``--report`` file, flushed, so that an interrupted run still has every outcome it knew.

The progress bar is tqdm's, when tqdm is installed (``pip install trio-smtp[progress]``) and
standard error is a terminal; without it the command works the same, silently.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import importlib
import json
import mailbox
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import trio

from .._client.pool import SmtpPool
from .._client.streamed import BatchOutcome
from .._delivery.batch_items import OutgoingMessage
from .._errors import SmtpDeliveryUnknownError, SmtpError, SmtpFailedRecipientsError
from .._results import SendResult
from .common import EXIT_FAILED, EXIT_MAYBE_DELIVERED, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["Mailbox", "is_bulk_source", "open_source", "run_bulk"]

#: The summary's categories, in the order printed.
STATUSES = ("delivered", "refused", "maybe delivered", "failed")


def is_bulk_source(name: str) -> bool:
    """A directory (of .eml files, or a maildir) or an mbox file: many messages."""
    path = Path(name)
    if name == "-" or not path.exists():
        return False
    if path.is_dir():
        return True
    with path.open("rb") as file:
        return file.read(5) == b"From "  # mbox (RFC 4155): each message opens with "From "


class Mailbox:
    """The messages of a source as bytes, with a name for each (for the report)."""

    def __init__(self, names: list[str], read: Callable[[int], bytes], kind: str) -> None:
        self.names = names
        self._read = read
        self.kind = kind

    def __len__(self) -> int:
        return len(self.names)

    def messages(self) -> Iterator[bytes]:
        for index in range(len(self.names)):
            yield self._read(index)


def open_source(name: str) -> Mailbox:
    """The .eml files of a directory (sorted by name), a maildir (``cur``/``new``), or an
    mbox file."""
    path = Path(name)
    if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
        maildir = mailbox.Maildir(path, factory=None, create=False)
        keys = sorted(maildir.keys())
        return Mailbox(keys, lambda i: maildir.get_bytes(keys[i]), "maildir")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".eml" and p.is_file())
        if not files:
            raise UsageError(f"no .eml files in {name}")
        return Mailbox([str(p) for p in files], lambda i: files[i].read_bytes(), "directory")
    box = mailbox.mbox(path, factory=None, create=False)
    mbox_keys = list(box.keys())
    return Mailbox(
        [f"{name}#{n + 1}" for n in range(len(mbox_keys))],
        lambda i: box.get_bytes(mbox_keys[i], from_=False),
        "mbox",
    )


def status_of(outcome: SendResult | Exception) -> str:
    """Which of :data:`STATUSES` an outcome is."""
    if isinstance(outcome, SendResult):
        return "delivered"
    if isinstance(outcome, SmtpFailedRecipientsError) and outcome.result is not None:
        return "delivered"  # to the others; the refused recipients are in the report
    if isinstance(outcome, SmtpDeliveryUnknownError):
        return "maybe delivered"
    if isinstance(outcome, SmtpError) and outcome.reply is not None and outcome.reply.code >= 500:
        return "refused"
    if isinstance(outcome, SmtpFailedRecipientsError) and not outcome.is_transient:
        return "refused"
    return "failed"  # transient, a lost connection, or not a valid message


def report_line(done: BatchOutcome, source: str) -> dict[str, Any]:
    """One message's outcome as the JSON report has it."""
    outcome = done.outcome
    line: dict[str, Any] = {"index": done.index, "source": source, "status": status_of(outcome)}
    result = outcome if isinstance(outcome, SendResult) else getattr(outcome, "result", None)
    if isinstance(result, SendResult):
        line["message_id"] = result.message_id
        line["accepted"] = list(result.accepted)
        if result.reply is not None:
            line["reply"] = str(result.reply)
    if isinstance(outcome, SmtpFailedRecipientsError):
        line["refused"] = {f.recipient: str(f.reply) for f in outcome.failures}
    if isinstance(outcome, Exception):
        line["error"] = f"{type(outcome).__name__}: {outcome}"
    return line


def _progress(total: int, quiet: bool) -> Any:
    """A tqdm bar on standard error (None without tqdm, with --no-progress, or when standard
    error is not a terminal: tqdm's ``disable=None``)."""
    if quiet:
        return None
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return None
    return tqdm.tqdm(total=total, unit="msg", file=sys.stderr, disable=None, leave=False)


def run_bulk(args: argparse.Namespace, url: str, client_options: dict[str, Any]) -> int:
    """``trio-smtp send DIR|MBOX|MAILDIR``: send every message through a pool."""
    try:
        source = open_source(args.eml)
        pool = SmtpPool.from_url(
            url, max_connections=args.connections, rate=args.rate, **client_options
        )
        report = open(args.report, "w", encoding="utf-8") if args.report else None  # noqa: SIM115
    except OSError as exc:
        print(f"trio-smtp send: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ValueError, TypeError, mailbox.Error) as exc:
        print(f"trio-smtp send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        counts = trio.run(_send_all, pool, source, args, report)
    finally:
        if report is not None:
            report.close()
    print(f"sent {len(source)} messages from the {source.kind} {args.eml}")
    for status in STATUSES:
        print(f"{status + ':':17}{counts[status]:>6}")
    if counts["maybe delivered"]:
        return EXIT_MAYBE_DELIVERED
    if counts["refused"] or counts["failed"]:
        return EXIT_FAILED
    return EXIT_OK


async def _send_all(
    pool: SmtpPool, source: Mailbox, args: argparse.Namespace, report: IO[str] | None
) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    bar = _progress(len(source), args.no_progress)
    items = (_item(data, args) for data in source.messages())
    try:
        async with pool, pool.send_many_as_completed(items) as outcomes:
            async for done in outcomes:
                line = report_line(done, source.names[done.index])
                counts[line["status"]] += 1
                if report is not None:
                    report.write(json.dumps(line) + "\n")
                    report.flush()  # an interrupted run keeps every outcome it knew
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return counts


def _item(data: bytes, args: argparse.Namespace) -> OutgoingMessage:
    """One message with the command's envelope and DSN options (a message without a sender
    or recipients becomes that item's ValueError: nothing of it is sent)."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return OutgoingMessage(
        parsed,
        sender=args.envelope_from,
        recipients=args.envelope_to,
        notify=args.notify,
        ret=args.ret_value,
        envid=args.envid,
        requiretls=args.requiretls,
    )
