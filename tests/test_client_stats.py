"""SmtpClient.statistics(): what a monitoring user reads after real sends on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_smtp import (
    ClientStatistics,
    DeliveryMethod,
    SmtpClient,
    SmtpFailedRecipientsError,
    SmtpResponseError,
)
from trio_smtp.testing import Delay, Respond, Shutdown, SmtpServer

MakeMessage = Callable[..., EmailMessage]
ClientFactory = Callable[..., SmtpClient]


async def test_a_new_client_has_done_nothing(smtp_client_factory: ClientFactory) -> None:
    client = smtp_client_factory()
    assert client.statistics() == ClientStatistics()
    assert client.statistics().send_in_flight is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.statistics().messages_sent = 5  # type: ignore[misc]


async def test_sent_messages_recipients_and_octets(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    async with smtp_client_factory(credentials=("user", "password")) as client:
        await client.send(make_message("a@example.net, b@example.net"))
        await client.send(make_message("c@example.net", body="x" * 10_000 + "\n"))
        stats = client.statistics()
    assert stats.messages_sent == 2
    assert stats.messages_failed == 0
    assert stats.recipients_accepted == 3
    assert stats.recipients_rejected == 0
    assert stats.connections_opened == 1
    # Octets as the server received them (CRLF line ends, without dot-stuffing).
    assert stats.bytes_sent == sum(len(m.data) for m in smtp_server.messages)
    assert stats.bytes_sent > 10_000


async def test_partial_and_total_refusals(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    smtp_server.on("RCPT", Respond(550, "5.1.1 no such user"), match="nobody")
    async with smtp_client_factory() as client:
        with pytest.raises(SmtpFailedRecipientsError):  # delivered to a@, refused nobody@
            await client.send(make_message("a@example.net, nobody@example.net"))
        with pytest.raises(SmtpFailedRecipientsError):  # refused for everyone
            await client.send(make_message("nobody@example.net, nobody2@example.net"))
        stats = client.statistics()
    assert (stats.messages_sent, stats.messages_failed) == (1, 1)
    assert stats.recipients_accepted == 1
    assert stats.recipients_rejected == 3
    assert stats.bytes_sent == len(smtp_server.messages[0].data)


async def test_refused_message_counts_as_failed(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    smtp_server.on("MAIL", Respond(550, "5.7.1 sender refused"), times=1)
    async with smtp_client_factory() as client:
        with pytest.raises(SmtpResponseError):
            await client.send(make_message())
        await client.send(make_message())
        stats = client.statistics()
    assert (stats.messages_sent, stats.messages_failed, stats.bytes_sent) == (
        1,
        1,
        len(smtp_server.messages[0].data),
    )


async def test_reconnections_are_counted(
    smtp_server: SmtpServer, smtp_client_factory: ClientFactory, make_message: MakeMessage
) -> None:
    smtp_server.on("END_OF_DATA", Shutdown(), times=1)  # 421 after the data: reconnect next
    async with smtp_client_factory() as client:
        with pytest.raises(SmtpResponseError):
            await client.send(make_message())
        await client.send(make_message())
        assert client.statistics().connections_opened == 2
    assert len(smtp_server.connections) == 2


# Without CHUNKING: with it, BDAT LAST goes in MAIL's write, and a cancel after that write is
# too late to stop the message (SmtpDeliveryUnknownError, counted as failed), not a cancel.
@pytest.mark.smtp_server(disable={"CHUNKING"})
async def test_send_in_flight_and_cancelled_send(
    autojump_clock: trio.testing.MockClock,
    smtp_server: SmtpServer,
    smtp_client_factory: ClientFactory,
    make_message: MakeMessage,
) -> None:
    smtp_server.on("MAIL", Delay(100), times=1)
    async with smtp_client_factory() as client:
        client.send_async(make_message(), user_token=1)
        assert client.statistics().send_in_flight is True
        await trio.sleep(10)
        client.send_async_cancel()
        event = await client.completed.receive()
        assert event.cancelled
        stats = client.statistics()
        assert stats.send_in_flight is False
        assert (stats.messages_sent, stats.messages_failed) == (0, 0)  # cancelled: neither
        client.send_async(make_message(), user_token=2)
        event = await client.completed.receive()
        assert event.error is None
        assert client.statistics().messages_sent == 1


async def test_pickup_directory_counts_messages_not_connections(
    tmp_path: Path, make_message: MakeMessage
) -> None:
    client = SmtpClient(delivery_method=DeliveryMethod.PICKUP_DIRECTORY, pickup_directory=tmp_path)
    async with client:
        await client.send(make_message("a@example.net, b@example.net"))
    stats = client.statistics()
    assert (stats.messages_sent, stats.recipients_accepted, stats.connections_opened) == (1, 2, 0)
    assert stats.bytes_sent > 0
