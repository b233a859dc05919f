"""The testing server driven by swaks (a Debian package), run with trio.run_process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from trio_smtp.testing import SmtpServer

SWAKS = shutil.which("swaks")
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(SWAKS is None, reason="swaks is not installed"),
]


async def _swaks(server: SmtpServer, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert SWAKS is not None
    command = [SWAKS, "--server", server.host, "--port", str(server.port), *args]
    return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_starttls_auth_pipelined_send(tmp_path: Path, mechanism: str) -> None:
    async with SmtpServer(
        credentials={"alice": "s3cret"}, require_tls=True, require_auth=True
    ) as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        result = await _swaks(
            server,
            "--from", "alice@example.org",
            "--to", "bob@example.net,carol@example.net",
            "--tls", "--tls-verify", "--tls-ca-path", str(ca), "--tls-sni", "localhost",
            "--auth", mechanism, "--auth-user", "alice", "--auth-password", "s3cret",
            "--pipeline",
            "--header", "Subject: from swaks",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        message = await server.wait_for_message()
    assert message.sender == "alice@example.org"
    assert message.recipients == ["bob@example.net", "carol@example.net"]
    assert message.headers["Subject"] == "from swaks"
    connection = server.connections[0]
    assert connection.auth_identity == "alice"
    assert connection.tls_version is not None


async def test_swaks_refused_without_auth() -> None:
    async with SmtpServer(credentials={"alice": "s3cret"}, require_auth=True) as server:
        result = await _swaks(server, "--from", "a@example.org", "--to", "b@example.net")
    # swaks exits non-zero and shows the server's 530.
    assert result.returncode != 0
    assert b"530 5.7.0 Authentication required" in result.stdout
    assert server.messages == []


async def test_implicit_tls_with_swaks(tmp_path: Path) -> None:
    async with SmtpServer(tls="implicit") as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        result = await _swaks(
            server, "--from", "a@example.org", "--to", "b@example.net",
            "--tls-on-connect", "--tls-verify", "--tls-ca-path", str(ca),
            "--tls-sni", "localhost",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout.decode()
        await server.wait_for_message()
