"""Audit of issue 3: idle clients, slow clients, each extension switched off, records."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_smtp.testing import SmtpServer
from trio_smtp.testing._config import ALL_EXTENSIONS

from .helpers import RawClient, start_session

# RFC 5321 §4.5.3.2.7: the server's timeout is at least 5 minutes.
IDLE = 300.0


async def test_a_silent_client_gets_421_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = SmtpServer(tls="none")
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = RawClient(client_stream)
    # fail_after: without the idle timeout this fails instead of hanging.
    with trio.fail_after(10 * IDLE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_stream)
            assert (await client.reply()).code == 220
            start = trio.current_time()
            reply = await client.reply()
            assert reply.code == 421 and "timeout" in reply.text
            assert trio.current_time() - start == pytest.approx(IDLE)
            assert await client.read_until_closed() == b""
    record = server.connections[0]
    assert record.close_reason == "timeout" and record.closed
    assert [r.code for r in record.unsolicited] == [220, 421]


async def test_a_client_dripping_one_byte_per_second_is_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Slowloris: every read brings a byte, but the whole line has one deadline.
    server = SmtpServer(tls="none")
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = RawClient(client_stream)

    async def drip() -> None:
        for _ in range(10_000):
            await client.send(b"N")
            await trio.sleep(1)

    # fail_after: without the idle timeout this fails instead of hanging.
    with trio.fail_after(10 * IDLE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_stream)
            await start_session(client)
            start = trio.current_time()
            nursery.start_soon(drip)
            reply = await client.reply()
            assert reply.code == 421
            assert trio.current_time() - start <= IDLE + 1
            nursery.cancel_scope.cancel()
    assert server.connections[0].close_reason == "timeout"


async def test_a_client_stalling_in_data_is_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = SmtpServer(tls="none", idle_timeout=60)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = RawClient(client_stream)
    # fail_after: without the idle timeout this fails instead of hanging.
    with trio.fail_after(10 * IDLE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_stream)
            await start_session(client)
            assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
            assert (await client.command(b"RCPT TO:<b@example.org>\r\n")).code == 250
            assert (await client.command(b"DATA\r\n")).code == 354
            await client.send(b"Subject: half a message\r\n")
            start = trio.current_time()
            assert (await client.reply()).code == 421
            assert trio.current_time() - start == pytest.approx(60)
    assert server.connections[0].close_reason == "timeout"
    assert server.messages == []  # a message cut short is never recorded


async def test_a_client_that_never_starts_the_tls_handshake_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = SmtpServer(tls="implicit", idle_timeout=30)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    # fail_after: without the idle timeout this fails instead of hanging.
    with trio.fail_after(10 * IDLE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_stream)
            start = trio.current_time()
            # The server speaks first in TLS (nothing) and waits for our ClientHello.
            while await client_stream.receive_some(65536):
                pass
            assert trio.current_time() - start == pytest.approx(30)
    assert server.connections[0].close_reason == "timeout"


async def test_idle_timeout_none_waits_until_the_server_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = SmtpServer(tls="none", idle_timeout=None)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        client = await RawClient.connect(server.host, server.port)
        assert (await client.reply()).code == 220
        await trio.sleep(24 * 3600)
        assert not server.connections[0].closed
        await server.aclose()
        assert await client.read_until_closed() == b""
        await client.aclose()
    assert server.connections[0].close_reason == "server"


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        SmtpServer(tls="none", idle_timeout=0)


async def test_aclose_is_prompt_with_a_silent_client_and_one_mid_handshake() -> None:
    server = SmtpServer(tls="implicit")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        silent = await trio.open_tcp_stream(server.host, server.port)
        half = await trio.open_tcp_stream(server.host, server.port)
        await half.send_all(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        await server.wait_for(lambda: len(server.connections) == 2)
        with trio.fail_after(10):  # generous: it is immediate
            await server.aclose()
        assert all(record.closed for record in server.connections)
        await silent.aclose()
        await half.aclose()
    assert [r.close_reason for r in server.connections] == ["server", "server"]


# Each extension, switched off: not advertised, and its use refused as a strict MTA does.
_USES = {
    "SIZE": (b"MAIL FROM:<a@example.org> SIZE=10", 555),
    "8BITMIME": (b"MAIL FROM:<a@example.org> BODY=8BITMIME", 555),
    "BINARYMIME": (b"MAIL FROM:<a@example.org> BODY=BINARYMIME", 555),
    "SMTPUTF8": (b"MAIL FROM:<a@example.org> SMTPUTF8", 555),
    "DSN": (b"MAIL FROM:<a@example.org> RET=HDRS", 555),
    "STARTTLS": (b"STARTTLS", 502),
    "AUTH": (b"AUTH PLAIN AHVzZXIAcGFzc3dvcmQ=", 502),
}


@pytest.mark.parametrize("extension", sorted(_USES))
async def test_each_extension_can_be_switched_off(extension: str) -> None:
    line, code = _USES[extension]
    async with SmtpServer(credentials={"user": "password"}) as on:
        client = await RawClient.connect(on.host, on.port)
        ehlo = await start_session(client)
        assert any(text.split()[0] == extension for text in ehlo.lines[1:])
        assert (await client.command(line + b"\r\n")).code in (220, 235, 250)
        await client.aclose()
    async with SmtpServer(credentials={"user": "password"}, disable={extension}) as off:
        client = await RawClient.connect(off.host, off.port)
        ehlo = await start_session(client)
        assert all(text.split()[0] != extension for text in ehlo.lines[1:])
        assert (await client.command(line + b"\r\n")).code == code
        await client.aclose()


async def test_size_is_enforced_even_when_not_advertised() -> None:
    async with SmtpServer(tls="none", disable={"SIZE"}, max_message_size=100) as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
        assert (await client.command(b"RCPT TO:<b@example.org>\r\n")).code == 250
        assert (await client.command(b"DATA\r\n")).code == 354
        assert (await client.command(b"x" * 80 + b"\r\n" + b"y" * 80 + b"\r\n.\r\n")).code == 552
        await client.aclose()


@pytest.mark.parametrize(
    ("setup", "line", "code"),
    [
        (b"", "MAIL FROM:<a@example.org> SIZE=\u00b2", 501),
        (b"", "MAIL FROM:<a@example.org> SIZE=\u0661\u0660", 501),
        (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n", "BDAT \u00b2 LAST", 501),
        (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n", "BDAT \u0661 LAST", 501),
    ],
    ids=["size-superscript", "size-arabic", "bdat-superscript", "bdat-arabic"],
)
async def test_non_ascii_digits_are_a_syntax_error_not_a_crash(
    setup: bytes, line: str, code: int
) -> None:
    async with SmtpServer(tls="none") as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        for command in setup.splitlines(keepends=True):
            assert (await client.command(command)).code == 250
        assert (await client.command(line.encode() + b"\r\n")).code == code
        assert (await client.command(b"NOOP\r\n")).code == 250  # still in step
        await client.aclose()
        await server.wait_for_connection_closed()
    assert server.crashes == []


def test_every_switchable_extension_is_covered_here() -> None:
    # PIPELINING, CHUNKING and ENHANCEDSTATUSCODES: test_rules; REQUIRETLS: below.
    others = {"PIPELINING", "CHUNKING", "ENHANCEDSTATUSCODES", "REQUIRETLS"}
    assert set(_USES) | others == ALL_EXTENSIONS


async def _ehlo_and_mail_requiretls(server: SmtpServer, *, tls: bool) -> tuple[bool, int]:
    client = await RawClient.connect(server.host, server.port)
    await start_session(client)
    if tls:
        assert (await client.command(b"STARTTLS\r\n")).code == 220
        await client.starttls(server.ssl_context)
    ehlo = await client.command(b"EHLO client.test\r\n")
    reply = await client.command(b"MAIL FROM:<a@example.org> REQUIRETLS\r\n")
    await client.aclose()
    return "REQUIRETLS" in ehlo.lines, reply.code


async def test_requiretls_only_over_tls_and_can_be_switched_off() -> None:
    async with SmtpServer() as server:
        # RFC 8689 §4: not offered, so not accepted, before TLS.
        assert await _ehlo_and_mail_requiretls(server, tls=False) == (False, 555)
        assert await _ehlo_and_mail_requiretls(server, tls=True) == (True, 250)
    async with SmtpServer(disable={"REQUIRETLS"}) as server:
        assert await _ehlo_and_mail_requiretls(server, tls=True) == (False, 555)


async def test_the_too_many_errors_421_is_recorded() -> None:
    async with SmtpServer(tls="none") as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        await client.send(b"XYZZY\r\n" * 20)
        codes = [(await client.reply()).code for _ in range(21)]
        assert codes == [500] * 20 + [421]
        assert await client.read_until_closed() == b""
        await client.aclose()
        record = await server.wait_for_connection_closed()
    assert record.close_reason == "errors"
    assert [reply.code for reply in record.unsolicited] == [220, 421]
    assert all(c.reply is not None and c.reply.code == 500 for c in record.commands[1:])


async def test_a_noop_flood_ends_with_421_so_records_stay_bounded() -> None:
    async with SmtpServer(tls="none") as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)  # EHLO is the first junk command
        await client.send(b"NOOP\r\n" * 1000)
        with trio.fail_after(30):  # generous: without the limit it would never close
            data = await client.read_until_closed()
        await client.aclose()
        record = await server.wait_for_connection_closed()
    # 99 more within the limit, then 20 counted as errors; the rest never read.
    assert data.count(b"250 2.0.0 Ok\r\n") == 99 + 20
    assert data.endswith(b"Error: too many errors\r\n")
    assert record.close_reason == "errors"
    assert len(record.commands) == 1 + 99 + 20


async def test_junk_commands_within_the_limit_are_harmless() -> None:
    async with SmtpServer(tls="none") as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        for _ in range(99):
            assert (await client.command(b"RSET\r\n")).code == 250
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
        await client.aclose()
        record = await server.wait_for_connection_closed()
    assert record.close_reason == "peer"


@pytest.mark.parametrize(
    ("setup", "line", "code"),
    [
        (b"", b"AUTH PLAIN AHVzZXIAd3Jvbmc=", 535),  # password guessing
        (b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<no at sign>", 553),
        (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n", b"RCPT TO:<b@x.org>", 452),
    ],
    ids=["auth", "bad-address", "too-many-recipients"],
)
async def test_a_flood_of_refused_commands_ends_with_421(
    setup: bytes, line: bytes, code: int
) -> None:
    async with SmtpServer(credentials={"user": "password"}, max_recipients=1) as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        for command in setup.splitlines(keepends=True):
            assert (await client.command(command)).code == 250
        await client.send((line + b"\r\n") * 1000)
        replies = [await client.reply() for _ in range(21)]
        assert [r.code for r in replies] == [code] * 20 + [421]
        with trio.fail_after(30):
            assert await client.read_until_closed() == b""
        await client.aclose()
        record = await server.wait_for_connection_closed()
    assert record.close_reason == "errors"
    assert len(record.commands) < 30
