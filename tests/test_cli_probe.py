"""``trio-smtp probe`` against the testing server on loopback (CLI in a worker thread)."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from trio_smtp._cli.main import main
from trio_smtp.testing import Delay, Respond, SmtpServer


async def run_cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


def address(server: SmtpServer) -> str:
    return f"{server.host}:{server.port}"


async def test_starttls_server_extensions_before_and_after_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SmtpServer(credentials={"u": "p"}, auth_mechanisms=["PLAIN", "XOAUTH2"]) as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        status = await run_cli("probe", f"smtp://{address(server)}", "--ca-file", str(ca))
        record = await server.wait_for_connection_closed()
    out = capsys.readouterr().out
    assert status == 0
    assert "greeting:   220 localhost ESMTP trio_smtp.testing ready" in out
    before, _, after = out.partition("STARTTLS:   220")
    assert "EHLO (before TLS): 250" in before
    assert "\n  STARTTLS\n" in before  # advertised in plaintext only
    assert "EHLO (after TLS): 250" in after
    assert "\n  STARTTLS\n" not in after
    assert re.search(r"TLS:        TLSv1\.[23], \S+ \(\d+ bits\) \[STARTTLS\]", after)
    assert "verified: yes" in after
    assert "AUTH:       PLAIN XOAUTH2" in out
    # It looked, and did nothing else: no AUTH, no mail, a polite QUIT.
    assert record.verbs == ["EHLO", "STARTTLS", "EHLO", "QUIT"]
    assert record.tls_version is not None
    assert server.messages == []


async def test_implicit_tls_shows_version_cipher_and_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SmtpServer(tls="implicit", credentials={"u": "p"}) as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        # A user and password in the URL are ignored: the probe never authenticates.
        status = await run_cli("probe", f"smtps://u:p@{address(server)}", "--ca-file", str(ca))
        record = await server.wait_for_connection_closed()
    out = capsys.readouterr().out
    assert status == 0
    assert f"TLS:        {record.tls_version}, {record.tls_cipher}" in out
    assert "[implicit]" in out
    assert "EHLO (before TLS)" not in out
    assert re.search(r"subject:  .*Testing cert", out)
    assert re.search(r"issuer:   .*Testing CA", out)
    assert re.search(r"valid:    .* to .*GMT \(expires in \d+ days\)", out)
    assert "names:    DNS:localhost, IP Address:127.0.0.1" in out
    assert "AUTH" not in record.verbs


async def test_server_without_starttls_is_described_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(tls="none") as server:
        status = await run_cli("probe", f"smtp://{address(server)}")
        plain = await run_cli("probe", f"smtp://{address(server)}?tls=none")
    out = capsys.readouterr().out
    assert status == 1
    assert "PROBLEM:    STARTTLS is required by the URL but the server does not offer it" in out
    assert "EHLO (before TLS): 250" in out
    assert "  PIPELINING" in out
    assert "TLS:  " not in out
    assert plain == 0
    assert all(record.verbs == ["EHLO", "QUIT"] for record in server.connections)


async def test_starttls_refused_is_a_problem(capsys: pytest.CaptureFixture[str]) -> None:
    async with SmtpServer() as server:
        server.on("STARTTLS", Respond(454, "4.7.0 TLS not available due to temporary reason"))
        status = await run_cli("probe", f"smtp://{address(server)}")
    out = capsys.readouterr().out
    assert status == 1
    assert "STARTTLS:   454 4.7.0 TLS not available" in out
    assert "PROBLEM:    the server refused STARTTLS" in out


async def test_untrusted_certificate_fails_and_insecure_shows_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer() as server:
        verified = await run_cli("probe", f"smtp://{address(server)}")
        first = capsys.readouterr()
        insecure = await run_cli("probe", f"smtp://{address(server)}", "--insecure")
        second = capsys.readouterr()
    assert verified == 4
    assert "CERTIFICATE_VERIFY_FAILED" in first.err
    assert "--insecure" in first.err
    assert "EHLO (before TLS): 250" in first.out  # what was learned before the handshake
    assert insecure == 0
    assert "WARNING: --insecure" in second.out
    assert "verified: NO" in second.out
    # Decoded even though the ssl module does not decode unverified certificates itself.
    assert re.search(r"subject:  .*Testing cert", second.out)


async def test_timeout_waiting_for_the_greeting_exits_4(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("GREETING", Delay(30))
        with trio.fail_after(20):
            status = await run_cli(
                "probe", f"smtp://{address(server)}?tls=none", "--timeout", "0.5"
            )
    assert status == 4
    assert "SmtpTimeoutError" in capsys.readouterr().err


async def test_connection_refused_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens on this port any more
    status = await run_cli("probe", f"smtp://127.0.0.1:{port}")
    assert status == 4
    assert "SmtpConnectError" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["http://example.org"], "scheme"),
        (["smtp://127.0.0.1", "--insecure", "--ca-file", "x.pem"], "not allowed with"),
        (["smtp://127.0.0.1", "--ca-file", "/nonexistent/ca.pem"], "CA file"),
        (["smtp://127.0.0.1", "--timeout", "0"], "--timeout"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(["probe", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        status = int(str(exc.code))
    assert status == 2
    assert complaint in capsys.readouterr().err


@pytest.fixture
async def unix_server(tmp_path: Path) -> AsyncIterator[tuple[SmtpServer, str]]:
    """The testing server (plaintext, AUTH offered) on ``tmp_path/smtp.sock``."""
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no Unix sockets")
    path = str(tmp_path / "smtp.sock")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen()
    server = SmtpServer(tls="none", credentials={"u": "p"}, auth_mechanisms=["PLAIN"])

    async def handle(stream: trio.SocketStream) -> None:
        await server.serve_stream(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [trio.SocketListener(sock)])
        yield server, path
        nursery.cancel_scope.cancel()


async def test_unix_socket(
    unix_server: tuple[SmtpServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    server, path = unix_server
    status = await run_cli("probe", f"smtp+unix://{path}")
    out = capsys.readouterr().out
    assert status == 0
    assert f"server:     {path} (no TLS)" in out
    assert "AUTH:       PLAIN" in out
    assert server.connections[0].verbs == ["EHLO", "QUIT"]
