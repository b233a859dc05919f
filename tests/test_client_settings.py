"""SmtpClient's constructor: the security default, pickup directories, local_hostname."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_smtp import DeliveryMethod, Security, SmtpClient, SmtpTlsError
from trio_smtp.testing import SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]


# -- security default and the pickup directory ---------------------------------------------


async def test_pickup_directory_needs_no_security_argument(
    tmp_path: Path, make_message: MakeMessage
) -> None:
    client = SmtpClient(delivery_method=DeliveryMethod.PICKUP_DIRECTORY, pickup_directory=tmp_path)
    async with client:
        await client.send(make_message())
    assert len([p for p in os.listdir(tmp_path) if p.endswith(".eml")]) == 1


@pytest.mark.parametrize(
    "security", [Security.STARTTLS, Security.IMPLICIT_TLS, Security.STARTTLS_OPPORTUNISTIC]
)
def test_tls_with_a_pickup_directory_is_refused_at_construction(
    tmp_path: Path, security: Security
) -> None:
    # The seed: "EnableSsl set to true with a pickup directory" is an error.
    with pytest.raises(ValueError, match="pickup directory cannot use TLS"):
        SmtpClient(
            delivery_method=DeliveryMethod.PICKUP_DIRECTORY,
            pickup_directory=tmp_path,
            security=security,
        )


def test_explicit_none_with_a_pickup_directory_is_fine(tmp_path: Path) -> None:
    SmtpClient(
        delivery_method=DeliveryMethod.PICKUP_DIRECTORY,
        pickup_directory=tmp_path,
        security=Security.NONE,
    )


@pytest.mark.smtp_server(tls="none")
async def test_network_default_is_still_required_starttls(
    smtp_server: SmtpServer, make_message: MakeMessage
) -> None:
    client = SmtpClient(smtp_server.host, smtp_server.port)  # security not given
    async with client:
        with pytest.raises(SmtpTlsError, match="not advertise"):
            await client.send(make_message())
    assert "MAIL" not in smtp_server.connections[0].verbs


def test_network_default_port_is_submission() -> None:
    with pytest.raises(TypeError, match="security"):
        SmtpClient("mail.example.com", security="starttls")  # type: ignore[arg-type]
    assert SmtpClient("mail.example.com")._config.port == 587


# -- local_hostname ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["client\r\n.example.org", "bad name", "", "client..example.org", "[999.1.1.1]", "é.example"],
)
def test_invalid_local_hostname_refused_at_construction(name: str) -> None:
    with pytest.raises(ValueError, match="local_hostname"):
        SmtpClient("mail.example.com", local_hostname=name)


def test_local_hostname_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="local_hostname"):
        SmtpClient("mail.example.com", local_hostname=b"x.example")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["client.example.org", "[127.0.0.1]", "[IPv6:::1]"])
async def test_given_local_hostname_is_the_ehlo_name(
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
    name: str,
) -> None:
    async with smtp_client_factory(local_hostname=name) as client:
        await client.send(make_message())
    assert smtp_server.connections[0].helo == name


@pytest.fixture
def stuck_lookup(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Make the FQDN lookup hang (in its worker thread) until the event is set."""
    release = threading.Event()

    def lookup() -> str:
        release.wait(30)
        return "late.example.org"

    monkeypatch.setattr("trio_smtp._io.hostname._cached_fqdn", None)
    monkeypatch.setattr("trio_smtp._io.hostname._lookup", lookup)
    yield release
    release.set()


async def test_a_hanging_fqdn_lookup_does_not_block_the_event_loop(
    autojump_clock: trio.testing.MockClock,
    stuck_lookup: threading.Event,
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(1)
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        async with smtp_client_factory() as client:
            await client.send(make_message())
        nursery.cancel_scope.cancel()
    assert ticks >= 4  # the loop ran while the lookup was stuck in its thread
    # RFC 5321 §4.1.4: no name in time, so the address literal of our end of the connection.
    assert smtp_server.connections[0].helo == "[127.0.0.1]"
