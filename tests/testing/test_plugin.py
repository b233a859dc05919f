"""The pytest plugin's fixtures, used as a user would, and its behaviour in other projects."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio

from trio_smtp import SmtpClient
from trio_smtp.testing import SmtpServer, TlsMode


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@example.org"
    msg["To"] = "user@example.net"
    msg["Subject"] = "Welcome"
    msg.set_content("Hello!\n")
    return msg


async def test_fixtures_send_over_starttls_with_auth(
    smtp_server: SmtpServer, smtp_client_factory: Callable[..., SmtpClient]
) -> None:
    async with smtp_client_factory(credentials=("user", "password")) as client:
        result = await client.send(_message())
    message = await smtp_server.wait_for_message()
    assert result.accepted == ("user@example.net",)
    assert message.headers["Subject"] == "Welcome"
    assert smtp_server.connections[0].auth_identity == "user"
    assert smtp_server.connections[0].tls_version is not None


@pytest.mark.smtp_server(tls="implicit", require_auth=True, credentials={"bob": "pw"})
async def test_marker_configures_the_server_and_the_factory_follows(
    smtp_server: SmtpServer, smtp_client_factory: Callable[..., SmtpClient]
) -> None:
    assert smtp_server.config.tls is TlsMode.IMPLICIT
    async with smtp_client_factory(credentials=("bob", "pw")) as client:
        await client.send(_message())
    await smtp_server.wait_for_message()
    assert smtp_server.connections[0].verbs[0] == "EHLO"  # no STARTTLS: TLS from the start


@pytest.mark.smtp_server(tls="none")
async def test_plaintext_server_factory_uses_security_none(
    smtp_server: SmtpServer, smtp_client_factory: Callable[..., SmtpClient]
) -> None:
    async with smtp_client_factory() as client:
        await client.send(_message())
    assert (await smtp_server.wait_for_message()).accepted
    assert "STARTTLS" not in smtp_server.connections[0].verbs


INNER_TESTS = """
import pytest
import trio
from trio_smtp.testing import Handover, SmtpServer

async def test_crash_fails_the_test(smtp_server):
    async def handler(stream, pending):
        raise ZeroDivisionError("from the handler")
    smtp_server.on("GREETING", Handover(handler))
    stream = await trio.open_tcp_stream(smtp_server.host, smtp_server.port)
    await stream.receive_some(10)  # the handler crashed: the connection ends
    await stream.aclose()
"""

NO_TRUSTME_TESTS = """
import pytest
from trio_smtp.testing import SmtpServer

async def test_plaintext_needs_no_trustme():
    async with SmtpServer(tls="none") as server:
        assert server.port

def test_tls_says_what_to_install():
    with pytest.raises(RuntimeError, match="pip install"):
        SmtpServer()
"""


def _run_pytest(
    tmp_path: Path, source: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_handler_crash_fails_the_test_at_teardown(tmp_path: Path) -> None:
    result = await trio.to_thread.run_sync(_run_pytest, tmp_path, INNER_TESTS, dict(os.environ))
    assert "1 failed" in result.stdout, result.stdout
    assert "ServerCrashError" in result.stdout
    assert "ZeroDivisionError: from the handler" in result.stdout


async def test_plugin_loads_without_trustme(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "trustme.py").write_text("raise ImportError('trustme is not installed')\n")
    env = dict(os.environ, PYTHONPATH=str(blocker))
    result = await trio.to_thread.run_sync(_run_pytest, tmp_path, NO_TRUSTME_TESTS, env)
    assert "2 passed" in result.stdout, result.stdout + result.stderr


UNFIRED_TESTS = """
import pytest
from trio_smtp.testing import Delay

@pytest.mark.smtp_server(tls="none", require_faults_fired=True)
async def test_a_fault_that_never_fires(smtp_server, smtp_client_factory):
    smtp_server.on("DATA", Delay(5))   # the client will use BDAT
    async with smtp_client_factory() as client:
        await client.send(b"Subject: x\\r\\n\\r\\nhi\\r\\n", sender="a@example.org",
                          recipients=["b@example.org"])
"""


async def test_a_fault_that_never_fired_fails_the_test_at_teardown(tmp_path: Path) -> None:
    result = await trio.to_thread.run_sync(_run_pytest, tmp_path, UNFIRED_TESTS, dict(os.environ))
    assert "1 failed" in result.stdout, result.stdout  # pytest-trio: teardown fails the test
    assert "FaultNotFiredError" in result.stdout
    assert "START_OF_DATA covers both" in result.stdout
