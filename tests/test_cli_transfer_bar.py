"""``trio-smtp send`` of one message shows a progress bar for a large message, on a terminal.

The CLI runs as a real process with its standard error on a pseudo-terminal (tqdm draws only
on a terminal); standard output stays a pipe, so the outcome lines are checked apart.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import trio

from trio_smtp._cli.main import main
from trio_smtp.testing import SmtpServer

pytest.importorskip("tqdm")

ROOT = Path(__file__).resolve().parent.parent
HEADERS = b"From: me@example.org\r\nTo: you@example.net\r\nSubject: big\r\n\r\n"
LARGE = HEADERS + (b"y" * 76 + b"\r\n") * 30_000  # 2.3 MB: over the 1 MiB threshold
SMALL = HEADERS + b"hello\r\n"


def run_on_terminal(argv: list[str]) -> tuple[int, str, str]:
    """Run ``python -m trio_smtp`` with standard error on a pty: (status, stdout, stderr)."""
    master, slave = pty.openpty()
    # A new pty is 0x0: tqdm would fit its bar in no columns.  A terminal's usual size.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "trio_smtp", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    ) as process:
        os.close(slave)
        err = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            err += data
        out = process.stdout.read() if process.stdout else b""
        status = process.wait(timeout=60)
    os.close(master)
    return status, out.decode(), err.decode(errors="replace")


async def send_on_terminal(tmp_path: Path, message: bytes, *flags: str) -> tuple[str, str]:
    eml = tmp_path / "m.eml"
    eml.write_bytes(message)
    async with SmtpServer(tls="none", max_message_size=50_000_000) as server:
        argv = ["send", "--server", f"smtp://{server.host}:{server.port}?tls=none", str(eml)]
        status, out, err = await trio.to_thread.run_sync(run_on_terminal, [*argv, *flags])
        assert status == 0, (out, err)
        assert server.messages[0].accepted
    assert "accepted: you@example.net" in out
    return out, err


async def test_large_message_shows_a_bar(tmp_path: Path) -> None:
    _, err = await send_on_terminal(tmp_path, LARGE)
    assert "%|" in err and "B/s" in err  # tqdm's bar, in bytes


async def test_small_message_shows_none_unless_asked(tmp_path: Path) -> None:
    _, err = await send_on_terminal(tmp_path, SMALL)
    assert "%|" not in err
    _, err = await send_on_terminal(tmp_path, SMALL, "--progress")
    assert "%|" in err


async def test_no_progress_turns_it_off(tmp_path: Path) -> None:
    _, err = await send_on_terminal(tmp_path, LARGE, "--no-progress")
    assert "%|" not in err


async def test_quiet_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(LARGE)
    async with SmtpServer(tls="none", max_message_size=50_000_000) as server:
        url = f"smtp://{server.host}:{server.port}?tls=none"
        status = await trio.to_thread.run_sync(main, ["send", "--server", url, str(eml)])
    captured = capsys.readouterr()
    assert status == 0
    assert captured.err == ""
    assert captured.out.startswith("accepted: you@example.net\n")
