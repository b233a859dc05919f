"""Audit of issue 2's command rules (files owned by another helper: failures are xfail)."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import (
    Bdat,
    ClientConnection,
    Ehlo,
    LocalProtocolError,
    Mail,
    NeedData,
    Rcpt,
    State,
)


def in_transaction() -> ClientConnection:
    conn = ClientConnection()
    for command, reply in [
        (None, b"220 mx.example\r\n"),
        (Ehlo("client.example"), b"250-mx.example\r\n250 CHUNKING\r\n"),
        (Mail("a@example.org"), b"250 ok\r\n"),
        (Rcpt("b@example.org"), b"250 ok\r\n"),
    ]:
        if command is not None:
            conn.send(command)
        conn.receive_data(reply)
        assert not isinstance(conn.next_event(), NeedData)
    return conn


def test_bdat_with_a_str_chunk_is_a_local_protocol_error() -> None:
    conn = in_transaction()
    with pytest.raises(LocalProtocolError):
        conn.send(Bdat("not bytes", last=True))  # type: ignore[arg-type]
    assert conn.state is State.RCPT and conn.pending == 0
