"""The server's protocol rules: pipelining, BDAT, SIZE, strictness, records and waiting."""

from __future__ import annotations

import trio
import trio.testing
from helpers.raw_client import RawClient, send_mail, start_session

from trio_smtp.testing import SmtpServer


async def _connect(server: SmtpServer, helo: bytes = b"EHLO client.test\r\n") -> RawClient:
    client = await RawClient.connect(server.host, server.port)
    await start_session(client, helo)
    return client


async def _open_transaction(client: RawClient, mail: bytes = b"MAIL FROM:<a@example.org>") -> None:
    assert (await client.command(mail + b"\r\n")).code == 250
    assert (await client.command(b"RCPT TO:<b@example.org>\r\n")).code == 250


async def test_pipelined_batch_gets_its_replies_in_order_in_one_write() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        await client.send(
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
            b"RCPT TO:<bad address>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n"
        )
        data = await client.stream.receive_some(65536)
        assert data.count(b"\r\n") == 5  # all five replies in one segment
        client.parser.receive_data(bytes(data))
        codes = [(await client.reply()).code for _ in range(5)]
        assert codes == [250, 250, 553, 250, 354]
        assert (await client.command(b"x\r\n.\r\n")).code == 250
        await client.aclose()
        message = await server.wait_for_message()
    assert message.recipients == ["b@example.org", "c@example.org"]


async def test_bdat_chunks_are_joined_exactly() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        await _open_transaction(client, b"MAIL FROM:<a@example.org> BODY=BINARYMIME")
        first = b"Subject: b\r\n\r\nbare\nLF and .dot\r\n.\r\n"
        assert (await client.command(b"BDAT %d\r\n" % len(first) + first)).code == 250
        assert (await client.command(b"BDAT 4 LAST\r\n\x00\x01\r\n")).code == 250
        await client.aclose()
        message = await server.wait_for_message()
    assert message.transfer == "BDAT"
    assert message.data == first + b"\x00\x01\r\n"  # no un-stuffing, no line-end rules
    assert message.mail_params == {"BODY": "BINARYMIME"}


async def test_bdat_out_of_sequence_still_consumes_the_chunk() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        reply = await client.command(b"BDAT 10 LAST\r\nNOOP\r\nNOOP")
        assert reply.code == 503
        assert (await client.command(b"NOOP\r\n")).code == 250
        await client.aclose()


async def test_size_declared_over_limit_refused_at_mail() -> None:
    async with SmtpServer(tls="none", max_message_size=1000) as server:
        client = await _connect(server)
        ehlo = await client.command(b"EHLO again\r\n")
        assert "SIZE 1000" in ehlo.lines
        assert (await client.command(b"MAIL FROM:<a@example.org> SIZE=1001\r\n")).code == 552
        await client.aclose()


async def test_size_enforced_after_data_with_bounded_buffer() -> None:
    async with SmtpServer(tls="none", max_message_size=1000) as server:
        client = await _connect(server)
        await _open_transaction(client)
        assert (await client.command(b"DATA\r\n")).code == 354
        for _ in range(100):  # 100 kB through a server that keeps at most ~2 kB
            await client.send(b"x" * 998 + b"\r\n")
        reply = await client.command(b".\r\n")
        assert reply.code == 552
        assert reply.enhanced_status == "5.3.4"
        # The session is still in step.
        assert (await client.command(b"NOOP\r\n")).code == 250
        await client.aclose()
        message = await server.wait_for_message()
    assert not message.accepted and message.data == b""


async def test_bdat_over_size_is_552() -> None:
    async with SmtpServer(tls="none", max_message_size=10) as server:
        client = await _connect(server)
        await _open_transaction(client)
        assert (await client.command(b"BDAT 11 LAST\r\n" + b"y" * 11)).code == 552
        assert (await client.command(b"NOOP\r\n")).code == 250
        await client.aclose()


async def test_bare_lf_in_data_refused() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        reply = await send_mail(client, b"Subject: x\r\n\r\nline\nsmuggled\r\n")
        assert reply.code == 550
        assert "bare <LF>" in reply.text
        # Even a client that ends data with a bare-LF terminator stays in step.
        await _open_transaction(client)
        assert (await client.command(b"DATA\r\n")).code == 354
        assert (await client.command(b"x\n.\n")).code == 550
        assert (await client.command(b"NOOP\r\n")).code == 250
        await client.aclose()


async def test_bare_lf_command_and_long_lines_refused() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        assert (await client.command(b"NOOP\n")).code == 500
        assert (await client.command(b"NOOP " + b"a" * 600 + b"\r\n")).code == 500
        assert (await client.command(b"NOOP\r\n")).code == 250  # back in step
        reply = await send_mail(client, b"Subject: x\r\n\r\n" + b"z" * 999 + b"\r\n")
        assert reply.code == 554
        await client.aclose()


async def test_commands_out_of_order_are_503() -> None:
    async with SmtpServer(tls="none") as server:
        client = await RawClient.connect(server.host, server.port)
        await client.reply()
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 503
        await client.command(b"EHLO client.test\r\n")
        assert (await client.command(b"RCPT TO:<b@example.org>\r\n")).code == 503
        assert (await client.command(b"DATA\r\n")).code == 503
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 503
        assert (await client.command(b"DATA\r\n")).code == 554  # no valid recipients
        await client.aclose()


