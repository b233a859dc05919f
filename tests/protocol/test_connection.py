"""ClientConnection: commands in, bytes out; bytes in, replies matched to commands out."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import (
    NEED_DATA,
    Auth,
    AuthResponse,
    Bdat,
    ClientConnection,
    Command,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfData,
    Helo,
    LocalProtocolError,
    Mail,
    NeedData,
    Noop,
    Quit,
    Rcpt,
    RemoteProtocolError,
    Reply,
    ReplyLimits,
    Rset,
    StartTls,
    State,
    Vrfy,
)


def feed(conn: ClientConnection, data: bytes) -> list[Reply | ConnectionClosed]:
    """Feed ``data`` (b"" = EOF) and drain every event."""
    conn.receive_data(data)
    events: list[Reply | ConnectionClosed] = []
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            return events
        events.append(event)
        if isinstance(event, ConnectionClosed):
            return events


def state(conn: ClientConnection) -> State:
    """``conn.state``, read fresh (a call keeps mypy from narrowing it across sends)."""
    return conn.state


def one_reply(conn: ClientConnection, data: bytes) -> Reply:
    (event,) = feed(conn, data)
    assert isinstance(event, Reply)
    return event


def ready(*keywords: str) -> ClientConnection:
    """A connection past the greeting and EHLO, the server advertising ``keywords``."""
    conn = ClientConnection()
    one_reply(conn, b"220 mx.example ESMTP\r\n")
    conn.send(Ehlo("client.example"))
    lines = ["mx.example", *keywords]
    wire = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
    one_reply(conn, wire.encode())
    assert state(conn) is State.READY
    return conn


def test_greeting() -> None:
    conn = ClientConnection()
    assert state(conn) is State.CONNECTED
    assert conn.next_event() is NEED_DATA
    reply = one_reply(conn, b"220 mx.example ESMTP\r\n")
    assert (reply.code, reply.command) == (220, None)
    assert state(conn) is State.GREETED
    assert conn.pending == 0


def test_nothing_may_be_sent_before_the_greeting() -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.send(Ehlo("client.example"))


def test_greeting_refused_allows_only_quit() -> None:
    conn = ClientConnection()
    one_reply(conn, b"554 no service for you\r\n")
    assert state(conn) is State.REFUSED
    with pytest.raises(LocalProtocolError):
        conn.send(Ehlo("client.example"))
    assert conn.send(Quit()) == b"QUIT\r\n"
    events = feed(conn, b"221 bye\r\n")
    assert isinstance(events[0], Reply) and events[1:] == [ConnectionClosed()]
    assert state(conn) is State.CLOSED


def test_greeting_421_closes() -> None:
    conn = ClientConnection()
    events = feed(conn, b"421 too busy\r\n")
    assert isinstance(events[0], Reply) and events[0].code == 421
    assert state(conn) is State.CLOSED
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_ehlo_sets_extensions_and_reply_command() -> None:
    conn = ClientConnection()
    one_reply(conn, b"220 hi\r\n")
    ehlo = Ehlo("client.example")
    assert conn.send(ehlo) == b"EHLO client.example\r\n"
    assert conn.pending == 1
    reply = one_reply(conn, b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
    assert reply.command == ehlo
    assert conn.extensions.pipelining and conn.extensions.max_size == 1000
    assert conn.pending == 0


def test_helo_fallback_after_ehlo_refused() -> None:
    conn = ClientConnection()
    one_reply(conn, b"220 hi\r\n")
    conn.send(Ehlo("client.example"))
    one_reply(conn, b"502 5.5.1 EHLO not implemented\r\n")
    assert state(conn) is State.GREETED
    assert conn.send(Helo("client.example")) == b"HELO client.example\r\n"
    one_reply(conn, b"250 hello\r\n")
    assert state(conn) is State.READY
    assert not conn.extensions.keywords


def test_helo_forgets_earlier_extensions() -> None:
    conn = ready("PIPELINING", "SIZE 10")
    conn.send(Helo("client.example"))
    one_reply(conn, b"250 hello\r\n")
    assert not conn.extensions.pipelining and conn.extensions.max_size is None


def test_without_pipelining_one_command_at_a_time() -> None:
    conn = ready("SIZE 100")
    conn.send(Mail("a@example.org"))
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send(Rcpt("b@example.org"))
    assert conn.pending == 1
    one_reply(conn, b"250 ok\r\n")
    assert conn.send(Rcpt("b@example.org")) == b"RCPT TO:<b@example.org>\r\n"


def test_pipelined_group_and_replies_in_order() -> None:
    conn = ready("PIPELINING")
    commands: list[Command] = [
        Mail("a@example.org"),
        Rcpt("b@example.org"),
        Rcpt("c@example.org"),
        Data(),
    ]
    wire = b"".join(conn.send(command) for command in commands)
    assert wire == (
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
        b"RCPT TO:<c@example.org>\r\nDATA\r\n"
    )
    assert conn.pending == 4
    assert conn.pending_commands == tuple(commands)
    assert state(conn) is State.READY and conn.expected_state is State.RCPT
    # DATA ends the group (RFC 2920 §3.1).
    with pytest.raises(LocalProtocolError, match="DATA"):
        conn.send(Noop())
    replies = feed(conn, b"250 2.1.0 ok\r\n550 5.1.1 unknown\r\n250 2.1.5 ok\r\n354 go\r\n")
    assert [(r.code, r.command) for r in replies if isinstance(r, Reply)] == [
        (250, commands[0]),
        (550, commands[1]),
        (250, commands[2]),
        (354, commands[3]),
    ]
    assert state(conn) is State.DATA


@pytest.mark.parametrize("first", [Ehlo("client.example"), Noop(), Vrfy("x"), Quit()])
def test_group_enders(first: Command) -> None:
    conn = ready("PIPELINING")
    conn.send(first)
    with pytest.raises(LocalProtocolError):
        conn.send(Rset())


def test_rset_may_be_followed_in_a_group() -> None:
    conn = ready("PIPELINING")
    conn.send(Rset())
    conn.send(Mail("a@example.org"))
    conn.send(Rcpt("b@example.org"))
    assert conn.pending == 3


def test_out_of_order_commands() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    for command in (Rcpt("b@example.org"), Data(), Bdat(b"x"), AuthResponse(b"x")):
        with pytest.raises(LocalProtocolError):
            conn.send(command)
    conn.send(Mail("a@example.org"))
    with pytest.raises(LocalProtocolError):
        conn.send(Data())  # no RCPT yet
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@example.org"))  # nested MAIL


def test_invalid_argument_produces_nothing_and_changes_nothing() -> None:
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@example.org\r\nRCPT TO:<x@y.example>"))
    assert conn.pending == 0 and state(conn) is State.READY
    assert conn.expected_state is State.READY
    conn.send(Mail("a@example.org"))


def test_end_of_data_cannot_be_sent_as_a_command() -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.send(EndOfData())


def data_state(*keywords: str) -> ClientConnection:
    conn = ready(*keywords)
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Rcpt("b@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Data())
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"too early")
    one_reply(conn, b"354 go ahead\r\n")
    return conn


def test_data_transfer() -> None:
    conn = data_state()
    wire = conn.send_data(b"Subject: x\n\n.leading dot\r") + conn.send_data(b"\nlast line")
    wire += conn.end_data()
    assert wire == b"Subject: x\r\n\r\n..leading dot\r\nlast line\r\n.\r\n"
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"more")
    with pytest.raises(LocalProtocolError):
        conn.end_data()
    reply = one_reply(conn, b"250 2.0.0 queued as ABC\r\n")
    assert reply.command == EndOfData()
    assert reply.enhanced_status == "2.0.0"
    assert state(conn) is State.READY


def test_no_commands_during_data() -> None:
    conn = data_state("PIPELINING")
    with pytest.raises(LocalProtocolError):
        conn.send(Rset())


def test_all_recipients_refused_then_354_sends_only_the_terminator() -> None:
    conn = ready("PIPELINING")
    for command in (Mail("a@example.org"), Rcpt("b@example.org"), Data()):
        conn.send(command)
    feed(conn, b"250 ok\r\n550 no\r\n354 go\r\n")
    assert state(conn) is State.DATA
    assert conn.end_data() == b".\r\n"


def test_data_refused() -> None:
    conn = ready()
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Rcpt("b@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Data())
    one_reply(conn, b"554 no valid recipients\r\n")
    assert state(conn) is State.RCPT
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")
    conn.send(Rset())
    one_reply(conn, b"250 ok\r\n")
    assert state(conn) is State.READY


def test_bdat() -> None:
    conn = ready("PIPELINING", "CHUNKING", "BINARYMIME")
    conn.send(Mail("a@example.org", body="BINARYMIME"))
    conn.send(Rcpt("b@example.org"))
    with pytest.raises(LocalProtocolError, match="BINARYMIME"):
        conn.send(Data())
    chunk = b"line\r\n.dot\x00binary"
    assert conn.send(Bdat(chunk)) == b"BDAT 17\r\n" + chunk
    assert conn.send(Bdat(memoryview(b"end"), last=True)) == b"BDAT 3 LAST\r\nend"
    assert conn.expected_state is State.READY
    replies = feed(conn, b"250 ok\r\n250 ok\r\n250 2.0.0 1 octets\r\n250 2.0.0 queued\r\n")
    assert [r.command.verb for r in replies if isinstance(r, Reply) and r.command] == [
        "MAIL",
        "RCPT",
        "BDAT",
        "BDAT",
    ]
    assert state(conn) is State.READY


def test_failed_bdat_stops_the_chunks() -> None:
    conn = ready("CHUNKING")
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Rcpt("b@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Bdat(b"x"))
    one_reply(conn, b"552 too big\r\n")
    # RFC 3030 §2: no more BDAT after a failure.
    with pytest.raises(LocalProtocolError):
        conn.send(Bdat(b"y", last=True))
    conn.send(Rset())


@pytest.mark.parametrize(
    ("command", "keyword"),
    [
        (StartTls(), "STARTTLS"),
        (Auth("PLAIN", b"\0a\0b"), "AUTH"),
        (Mail("a@example.org", size=10), "SIZE"),
        (Mail("a@example.org", body="8BITMIME"), "8BITMIME"),
        (Mail("a@example.org", body="BINARYMIME"), "BINARYMIME"),
        (Mail("a@example.org", smtputf8=True), "SMTPUTF8"),
        (Mail("a@example.org", ret="HDRS"), "DSN"),
        (Mail("a@example.org", envid="x"), "DSN"),
        (Mail("a@example.org", requiretls=True), "REQUIRETLS"),
    ],
)
def test_unadvertised_extensions_are_refused(command: Command, keyword: str) -> None:
    with pytest.raises(LocalProtocolError, match=keyword):
        ready("PIPELINING").send(command)
    assert ready(keyword).send(command)


def test_bdat_needs_chunking() -> None:
    conn = ready()
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Rcpt("b@example.org"))
    one_reply(conn, b"250 ok\r\n")
    with pytest.raises(LocalProtocolError, match="CHUNKING"):
        conn.send(Bdat(b"x", last=True))


def test_rcpt_dsn_needs_dsn() -> None:
    conn = ready("PIPELINING")
    conn.send(Mail("a@example.org"))
    with pytest.raises(LocalProtocolError, match="DSN"):
        conn.send(Rcpt("b@example.org", notify=("NEVER",)))


def test_smtputf8_transaction() -> None:
    conn = ready("PIPELINING", "SMTPUTF8")
    conn.send(Mail("a@example.org"))
    with pytest.raises(LocalProtocolError, match="ASCII"):
        conn.send(Rcpt("jörg@bücher.example"))
    conn.send(Rset())
    conn.send(Mail("jörg@bücher.example", smtputf8=True))
    assert conn.send(Rcpt("用户@例子.广告")) == "RCPT TO:<用户@例子.广告>\r\n".encode()


def test_starttls() -> None:
    conn = ready("STARTTLS", "PIPELINING", "AUTH PLAIN")
    start = StartTls()
    assert conn.send(start) == b"STARTTLS\r\n"
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())  # STARTTLS ends the group
    reply = one_reply(conn, b"220 2.0.0 go ahead\r\n")
    assert reply.command == start
    assert state(conn) is State.STARTTLS
    assert not conn.extensions.keywords  # forgotten (RFC 3207 §4.2)
    with pytest.raises(LocalProtocolError):
        conn.send(Ehlo("client.example"))  # not before the handshake
    assert conn.next_event() is NEED_DATA
    conn.start_tls()
    assert state(conn) is State.GREETED
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@example.org"))  # EHLO again first
    conn.send(Ehlo("client.example"))
    one_reply(conn, b"250-mx.example\r\n250 AUTH PLAIN LOGIN\r\n")
    assert conn.extensions.auth_mechanisms == {"PLAIN", "LOGIN"}


def test_start_tls_out_of_turn() -> None:
    with pytest.raises(LocalProtocolError):
        ready("STARTTLS").start_tls()


def test_starttls_refused() -> None:
    conn = ready("STARTTLS")
    conn.send(StartTls())
    one_reply(conn, b"454 TLS not available\r\n")
    assert state(conn) is State.READY
    assert conn.extensions.starttls


def test_starttls_response_injection_in_same_read() -> None:
    conn = ready("STARTTLS")
    conn.send(StartTls())
    conn.receive_data(b"220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
    with pytest.raises(RemoteProtocolError, match="injection"):
        conn.next_event()
    assert state(conn) is State.ERROR


def test_starttls_response_injection_in_later_read() -> None:
    conn = ready("STARTTLS")
    conn.send(StartTls())
    one_reply(conn, b"220 go ahead\r\n")
    conn.receive_data(b"2")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert state(conn) is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.start_tls()


def test_auth_rounds() -> None:
    conn = ready("AUTH LOGIN")
    auth = Auth("LOGIN")
    conn.send(auth)
    assert one_reply(conn, b"334 VXNlcm5hbWU6\r\n").command == auth
    assert state(conn) is State.AUTH
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@example.org"))
    assert conn.send(AuthResponse(b"user")) == b"dXNlcg==\r\n"
    one_reply(conn, b"334 UGFzc3dvcmQ6\r\n")
    conn.send(AuthResponse(b"password"))
    reply = one_reply(conn, b"235 2.7.0 Authentication successful\r\n")
    assert reply.command == AuthResponse(b"password")
    assert state(conn) is State.READY


def test_auth_failure_and_cancel() -> None:
    conn = ready("AUTH PLAIN LOGIN")
    conn.send(Auth("PLAIN", b"\0u\0bad"))
    one_reply(conn, b"535 5.7.8 bad credentials\r\n")
    assert state(conn) is State.READY
    conn.send(Auth("LOGIN"))
    one_reply(conn, b"334 VXNlcm5hbWU6\r\n")
    assert conn.send(AuthResponse(cancel=True)) == b"*\r\n"
    one_reply(conn, b"501 cancelled\r\n")
    assert state(conn) is State.READY


def test_reply_with_nothing_pending_is_remote_error() -> None:
    conn = ready()
    conn.receive_data(b"250 surprise\r\n")
    with pytest.raises(RemoteProtocolError, match="no command pending"):
        conn.next_event()
    assert state(conn) is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())
    with pytest.raises(LocalProtocolError):
        conn.next_event()


def test_extra_reply_after_the_expected_one() -> None:
    conn = ready()
    conn.send(Noop())
    conn.receive_data(b"250 ok\r\n250 extra\r\n")
    assert isinstance(conn.next_event(), Reply)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_unsolicited_421() -> None:
    conn = ready()
    (reply,) = feed(conn, b"421 4.4.2 idle timeout\r\n")[:1]
    assert isinstance(reply, Reply)
    assert (reply.code, reply.command) == (421, None)
    assert state(conn) is State.CLOSED
    assert isinstance(conn.next_event(), ConnectionClosed)
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())


def test_421_answering_a_pipelined_command_closes() -> None:
    conn = ready("PIPELINING")
    mail = Mail("a@example.org")
    conn.send(mail)
    conn.send(Rcpt("b@example.org"))
    events = feed(conn, b"421 shutting down\r\n")
    assert isinstance(events[0], Reply) and events[0].command == mail
    assert isinstance(events[1], ConnectionClosed)
    assert state(conn) is State.CLOSED and conn.pending == 0


def test_malformed_reply_enters_error() -> None:
    conn = ready()
    conn.send(Noop())
    conn.receive_data(b"OK\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert state(conn) is State.ERROR


def test_unexpected_reply_class_is_remote_error() -> None:
    conn = ready()
    conn.send(Mail("a@example.org"))
    conn.receive_data(b"354 go ahead\r\n")  # 354 does not answer MAIL
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert state(conn) is State.ERROR


def test_eof_with_commands_pending() -> None:
    conn = ready("PIPELINING")
    conn.send(Mail("a@example.org"))
    conn.send(Rcpt("b@example.org"))
    events = feed(conn, b"250 ok\r\n250 partial repl")
    assert len(events) == 1
    events = feed(conn, b"")
    assert events == [ConnectionClosed()]
    assert state(conn) is State.CLOSED
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_eof_after_end_of_data_is_reported() -> None:
    # The driver turns this into SmtpDeliveryUnknownError: the data was sent.
    conn = data_state()
    conn.end_data()
    assert conn.pending_commands == (EndOfData(),)
    assert feed(conn, b"") == [ConnectionClosed()]


def test_data_after_eof_is_refused() -> None:
    conn = ClientConnection()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"220 hi\r\n")


def test_quit() -> None:
    conn = ready()
    conn.send(Quit())
    reply, closed = feed(conn, b"221 2.0.0 bye\r\n")
    assert isinstance(reply, Reply) and reply.command == Quit()
    assert state(conn) is State.CLOSED
    assert closed == ConnectionClosed()
    assert isinstance(conn.next_event(), ConnectionClosed)
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())


def test_send_failed_enters_error() -> None:
    conn = ready("PIPELINING")
    conn.send(Mail("a@example.org"))
    conn.send_failed()
    assert state(conn) is State.ERROR and conn.pending == 0
    with pytest.raises(LocalProtocolError):
        conn.send(Rset())
    with pytest.raises(LocalProtocolError):
        conn.next_event()


def test_send_failed_during_data() -> None:
    conn = data_state()
    conn.send_data(b"part of the message")
    conn.send_failed()
    with pytest.raises(LocalProtocolError):
        conn.end_data()  # the terminator is never produced after a failed write


def test_vrfy_and_noop_leave_the_transaction_alone() -> None:
    conn = ready()
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    conn.send(Vrfy("postmaster"))
    one_reply(conn, b"252 cannot verify\r\n")
    conn.send(Noop())
    one_reply(conn, b"250 ok\r\n")
    assert state(conn) is State.MAIL


def test_custom_limits_apply() -> None:
    conn = ClientConnection(limits=ReplyLimits(max_line_length=16))
    conn.receive_data(b"220 " + b"x" * 20 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# -- encoded commands are kept for equal commands ------------------------------------------


def test_equal_commands_on_many_connections_encode_alike() -> None:
    # The second connection gets the kept bytes; they must be what a fresh encode gives,
    # whatever SMTPUTF8 state each transaction is in.
    for _ in range(2):
        conn = ready("PIPELINING", "SMTPUTF8", "SIZE")
        assert conn.send(Mail("a@example.org", size=10)) == (
            b"MAIL FROM:<a@example.org> SIZE=10\r\n"
        )
        assert conn.send(Rcpt("b@example.net")) == b"RCPT TO:<b@example.net>\r\n"


def test_an_invalid_command_is_refused_every_time() -> None:
    conn = ready("PIPELINING")
    for _ in range(3):
        with pytest.raises(LocalProtocolError):
            conn.send(Mail("bad address@example.org"))
    assert conn.pending == 0


def test_a_non_ascii_recipient_needs_smtputf8_in_each_transaction() -> None:
    # Kept bytes depend on the transaction's SMTPUTF8 state, not only on the command.
    conn = ready("SMTPUTF8")
    conn.send(Mail("a@example.org", smtputf8=True))
    one_reply(conn, b"250 ok\r\n")
    assert conn.send(Rcpt("jöran@example.net")) == "RCPT TO:<jöran@example.net>\r\n".encode()
    one_reply(conn, b"250 ok\r\n")
    conn.send(Rset())
    one_reply(conn, b"250 ok\r\n")
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(Rcpt("jöran@example.net"))


def test_unhashable_parameters_still_encode() -> None:
    conn = ready("DSN")
    conn.send(Mail("a@example.org"))
    one_reply(conn, b"250 ok\r\n")
    rcpt = Rcpt("b@example.net", notify=["SUCCESS", "FAILURE"])  # type: ignore[arg-type]
    assert conn.send(rcpt) == b"RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE\r\n"


# --- Commands the connection refuses -------------------------------------------------------


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


# --- STARTTLS, 421, the error state, HELO fallback, bounded replies ------------------------


def drain(conn: ClientConnection) -> list[Reply | ConnectionClosed]:
    events: list[Reply | ConnectionClosed] = []
    while not isinstance(event := conn.next_event(), NeedData):
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


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
