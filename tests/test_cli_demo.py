"""The README's main-job command, ``trio-smtp demo``, run as a newcomer runs it."""

from __future__ import annotations

import subprocess
import sys


def test_trio_smtp_demo_command_sends_and_prints_the_received_message() -> None:
    # A real process, as the README runs it: the console entry point is `trio_smtp._cli.main:main`.
    proc = subprocess.run(
        [sys.executable, "-m", "trio_smtp", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SendCompleted event:" in proc.stdout
    assert "error      = None" in proc.stdout
    assert "The server received:" in proc.stdout
    assert "Subject: Hello from trio_smtp" in proc.stdout
