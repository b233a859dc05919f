"""RFC 2920 §3.1: the message content may be the first "command" of a group, so the next
transaction's MAIL, RCPT and DATA can follow the terminator before its reply is read."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import (
    Bdat,
    ClientConnection,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfData,
    LocalProtocolError,
    Mail,
    NeedData,
    Rcpt,
    Reply,
    Rset,
    State,
)


def feed(conn: ClientConnection, data: bytes) -> list[Reply | ConnectionClosed]:
    """Feed ``data`` and drain every event."""
    conn.receive_data(data)
    events: list[Reply | ConnectionClosed] = []
    while not isinstance(event := conn.next_event(), NeedData):
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def state(conn: ClientConnection) -> State:
    return conn.state  # a call keeps mypy from narrowing it across sends


def ready(*keywords: str) -> ClientConnection:
    """Past the greeting and EHLO, the server advertising ``keywords``."""
    conn = ClientConnection()
    feed(conn, b"220 mx.example ESMTP\r\n")
    conn.send(Ehlo("client.example"))
    lines = ["mx.example", *keywords]
    feed(conn, ("".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n").encode())
    assert state(conn) is State.READY
    return conn


ENVELOPE = (Mail("a@example.org"), Rcpt("b@example.org"), Data())


def in_data(*keywords: str) -> ClientConnection:
    conn = ready(*keywords)
    for command, reply in zip(ENVELOPE, (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"), strict=True):
        conn.send(command)
        feed(conn, reply)
    assert state(conn) is State.DATA
    return conn


def test_next_envelope_after_the_terminator_with_pipelining() -> None:
    conn = in_data("PIPELINING")
    wire = conn.send_data(b"one\r\n") + conn.end_data()
    assert conn.expected_state is State.READY  # the terminator ends the transaction
    wire += b"".join(conn.send(command) for command in ENVELOPE)
    assert wire.endswith(
        b"one\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    )
    assert conn.pending_commands == (EndOfData(), *ENVELOPE)
    replies = feed(conn, b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    commands = [r.command for r in replies if isinstance(r, Reply)]
    assert commands == [EndOfData(), *ENVELOPE]
    assert state(conn) is State.DATA  # the second transaction is in its data now


@pytest.mark.parametrize("code", [b"554 no", b"451 later"])
def test_a_refused_message_does_not_disturb_the_next_transaction(code: bytes) -> None:
    conn = in_data("PIPELINING")
    conn.send_data(b"one\r\n")
    conn.end_data()
    for command in ENVELOPE:
        conn.send(command)
    (first, *rest) = feed(conn, code + b"\r\n")
    assert isinstance(first, Reply) and first.command == EndOfData() and not rest
    assert state(conn) is State.READY  # whatever the code: RFC 5321 §4.1.1.4
    feed(conn, b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert state(conn) is State.DATA


def test_rset_may_follow_the_terminator() -> None:
    conn = in_data("PIPELINING")
    conn.end_data()
    conn.send(Rset())
    conn.send(Mail("a@example.org"))
    feed(conn, b"554 no valid recipients\r\n250 reset\r\n250 ok\r\n")
    assert state(conn) is State.MAIL


def test_421_to_the_terminator_closes_with_the_group_pending() -> None:
    conn = in_data("PIPELINING")
    conn.end_data()
    for command in ENVELOPE:
        conn.send(command)
    reply, closed = feed(conn, b"421 closing\r\n")
    assert isinstance(reply, Reply) and reply.command == EndOfData()
    assert isinstance(closed, ConnectionClosed)  # the pipelined MAIL will never be answered
    assert state(conn) is State.CLOSED
    assert conn.pending == 0


def test_without_pipelining_the_terminator_reply_comes_first() -> None:
    conn = in_data()
    conn.end_data()
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send(Mail("a@example.org"))
    feed(conn, b"250 queued\r\n")
    conn.send(Mail("a@example.org"))  # now it may


def test_no_more_data_after_the_terminator() -> None:
    conn = in_data("PIPELINING")
    conn.end_data()
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"late")
    with pytest.raises(LocalProtocolError):
        conn.end_data()
    with pytest.raises(LocalProtocolError):
        conn.send(Data())  # no transaction yet: MAIL must come first


def test_bdat_last_transactions_back_to_back() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    wire = b""
    for body in (b"one\r\n", b"two\r\n"):
        wire += conn.send(Mail("a@example.org")) + conn.send(Rcpt("b@example.org"))
        wire += conn.send(Bdat(body, last=True))
    assert wire.count(b"BDAT 5 LAST\r\n") == 2
    feed(conn, b"250 ok\r\n250 ok\r\n250 queued\r\n" * 2)
    assert state(conn) is State.READY and conn.pending == 0