async def test_parameters_need_their_extension() -> None:
    async with SmtpServer(tls="none", disable={"SMTPUTF8", "DSN"}) as server:
        client = await _connect(server)
        assert (await client.command(b"MAIL FROM:<a@example.org> SMTPUTF8\r\n")).code == 555
        assert (await client.command(b"MAIL FROM:<a@example.org> RET=FULL\r\n")).code == 555
        assert (await client.command(b"MAIL FROM:<a@example.org> FOO=1\r\n")).code == 555
        reply = await client.command("MAIL FROM:<jöhn@example.org>\r\n".encode())
        assert reply.code == 553
        await client.aclose()


async def test_dsn_and_smtputf8_parameters_are_recorded() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        mail = "MAIL FROM:<jöhn@exämple.org> SMTPUTF8 RET=HDRS ENVID=abc+2B1".encode()
        await client.send(mail + b"\r\n")
        assert (await client.reply()).code == 250
        rcpt = b"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\r\n"
        assert (await client.command(rcpt)).code == 250
        assert (await client.command(b"DATA\r\n")).code == 354
        assert (await client.command(b"x\r\n.\r\n")).code == 250
        await client.aclose()
        message = await server.wait_for_message()
    assert message.sender == "jöhn@exämple.org"
    assert message.mail_params == {"SMTPUTF8": None, "RET": "HDRS", "ENVID": "abc+2B1"}
    assert message.rcpt_params["b@example.org"]["NOTIFY"] == "SUCCESS,FAILURE"


async def test_disabled_extensions_are_not_advertised_nor_accepted() -> None:
    async with SmtpServer(
        tls="none", disable={"CHUNKING", "PIPELINING", "ENHANCEDSTATUSCODES"}
    ) as server:
        client = await _connect(server)
        reply = await client.command(b"EHLO client.test\r\n")
        assert "CHUNKING" not in reply.lines and "PIPELINING" not in reply.lines
        assert (await client.command(b"NOOP\r\n")).text == "Ok"  # no enhanced code
        await _open_transaction(client)
        assert (await client.command(b"BDAT 1 LAST\r\nx")).code == 502
        await client.aclose()


async def test_helo_session_has_no_extensions_or_enhanced_codes() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server, b"HELO client.test\r\n")
        assert (await client.command(b"MAIL FROM:<a@example.org> SIZE=10\r\n")).code == 555
        assert (await client.command(b"NOOP\r\n")).enhanced_status is None
        await client.aclose()


async def test_require_tls_refuses_mail_and_hides_auth_before_starttls() -> None:
    async with SmtpServer(credentials={"u": "p"}, require_tls=True) as server:
        client = await RawClient.connect(server.host, server.port)
        ehlo = await start_session(client)
        assert not any(line.startswith("AUTH") for line in ehlo.lines)
        assert "STARTTLS" in ehlo.lines
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 530
        await client.aclose()


async def test_too_many_errors_ends_with_421() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        for _ in range(19):
            assert (await client.command(b"BOGUS\r\n")).code == 500
        assert (await client.command(b"BOGUS\r\n")).code == 500
        assert (await client.reply()).code == 421
        assert await client.read_until_closed() == b""
        await client.aclose()


async def test_records_raw_commands_and_replies() -> None:
    async with SmtpServer(tls="none") as server:
        client = await _connect(server)
        await client.command(b"vrfy someone\r\n")
        await client.command(b"RSET\r\n")
        await client.command(b"QUIT\r\n")
        record = await server.wait_for_connection_closed(1)
        await client.aclose()
    assert record.verbs == ["EHLO", "VRFY", "RSET", "QUIT"]
    vrfy = record.commands[1]
    assert vrfy.raw == b"vrfy someone\r\n" and vrfy.argument == "someone"
    assert vrfy.reply is not None and vrfy.reply.code == 252
    assert record.unsolicited[0].code == 220  # the greeting
    assert record.close_reason == "quit"


async def test_wait_for_the_nth_message_wakes_waiters_in_order() -> None:
    async with SmtpServer(tls="none") as server:
        got: dict[int, bytes] = {}

        async def waiter(n: int) -> None:
            got[n] = (await server.wait_for_message(n)).data

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, 3)
            nursery.start_soon(waiter, 1)
            client = await _connect(server)
            for i in range(3):
                await send_mail(client, b"n%d\r\n" % i)
            await client.aclose()
    assert got == {1: b"n0\r\n", 3: b"n2\r\n"}


async def test_serving_a_memory_stream() -> None:
    server = SmtpServer(tls="none")
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_stream)
        client = RawClient(client_stream)
        await start_session(client)
        await send_mail(client)
        await client.command(b"QUIT\r\n")
    assert server.messages[0].data == b"Subject: t\r\n\r\nhello\r\n"
    assert server.connections[0].peer is None


async def test_closing_the_server_ends_connections_and_tasks() -> None:
    server = SmtpServer(tls="none")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        client = await _connect(server)
        await server.aclose()
        # The server's nursery is gone: the client sees the connection end.
        assert await client.read_until_closed() == b""
        await client.aclose()
    assert server.connections[0].close_reason == "server"
    assert server.connections[0].closed
