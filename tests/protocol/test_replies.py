"""Reply parsing (RFC 5321 §4.2), its limits, and format_reply."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import (
    ReceiveBuffer,
    RemoteProtocolError,
    Reply,
    ReplyLimits,
    ReplyParser,
    _replies,
)
from trio_smtp.testing import format_reply


def parse_all(data: bytes, limits: ReplyLimits | None = None) -> list[Reply]:
    parser = ReplyParser(limits)
    parser.receive_data(data)
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies


def test_single_line_reply() -> None:
    (reply,) = parse_all(b"220 mx.example ESMTP ready\r\n")
    assert reply.code == 220
    assert reply.lines == ("mx.example ESMTP ready",)
    assert reply.text == "mx.example ESMTP ready"
    assert str(reply) == "220 mx.example ESMTP ready"


def test_multi_line_reply_is_one_reply() -> None:
    (reply,) = parse_all(b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
    assert reply.lines == ("mx.example", "PIPELINING", "8BITMIME")
    assert reply.text == "mx.example\nPIPELINING\n8BITMIME"


def test_bare_code_is_a_complete_reply() -> None:
    assert parse_all(b"250\r\n") == [Reply(250, ("",))]
    assert parse_all(b"250-first\r\n250\r\n") == [Reply(250, ("first", ""))]


def test_several_replies_in_one_feed() -> None:
    replies = parse_all(b"250 a\r\n550 b\r\n354 c\r\n")
    assert [r.code for r in replies] == [250, 550, 354]


def test_incomplete_reply_needs_more_data() -> None:
    parser = ReplyParser()
    parser.receive_data(b"250-first\r\n250 sec")
    assert parser.next_reply() is None
    assert parser.buffered == len(b"250-first\r\n250 sec")
    parser.receive_data(b"ond\r\n")
    assert parser.next_reply() == Reply(250, ("first", "second"))
    assert parser.buffered == 0


def test_lone_lf_ends_a_line() -> None:
    assert parse_all(b"250-a\n250 b\n") == [Reply(250, ("a", "b"))]


def test_lone_cr_is_not_a_line_end() -> None:
    # "250 a\r250 b" is one line whose text contains a CR; the reply is not split in two.
    parser = ReplyParser()
    parser.receive_data(b"250-a\r250 b\r")
    assert parser.next_reply() is None
    parser.receive_data(b"\n250 c\r\n")
    assert parser.next_reply() == Reply(250, ("a\r250 b", "c"))


def test_non_utf8_text_is_decoded_without_error() -> None:
    (reply,) = parse_all(b"550 caf\xe9 \xff\xfe\r\n")
    assert reply.code == 550
    assert reply.text == "caf\ufffd \ufffd\ufffd"
    str(reply).encode("utf-8")  # printable, never a surrogate


def test_utf8_text_is_decoded() -> None:
    (reply,) = parse_all("250 Grüße\r\n".encode())
    assert reply.text == "Grüße"


@pytest.mark.parametrize(
    "line",
    [
        b"25 short\r\n",
        b"2500 four digits\r\n",
        b"abc text\r\n",
        b"150 first digit 1\r\n",
        b"650 first digit 6\r\n",
        b"250_bad separator\r\n",
        b"250\tbad separator\r\n",
        b"\r\n",
        b" 250 leading space\r\n",
        "२५० unicode digits\r\n".encode(),
    ],
)
def test_malformed_line_is_remote_error(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_all(line)


def test_code_must_not_change_inside_a_reply() -> None:
    with pytest.raises(RemoteProtocolError, match="inside a 250 reply"):
        parse_all(b"250-a\r\n550 b\r\n")


def test_parser_stays_broken_after_an_error() -> None:
    parser = ReplyParser()
    parser.receive_data(b"xyz\r\n250 ok\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.next_reply()
    with pytest.raises(RemoteProtocolError):
        parser.next_reply()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"250 2.1.5 Ok\r\n", "2.1.5"),
        (b"550 5.1.1 <x@y>: user unknown\r\n", "5.1.1"),
        (b"452 4.5.3 Too many recipients\r\n", "4.5.3"),
        (b"250 2.0.0\r\n", "2.0.0"),
        (b"550 5.123.456 long\r\n", "5.123.456"),
        (b"250 5.1.1 class disagrees\r\n", None),
        (b"354 3.0.0 class 3 does not exist\r\n", None),
        (b"250 2.1.5x glued\r\n", None),
        (b"250 2.1 too short\r\n", None),
        (b"250 2.1.5555 too long\r\n", None),
        (b"250 Ok 2.1.5\r\n", None),
        (b"250\r\n", None),
    ],
)
def test_enhanced_status(data: bytes, status: str | None) -> None:
    (reply,) = parse_all(data)
    assert reply.enhanced_status == status
    # The text is kept as the server sent it.
    assert reply.lines[0] == data[4:].rstrip(b"\r\n").decode()


def test_enhanced_status_comes_from_the_first_line() -> None:
    (reply,) = parse_all(b"550-5.1.1 first\r\n550 5.7.1 second\r\n")
    assert reply.enhanced_status == "5.1.1"
    assert reply.lines == ("5.1.1 first", "5.7.1 second")


def test_line_length_limit() -> None:
    limits = ReplyLimits(max_line_length=20)
    assert parse_all(b"250 " + b"x" * 14 + b"\r\n", limits)[0].code == 250  # 20 octets
    with pytest.raises(RemoteProtocolError, match="longer than 20"):
        parse_all(b"250 " + b"x" * 15 + b"\r\n", limits)


def test_line_length_limit_without_line_end() -> None:
    parser = ReplyParser(ReplyLimits(max_line_length=20))
    parser.receive_data(b"250 " + b"x" * 15)
    assert parser.next_reply() is None  # 19 octets: could still end in LF
    parser.receive_data(b"x")
    with pytest.raises(RemoteProtocolError):
        parser.next_reply()


def test_line_count_limit() -> None:
    limits = ReplyLimits(max_lines=3)
    assert len(parse_all(b"250-a\r\n250-b\r\n250 c\r\n", limits)[0].lines) == 3
    with pytest.raises(RemoteProtocolError, match="3 lines"):
        parse_all(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n", limits)


def test_reply_size_limit() -> None:
    limits = ReplyLimits(max_reply_size=30)
    assert parse_all(b"250-aaaaaaaa\r\n250 bbbbbbbbb\r\n", limits)  # 29 octets
    with pytest.raises(RemoteProtocolError, match="30 octets"):
        parse_all(b"250-aaaaaaaa\r\n250-bbbbbbbbb\r\n250 c\r\n", limits)


def test_limits_hold_for_a_reply_seen_before() -> None:
    # A reply parsed once (and so remembered) is still refused by a stricter parser.
    line = b"250 2.1.0 Sender ok\r\n"
    assert parse_all(line * 2) == [Reply(250, ("2.1.0 Sender ok",), "2.1.0")] * 2
    for limits in (ReplyLimits(max_reply_size=len(line) - 1), ReplyLimits(max_lines=0)):
        with pytest.raises(RemoteProtocolError):
            parse_all(line, limits)
    with pytest.raises(RemoteProtocolError):
        parse_all(line, ReplyLimits(max_line_length=len(line) - 1))
    # ... and the same line continuing a reply is a line of that reply, not a reply.
    (reply,) = parse_all(b"250-first\r\n" + line)
    assert reply.lines == ("first", "2.1.0 Sender ok")
    assert reply.enhanced_status is None


def test_distinct_replies_do_not_grow_memory() -> None:
    parser = ReplyParser()
    replies = []
    for i in range(5000):
        parser.receive_data(b"250 2.0.0 Ok: queued as %d\r\n" % i)
        replies.append(parser.next_reply())
    assert [r.text for r in replies[-2:] if r is not None] == [
        "2.0.0 Ok: queued as 4998",
        "2.0.0 Ok: queued as 4999",
    ]
    # The parser's memo of one-line replies seen (per connection, not per process).
    assert len(parser._one_line) <= _replies._CACHE_SIZE


def test_endless_multiline_reply_is_bounded() -> None:
    parser = ReplyParser()
    with pytest.raises(RemoteProtocolError):
        for _ in range(10_000):
            parser.receive_data(b"250-more\r\n")
            assert parser.next_reply() is None
    assert parser.buffered <= ReplyLimits().max_reply_size + ReplyLimits().max_line_length


def test_receive_buffer_lines() -> None:
    buf = ReceiveBuffer()
    assert not buf
    buf.feed(b"one\r\ntwo\nthr")
    assert len(buf) == 12
    assert buf.next_line(100) == b"one\r\n"
    assert buf.next_line(100) == b"two\n"
    assert buf.next_line(100) is None
    buf.feed(b"ee\r\nrest")
    assert buf.next_line(100) == b"three\r\n"
    assert buf.take_all() == b"rest"
    assert not buf


def test_receive_buffer_many_lines_in_one_feed() -> None:
    # Large buffers of short lines exercise the compaction path.
    lines = [b"%05d\r\n" % i for i in range(5000)]
    buf = ReceiveBuffer()
    buf.feed(b"".join(lines) + b"tail")
    assert [buf.next_line(100) for _ in lines] == lines
    assert buf.next_line(100) is None
    assert buf.take_all() == b"tail"


def test_receive_buffer_line_too_long() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"x" * 10)
    with pytest.raises(RemoteProtocolError):
        buf.next_line(10)


def test_format_reply_round_trips() -> None:
    data = format_reply(250, ["mx.example", "PIPELINING", "SIZE 100"])
    assert parse_all(data) == [Reply(250, ("mx.example", "PIPELINING", "SIZE 100"))]


def test_reply_properties() -> None:
    assert Reply(250).is_positive and not Reply(250).is_transient
    assert Reply(354).is_positive
    assert Reply(451).is_transient and not Reply(451).is_permanent
    assert Reply(550).is_permanent and not Reply(550).is_positive
