"""A sans-IO client connection driven by hand: one reply fed at a time, a session made ready."""

from __future__ import annotations

from trio_smtp.protocol import ClientConnection, Ehlo, Reply


def one_reply(conn: ClientConnection, data: bytes) -> Reply:
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, Reply)
    return event


def ready(*keywords: str) -> ClientConnection:
    conn = ClientConnection()
    one_reply(conn, b"220 mx.example ESMTP\r\n")
    conn.send(Ehlo("client.example"))
    lines = ["mx.example", *keywords]
    wire = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
    one_reply(conn, wire.encode())
    return conn
