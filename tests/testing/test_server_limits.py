"""A long-running testing server stays bounded and keeps serving: idle, slow and flooding
clients are cut off with 421, every extension can be switched off (and SIZE is enforced even
then).

Sessions at once, message size while reading, records kept; the accept loop survives
running out of file descriptors (in a child process with a low RLIMIT_NOFILE, so the limit
of the test process is never touched).
"""

from __future__ import annotations

import functools
import io
import smtplib
import subprocess
import sys
import tracemalloc
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from helpers.raw_client import RawClient, send_mail, start_session

from trio_smtp._cli.main import build_parser
from trio_smtp._cli.serve import serve
from trio_smtp.testing import SmtpServer
from trio_smtp.testing._config import ALL_EXTENSIONS

LIMIT = 1024 * 1024


async def _peak_while(work: Callable[[], Awaitable[None]]) -> int:
    """Peak memory traced (bytes) while ``work`` runs; tracemalloc is left as it was."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        await work()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


async def _send_repeated(client: RawClient, piece: bytes, total: int) -> None:
    for _ in range(total // len(piece)):
        await client.send(piece)


@pytest.mark.parametrize("line", [b"x" * 78 + b"\r\n", b"..\r\n"], ids=["text", "dots"])
async def test_data_over_the_limit_is_552_without_holding_more_than_the_limit(
    line: bytes,
) -> None:
    async with SmtpServer(tls="none", max_message_size=LIMIT) as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        for command in (b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>", b"DATA"):
            assert (await client.command(command + b"\r\n")).code in (250, 354)
        piece = line * (65536 // len(line))
        # 8 MiB over a 1 MiB limit.
        peak = await _peak_while(functools.partial(_send_repeated, client, piece, 8 * LIMIT))
        reply = await client.command(b".\r\n")
        assert reply.code == 552
        assert (await send_mail(client)).code == 250  # in step: the session goes on
        await client.aclose()
    # The old server held twice the limit before giving up (2.36 MB here); now 1.26 MB for
    # text and 1.54 MB for "." lines (a third more, plus reads of 64 KiB in flight).
    assert peak < 1.8 * LIMIT, peak
    assert [m.accepted for m in server.messages] == [False, True]


async def test_data_at_the_limit_after_unstuffing_is_accepted() -> None:
    # The limit counts the message, not the stuffed dots on the wire.
    body = b"..\r\n" * (LIMIT // 3)  # LIMIT // 3 lines of "." once unstuffed: 3 octets each
    async with SmtpServer(tls="none", max_message_size=len(body) * 3 // 4) as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await send_mail(client, body)).code == 250
        await client.aclose()
    assert server.messages[0].data == b".\r\n" * (LIMIT // 3)


async def test_a_bdat_chunk_over_the_limit_is_552_without_being_held() -> None:
    async with SmtpServer(tls="none", max_message_size=LIMIT) as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
        assert (await client.command(b"RCPT TO:<b@example.org>\r\n")).code == 250
        await client.send(b"BDAT %d LAST\r\n" % (8 * LIMIT))
        piece = b"x" * 65536
        peak = await _peak_while(functools.partial(_send_repeated, client, piece, 8 * LIMIT))
        assert (await client.reply()).code == 552
        assert (await send_mail(client)).code == 250
        await client.aclose()
    assert peak < LIMIT // 2, peak


async def test_records_kept_are_the_most_recent_and_statistics_count_all() -> None:
    server = SmtpServer(
        tls="none", max_kept_messages=3, max_kept_connections=2, max_kept_commands=5
    )
    async with server:
        for _ in range(4):
            client = await RawClient.connect(server.host, server.port)
            await start_session(client)
            for _ in range(2):
                assert (await send_mail(client)).code == 250
            await client.command(b"QUIT\r\n")
            await client.aclose()
        last = await server.wait_for_message(8)
        with pytest.raises(LookupError, match="message 1 is no longer kept"):
            await server.wait_for_message(1)
        closed = await server.wait_for_connection_closed(4)
        with pytest.raises(LookupError):
            await server.wait_for_connection_closed(1)
    assert len(server.messages) == 3 and server.messages[-1] is last
    assert [c.number for c in server.connections] == [3, 4] and closed.number == 4
    assert all(len(c.commands) == 5 and len(c.messages) <= 3 for c in server.connections)
    assert closed.verbs == ["DATA", "MAIL", "RCPT", "DATA", "QUIT"]  # the last 5 of 8
    assert last.reply is not None and "queued as 4.2" in last.reply.text  # ids never repeat
    stats = server.statistics()
    assert (stats.connections, stats.messages, stats.crashes) == (4, 8, 0)
    assert stats.open_connections == 0


async def test_a_client_pipelining_for_long_leaves_bounded_records_behind() -> None:
    # One connection, 3,000 messages pipelined in large writes while its replies are
    # drained: what stays in memory afterwards does not grow with the session's length.
    transaction = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    transaction += b"Subject: t\r\n\r\n" + b"x" * 200 + b"\r\n.\r\n"
    server = SmtpServer(tls="none", max_kept_messages=10, max_kept_commands=10)

    async def session() -> None:
        client = await RawClient.connect(server.host, server.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read_until_closed)
            await client.send(b"EHLO client.test\r\n")
            for _ in range(100):
                await client.send(transaction * 30)
            await client.send(b"QUIT\r\n")
        await server.wait_for_connection_closed(1)

    async with server:
        tracemalloc.start()
        try:
            await session()
            kept = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert server.statistics().messages == 3000
    assert len(server.messages) == 10 and len(server.connections[0].commands) == 10
    assert kept < 1024 * 1024, kept  # 0.2 MB; without the limits 7.5 MB, growing for ever


def test_limits_must_be_positive_or_none() -> None:
    for name in ("max_connections", "max_kept_messages", "max_kept_connections"):
        with pytest.raises(ValueError, match=name):
            SmtpServer(**{name: 0})  # type: ignore[arg-type]
    SmtpServer(tls="none", max_connections=None, max_kept_messages=None)


async def test_at_max_connections_new_clients_wait_until_a_session_ends() -> None:
    async with SmtpServer(tls="none", max_connections=2) as server:
        first = await RawClient.connect(server.host, server.port)
        second = await RawClient.connect(server.host, server.port)
        assert (await first.reply()).code == 220
        assert (await second.reply()).code == 220
        third = await RawClient.connect(server.host, server.port)  # in the backlog
        with trio.move_on_after(0.5) as waited:
            await third.reply()
        assert waited.cancelled_caught
        assert server.statistics().open_connections == 2
        await first.command(b"QUIT\r\n")
        await first.aclose()
        with trio.fail_after(10):
            assert (await third.reply()).code == 220
        for client in (second, third):
            await client.aclose()


# -- running out of file descriptors -------------------------------------------------------

_CHILD = """
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))  # this child process only
from trio_smtp._cli.main import main
sys.exit(main(sys.argv[1:]))
"""


async def _read_until(stream: trio.abc.ReceiveStream, marker: bytes, seen: bytearray) -> None:
    while marker not in seen:
        chunk = await stream.receive_some(65536)
        assert chunk, f"trio-smtp serve exited: {bytes(seen)!r}"
        seen += chunk


async def test_serve_survives_running_out_of_file_descriptors() -> None:
    command = [sys.executable, "-u", "-c", _CHILD, "serve", "--port", "0"]
    command += ["--max-connections", "0"]  # no session limit: let the flood reach EMFILE
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stdout is not None and process.stderr is not None
        out, err = bytearray(), bytearray()
        with trio.fail_after(30):
            await _read_until(process.stdout, b"\n", out)
        port = int(bytes(out).split(b"\n")[0].split()[2].rsplit(b":", 1)[1])
        flood = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(80)]
        with trio.fail_after(30):
            await _read_until(process.stderr, b"pausing until it succeeds", err)
        for stream in flood:
            await stream.aclose()

        def client() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.sendmail("x@example.org", ["y@example.org"], b"Subject: after\r\n\r\nhi\r\n")

        await trio.to_thread.run_sync(client)  # served again once the flood ended
        with trio.fail_after(30):
            await _read_until(process.stdout, b"Subject: after", out)
            await _read_until(process.stderr, b"accepting again after", err)
        assert process.returncode is None
        process.terminate()
        assert await process.wait() == 0


# -- the command line ----------------------------------------------------------------------


async def _crash(stream: trio.abc.Stream, pending: bytes) -> None:
    raise RuntimeError("a handler bug")


async def test_serve_logs_a_crashed_session_and_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from trio_smtp.testing import Handover

    args = build_parser().parse_args(["serve", "--port", "0", "--max-kept-messages", "5"])
    out = _Output()
    async with trio.open_nursery() as nursery:
        server: SmtpServer = await nursery.start(functools.partial(serve, args, {}, out=out))
        assert (server.config.max_kept_messages, server.config.max_connections) == (5, 100)
        server.on("NOOP", Handover(_crash), times=1)
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        await client.send(b"NOOP\r\n")
        assert await client.read_until_closed() == b""
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await send_mail(client)).code == 250
        await client.aclose()
        with trio.fail_after(10):
            await out.wait_for("=== message 1")
        nursery.cancel_scope.cancel()
    assert server.statistics().crashes == 1
    assert "connection 1" in caplog.text and "crashed" in caplog.text


class _Output(io.StringIO):
    """A text sink whose contents a test can wait on."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = trio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self._changed.set()
        self._changed = trio.Event()
        return written

    async def wait_for(self, marker: str) -> None:
        while marker not in self.getvalue():
            await self._changed.wait()


@pytest.mark.parametrize(
    "flag", ["--max-connections=-1", "--max-message-size=0", "--max-kept-messages=x"]
)
def test_serve_refuses_bad_limits(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve", flag])
    assert info.value.code == 2


# --- Idle and slow clients, switched-off extensions, error floods --------------------------


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
