"""``trio-smtp demo`` (trio_smtp._cli.demo.run_demo): one real send_async, end to end."""

from __future__ import annotations

import pytest

from trio_smtp._cli.demo import run_demo


async def test_demo_delivers_and_prints_event_and_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run_demo() == 0
    out = capsys.readouterr().out
    assert "user_token = 'demo-1'" in out
    assert "cancelled  = False" in out
    assert "error      = None" in out
    assert "EHLO STARTTLS EHLO AUTH" in out  # TLS first, then credentials
    assert "Subject: Hello from trio_smtp" in out
    assert "\n.A dotted line.\n" in out  # dot-stuffed on the wire, restored by the server
    message_part = out.split("-" * 72)[1]
    assert "hidden@example.net" not in message_part  # Bcc stripped from the data
