"""ClientConnection: nothing unsolicited is ever read as a reply (design rule 11), and a
3xx is an intermediate reply only where one is defined (issue 10, items 1 and 7)."""

from __future__ import annotations

import pytest
from helpers.protocol import one_reply, ready

from trio_smtp.protocol import (
    Bdat,
    Data,
    LocalProtocolError,
    Mail,
    Rcpt,
    RemoteProtocolError,
    Reply,
    Rset,
    State,
)


def test_a_line_after_a_final_reply_is_unsolicited() -> None:
    conn = ready()
    conn.send(Rset())
    # One read brings the reply and a line nobody asked for.
    assert one_reply(conn, b"250 ok\r\n250 extra\r\n").code == 250
    with pytest.raises(RemoteProtocolError):
        conn.send(Mail("a@example.org"))  # would read "250 extra" as MAIL's reply
    assert conn.state is State.ERROR


def test_a_partial_line_while_nothing_is_pending_is_unsolicited() -> None:
    conn = ready()
    conn.receive_data(b"25")
    with pytest.raises(RemoteProtocolError):
        conn.send(Mail("a@example.org"))


def test_a_reply_before_its_command_is_unsolicited_even_with_pipelining() -> None:
    conn = ready("PIPELINING")
    conn.send(Mail("a@example.org"))
    # MAIL's reply, and one for the RCPT not sent yet.
    conn.receive_data(b"250 ok\r\n250 early\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.send(Rcpt("b@example.net"))


def test_pending_replies_received_before_a_pipelined_command_are_kept() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send(Mail("a@example.org"))
    conn.send(Rcpt("b@example.net"))
    conn.send(Bdat(b"x" * 10))
    conn.receive_data(b"250 mail\r\n250 rcpt\r\n25")  # BDAT's reply half-way
    data = conn.send(Bdat(b"y", last=True))  # every octet belongs to a pending command
    assert data.startswith(b"BDAT 1 LAST\r\n")
    conn.receive_data(b"0 chunk\r\n250 last\r\n")
    texts = []
    while isinstance(event := conn.next_event(), Reply):
        texts.append((event.code, event.text, event.command))
    assert [t[1] for t in texts] == ["mail", "rcpt", "chunk", "last"]
    assert isinstance(texts[0][2], Mail) and isinstance(texts[3][2], Bdat)
    assert conn.buffered == 0 and conn.state is State.READY


def test_bdat_chunks_answered_ahead_without_pipelining() -> None:
    conn = ready("CHUNKING")
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Rcpt("b@example.net"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Bdat(b"first"))
    # The server answers the chunks it has not read yet.
    assert one_reply(conn, b"250 first\r\n250 second\r\n250 last\r\n").code == 250
    with pytest.raises(RemoteProtocolError):
        conn.send(Bdat(b"second", last=True))


def test_nothing_is_sent_after_eof() -> None:
    conn = ready()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@example.org"))


@pytest.mark.parametrize("code", [334, 399, 300])
def test_data_answered_with_another_3xx_is_a_protocol_error(code: int) -> None:
    conn = ready()
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Rcpt("b@example.net"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Data())
    conn.receive_data(b"%d what\r\n" % code)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR
