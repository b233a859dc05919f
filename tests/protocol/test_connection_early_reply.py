"""ClientConnection.early_reply(): what the server said in DATA before the terminator."""

from __future__ import annotations

import pytest
from helpers.protocol import one_reply, ready

from trio_smtp.protocol import (
    ClientConnection,
    ConnectionClosed,
    Data,
    LocalProtocolError,
    Mail,
    Rcpt,
    Reply,
    State,
)


def in_data() -> ClientConnection:
    conn = ready("PIPELINING")
    conn.send(Mail("a@example.org"))
    conn.send(Rcpt("b@example.net"))
    conn.send(Data())
    one_reply(conn, b"250 ok\r\n")
    one_reply(conn, b"250 ok\r\n")
    assert one_reply(conn, b"354 go\r\n").code == 354
    return conn


def test_nothing_said() -> None:
    conn = in_data()
    assert conn.buffered == 0
    assert conn.early_reply() is None
    assert conn.state is State.DATA  # the data may go on


def test_partial_reply_is_not_yet_an_answer() -> None:
    conn = in_data()
    conn.receive_data(b"554-5.3.0 no")
    assert conn.buffered == len(b"554-5.3.0 no")
    assert conn.early_reply() is None
    conn.receive_data(b"\r\n554 5.3.0 go away\r\n")
    reply = conn.early_reply()
    assert isinstance(reply, Reply) and reply.code == 554
    assert reply.lines == ("5.3.0 no", "5.3.0 go away")
    assert conn.state is State.ERROR  # the terminator must never follow
    with pytest.raises(LocalProtocolError):
        conn.end_data()


def test_eof_before_anything() -> None:
    conn = in_data()
    conn.receive_data(b"")
    assert isinstance(conn.early_reply(), ConnectionClosed)
    assert conn.state is State.ERROR


def test_only_in_data_before_the_terminator() -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.early_reply()
    conn = in_data()
    conn.send_data(b"x\r\n")
    conn.end_data()
    with pytest.raises(LocalProtocolError):
        conn.early_reply()
