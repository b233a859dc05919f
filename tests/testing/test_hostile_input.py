"""Hostile bytes cost a session a 5xx, never the server (issue 10, item 11).

The fuzz tests throw arbitrary bytes at every command and at every step of every SASL
mechanism the server speaks, over an in-memory stream (fast, and any exception from the
session is re-raised by ``serve_stream``), then check the same server still serves a clean
session.  The TCP tests check the structural guarantee: whatever a handler does, the server
keeps accepting.
"""

from __future__ import annotations

import base64

import trio
import trio.testing
from helpers.raw_client import RawClient, send_mail, start_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_smtp.testing import ALL_MECHANISMS, Handover, SmtpServer
from trio_smtp.testing._auth import make_mechanism

CREDENTIALS = {"user": "password", "ünï": "pässwörd"}


async def test_cram_md5_with_a_non_ascii_digest_is_535_not_a_crash() -> None:
    async with SmtpServer(tls="none", credentials=CREDENTIALS) as server:
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await client.command(b"AUTH CRAM-MD5\r\n")).code == 334
        response = base64.b64encode("user ±±±±±±±±±±±±±±±±±±±±±±±±±±±±±±±±".encode())
        assert (await client.command(response + b"\r\n")).code == 535
        # The session goes on: the same connection can still send mail.
        assert (await send_mail(client)).code == 250
        await client.aclose()
    assert server.crashes == []


# -- fuzzing over a memory stream ----------------------------------------------------------

_VERBS = [b"EHLO", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT", b"RSET", b"NOOP"]
_VERBS += [b"VRFY", b"QUIT", b"STARTTLS", b"AUTH", b"XYZZY", b""]


async def _hostile_then_clean(server: SmtpServer, lines: list[bytes]) -> None:
    """Play ``lines`` to one session, then check the server still serves a clean one."""
    with trio.fail_after(30):
        await _exchange(server, lines)
        clean = [b"EHLO clean.test\r\n", b"MAIL FROM:<a@example.org>\r\n"]
        clean += [b"RCPT TO:<b@example.org>\r\n", b"DATA\r\n", b"Subject: ok\r\n\r\n.\r\n"]
        await _exchange(server, clean)
    assert server.crashes == []
    assert server.messages[-1].accepted and server.messages[-1].data == b"Subject: ok\r\n\r\n"


async def _exchange(server: SmtpServer, lines: list[bytes]) -> None:
    """Play ``lines`` to a fresh session (reading every reply), then QUIT."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_stream)  # re-raises a crash

        async def drain() -> None:
            while await client_stream.receive_some(65536):
                pass

        nursery.start_soon(drain)
        for line in [*lines, b"QUIT\r\n"]:
            try:
                await client_stream.send_all(line)
            except trio.BrokenResourceError:
                break  # the session ended (421, QUIT): what matters is that it did not crash
        await client_stream.send_eof()


# Raw bytes, and UTF-8 text (random bytes are rarely valid UTF-8 beyond ASCII).
_bytes = st.one_of(st.binary(max_size=80), st.text(max_size=40).map(str.encode))
_line = st.builds(lambda verb, arg, end: verb + b" " + arg + end, st.sampled_from(_VERBS),
                  _bytes, st.sampled_from([b"\r\n", b"\n", b"\r", b""]))  # fmt: skip
# An AUTH response: arbitrary bytes after a known user name (the CRAM-MD5 crash needed one)
# or none, base64-encoded as a client would, or raw.
_response = st.builds(
    lambda user, data, encode: base64.b64encode(user + data) if encode else user + data,
    st.sampled_from([b"", b"user ", "ünï ".encode()]), _bytes, st.booleans(),
)  # fmt: skip
_prefix = [b"EHLO fuzz.test\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_line, max_size=8), start=st.integers(0, 3))
async def test_arbitrary_bytes_in_any_command_never_crash_the_server(
    lines: list[bytes], start: int
) -> None:
    server = SmtpServer(tls="none", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS)
    await _hostile_then_clean(server, _prefix[:start] + lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mechanism=st.sampled_from(ALL_MECHANISMS),
    initial=st.one_of(st.none(), _bytes),
    responses=st.lists(_response, max_size=4),
)
async def test_arbitrary_auth_exchanges_never_crash_the_server(
    mechanism: str, initial: bytes | None, responses: list[bytes]
) -> None:
    server = SmtpServer(tls="none", credentials=CREDENTIALS, auth_mechanisms=ALL_MECHANISMS)
    command = b"AUTH " + mechanism.encode()
    if initial is not None:
        command += b" " + (base64.b64encode(initial) or b"=")
    lines = [b"EHLO fuzz.test\r\n", command + b"\r\n", *(r + b"\r\n" for r in responses)]
    await _hostile_then_clean(server, lines)


@settings(max_examples=300, deadline=None)
@given(mechanism=st.sampled_from(ALL_MECHANISMS), responses=st.lists(_bytes, max_size=4))
def test_every_mechanism_step_takes_any_bytes(mechanism: str, responses: list[bytes]) -> None:
    # Sans-IO: each step() returns a Challenge, Success or Failure, never raises.  With a
    # known user in the response (the CRAM-MD5 crash needed one), and without.
    for user in (b"user ", b"\xc3\xbcn\xc3\xaf ", b""):
        state = make_mechanism(mechanism, CREDENTIALS, "localhost")
        assert state is not None
        state.step(None)
        for response in responses:
            state.step(user + response)


# -- over TCP: the server keeps serving ---------------------------------------------------


async def _crash(stream: trio.abc.Stream, pending: bytes) -> None:
    raise RuntimeError("a handler bug")


async def test_a_crashing_handler_costs_its_connection_and_the_server_keeps_serving() -> None:
    server = SmtpServer(tls="none", fail_on_crash=False)
    server.on("NOOP", Handover(_crash))
    async with server:
        for _ in range(3):
            client = await RawClient.connect(server.host, server.port)
            await start_session(client)
            await client.send(b"NOOP\r\n")
            assert await client.read_until_closed() == b""
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await send_mail(client)).code == 250
        await client.aclose()
        await server.wait_for_message()  # does not raise: crashes are counted, not fatal
        assert server.statistics().crashes == 3
    assert len(server.crashes) == 3  # kept for inspection, and nothing raised at exit
