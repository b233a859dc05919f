"""Audit of issue 2's ClientConnection rules: the cases the first tests left open."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import (
    NEED_DATA,
    Auth,
    AuthResponse,
    ClientConnection,
    Command,
    ConnectionClosed,
    Data,
    Ehlo,
    Helo,
    LocalProtocolError,
    Mail,
    NeedData,
    Noop,
    Rcpt,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTls,
    State,
)


def drain(conn: ClientConnection) -> list[Reply | ConnectionClosed]:
    events: list[Reply | ConnectionClosed] = []
    while not isinstance(event := conn.next_event(), NeedData):
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def state(conn: ClientConnection) -> State:
    return conn.state


def ready(*keywords: str) -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(b"220 mx.example\r\n")
    drain(conn)
    conn.send(Ehlo("client.example"))
    lines = ["mx.example", *keywords]
    wire = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
    conn.receive_data(wire.encode())
    drain(conn)
    assert state(conn) is State.READY
    return conn


def after_starttls_220() -> ClientConnection:
    conn = ready("STARTTLS", "PIPELINING")
    conn.send(StartTls())
    conn.receive_data(b"220 2.0.0 go ahead\r\n")
    assert [event.code for event in drain(conn) if isinstance(event, Reply)] == [220]
    assert state(conn) is State.STARTTLS
    return conn


def test_injection_fed_later_is_caught_by_start_tls_without_next_event() -> None:
    # RFC 3207 §5: a driver may feed the plaintext bytes that followed the 220 and go
    # straight to start_tls(); they must never be parsed as if they came through TLS.
    conn = after_starttls_220()
    conn.receive_data(b"250-mx.example\r\n250 AUTH PLAIN\r\n")
    with pytest.raises(RemoteProtocolError, match="injection"):
        conn.start_tls()
    assert state(conn) is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.send(Ehlo("client.example"))
    with pytest.raises(LocalProtocolError):
        conn.next_event()


def test_clean_start_tls_then_ehlo_works() -> None:
    conn = after_starttls_220()
    conn.start_tls()
    conn.send(Ehlo("client.example"))
    conn.receive_data(b"250-mx.example\r\n250 AUTH PLAIN\r\n")
    (reply,) = drain(conn)
    assert isinstance(reply, Reply) and reply.code == 250
    assert conn.extensions.auth_mechanisms == {"PLAIN"}
    assert not conn.extensions.starttls and not conn.extensions.pipelining


@pytest.mark.parametrize(
    "first",
    [Auth("PLAIN", b"\0u\0p"), StartTls(), Helo("client.example"), Data()],
    ids=["AUTH", "STARTTLS", "HELO", "DATA"],
)
def test_more_group_enders(first: Command) -> None:
    # RFC 2920 §3.1 + RFC 4954 §4 + RFC 3207 §4: these must be last in a group.
    conn = ready("PIPELINING", "AUTH PLAIN", "STARTTLS")
    if isinstance(first, Data):
        conn.send(Mail("a@example.org"))
        conn.send(Rcpt("b@example.org"))
    conn.send(first)
    with pytest.raises(LocalProtocolError, match="before the reply"):
        conn.send(Rset())


@pytest.mark.parametrize("wire", [b"421 4.3.2 bye\r\n", b"421-4.3.2 going\r\n421 down\r\n"])
def test_421_while_sending_data_closes(wire: bytes) -> None:
    conn = ready("PIPELINING")
    for command in (Mail("a@example.org"), Rcpt("b@example.org"), Data()):
        conn.send(command)
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    drain(conn)
    conn.send_data(b"Subject: x\r\n\r\nbody\r\n")
    conn.receive_data(wire)
    (reply, closed) = drain(conn)
    assert isinstance(reply, Reply) and reply.code == 421
    assert closed == ConnectionClosed()
    assert state(conn) is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.end_data()
    with pytest.raises(LocalProtocolError):
        conn.send(Rset())


def test_421_during_auth_exchange_closes() -> None:
    conn = ready("AUTH LOGIN")
    conn.send(Auth("LOGIN"))
    conn.receive_data(b"334 VXNlcm5hbWU6\r\n")
    drain(conn)
    assert state(conn) is State.AUTH
    conn.send(AuthResponse(b"user"))
    conn.receive_data(b"421 4.7.0 too slow\r\n")
    assert [e.code for e in drain(conn) if isinstance(e, Reply)] == [421]
    assert state(conn) is State.CLOSED
    assert conn.next_event() == ConnectionClosed()


def test_unsolicited_421_while_idle_in_a_pipelined_group_clears_the_queue() -> None:
    conn = ready("PIPELINING")
    conn.send(Mail("a@example.org"))
    conn.send(Rcpt("b@example.org"))
    conn.receive_data(b"421 4.3.2 shutting down\r\n")
    (reply, closed) = drain(conn)
    assert isinstance(reply, Reply) and reply.command == Mail("a@example.org")
    assert isinstance(closed, ConnectionClosed)
    assert conn.pending == 0


def test_every_remote_error_enters_error_and_nothing_can_be_sent() -> None:
    bad_replies = [
        b"250 what\r\n250 extra\r\n",  # more replies than commands
        b"354 go\r\n",  # 354 answering NOOP
        b"2x0 garbled\r\n",
        b"250-a\r\n251 b\r\n",  # code changes inside a reply
    ]
    for wire in bad_replies:
        conn = ready("PIPELINING")
        conn.send(Noop())
        conn.receive_data(wire)
        with pytest.raises(RemoteProtocolError):
            drain(conn)
        assert state(conn) is State.ERROR, wire
        with pytest.raises(LocalProtocolError):
            conn.send(Noop())
        with pytest.raises(LocalProtocolError):
            conn.next_event()


def test_send_failed_in_the_middle_of_a_group() -> None:
    conn = ready("PIPELINING")
    conn.send(Mail("a@example.org"))
    conn.send(Rcpt("b@example.org"))
    conn.send_failed()
    assert state(conn) is State.ERROR and conn.pending == 0
    conn.receive_data(b"250 ok\r\n")  # a late reply cannot revive the session
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Rset())


def test_ehlo_5xx_then_helo_then_mail() -> None:
    conn = ClientConnection()
    conn.receive_data(b"220 old.example\r\n")
    drain(conn)
    conn.send(Ehlo("client.example"))
    conn.receive_data(b"500 5.5.1 what is EHLO\r\n")
    drain(conn)
    assert state(conn) is State.GREETED
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@example.org"))  # still not greeted by the server
    conn.send(Helo("client.example"))
    conn.receive_data(b"250 old.example\r\n")
    drain(conn)
    assert state(conn) is State.READY and not conn.extensions.keywords
    with pytest.raises(LocalProtocolError, match="SIZE"):
        conn.send(Mail("a@example.org", size=10))  # no ESMTP parameters after HELO
    assert conn.send(Mail("a@example.org")) == b"MAIL FROM:<a@example.org>\r\n"


def test_helo_after_ehlo_forgets_pipelining() -> None:
    conn = ready("PIPELINING", "SIZE 1000")
    conn.send(Helo("client.example"))
    conn.receive_data(b"250 mx.example\r\n")
    drain(conn)
    assert not conn.extensions.keywords
    conn.send(Mail("a@example.org"))
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send(Rcpt("b@example.org"))


def test_server_that_never_sends_lf_is_bounded() -> None:
    conn = ClientConnection()
    fed = 0
    with pytest.raises(RemoteProtocolError, match="longer than"):
        while fed < 10_000_000:
            conn.receive_data(b"220 " + b"x" * 1020)
            fed += 1024
            assert conn.next_event() is NEED_DATA
    assert fed <= 8192
    assert state(conn) is State.ERROR


def test_server_with_an_endless_multiline_reply_is_bounded() -> None:
    conn = ClientConnection()
    fed = 0
    with pytest.raises(RemoteProtocolError):
        while fed < 10_000_000:
            chunk = b"220-more and more\r\n" * 8
            conn.receive_data(chunk)
            fed += len(chunk)
            assert conn.next_event() is NEED_DATA
    assert fed <= 65536 + 1024
    assert state(conn) is State.ERROR
