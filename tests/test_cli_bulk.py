"""``trio-smtp send DIR|MBOX|MAILDIR``: many messages through a pool, against the testing
server (the CLI runs its own ``trio.run`` in a worker thread)."""

from __future__ import annotations

import json
import mailbox
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio

from trio_smtp._cli.main import main
from trio_smtp.testing import Hangup, Respond, SmtpServer


async def run_cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


def make(i: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "me@example.org"
    message["To"] = f"to{i}@example.net"
    message["Subject"] = f"message {i}"
    message["Message-ID"] = f"<m{i}@example.org>"
    message.set_content(f"body {i}\n")
    return message


def url(server: SmtpServer) -> str:
    return f"smtp://{server.host}:{server.port}?tls=none"


async def test_directory_of_eml_files_with_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02}.eml").write_bytes(bytes(make(i)))
    (folder / "99.eml").write_bytes(b"Subject: no sender\r\n\r\nx\r\n")
    report = tmp_path / "report.jsonl"
    async with SmtpServer(tls="none") as server:
        server.on("RCPT", Respond(550, "5.1.1 No such user"), match="to3@example.net")
        server.on("RCPT", Respond(451, "4.3.0 Try later"), match="to4@example.net")
        status = await run_cli(
            "send", "--server", url(server), str(folder), "--connections", "3",
            "--report", str(report),
        )  # fmt: skip
        delivered = sorted(m.recipients[0] for m in server.messages)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert status == 1
    assert "delivered:           10" in out and "refused:              1" in out
    assert "maybe delivered:      0" in out and "failed:               2" in out
    assert sorted(line["index"] for line in lines) == list(range(13))
    by_source = {Path(line["source"]).name: line for line in lines}
    assert by_source["03.eml"]["status"] == "refused"
    assert "5.1.1" in by_source["03.eml"]["refused"]["to3@example.net"]
    assert by_source["04.eml"]["status"] == "failed"
    invalid = by_source["99.eml"]
    assert invalid["status"] == "failed" and "ValueError" in invalid["error"]
    assert by_source["00.eml"]["status"] == "delivered"
    assert by_source["00.eml"]["message_id"] == "<m0@example.org>"
    assert len(delivered) == 10


async def test_mbox_and_maildir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = mailbox.mbox(tmp_path / "mail.mbox")
    for i in range(5):
        box.add(make(i))
    box.flush()
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for i in range(5, 9):
        maildir.add(make(i))
    async with SmtpServer(tls="none") as server:
        first = await run_cli("send", "--server", url(server), str(tmp_path / "mail.mbox"))
        second = await run_cli(
            "send", "--server", url(server), str(tmp_path / "Maildir"), "--rate", "1000"
        )
        delivered = sorted(m.recipients[0] for m in server.messages)
    out = capsys.readouterr().out
    assert first == second == 0
    assert "sent 5 messages from the mbox" in out and "sent 4 messages from the maildir" in out
    assert delivered == sorted(f"to{i}@example.net" for i in range(9))


async def test_maybe_delivered_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.eml").write_bytes(bytes(make(i)))
    report = tmp_path / "r.jsonl"
    # One message at a time (no PIPELINING), so exactly one is unknown (with the CHUNKING
    # window, the messages written behind it are too: tests/test_send_many_window.py).
    async with SmtpServer(tls="none", disable={"CHUNKING", "PIPELINING"}) as server:
        server.on("END_OF_DATA", Hangup(), times=1)
        status = await run_cli(
            "send", "--server", url(server), str(folder), "--connections", "1",
            "--report", str(report),
        )  # fmt: skip
    statuses = sorted(json.loads(line)["status"] for line in report.read_text().splitlines())
    assert status == 3
    assert statuses == ["delivered", "delivered", "maybe delivered"]


async def test_bulk_refuses_composing_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await run_cli(
        "send", "--server", "smtp://localhost?tls=none", str(tmp_path), "--subject", "x"
    )
    assert status == 2
    assert "--subject cannot be combined with a directory" in capsys.readouterr().err


def test_no_progress_bar_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_smtp._cli import bulk as _cli_bulk

    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    assert _cli_bulk._progress(10, quiet=False) is None
    assert _cli_bulk._progress(10, quiet=True) is None
