"""Hypothesis properties of the reply parser and the connection's receive path."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_smtp.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    RemoteProtocolError,
    Reply,
    ReplyLimits,
    ReplyParser,
    validate_address,
)
from trio_smtp.protocol import LocalProtocolError as LocalError
from trio_smtp.testing import format_reply

# Reply text: anything printable (no control characters, no surrogates), UTF-8 included.
line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x85"),
    max_size=30,
)
replies = st.lists(
    st.tuples(st.integers(200, 599), st.lists(line_text, min_size=1, max_size=5)),
    min_size=1,
    max_size=6,
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def parse_in_chunks(chunks: list[bytes], limits: ReplyLimits | None = None) -> list[Reply]:
    parser = ReplyParser(limits)
    out = []
    for chunk in chunks:
        parser.receive_data(chunk)
        while (reply := parser.next_reply()) is not None:
            out.append(reply)
    assert parser.buffered == 0
    return out


@settings(deadline=None)
@given(replies, st.lists(st.integers(0, 10_000), max_size=20), st.booleans())
def test_same_replies_under_every_split(
    items: list[tuple[int, list[str]]], cuts: list[int], bare_lf: bool
) -> None:
    wire = b"".join(format_reply(code, lines) for code, lines in items)
    if bare_lf:
        wire = wire.replace(b"\r\n", b"\n")
    whole = parse_in_chunks([wire])
    assert [(r.code, list(r.lines)) for r in whole] == items
    assert parse_in_chunks(split(wire, cuts)) == whole


def test_every_single_split_and_byte_by_byte() -> None:
    wire = (
        b"220 mx.example ESMTP\r\n"
        b"250-mx.example\r\n250-PIPELINING\n250-SIZE 1000\r\n250 2.0.0 OK\r\n"
        b"550-5.1.1 caf\xe9\r\n550 5.1.1 second\r\n354\r\n"
    )
    whole = parse_in_chunks([wire])
    assert len(whole) == 4
    for cut in range(len(wire) + 1):
        assert parse_in_chunks([wire[:cut], wire[cut:]]) == whole
    assert parse_in_chunks([wire[i : i + 1] for i in range(len(wire))]) == whole


# Bytes that look like replies often enough to get past the first line.
fragments = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"250", b"250-", b"250 ", b"550 ", b"421 ", b"-", b" ", b"\r\n", b"\n"]),
    st.sampled_from([b"\r", b"2.0.0 ", b"\xff\xfe", b"x" * 40, b"354 go\r\n", b"220 hi\r\n"]),
)
SMALL = ReplyLimits(max_line_length=48, max_lines=4, max_reply_size=120)


@settings(deadline=None)
@given(st.lists(fragments, max_size=40), st.lists(st.integers(0, 10_000), max_size=10))
def test_random_bytes_only_remote_errors_and_bounded(pieces: list[bytes], cuts: list[int]) -> None:
    parser = ReplyParser(SMALL)
    try:
        for chunk in split(b"".join(pieces), cuts):
            parser.receive_data(chunk)
            while (reply := parser.next_reply()) is not None:
                assert 200 <= reply.code <= 599
                assert len(reply.lines) <= SMALL.max_lines
                assert sum(len(line) for line in reply.lines) <= SMALL.max_reply_size
            # What is held between calls: one partial reply plus one partial line.
            assert parser.buffered < SMALL.max_reply_size + SMALL.max_line_length
    except RemoteProtocolError:
        pass


@settings(deadline=None)
@given(st.lists(fragments, max_size=40), st.booleans())
def test_connection_random_bytes_only_remote_errors(pieces: list[bytes], eof: bool) -> None:
    conn = ClientConnection(limits=SMALL)
    try:
        for piece in [*pieces, b""] if eof else pieces:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, ConnectionClosed):
                    return
    except RemoteProtocolError:
        pass


@given(st.text(max_size=80))
def test_validate_address_refuses_or_accepts_cleanly(text: str) -> None:
    # Whatever the input, the validator either returns it unchanged or refuses with
    # LocalProtocolError; an accepted address never carries a line break.
    try:
        assert validate_address(text, smtputf8=True) == text
    except LocalError:
        return
    assert "\r" not in text and "\n" not in text and "\x00" not in text
