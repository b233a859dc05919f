"""The testing server driven by two more real clients: curl (libcurl's SMTP) and msmtp.

swaks (test_swaks.py) is a Perl client; these two are C clients used in production -- curl
on OpenSSL, msmtp on GnuTLS -- each with its own STARTTLS, AUTH and dot-stuffing code, so a
message that reaches :class:`~trio_smtp.testing.SmtpServer` intact through each of them shows
the server reads what real senders write, not only what trio_smtp writes.  Both are
Debian packages (``curl``, ``msmtp``); each test skips, saying why, when its client is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from trio_smtp.testing import Respond, SmtpServer

CURL = shutil.which("curl")
MSMTP = shutil.which("msmtp")
pytestmark = pytest.mark.interop

# A leading dot on a line (the client must stuff it, the server un-stuff it), a line that is
# only a dot, and a non-ASCII body in 8 bits.
MESSAGE = (
    "From: alice@example.org\r\n"
    "To: bob@example.net\r\n"
    "Subject: from a real client\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    ".leading dot\r\n"
    ".\r\n"
    "caf\u00e9\r\n"
).encode()
BODY = b".leading dot\r\n.\r\ncaf\xc3\xa9\r\n"


async def _run(command: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            command, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )


def _output(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_curl_starttls_auth(tmp_path: Path, mechanism: str) -> None:
    assert CURL is not None
    message_file = tmp_path / "message.eml"
    message_file.write_bytes(MESSAGE)
    async with SmtpServer(
        credentials={"alice": "s3cret"},
        require_tls=True,
        require_auth=True,
        auth_mechanisms=[mechanism],
    ) as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        result = await _run(
            [
                CURL, "--silent", "--show-error",
                "--url", f"smtp://{server.host}:{server.port}/client.test",
                "--ssl-reqd", "--cacert", str(ca),
                "--user", "alice:s3cret", "--login-options", f"AUTH={mechanism}",
                "--mail-from", "alice@example.org",
                "--mail-rcpt", "bob@example.net", "--mail-rcpt", "carol@example.net",
                "--upload-file", str(message_file),
            ]
        )  # fmt: skip
        assert result.returncode == 0, _output(result)
        message = await server.wait_for_message()
    assert message.sender == "alice@example.org"
    assert message.recipients == ["bob@example.net", "carol@example.net"]
    assert message.headers["Subject"] == "from a real client"
    assert message.data.endswith(BODY)
    connection = server.connections[0]
    assert connection.helo == "client.test"
    assert connection.auth_identity == "alice"
    assert connection.auth_mechanism == mechanism
    assert connection.tls_version is not None


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_sees_a_refused_recipient(tmp_path: Path) -> None:
    assert CURL is not None
    message_file = tmp_path / "message.eml"
    message_file.write_bytes(MESSAGE)
    async with SmtpServer() as server:
        server.on("RCPT", Respond(550, "5.1.1 no such user"), match="nobody@")
        result = await _run(
            [
                CURL, "--silent", "--show-error",
                "--url", f"smtp://{server.host}:{server.port}",
                "--mail-from", "alice@example.org", "--mail-rcpt", "nobody@example.net",
                "--upload-file", str(message_file),
            ]
        )  # fmt: skip
    # curl exits 55 ("failed sending network data", its code for a refused RCPT TO).
    assert result.returncode != 0
    assert "550" in _output(result)
    assert server.messages == []


@pytest.mark.skipif(MSMTP is None, reason="msmtp is not installed")
@pytest.mark.parametrize("mechanism", ["plain", "login", "cram-md5", "scram-sha-1"])
async def test_msmtp_starttls_auth(tmp_path: Path, mechanism: str) -> None:
    assert MSMTP is not None
    async with SmtpServer(
        credentials={"alice": "s3cret"},
        require_tls=True,
        require_auth=True,
        auth_mechanisms=[mechanism.upper()],
    ) as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        result = await _run(
            [
                MSMTP, "--file=/dev/null",  # no user or system configuration
                f"--host={server.host}", f"--port={server.port}", "--domain=client.test",
                "--tls=on", "--tls-starttls=on", f"--tls-trust-file={ca}",
                f"--auth={mechanism}", "--user=alice", "--passwordeval=echo s3cret",
                "--from=alice@example.org", "bob@example.net", "carol@example.net",
            ],
            stdin=MESSAGE.replace(b"\r\n", b"\n"),  # msmtp reads a local file's LF ends
        )  # fmt: skip
        assert result.returncode == 0, _output(result)
        message = await server.wait_for_message()
    assert message.sender == "alice@example.org"
    assert message.recipients == ["bob@example.net", "carol@example.net"]
    assert message.data.endswith(BODY)
    connection = server.connections[0]
    assert connection.helo == "client.test"
    assert connection.auth_identity == "alice"
    assert connection.auth_mechanism == mechanism.upper()
    assert connection.tls_version is not None
