"""The protocol log: commands and replies logged; AUTH secrets and message data never."""

from __future__ import annotations

import base64
import logging

import pytest

from trio_smtp._io.log import LOGGER_NAME, ProtocolLog
from trio_smtp.protocol import Reply

SECRET = b"\x00user\x00Sup3rS3cret"
SECRET_B64 = base64.b64encode(SECRET)
BODY = b"Subject: private\r\n\r\nThe launch codes are 0000.\r\n"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> ProtocolLog:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return ProtocolLog("mx.example.net:25")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]


def test_commands_and_replies_logged(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.log_received(Reply(220, ("mx.example.net ESMTP",)))
    log.log_sent(b"EHLO client.example.org\r\n")
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
    log.log_sent(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert messages(caplog) == [
        "mx.example.net:25 C: MAIL FROM:<a@example.org>",
        "mx.example.net:25 C: RCPT TO:<b@example.net>",
        "mx.example.net:25 C: DATA",
    ]


def test_auth_initial_response_redacted(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.log_sent(b"AUTH PLAIN " + SECRET_B64 + b"\r\n")
    log.log_received(Reply(235, ("2.7.0 Authentication successful",), "2.7.0"))
    log.log_sent(b"MAIL FROM:<a@example.org>\r\n")
    assert messages(caplog) == [
        "mx.example.net:25 C: AUTH PLAIN <redacted>",
        "mx.example.net:25 S: 235 2.7.0 Authentication successful",
        "mx.example.net:25 C: MAIL FROM:<a@example.org>",
    ]


def test_every_auth_response_line_redacted(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    user, password = base64.b64encode(b"user"), base64.b64encode(b"Sup3rS3cret")
    log.log_sent(b"AUTH LOGIN\r\n")
    log.log_received(Reply(334, ("VXNlcm5hbWU6",)))
    log.log_sent(user + b"\r\n")
    log.log_received(Reply(334, ("UGFzc3dvcmQ6",)))
    log.log_sent(password + b"\r\n")
    log.log_received(Reply(535, ("5.7.8 bad credentials",), "5.7.8"))
    log.log_sent(b"QUIT\r\n")
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


def test_lowercase_auth_verb_still_redacted(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.log_sent(b"auth xoauth2 " + SECRET_B64 + b"\r\n")
    assert messages(caplog) == ["mx.example.net:25 C: auth xoauth2 <redacted>"]


def test_message_data_never_logged(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.log_sent(b"DATA\r\n")
    log.log_received(Reply(354, ("End data with <CR><LF>.<CR><LF>",)))
    log.log_sent(BODY[:10])
    log.log_sent(BODY[10:] + b".\r")  # the terminator split across writes
    log.log_sent(b"\n")
    log.log_received(Reply(250, ("2.0.0 Ok: queued",), "2.0.0"))
    log.log_sent(b"QUIT\r\n")
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
    log.log_sent(b"AUTH PLAIN hidden\r\nBDAT 5\r\nsecret line\r\n.\r\nRSET\r\n")
    got = messages(caplog)
    assert not any("hidden" in m or "secret" in m or "BDAT" in m for m in got)
    assert got[-2:] == ["mx.example.net:25 C: .", "mx.example.net:25 C: RSET"]


def test_empty_message_terminator_right_after_354(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.log_received(Reply(354, ("go ahead",)))
    log.log_sent(b".\r\nQUIT\r\n")
    assert messages(caplog)[1:] == [
        "mx.example.net:25 C: <message data: 0 octets>",
        "mx.example.net:25 C: .",
        "mx.example.net:25 C: QUIT",
    ]


def test_bdat_chunks_never_logged(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    first, second = BODY[:20], BODY[20:]
    log.log_sent(b"BDAT %d\r\n" % len(first) + first)
    log.log_sent(b"BDAT %d LAST\r\n" % len(second) + second[:5])
    log.log_sent(second[5:])
    log.log_sent(b"QUIT\r\n")
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
    log.log_sent(BODY)
    log.log_received(Reply(554, ("5.6.0 rejected mid-data",), "5.6.0"))
    log.log_sent(b"still body: launch\r\n")  # a driver that keeps writing stays hidden
    got = messages(caplog)
    assert f"mx.example.net:25 C: <message data: {len(BODY)} octets so far>" in got
    assert not any("launch" in m for m in got)


def test_reply_control_characters_escaped(
    log: ProtocolLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.log_received(Reply(250, ("ok\rFAKE C: AUTH PLAIN x\x1b[31m",)))
    assert messages(caplog) == ["mx.example.net:25 S: 250 ok\\x0dFAKE C: AUTH PLAIN x\\x1b[31m"]


def test_non_utf8_command_bytes_escaped(log: ProtocolLog, caplog: pytest.LogCaptureFixture) -> None:
    log.log_sent(b"VRFY \xff\r\n")
    assert messages(caplog) == ["mx.example.net:25 C: VRFY \\xff"]


def test_nothing_formatted_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log = ProtocolLog("peer")
    log.log_sent(b"EHLO x\r\n")
    log.log_received(Reply(250, ("ok",)))
    log.note("connected")
    assert messages(caplog) == []


def test_enabling_mid_session_still_hides_secrets_and_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log = ProtocolLog()
    log.log_sent(b"AUTH LOGIN\r\n")
    log.log_received(Reply(334, ("VXNlcm5hbWU6",)))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    log.log_sent(SECRET_B64 + b"\r\n")
    log.log_received(Reply(235, ("ok",)))
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log.log_received(Reply(354, ("go",)))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    log.log_sent(BODY)
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
    log.log_sent(b"EHLO x\r\nAUTH PLAIN abc\r\nMAIL FROM:<a@b.c>\r\n")
    log.log_received(Reply(250, ("ok",)))


# -- a driver with at_boundary: no bookkeeping while off, safe when switched on ------------


def test_switched_on_mid_data_hides_data_until_a_boundary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ProtocolLog("mx.example.net:25")
    boundary = [False]
    log.at_boundary = lambda: boundary[0]
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log.log_sent(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    log.log_received(Reply(354, ("go ahead",)))
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)  # on, in the middle of the data
    data = b"MAIL FROM:<looks-like-a-command>\r\n" + BODY
    log.log_sent(data)
    log.log_sent(b".\r\n")
    boundary[0] = True
    log.log_received(Reply(250, ("queued",)))
    log.log_sent(b"QUIT\r\n")
    assert messages(caplog) == [
        f"mx.example.net:25 C: <{len(data)} octets not shown: log resynchronising>",
        "mx.example.net:25 C: <3 octets not shown: log resynchronising>",
        "mx.example.net:25 S: 250 queued",
        "mx.example.net:25 C: QUIT",
    ]


def test_switched_on_mid_auth_redacts_the_next_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ProtocolLog("mx.example.net:25")
    log.at_boundary = lambda: True
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log.log_sent(b"AUTH LOGIN\r\n")
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    log.log_received(Reply(334, ("VXNlcm5hbWU6",)))  # a boundary: the 334 sets the state
    log.log_sent(SECRET_B64 + b"\r\n")
    log.log_received(Reply(235, ("ok",)))
    log.log_sent(b"MAIL FROM:<a@example.org>\r\n")
    assert messages(caplog) == [
        "mx.example.net:25 S: 334 VXNlcm5hbWU6",
        "mx.example.net:25 C: <redacted>",
        "mx.example.net:25 S: 235 ok",
        "mx.example.net:25 C: MAIL FROM:<a@example.org>",
    ]


def test_switched_on_before_a_pending_reply_shows_no_sent_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ProtocolLog("mx.example.net:25")
    log.at_boundary = lambda: False  # e.g. BDAT chunks still unanswered
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    log.log_sent(b"BDAT 100\r\n")
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    log.log_received(Reply(250, ("ok",)))
    log.log_sent(b"AUTH PLAIN " + SECRET_B64 + b"\r\n")
    assert messages(caplog) == [
        "mx.example.net:25 S: 250 ok",
        f"mx.example.net:25 C: <{13 + len(SECRET_B64)} octets not shown: log resynchronising>",
    ]
