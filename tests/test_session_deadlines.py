"""The session's handshake runs under one deadline scope, armed again at each step
(``open_session``): each step -- and connecting, and an implicit TLS handshake -- keeps its
own budget and its own name in a timeout, and the local waits between steps -- the OAuth 2.0
token, the host name lookup for EHLO -- are bounded by their own limits, never by what is
left of the step before them."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest
import trio
import trio.testing

from trio_smtp import (
    OAuth2,
    Security,
    SmtpAuthenticationError,
    SmtpClient,
    SmtpTimeoutError,
    Timeouts,
)
from trio_smtp._delivery import session as session_module
from trio_smtp.testing import Delay, Handover, SmtpServer

MakeMessage = Callable[..., EmailMessage]

#: Budgets that tell the steps apart in a timeout's text.
TIMEOUTS = Timeouts(connect=7, greeting=11, command=13, tls_handshake=17)


async def _stall_handshake(stream: trio.abc.Stream, _buffered: bytes) -> None:
    await stream.send_all(b"220 2.0.0 Ready to start TLS\r\n")
    await trio.sleep_forever()


def _client(server: SmtpServer, **kwargs: object) -> SmtpClient:
    options: dict[str, object] = {
        "security": Security.STARTTLS,
        "ssl_context": server.ssl_context,
        "credentials": ("user", "password"),
        "timeouts": TIMEOUTS,
        "local_hostname": "client.example.org",
    }
    options.update(kwargs)
    return SmtpClient(server.host, server.port, **options)  # type: ignore[arg-type]


def _after_tls(server: SmtpServer) -> Callable[[str], bool]:
    return lambda _argument: bool(server.connections[-1].tls_version)


@pytest.mark.parametrize(
    ("step", "budget", "what"),
    [
        ("GREETING", 11, "the greeting"),
        ("EHLO", 13, "EHLO"),
        ("STARTTLS", 13, "STARTTLS"),
        ("TLS_HANDSHAKE", 17, "the TLS handshake"),
        ("EHLO_AFTER_TLS", 13, "EHLO after STARTTLS"),
        ("AUTH", 13, "AUTH"),
    ],
)
async def test_each_step_times_out_with_its_own_budget_and_name(
    autojump_clock: trio.testing.MockClock,
    make_message: MakeMessage,
    step: str,
    budget: float,
    what: str,
) -> None:
    async with SmtpServer(credentials={"user": "password"}) as server:
        if step == "TLS_HANDSHAKE":
            server.on("STARTTLS", Handover(_stall_handshake), times=1)
        elif step == "EHLO_AFTER_TLS":
            server.on("EHLO", Delay(10_000), match=_after_tls(server), times=1)
        else:
            server.on(step, Delay(10_000), times=1)
        async with _client(server) as client:
            start = trio.current_time()
            with pytest.raises(SmtpTimeoutError, match=f"after {budget} s waiting for {what}$"):
                await client.send(make_message())
            assert trio.current_time() - start == pytest.approx(budget)
    assert not server.messages


async def test_every_step_has_its_whole_budget(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    """Each step just within its budget: the handshake takes far longer than any one."""
    async with SmtpServer(credentials={"user": "password"}) as server:
        server.on("GREETING", Delay(10))
        for verb in ("EHLO", "STARTTLS", "AUTH"):
            server.on(verb, Delay(12))
        async with _client(server) as client:
            start = trio.current_time()
            await client.send(make_message())
            assert trio.current_time() - start > 50
    assert len(server.messages) == 1


async def test_a_slow_oauth_token_is_not_charged_to_the_step_before(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    """EHLO after STARTTLS answered 10 s into its 13: the token may still take 12 s."""

    async def token() -> str:
        await trio.sleep(12)
        return "token"

    async with SmtpServer(credentials={"me@example.org": "token"}) as server:
        server.on("EHLO", Delay(10), match=_after_tls(server))
        credentials = OAuth2("me@example.org", token)
        async with _client(server, credentials=credentials) as client:
            await client.send(make_message())
    assert [c.auth_identity for c in server.connections] == ["me@example.org"]


async def test_a_slow_oauth_token_times_out_as_the_token(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    async def token() -> str:
        await trio.sleep(10_000)
        return "token"

    async with SmtpServer(credentials={"me@example.org": "token"}) as server:
        client = _client(server, credentials=OAuth2("me@example.org", token))
        async with client:
            with pytest.raises(SmtpAuthenticationError, match="13 s waiting for the OAuth2 token"):
                await client.send(make_message())
    assert "AUTH" not in server.connections[0].verbs


async def test_a_slow_host_name_lookup_is_not_charged_to_the_greeting(
    autojump_clock: trio.testing.MockClock,
    make_message: MakeMessage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The greeting came 10 s into its 11; the lookup before EHLO has its own 5 s."""

    async def slow_lookup(address: str | None = None) -> str:
        await trio.sleep(4)
        return "looked-up.example.org"

    monkeypatch.setattr(session_module, "local_fqdn", slow_lookup)
    async with SmtpServer(credentials={"user": "password"}) as server:
        server.on("GREETING", Delay(10))
        async with _client(server, local_hostname=None) as client:
            await client.send(make_message())
    assert server.connections[0].helo == "looked-up.example.org"


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.IMPLICIT_TLS])
async def test_connecting_times_out_with_its_own_budget(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage, security: Security
) -> None:
    async def never_connects() -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    client = SmtpClient(
        "mx.example.net", security=security, stream_factory=never_connects, timeouts=TIMEOUTS
    )
    async with client:
        start = trio.current_time()
        with pytest.raises(SmtpTimeoutError, match=r"after 7 s waiting for connecting$"):
            await client.send(make_message())
        assert trio.current_time() - start == pytest.approx(7)


async def test_an_implicit_tls_handshake_has_its_own_budget(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    """Connected at once, then a peer that never speaks TLS: the handshake's 17 s, not
    what is left of connecting's 7."""
    peers: list[trio.abc.Stream] = []

    async def silent_peer() -> trio.abc.Stream:
        ours, theirs = trio.testing.memory_stream_pair()
        peers.append(theirs)  # kept open, never read
        return ours

    client = SmtpClient(
        "mx.example.net",
        security=Security.IMPLICIT_TLS,
        stream_factory=silent_peer,
        timeouts=TIMEOUTS,
    )
    async with client:
        start = trio.current_time()
        with pytest.raises(SmtpTimeoutError, match=r"after 17 s waiting for the TLS handshake$"):
            await client.send(make_message())
        assert trio.current_time() - start == pytest.approx(17)
