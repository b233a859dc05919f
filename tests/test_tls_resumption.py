"""TLS session resumption: a client or pool that reconnects to a server it has already talked
to over TLS offers the last session (RFC 8446 §2.2), and the testing server resumes it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_smtp import Security, SmtpClient, SmtpPool, Timeouts
from trio_smtp._delivery.session import SessionConfig, open_session
from trio_smtp._io.transport import Transport
from trio_smtp.testing import SmtpServer

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
ENVELOPE: dict[str, Any] = {"sender": "a@example.org", "recipients": ["b@example.net"]}


def tls_notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "TLS established" in r.getMessage()]


@pytest.mark.parametrize(
    ("mode", "security"),
    [("starttls", Security.STARTTLS), ("implicit", Security.IMPLICIT_TLS)],
)
async def test_pool_resumes_the_session_on_every_new_connection(
    mode: str, security: Security, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_smtp.protocol")
    async with SmtpServer(tls=mode) as server:
        pool = SmtpPool(
            server.host, server.port, security=security, ssl_context=server.ssl_context,
            max_connections=1, max_messages_per_connection=1,
        )  # fmt: skip
        async with pool:
            for _ in range(3):
                await pool.send(MESSAGE, **ENVELOPE)
        assert len(server.connections) == 3
    notes = tls_notes(caplog)
    assert len(notes) == 3
    assert "resumed" not in notes[0]
    assert all(note.endswith("(session resumed)") for note in notes[1:])


async def test_client_resumes_after_the_server_closed_the_connection(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_smtp.protocol")
    async with SmtpServer(idle_timeout=10) as server:
        async with SmtpClient(server.host, server.port, ssl_context=server.ssl_context) as client:
            await client.send(MESSAGE, **ENVELOPE)
            await trio.sleep(20)  # the server says 421 and closes the idle session
            await client.send(MESSAGE, **ENVELOPE)
        assert len(server.connections) == 2
    notes = tls_notes(caplog)
    assert len(notes) == 2 and notes[1].endswith("(session resumed)")


async def test_another_client_does_not_resume(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_smtp.protocol")
    async with SmtpServer() as server:
        for _ in range(2):  # same SSL context, but each client keeps its own sessions
            async with SmtpClient(server.host, server.port, ssl_context=server.ssl_context) as c:
                await c.send(MESSAGE, **ENVELOPE)
    notes = tls_notes(caplog)
    assert len(notes) == 2 and not any("resumed" in note for note in notes)


async def test_the_connection_says_whether_its_session_was_resumed() -> None:
    async with SmtpServer() as server:
        config = SessionConfig(
            server.host, server.port, Security.STARTTLS, server.ssl_context, Timeouts()
        )
        reused = []
        for _ in range(3):  # one config: one session cache, as a client's connections share
            transport = await open_session(config)
            facts = transport.tls_facts()
            assert facts is not None
            reused.append(facts.session_reused)
            # A resumed session still names the certificate it was made with.
            assert facts.certificate_der and facts.certificate
            await transport.quit()
    assert reused == [False, True, True]


async def test_a_session_is_read_only_when_a_next_connection_wants_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reading a session copies it through DER, certificate included (issue 12: ~0.13 ms of
    # a ~3 ms session): a client that connects once never reads it.
    reads: list[Transport] = []
    real = Transport.tls_session

    def counted(self: Transport) -> Any:
        reads.append(self)
        return real(self)

    monkeypatch.setattr(Transport, "tls_session", counted)
    async with SmtpServer() as server:
        async with SmtpClient(server.host, server.port, ssl_context=server.ssl_context) as c:
            await c.send(MESSAGE, **ENVELOPE)
            await c.send(MESSAGE, **ENVELOPE)  # the same connection
        assert reads == []
        pool = SmtpPool(
            server.host, server.port, ssl_context=server.ssl_context,
            max_connections=1, max_messages_per_connection=1,
        )  # fmt: skip
        async with pool:
            for _ in range(3):
                await pool.send(MESSAGE, **ENVELOPE)
    assert len(reads) == 2  # by the second and the third connection, once each
