"""What the layers above ``_io/`` may ask a connection (issue 11: they never walk its stream):
our end's address (the EHLO address literal) and the TLS facts (the probe's report)."""

from __future__ import annotations

import ssl

import trio
import trio.testing

from trio_smtp import Security, Timeouts
from trio_smtp._delivery.session import SessionConfig, open_session
from trio_smtp._io.connect import open_transport
from trio_smtp.testing import SmtpServer


def config_for(server: SmtpServer, security: Security = Security.STARTTLS) -> SessionConfig:
    context = None if security is Security.NONE else server.ssl_context
    return SessionConfig(server.host, server.port, security, context, Timeouts())


async def test_our_address_over_tcp_and_under_tls() -> None:
    async with SmtpServer() as server:
        plain = await open_transport(
            server.host, server.port, security=Security.NONE, context=None, timeouts=Timeouts()
        )
        assert plain.local_address() == "127.0.0.1"
        assert plain.tls_facts() is None
        await plain.aclose()
        secured = await open_session(config_for(server))
        assert secured.tls
        assert secured.local_address() == "127.0.0.1"  # the socket under the TLS layer
        await secured.quit()


async def test_no_address_without_an_ip_socket() -> None:
    client, _server = trio.testing.memory_stream_pair()

    async def factory() -> trio.abc.Stream:
        return client

    transport = await open_transport(
        "example.org", 25, security=Security.NONE, context=None, timeouts=Timeouts(),
        stream_factory=factory,
    )  # fmt: skip
    assert transport.local_address() is None
    await transport.aclose()


async def test_tls_facts_name_the_verified_certificate() -> None:
    async with SmtpServer() as server:
        transport = await open_session(config_for(server))
        facts = transport.tls_facts()
        await transport.quit()
    assert facts is not None
    assert facts.version == "TLSv1.3" and facts.cipher and facts.bits
    assert facts.certificate_der is not None
    ssl.DER_cert_to_PEM_cert(facts.certificate_der)  # the server's certificate, in DER
    # Decoded by ssl because it was verified: the names the server was checked against.
    assert ("IP Address", "127.0.0.1") in facts.certificate["subjectAltName"]
    assert facts.session_reused is False
