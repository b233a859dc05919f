"""Envelope extraction and serialisation (trio_smtp._message)."""

from __future__ import annotations

from email.message import EmailMessage, Message

import pytest

from trio_smtp._errors import SmtpError, SmtpStatusCode
from trio_smtp._message import check_against_server, prepare_message
from trio_smtp.protocol import BodyKind, Extensions, Reply


def make(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello.\n")
    return msg


def test_envelope_from_from_and_to_cc_bcc() -> None:
    msg = make(From="Ann <ann@example.org>", To="b@example.net, c@example.net")
    msg["Cc"] = "Dee <d@example.net>"
    msg["Bcc"] = "secret@example.net"
    prepared = prepare_message(msg)
    assert prepared.envelope.sender == "ann@example.org"
    assert prepared.envelope.recipients == (
        "b@example.net",
        "c@example.net",
        "d@example.net",
        "secret@example.net",
    )


def test_bcc_removed_from_data_but_not_from_callers_message() -> None:
    msg = make(From="a@example.org", To="b@example.net", Bcc="hidden@example.net")
    prepared = prepare_message(msg)
    assert b"hidden@example.net" not in prepared.data
    assert b"Bcc" not in prepared.data
    assert msg["Bcc"] == "hidden@example.net"


def test_sender_header_wins_over_from() -> None:
    msg = make(From="a@example.org, b@example.org", Sender="sec@example.org", To="x@example.net")
    assert prepare_message(msg).envelope.sender == "sec@example.org"


def test_explicit_sender_and_recipients_override_headers() -> None:
    msg = make(From="a@example.org", To="b@example.net")
    prepared = prepare_message(msg, "bounce@example.org", ["only@example.net"])
    assert prepared.envelope.sender == "bounce@example.org"
    assert prepared.envelope.recipients == ("only@example.net",)


def test_resent_block_used_when_present_and_resent_bcc_stripped() -> None:
    msg = EmailMessage()
    # RFC 5322 §3.6.6: the newest block is prepended, so it comes first.
    msg["Resent-From"] = "forwarder2@example.org"
    msg["Resent-To"] = "new2@example.net"
    msg["Resent-Bcc"] = "hidden2@example.net"
    msg["Resent-Date"] = "Mon, 1 Jan 2024 10:00:00 +0000"
    msg["Resent-From"] = "forwarder1@example.org"
    msg["Resent-To"] = "new1@example.net"
    msg["Resent-Date"] = "Sun, 31 Dec 2023 10:00:00 +0000"
    msg["From"] = "orig@example.org"
    msg["To"] = "orig-to@example.net"
    msg.set_content("x\n")
    prepared = prepare_message(msg)
    assert prepared.envelope.sender == "forwarder2@example.org"
    assert prepared.envelope.recipients == ("new2@example.net", "hidden2@example.net")
    assert b"hidden2@example.net" not in prepared.data
    assert b"orig-to@example.net" in prepared.data


def test_duplicates_removed_in_order() -> None:
    msg = make(From="a@example.org", To="b@example.net, c@example.net", Cc="b@example.net")
    assert prepare_message(msg).envelope.recipients == ("b@example.net", "c@example.net")


def test_crlf_line_ends_and_message_id() -> None:
    msg = make(From="a@example.org", To="b@example.net", Message_ID="<id-1@example.org>")
    msg.set_content("line one\nline two\n")
    prepared = prepare_message(msg)
    assert b"line one\r\nline two\r\n" in prepared.data
    assert b"\n" not in prepared.data.replace(b"\r\n", b"")
    assert prepared.message_id == "<id-1@example.org>"
    assert prepared.size == len(prepared.data)


@pytest.mark.parametrize("bad", [None, 42, "a string", {"From": "x"}])
def test_not_a_message_is_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        prepare_message(bad)


def test_no_sender_is_value_error() -> None:
    with pytest.raises(ValueError, match="sender"):
        prepare_message(make(To="b@example.net"))


def test_no_recipients_is_value_error() -> None:
    with pytest.raises(ValueError, match="recipients"):
        prepare_message(make(From="a@example.org"))


def test_bytes_need_explicit_envelope() -> None:
    with pytest.raises(ValueError, match="sender"):
        prepare_message(b"Subject: x\r\n\r\nbody\r\n", recipients=["b@example.net"])
    with pytest.raises(ValueError, match="recipients"):
        prepare_message(b"Subject: x\r\n\r\nbody\r\n", sender="a@example.org")
    with pytest.raises(ValueError, match="recipients"):
        prepare_message(b"x", sender="a@example.org", recipients=[])


def test_bytes_with_a_single_recipient_string() -> None:
    prepared = prepare_message(b"Subject: x\r\n\r\nb\r\n", "a@example.org", "b@example.net")
    assert prepared.envelope.recipients == ("b@example.net",)
    assert prepared.data == b"Subject: x\r\n\r\nb\r\n"


@pytest.mark.parametrize(
    "address", ["no-at-sign", "a@b\r\nRCPT TO:<evil@x>", "<a@b>", "x" * 65 + "@example.org"]
)
def test_invalid_recipient_is_value_error(address: str) -> None:
    with pytest.raises(ValueError):
        prepare_message(b"x", "a@example.org", [address])


def test_null_reverse_path_allowed_for_bytes() -> None:
    assert prepare_message(b"x", "", ["b@example.net"]).envelope.sender == ""


def test_compat32_message_works() -> None:
    msg = Message()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.net"
    msg["Bcc"] = "c@example.net"
    msg.set_payload("hi\n")
    prepared = prepare_message(msg)
    assert prepared.envelope.recipients == ("b@example.net", "c@example.net")
    assert b"c@example.net" not in prepared.data


def test_non_ascii_address_needs_smtputf8() -> None:
    msg = make(From="a@example.org", To="jösé@example.net")
    prepared = prepare_message(msg)
    assert prepared.smtputf8_required
    assert "jösé@example.net".encode() in prepared.data  # raw UTF-8, not an encoded word
    with pytest.raises(SmtpError) as info:
        check_against_server(prepared, Extensions())
    assert info.value.status_code is SmtpStatusCode.MAILBOX_NAME_NOT_ALLOWED


def test_non_ascii_display_name_and_subject_do_not_need_smtputf8() -> None:
    msg = make(From="Jörg <a@example.org>", To="b@example.net", Subject="Grüße")
    prepared = prepare_message(msg)
    assert not prepared.smtputf8_required
    assert prepared.data.isascii()
    assert prepared.body_kind is BodyKind.SEVEN_BIT


def test_eight_bit_body_detected() -> None:
    msg = make(From="a@example.org", To="b@example.net")
    msg.set_content("Grüße\n", cte="8bit")
    assert prepare_message(msg).body_kind is BodyKind.EIGHT_BIT


def test_size_checked_against_server_limit() -> None:
    prepared = prepare_message(b"x" * 100, "a@example.org", ["b@example.net"])
    small = Extensions.from_ehlo_reply(Reply(250, ("mx.example.net", "SIZE 50")))
    with pytest.raises(SmtpError) as info:
        check_against_server(prepared, small)
    assert info.value.status_code is SmtpStatusCode.EXCEEDED_STORAGE_ALLOCATION
    large = Extensions.from_ehlo_reply(Reply(250, ("mx.example.net", "SIZE 1000")))
    check_against_server(prepared, large)
