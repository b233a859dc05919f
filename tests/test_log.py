"""The protocol log: commands and replies logged; AUTH secrets and message data never."""

from __future__ import annotations

import base64
import logging

import pytest

from trio_smtp._io.log import LOGGER_NAME, ProtocolLog
from trio_smtp.protocol import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    Mail,
    Quit,
    Rcpt,
    Reply,
    Rset,
    Vrfy,
)

SECRET = b"\x00user\x00Sup3rS3cret"
SECRET_B64 = base64.b64encode(SECRET)
BODY = b"Subject: private\r\n\r\nThe launch codes are 0000.\r\n"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> ProtocolLog:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return ProtocolLog("mx.example.net:25")


def sent(log: ProtocolLog, command: Command) -> None:
    """What the transport does for every command it encodes."""
    log.log_command(command, command.to_bytes())


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]


def test_commands_and_replies_logged(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.log_received(Reply(220, ("mx.example.net ESMTP",)))
    sent(log, Ehlo("client.example.org"))
    log.log_received(Reply(250, ("mx.example.net", "PIPELINING", "SIZE 1000")))
    assert messages(caplog) == [
        "mx.example.net:25 S: 220 mx.example.net ESMTP",
        "mx.example.net:25 C: EHLO client.example.org",
        "mx.example.net:25 S: 250-mx.example.net",
        "mx.example.net:25 S: 250-PIPELINING",
        "mx.example.net:25 S: 250 SIZE 1000",
    ]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_pipelined_group_logged_line_by_line(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    for command in (Mail("a@example.org"), Rcpt("b@example.net"), Data()):
        sent(log, command)
    assert messages(caplog) == [
        "mx.example.net:25 C: MAIL FROM:<a@example.org>",
        "mx.example.net:25 C: RCPT TO:<b@example.net>",
        "mx.example.net:25 C: DATA",
    ]


def test_auth_initial_response_redacted(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    sent(log, Auth("PLAIN", SECRET))
    log.log_received(Reply(235, ("2.7.0 Authentication successful",), "2.7.0"))
    sent(log, Mail("a@example.org"))
    assert messages(caplog) == [
        "mx.example.net:25 C: AUTH PLAIN <redacted>",
        "mx.example.net:25 S: 235 2.7.0 Authentication successful",
        "mx.example.net:25 C: MAIL FROM:<a@example.org>",
    ]


def test_every_auth_response_line_redacted(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    user, password = base64.b64encode(b"user"), base64.b64encode(b"Sup3rS3cret")
    sent(log, Auth("LOGIN"))
    log.log_received(Reply(334, ("VXNlcm5hbWU6",)))
    sent(log, AuthResponse(b"user"))
    log.log_received(Reply(334, ("UGFzc3dvcmQ6",)))
    sent(log, AuthResponse(b"Sup3rS3cret"))
    log.log_received(Reply(535, ("5.7.8 bad credentials",), "5.7.8"))
    sent(log, Quit())
    got = messages(caplog)
    assert got == [
        "mx.example.net:25 C: AUTH LOGIN",
        "mx.example.net:25 S: 334 VXNlcm5hbWU6",
        "mx.example.net:25 C: <redacted>",
        "mx.example.net:25 S: 334 UGFzc3dvcmQ6",
        "mx.example.net:25 C: <redacted>",
        "mx.example.net:25 S: 535 5.7.8 bad credentials",
        "mx.example.net:25 C: QUIT",
    ]
    assert not any(password.decode() in m or user.decode() in m for m in got)


def test_lowercase_mechanism_still_redacted(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    # The command's type says it carries a secret, whatever the mechanism's spelling (the
    # connection sends it upper-cased, RFC 4954 §4).
    sent(log, Auth("xoauth2", SECRET))
    assert messages(caplog) == ["mx.example.net:25 C: AUTH XOAUTH2 <redacted>"]


def test_message_data_never_logged(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    sent(log, Data())
    log.log_received(Reply(354, ("End data with <CR><LF>.<CR><LF>",)))
    log.log_data(len(BODY[:10]))  # the data in two pieces: only their sizes reach the log
    log.log_data(len(BODY[10:]))
    log.log_end_of_data()
    log.log_received(Reply(250, ("2.0.0 Ok: queued",), "2.0.0"))
    sent(log, Quit())
    got = messages(caplog)
    assert got == [
        "mx.example.net:25 C: DATA",
        "mx.example.net:25 S: 354 End data with <CR><LF>.<CR><LF>",
        f"mx.example.net:25 C: <message data: {len(BODY)} octets>",
        "mx.example.net:25 C: .",
        "mx.example.net:25 S: 250 2.0.0 Ok: queued",
        "mx.example.net:25 C: QUIT",
    ]
    assert not any("launch" in m or "private" in m for m in got)


def test_message_data_looking_like_auth_is_not_logged(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.log_received(Reply(354, ("go ahead",)))
    log.log_data(len(b"AUTH PLAIN hidden\r\nBDAT 5\r\nsecret line\r\n"))
    log.log_end_of_data()
    sent(log, Rset())
    got = messages(caplog)
    assert not any("hidden" in m or "secret" in m or "BDAT" in m for m in got)
    assert got[-2:] == ["mx.example.net:25 C: .", "mx.example.net:25 C: RSET"]


def test_empty_message_terminator_right_after_354(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.log_received(Reply(354, ("go ahead",)))
    log.log_end_of_data()
    sent(log, Quit())
    assert messages(caplog)[1:] == [
        "mx.example.net:25 C: <message data: 0 octets>",
        "mx.example.net:25 C: .",
        "mx.example.net:25 C: QUIT",
    ]


def test_bdat_chunks_never_logged(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    first, second = BODY[:20], BODY[20:]
    sent(log, Bdat(first))
    sent(log, Bdat(second, last=True))
    sent(log, Quit())
    got = messages(caplog)
    assert got == [
        f"mx.example.net:25 C: BDAT {len(first)}",
        f"mx.example.net:25 C: <message data: {len(first)} octets>",
        f"mx.example.net:25 C: BDAT {len(second)} LAST",
        f"mx.example.net:25 C: <message data: {len(second)} octets>",
        "mx.example.net:25 C: QUIT",
    ]


def test_early_reply_during_data(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.log_received(Reply(354, ("go ahead",)))
    log.log_data(len(BODY))
    log.log_received(Reply(554, ("5.6.0 rejected mid-data",), "5.6.0"))
    log.log_data(len(b"still body: launch\r\n"))  # a driver that keeps writing stays hidden
    got = messages(caplog)
    assert f"mx.example.net:25 C: <message data: {len(BODY)} octets so far>" in got
    assert not any("launch" in m for m in got)


def test_reply_control_characters_escaped(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.log_received(Reply(250, ("ok\rFAKE C: AUTH PLAIN x\x1b[31m",)))
    assert messages(caplog) == ["mx.example.net:25 S: 250 ok\\x0dFAKE C: AUTH PLAIN x\\x1b[31m"]


def test_non_utf8_command_bytes_escaped(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.log_command(Vrfy("x"), b"VRFY \xff\r\n")  # a plain command is shown as encoded
    assert messages(caplog) == ["mx.example.net:25 C: VRFY \\xff"]


def test_nothing_formatted_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log = ProtocolLog("peer")
    sent(log, Ehlo("x"))
    log.log_received(Reply(250, ("ok",)))
    log.note("connected")
    assert messages(caplog) == []


def test_enabling_mid_session_still_hides_secrets_and_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log = ProtocolLog()
    sent(log, Auth("LOGIN"))
    log.log_received(Reply(334, ("VXNlcm5hbWU6",)))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    sent(log, AuthResponse(SECRET))
    log.log_received(Reply(235, ("ok",)))
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log.log_received(Reply(354, ("go",)))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    log.log_data(len(BODY))
    got = messages(caplog)
    assert got[0] == "C: <redacted>"
    assert not any(SECRET_B64.decode() in m or "launch" in m for m in got)


def test_note(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.note("TLS established: TLSv1.3")
    assert messages(caplog) == ["mx.example.net:25 --: TLS established: TLSv1.3"]


def test_disabled_log_does_no_formatting(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(data: bytes) -> str:
        raise AssertionError("formatted while logging is off")

    monkeypatch.setattr("trio_smtp._io.log._printable", fail)
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log = ProtocolLog("peer")
    for command in (Ehlo("x"), Auth("PLAIN", b"abc"), Mail("a@b.c")):
        sent(log, command)
    log.log_received(Reply(250, ("ok",)))


# -- switched on mid-session: the command's type decides, so nothing can be out of step ---


def test_switched_on_mid_data_hides_data(caplog: pytest.LogCaptureFixture) -> None:
    log = ProtocolLog("mx.example.net:25")
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    for command in (Mail("a@example.org"), Rcpt("b@example.net"), Data()):
        sent(log, command)
    log.log_received(Reply(354, ("go ahead",)))
    log.log_data(len(BODY))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)  # on, in the middle of the data
    data = b"MAIL FROM:<looks-like-a-command>\r\n" + BODY
    log.log_data(len(data))
    log.log_end_of_data()
    log.log_received(Reply(250, ("queued",)))
    sent(log, Quit())
    assert messages(caplog) == [
        f"mx.example.net:25 C: <message data: {len(BODY) + len(data)} octets>",
        "mx.example.net:25 C: .",
        "mx.example.net:25 S: 250 queued",
        "mx.example.net:25 C: QUIT",
    ]


def test_switched_on_mid_auth_redacts_the_next_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ProtocolLog("mx.example.net:25")
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    sent(log, Auth("LOGIN"))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    log.log_received(Reply(334, ("VXNlcm5hbWU6",)))
    sent(log, AuthResponse(SECRET))
    log.log_received(Reply(235, ("ok",)))
    sent(log, Mail("a@example.org"))
    assert messages(caplog) == [
        "mx.example.net:25 S: 334 VXNlcm5hbWU6",
        "mx.example.net:25 C: <redacted>",
        "mx.example.net:25 S: 235 ok",
        "mx.example.net:25 C: MAIL FROM:<a@example.org>",
    ]


def test_switched_on_before_a_pending_reply_shows_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ProtocolLog("mx.example.net:25")
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    sent(log, Bdat(b"x" * 100))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    log.log_received(Reply(250, ("ok",)))
    sent(log, Auth("PLAIN", SECRET))
    assert messages(caplog) == [
        "mx.example.net:25 S: 250 ok",
        "mx.example.net:25 C: AUTH PLAIN <redacted>",
    ]
