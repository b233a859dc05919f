"""``trio-smtp serve``: the local debugging server on the command line."""

from __future__ import annotations

import functools
import io
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trio_smtp._cli.main import build_parser, main
from trio_smtp._cli.serve import serve
from trio_smtp.testing import SmtpServer


async def _send(server: SmtpServer, *, tls: bool) -> None:
    def client() -> None:
        with smtplib.SMTP(server.host, server.port) as smtp:
            if tls:
                smtp.starttls(context=server.ssl_context)
                smtp.login("alice", "pw")
            smtp.sendmail(
                "a@example.org",
                ["b@example.net"],
                b"Subject: Debug me\r\nFrom: a@example.org\r\n\r\nsecret body\r\n",
            )

    await trio.to_thread.run_sync(client)


class _Capture(io.StringIO):
    """Captures output and sets ``seen`` once ``marker`` was written."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.seen = trio.Event()

    def write(self, text: str) -> int:
        if self.marker in text:
            self.seen.set()
        return super().write(text)


async def test_serve_prints_envelope_and_headers_and_stores_eml(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["serve", "--port", "0", "--starttls", "--maildir", str(tmp_path / "mail")]
    )
    out = _Capture("stored as")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, args, {"alice": "pw"}, out=out))
        await _send(server, tls=True)
        await server.wait_for_message()
        # Printing and storing follow the message; wait for the "stored as" line.
        with trio.fail_after(10):
            await out.seen.wait()
        nursery.cancel_scope.cancel()
    text = out.getvalue()
    assert f"listening on 127.0.0.1:{server.port}" in text
    assert "MAIL FROM:<a@example.org> SIZE=" in text
    assert "RCPT TO:<b@example.net>" in text
    assert "Subject: Debug me" in text
    assert "authenticated as alice" in text
    assert "secret body" not in text  # headers only
    (stored,) = (tmp_path / "mail").glob("*.eml")
    assert stored.read_bytes().endswith(b"\r\n\r\nsecret body\r\n")


def test_serve_refuses_non_loopback_without_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "192.0.2.1"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_serve_rejects_malformed_auth(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--auth", "nocolon"]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_a_subcommand_is_required() -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_python_dash_m_serves_until_interrupted(tmp_path: Path, signum: int) -> None:
    # A real process on a free port: read the port it prints, send, check the output.
    command = [sys.executable, "-u", "-m", "trio_smtp", "serve", "--port", "0"]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
        )
        assert process.stdout is not None
        output = b""
        with trio.fail_after(30):  # generous; a process that dies must fail, not spin
            while b"\n" not in output:
                chunk = await process.stdout.receive_some(1000)
                assert chunk, f"trio-smtp serve exited early: {output!r}"
                output += chunk
        assert output.startswith(b"listening on "), output
        # "listening on 127.0.0.1:PORT (tls: none)"
        port = int(output.split(b"\n")[0].split()[2].rsplit(b":", 1)[1])

        def client() -> None:
            with smtplib.SMTP("127.0.0.1", port) as smtp:
                smtp.sendmail("x@example.org", ["y@example.org"], b"Subject: via cli\r\n\r\nhi\r\n")

        await trio.to_thread.run_sync(client)
        with trio.fail_after(10):
            while b"Subject: via cli" not in output:
                output += await process.stdout.receive_some(1000)
        process.send_signal(signum)  # Ctrl-C, or a service manager stopping it
        assert await process.wait() == 0


async def test_serve_offers_the_auth_mechanisms_asked_for() -> None:
    from trio_smtp import Security, SmtpClient
    from trio_smtp.sasl import OAuthBearer

    args = build_parser().parse_args(
        ["serve", "--port", "0", "--auth-mechanism", "oauthbearer", "--auth-mechanism", "PLAIN"]
    )
    out = _Capture("message 1")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, args, {"alice": "tok"}, out=out))
        # The mechanism asked for is offered and works end to end; the default set is not.
        async with SmtpClient(
            server.host,
            server.port,
            security=Security.NONE,
            credentials=OAuthBearer("alice", "tok"),
        ) as client:
            await client.send(
                b"Subject: hi\r\n\r\nbody\r\n", sender="a@example.org", recipients=["b@example.net"]
            )
        nursery.cancel_scope.cancel()
    (connection,) = server.connections
    assert (connection.auth_identity, connection.auth_mechanism) == ("alice", "OAUTHBEARER")
    ehlo = connection.commands[0]
    assert ehlo.verb == "EHLO" and ehlo.reply is not None
    assert "AUTH OAUTHBEARER PLAIN" in ehlo.reply.lines


def test_serve_rejects_an_unknown_auth_mechanism(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--auth-mechanism", "GSSAPI"]) == 2
    assert "unknown --auth-mechanism 'GSSAPI'" in capsys.readouterr().err
