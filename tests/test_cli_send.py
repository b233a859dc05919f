"""``trio-smtp send`` against the testing server on loopback.

The CLI runs its own ``trio.run``, so it is called in a worker thread while the server runs
in the test's event loop; one test runs it as a real process with the message on stdin.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import trio

from trio_smtp._cli.main import main
from trio_smtp.testing import Hangup, Respond, SmtpServer

USER, PASSWORD = "alice", "s3cret pw"


async def run_cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_SMTP_PASSWORD", PASSWORD)


def url(server: SmtpServer, scheme: str = "smtp", user: str | None = USER) -> str:
    who = f"{user}@" if user else ""
    return f"{scheme}://{who}{server.host}:{server.port}"


@pytest.mark.usefixtures("password")
async def test_composed_message_with_attachment_and_bcc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    report = tmp_path / "report.csv"
    report.write_bytes(b"a,b\r\n1,2\r\n")
    async with SmtpServer(credentials={USER: PASSWORD}) as server:
        server.write_ca_file(ca)
        status = await run_cli(
            "send", "--server", url(server), "--ca-file", str(ca),
            "--from", "Me <me@example.org>", "--to", "you@example.net",
            "--cc", "boss@example.net", "--bcc", "hidden@example.net",
            "--subject", "Quarterly", "--body", "See attached.", "--attach", str(report),
        )  # fmt: skip
        message = await server.wait_for_message()
    out = capsys.readouterr().out
    assert status == 0
    assert message.sender == "me@example.org"
    assert message.recipients == ["you@example.net", "boss@example.net", "hidden@example.net"]
    assert message.connection is not None
    assert message.connection.auth_identity == USER
    assert message.connection.tls_version is not None
    parsed = message.as_email()
    assert parsed["Subject"] == "Quarterly"
    assert "Bcc" not in parsed
    assert b"hidden@example.net" not in message.data
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_content().replace("\r\n", "\n") == "a,b\n1,2\n"
    for rcpt in message.recipients:
        assert f"accepted: {rcpt}" in out
    assert "reply:    250" in out


@pytest.mark.usefixtures("password")
async def test_eml_file_with_envelope_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "note.eml"
    eml.write_bytes(
        b"From: a@example.org\r\nTo: listed@example.net\r\nSubject: From a file\r\n\r\nBody\r\n"
    )
    async with SmtpServer(tls="implicit", credentials={USER: PASSWORD}) as server:
        server.write_ca_file(tmp_path / "ca.pem")
        status = await run_cli(
            "send", str(eml), "--server", url(server, "smtps"),
            "--ca-file", str(tmp_path / "ca.pem"),
            "--envelope-from", "bounces@example.org", "--envelope-to", "real@example.net",
        )  # fmt: skip
        message = await server.wait_for_message()
    assert status == 0, capsys.readouterr().err
    assert message.sender == "bounces@example.org"
    assert message.recipients == ["real@example.net"]
    assert message.headers["Subject"] == "From a file"
    assert message.headers["To"] == "listed@example.net"  # headers untouched
    assert "accepted: real@example.net" in capsys.readouterr().out


async def test_oauth2_access_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "ya29.access-token")
    async with SmtpServer(
        credentials={"me@example.org": "ya29.access-token"}, auth_mechanisms=["PLAIN", "XOAUTH2"]
    ) as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        status = await run_cli(
            "send", "--server", f"smtp://me%40example.org@{server.host}:{server.port}",
            "--ca-file", str(ca), "--password-env", "TOKEN", "--oauth2",
            "--from", "me@example.org", "--to", "x@example.net",
        )  # fmt: skip
        message = await server.wait_for_message()
    assert status == 0
    assert message.connection is not None
    assert message.connection.auth_mechanism == "XOAUTH2"
    assert message.connection.auth_identity == "me@example.org"


async def test_refused_recipient_is_reported_with_its_reply_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("RCPT", Respond(550, "5.1.1 No such user"), match="bad@example.net")
        status = await run_cli(
            "send", "--server", url(server, user=None) + "?tls=none",
            "--from", "me@example.org", "--to", "good@example.net", "--to", "bad@example.net",
        )  # fmt: skip
        message = await server.wait_for_message()
    out = capsys.readouterr().out
    assert status == 1
    assert message.recipients == ["good@example.net"]
    assert "accepted: good@example.net" in out
    assert "refused:  bad@example.net: 550 5.1.1 No such user" in out
    assert "reply:    250" in out


async def test_every_recipient_refused_sends_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("RCPT", Respond(550, "5.7.1 Relaying denied"))
        status = await run_cli(
            "send", "--server", url(server, user=None) + "?tls=none",
            "--from", "me@example.org", "--to", "x@example.net",
        )  # fmt: skip
        await server.wait_for_connection_closed()
    out = capsys.readouterr().out
    assert status == 1
    assert server.messages == []
    assert "refused:  x@example.net: 550 5.7.1 Relaying denied" in out
    assert "not sent" in out


async def test_refused_sender_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("MAIL", Respond(553, "5.7.1 Sender not allowed"))
        status = await run_cli(
            "send", "--server", url(server, user=None) + "?tls=none",
            "--from", "me@example.org", "--to", "x@example.net",
        )  # fmt: skip
    assert status == 1
    assert "553 5.7.1 Sender not allowed" in capsys.readouterr().err
    assert server.messages == []


async def test_connection_lost_after_data_is_maybe_delivered_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("END_OF_DATA", Hangup())
        status = await run_cli(
            "send", "--server", url(server, user=None) + "?tls=none",
            "--from", "me@example.org", "--to", "x@example.net",
        )  # fmt: skip
    assert status == 3
    assert "MAYBE DELIVERED" in capsys.readouterr().err


async def test_wrong_password_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MY_SMTP_PW", "wrong")
    async with SmtpServer(credentials={USER: PASSWORD}) as server:
        server.write_ca_file(tmp_path / "ca.pem")
        status = await run_cli(
            "send", "--server", url(server), "--ca-file", str(tmp_path / "ca.pem"),
            "--password-env", "MY_SMTP_PW", "--from", "me@example.org", "--to", "x@example.net",
        )  # fmt: skip
    assert status == 4
    assert "SmtpAuthenticationError" in capsys.readouterr().err
    assert server.messages == []


@pytest.mark.usefixtures("password")
async def test_untrusted_certificate_exits_4_before_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(credentials={USER: PASSWORD}) as server:
        status = await run_cli(
            "send", "--server", url(server), "--from", "me@example.org", "--to", "x@example.net"
        )  # fmt: skip
        await server.wait_for_connection_closed()
    assert status == 4
    assert "SmtpTlsError" in capsys.readouterr().err
    assert "AUTH" not in server.connections[0].verbs


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--server", "smtp://u:pw@{host}", "--from", "a@x.org", "--to", "b@y.org"], "password"),
        (["--server", "smtp://u@{host}", "--from", "a@x.org", "--to", "b@y.org"], "NO_SUCH_VAR"),
        (["{eml}", "--server", "smtp://{host}", "--subject", "x"], "--subject"),
        (["--server", "smtp://{host}", "--to", "b@y.org"], "--from"),
        (["missing.eml", "--server", "smtp://{host}"], "missing.eml"),
        (["--server", "ftp://{host}", "--from", "a@x.org", "--to", "b@y.org"], "scheme"),
        (["--server", "smtp://{host}?tls=none", "--from", "a@x.org"], "recipients"),
        # Each option names itself and the part that is not an address (design rule 13).
        (
            ["--server", "smtp://{host}", "--from", "a@x.org", "--to", "ok@y.org;x@y.org"],
            "--to 'ok@y.org;x@y.org' holds 'ok@y.org;x@y.org'",
        ),
        (
            ["--server", "smtp://{host}", "--from", "a@x.org", "--to", "b@@y.org, ok@y.org"],
            "--to 'b@@y.org, ok@y.org' holds 'b@@y.org'",
        ),
        (
            ["--server", "smtp://{host}", "--from", "a@x.org", "--to", "ok@y.org", "--to", "foo"],
            "--to 'foo' holds 'foo'",
        ),
        (
            ["--server", "smtp://{host}", "--from", "a@x.org", "--to", "b@y.org", "--cc", "c@"],
            "--cc 'c@'",
        ),
        (["--server", "smtp://{host}", "--from", "a@x.org;", "--to", "b@y.org"], "--from"),
        (["--server", "smtp://{host}", "--from", "a@x.org", "--to", ""], "--to '' holds no"),
    ],
)
async def test_usage_errors_exit_2_without_sending(
    argv: list[str], complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@x.org\r\nTo: b@y.org\r\n\r\nhi\r\n")
    async with SmtpServer(tls="none") as server:
        host = f"{server.host}:{server.port}"
        args = [a.format(host=host, eml=eml) for a in argv]
        try:
            status = await run_cli("send", "--password-env", "NO_SUCH_VAR", *args)
        except SystemExit as exc:  # argparse's own usage errors (the URL is an argument type)
            status = int(str(exc.code))
    assert status == 2
    assert complaint in capsys.readouterr().err
    assert server.messages == []


async def test_as_a_process_with_the_message_on_stdin(tmp_path: Path) -> None:
    eml = (
        b"From: a@example.org\r\nTo: b@example.net\r\nBcc: c@example.net\r\n"
        b"Subject: pipe\r\n\r\nx\r\n"
    )
    async with SmtpServer(tls="implicit", credentials={USER: PASSWORD}) as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        proc = await trio.run_process(
            [sys.executable, "-m", "trio_smtp", "send", "-", "--server", url(server, "smtps"),
             "--ca-file", str(ca)],
            stdin=eml, capture_stdout=True, capture_stderr=True, check=False,
            env={**os.environ, "TRIO_SMTP_PASSWORD": PASSWORD},
        )  # fmt: skip
        message = await server.wait_for_message()
    assert proc.returncode == 0, proc.stderr
    assert message.recipients == ["b@example.net", "c@example.net"]
    assert b"Bcc" not in message.data
    assert b"accepted: c@example.net" in proc.stdout


async def test_dsn_options_reach_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    async with SmtpServer(tls="none") as server:
        status = await run_cli(
            "send", "--server", url(server, user=None) + "?tls=none",
            "--from", "me@example.org", "--to", "x@example.net", "--to", "y@example.net",
            "--notify", "failure,delay", "--ret", "headers", "--envid", "job-42",
        )  # fmt: skip
        message = await server.wait_for_message()
    assert status == 0, capsys.readouterr().err
    assert message.mail_params["RET"] == "HDRS"
    assert message.mail_params["ENVID"] == "job-42"
    for rcpt in ("x@example.net", "y@example.net"):
        assert message.rcpt_params[rcpt]["NOTIFY"] == "FAILURE,DELAY"


async def test_dsn_asked_of_a_server_without_dsn_sends_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(tls="none", disable={"DSN"}) as server:
        status = await run_cli(
            "send", "--server", url(server, user=None) + "?tls=none",
            "--from", "me@example.org", "--to", "x@example.net", "--notify", "success",
        )  # fmt: skip
        await server.wait_for_connection_closed()
    assert status == 1
    assert "DSN" in capsys.readouterr().err
    assert "MAIL" not in server.connections[0].verbs


def test_bad_notify_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["send", "--server", "smtp://127.0.0.1", "--notify", "sometimes"])
    assert exc_info.value.code == 2
    assert "'sometimes' is not one of" in capsys.readouterr().err


async def test_unix_socket_with_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no Unix sockets")
    monkeypatch.setenv("TRIO_SMTP_PASSWORD", PASSWORD)
    path = str(tmp_path / "smtp.sock")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen()
    server = SmtpServer(tls="none", credentials={USER: PASSWORD})

    async def handle(stream: trio.SocketStream) -> None:
        await server.serve_stream(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [trio.SocketListener(sock)])
        status = await run_cli(
            "send", "--server", f"smtp+unix://{USER}@{path}",
            "--from", "me@example.org", "--to", "x@example.net", "--body", "local",
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert status == 0, capsys.readouterr().err
    (message,) = server.messages
    assert message.connection is not None
    assert message.connection.auth_identity == USER
    assert message.recipients == ["x@example.net"]
