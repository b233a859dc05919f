"""The protocol log as a user sees it: a real session on loopback logged on
``trio_smtp.protocol`` at DEBUG, with AUTH secrets and message data kept out."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from trio_smtp import OAuth2, SmtpClient
from trio_smtp._io.log import ProtocolLog
from trio_smtp.protocol import AuthResponse, Bdat, Command, Data, Mail, Quit, Reply
from trio_smtp.testing import SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]

LOGGER = "trio_smtp.protocol"
PASSWORD = "Sup3r-s3cret-pw"
BODY = "The launch codes are 0000-1111.\n"


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def secrets_of(user: str, password: str) -> list[str]:
    return [
        password,
        base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(user.encode()).decode(),
    ]


async def check_plain_session(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
    data_lines: tuple[str, ...],
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with smtp_client_factory(credentials=("user", PASSWORD)) as client:
        await client.send(make_message(body=BODY))
    lines = logged(caplog)
    peer = f"{smtp_server.host}:{smtp_server.port}"
    assert all(line.startswith(peer + " ") for line in lines)
    text = "\n".join(line.removeprefix(peer + " ") for line in lines)
    for expected in (
        "--: connected",
        "S: 220 ",
        "C: EHLO ",
        "C: STARTTLS",
        "--: TLS established: TLS",
        "C: AUTH PLAIN <redacted>",
        "S: 235 2.7.0 Authentication successful",
        "C: MAIL FROM:<sender@example.org>",
        "C: RCPT TO:<rcpt@example.net>",
        *data_lines,
        "C: <message data",
        "C: QUIT",
        "S: 221 ",
    ):
        assert expected in text, expected
    assert text.index("C: MAIL") < text.index("C: <message data") < text.index("C: QUIT")
    for secret in secrets_of("user", PASSWORD):
        assert secret not in text
    assert "launch codes" not in text and "Subject: test" not in text
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == LOGGER)


@pytest.mark.smtp_server(
    auth_mechanisms=("PLAIN",), credentials={"user": PASSWORD}, disable={"CHUNKING"}
)
async def test_auth_plain_session_with_data_logged_without_secrets_or_body(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await check_plain_session(
        smtp_server, smtp_client_factory, make_message, caplog, ("C: DATA", "S: 354 ")
    )


@pytest.mark.smtp_server(auth_mechanisms=("PLAIN",), credentials={"user": PASSWORD})
async def test_auth_plain_session_with_bdat_logged_without_secrets_or_body(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await check_plain_session(smtp_server, smtp_client_factory, make_message, caplog, ("C: BDAT ",))


@pytest.mark.smtp_server(auth_mechanisms=("LOGIN",), credentials={"user": PASSWORD})
async def test_every_auth_round_redacted(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with smtp_client_factory(credentials=("user", PASSWORD)) as client:
        await client.send(make_message())
    text = "\n".join(logged(caplog))
    assert "C: AUTH LOGIN" in text
    assert text.count("C: <redacted>") == 2  # user name and password answers
    assert "S: 334 VXNlcm5hbWU6" in text  # the server's challenges carry no secret
    for secret in secrets_of("user", PASSWORD):
        assert secret not in text


@pytest.mark.smtp_server(credentials={"me@example.org": "tok-" + "x" * 600})
async def test_deferred_oauth_token_redacted(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    token = "tok-" + "x" * 600
    async with smtp_client_factory(credentials=OAuth2("me@example.org", token)) as client:
        await client.send(make_message())
    text = "\n".join(logged(caplog))
    assert "C: AUTH XOAUTH2\n" in text  # too long for the AUTH line: sent after the 334
    assert "xxxxxxxx" not in text
    assert base64.b64encode(b"user=me@example.org\x01auth=Bearer tok-").decode()[:20] not in text


async def test_nothing_logged_unless_debug_is_enabled(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with smtp_client_factory(credentials=("user", "password")) as client:
        await client.send(make_message())
    assert logged(caplog) == []
    assert len(smtp_server.messages) == 1


async def test_each_connection_logs_its_own_session(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _ in range(2):
        async with smtp_client_factory() as client:
            await client.send(make_message(body=BODY))
            await client.send(make_message(body=BODY))
    lines = logged(caplog)
    assert sum(line.endswith("--: connected") for line in lines) == 2
    assert sum(" C: MAIL FROM:" in line for line in lines) == 4
    assert sum(" C: <message data" in line for line in lines) == 4
    assert not any("launch codes" in line for line in lines)


# -- the log is told commands, data sizes and replies, never the bytes written ------------


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> ProtocolLog:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return ProtocolLog()


def sent(log: ProtocolLog, command: Command) -> None:
    log.log_command(command, command.to_bytes())


def test_data_never_shown_then_next_commands_logged(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    sent(log, Data())
    log.log_received(Reply(354, ("go ahead",)))
    log.log_data(len(BODY))
    log.log_end_of_data()
    log.log_received(Reply(250, ("2.0.0 queued",), "2.0.0"))
    sent(log, Mail("a@example.org"))
    assert logged(caplog) == [
        "C: DATA",
        "S: 354 go ahead",
        f"C: <message data: {len(BODY)} octets>",
        "C: .",
        "S: 250 2.0.0 queued",
        "C: MAIL FROM:<a@example.org>",
    ]


def test_bdat_chunks_never_shown(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    sent(log, Bdat(b"x" * 1000))
    sent(log, Bdat(b"y" * 2000, last=True))
    log.log_received(Reply(250, ("1000 octets",)))
    log.log_received(Reply(250, ("2000 octets",)))
    sent(log, Quit())
    assert logged(caplog)[-1] == "C: QUIT"
    assert not any("xxx" in line or "yyy" in line for line in logged(caplog))


def test_pipelined_bdat_chunk_still_hidden_after_first_reply(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    # The reply to the first chunk arrives while the second is still being written.
    sent(log, Bdat(b"hello"))
    sent(log, Bdat(b"secret part one and part two\r\n", last=True))
    log.log_received(Reply(250, ("5 octets",)))
    text = "\n".join(logged(caplog))
    assert "secret" not in text and "part two" not in text


def test_challenge_alone_redacts_the_answer(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    # Even if the AUTH line was never shown to this log, an answer to a 334 is secret.
    log.log_received(Reply(334, ("UGFzc3dvcmQ6",)))
    sent(log, AuthResponse(PASSWORD.encode()))
    assert logged(caplog) == ["S: 334 UGFzc3dvcmQ6", "C: <redacted>"]


@pytest.mark.smtp_server(auth_mechanisms=("PLAIN",), credentials={"user": PASSWORD})
async def test_log_switched_on_mid_session(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with smtp_client_factory(credentials=("user", PASSWORD)) as client:
        await client.send(make_message(body=BODY))
        caplog.set_level(logging.DEBUG, logger=LOGGER)
        # Switched on between sends: every later command is logged, secrets redacted by
        # the command's type.
        await client.send(make_message(body=BODY))
        await client.send(make_message(body=BODY))
    text = "\n".join(logged(caplog))
    assert "C: MAIL FROM:<sender@example.org>" in text
    assert "C: <message data" in text and "C: QUIT" in text
    assert "launch codes" not in text and "Subject: test" not in text
    for secret in secrets_of("user", PASSWORD):
        assert secret not in text
    assert len(smtp_server.messages) == 3
