"""SmtpClient.send_many against the testing server: pipelining across messages (RFC 2920
§3.1), one outcome per message, isolation of refusals, broken connections, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest
import trio
from helpers.streams import CountingStream, client_for

from trio_smtp import (
    OutgoingMessage,
    Security,
    SendResult,
    SmtpClient,
    SmtpConnectError,
    SmtpDeliveryUnknownError,
    SmtpFailedRecipientsError,
    SmtpResponseError,
)
from trio_smtp.testing import Delay, Hangup, Respond, Shutdown, SmtpServer

FROM = "from@example.org"


def message(i: int, *recipients: str) -> OutgoingMessage:
    body = b"Subject: message %d\r\n\r\n.dot line %d\r\n" % (i, i)
    return OutgoingMessage(body, sender=FROM, recipients=list(recipients) or [f"to{i}@example.net"])


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as srv:
        yield srv


async def test_every_message_delivered_exactly_in_order(server: SmtpServer) -> None:
    async with client_for(server) as client:
        outcomes = await client.send_many([message(i) for i in range(20)])
    assert all(isinstance(o, SendResult) for o in outcomes) and len(outcomes) == 20
    assert [m.data for m in server.messages] == [
        b"Subject: message %d\r\n\r\n.dot line %d\r\n" % (i, i) for i in range(20)
    ]
    assert [m.recipients for m in server.messages] == [[f"to{i}@example.net"] for i in range(20)]
    assert len(server.connections) == 1
    assert client.statistics().messages_sent == 20


async def test_one_write_per_message(server: SmtpServer) -> None:
    streams: list[CountingStream] = []
    async with client_for(server, streams) as client:
        await client.send_many([message(i) for i in range(5)])
        writes = list(streams[0].writes)  # before QUIT
    first = next(i for i, w in enumerate(writes) if w.startswith(b"MAIL FROM"))
    batch = writes[first:]
    assert len(batch) == 6  # the first envelope, then one write per message
    for write in batch[1:-1]:  # data + terminator of k, then MAIL/RCPT/DATA of k+1
        assert b"..dot line" in write and b"\r\n.\r\nMAIL FROM:<from@example.org>" in write
        assert write.endswith(b"DATA\r\n")
    assert batch[-1].endswith(b"..dot line 4\r\n.\r\n")


async def test_refusals_are_isolated(server: SmtpServer) -> None:
    server.on("RCPT", Respond(550, "5.1.1 no such user"), match="bad@")
    server.on("MAIL", Respond(451, "4.3.0 try later"), match="refused@")
    server.on("END_OF_DATA", Respond(554, "5.7.1 spam"), times=1)
    items = [
        message(0),  # its data is refused (554)
        message(1, "bad@example.net"),  # every recipient refused
        message(2, "ok@example.net", "bad@example.net"),  # one of two refused
        OutgoingMessage(
            b"Subject: x\r\n\r\nx\r\n", sender="refused@example.org", recipients=["a@b.c"]
        ),
        message(4),
    ]
    async with client_for(server) as client:
        outcomes = await client.send_many(items)
        after = await client.send(b"Subject: after\r\n\r\n", sender=FROM, recipients=["z@b.c"])
    assert isinstance(outcomes[0], SmtpResponseError) and outcomes[0].status_code == 554
    assert isinstance(outcomes[1], SmtpFailedRecipientsError) and outcomes[1].result is None
    assert isinstance(outcomes[2], SmtpFailedRecipientsError)
    assert outcomes[2].result is not None and outcomes[2].result.accepted == ("ok@example.net",)
    assert isinstance(outcomes[3], SmtpResponseError) and outcomes[3].is_transient
    assert isinstance(outcomes[4], SendResult)
    assert after.reply is not None and after.reply.code == 250
    delivered = [m.data for m in server.messages if m.accepted]
    assert delivered == [items[2].message, items[4].message, b"Subject: after\r\n\r\n"]
    assert len(server.connections) == 1  # nothing broke the session


async def test_bad_items_get_their_own_error_and_nothing_is_written(server: SmtpServer) -> None:
    async def items() -> AsyncIterator[object]:
        yield message(0)
        yield b"no envelope"  # bytes need sender and recipients
        yield "a str"
        yield OutgoingMessage(b"x\r\n", sender="bad\r\naddress", recipients=["a@b.c"])
        yield message(4)

    async with client_for(server) as client:
        outcomes = await client.send_many(items())  # type: ignore[arg-type]
    assert isinstance(outcomes[0], SendResult) and isinstance(outcomes[4], SendResult)
    assert isinstance(outcomes[1], ValueError)
    assert isinstance(outcomes[2], TypeError)
    assert isinstance(outcomes[3], ValueError)
    assert len(server.messages) == 2
    assert all("bad" not in c.argument for c in server.connections[0].commands)


async def test_lost_connection_unknown_then_not_delivered_then_reconnect(
    server: SmtpServer,
) -> None:
    server.on("END_OF_DATA", Hangup(), times=1)
    async with client_for(server) as client:
        outcomes = await client.send_many([message(i) for i in range(4)])
    # message 0's terminator was written, its reply never came: maybe delivered.
    assert isinstance(outcomes[0], SmtpDeliveryUnknownError)
    # message 1's envelope went with it, its data never: not delivered, and says so.
    assert isinstance(outcomes[1], SmtpConnectError)
    assert not isinstance(outcomes[1], SmtpDeliveryUnknownError)
    assert "not delivered" in str(outcomes[1])
    assert isinstance(outcomes[2], SendResult) and isinstance(outcomes[3], SendResult)
    assert len(server.connections) == 2
    assert [m.data for m in server.messages if m.accepted][-2:] == [
        message(2).message,
        message(3).message,
    ]


async def test_421_to_a_terminator_refuses_it_and_the_rest_go_on_a_new_connection(
    server: SmtpServer,
) -> None:
    server.on("END_OF_DATA", Shutdown(), times=1)
    async with client_for(server) as client:
        outcomes = await client.send_many([message(i) for i in range(3)])
    assert isinstance(outcomes[0], SmtpResponseError) and outcomes[0].status_code == 421
    assert isinstance(outcomes[1], SmtpConnectError) and "not delivered" in str(outcomes[1])
    assert isinstance(outcomes[2], SendResult)
    assert len(server.connections) == 2


async def test_connection_refused_gives_every_message_the_error() -> None:
    async with SmtpServer(tls="none") as server:
        host, port = server.host, server.port
    async with SmtpClient(host, port, security=Security.NONE) as client:
        outcomes = await client.send_many([message(i) for i in range(3)])
    assert len(outcomes) == 3 and all(isinstance(o, SmtpConnectError) for o in outcomes)


@pytest.mark.parametrize("disable", [{"PIPELINING", "CHUNKING"}, {"PIPELINING"}, set()])
async def test_without_cross_message_pipelining_the_outcomes_are_the_same(
    disable: set[str],
) -> None:
    async with SmtpServer(tls="none", disable=disable) as server:
        server.on("RCPT", Respond(550, "5.1.1 no such user"), match="bad@")
        async with client_for(server) as client:
            outcomes = await client.send_many([message(0), message(1, "bad@x.org"), message(2)])
    assert isinstance(outcomes[0], SendResult) and isinstance(outcomes[2], SendResult)
    assert isinstance(outcomes[1], SmtpFailedRecipientsError)
    assert len(server.connections) == 1 and len([m for m in server.messages if m.accepted]) == 2


async def test_single_message_or_non_iterable_is_a_type_error(server: SmtpServer) -> None:
    async with client_for(server) as client:
        with pytest.raises(TypeError):
            await client.send_many(b"Subject: x\r\n\r\n")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.send_many(42)  # type: ignore[arg-type]
        assert await client.send_many([]) == []
    assert server.connections == []


async def test_busy_and_closed(server: SmtpServer, autojump_clock: trio.abc.Clock) -> None:
    server.on("END_OF_DATA", Delay(10), times=1)
    async with client_for(server) as client:
        client.send_async(message(0).message, sender=FROM, recipients=["a@b.c"])
        with pytest.raises(trio.BusyResourceError):
            await client.send_many([message(1)])
        await client.completed.receive()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_many([message(2)])


async def test_cancelled_batch_closes_the_connection(
    server: SmtpServer, autojump_clock: trio.abc.Clock
) -> None:
    server.on("END_OF_DATA", Delay(100), match=None, times=None)
    async with client_for(server) as client:
        with trio.move_on_after(250) as scope:
            await client.send_many([message(i) for i in range(10)])
        assert scope.cancelled_caught
        server.clear_faults()
        result = await client.send(message(9).message, sender=FROM, recipients=["a@b.c"])
    assert result.reply is not None and result.reply.code == 250
    assert len(server.connections) == 2  # the half-spoken session was never reused
    assert len([m for m in server.messages if m.accepted]) <= 4


async def test_a_reused_connection_refusing_mail_with_421_sends_the_message_again(
    server: SmtpServer,
) -> None:
    # RFC 5321 §3.8: the server gave up on the idle connection; nothing of the message was
    # accepted, so it goes again on a new connection instead of failing.
    async with client_for(server) as client:
        await client.send_many([message(0)])
        server.on("MAIL", Respond(421, "4.4.2 idle too long, closing"), times=1)
        outcomes = await client.send_many([message(1), message(2)])
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    assert len(server.connections) == 2
    assert [m.recipients for m in server.messages if m.accepted] == [
        [f"to{i}@example.net"] for i in range(3)
    ]


async def test_item_whose_to_header_does_not_all_parse_is_its_own_value_error(
    server: SmtpServer,
) -> None:
    bad = EmailMessage()
    bad["From"] = FROM
    bad["To"] = "ok@example.net;x@example.net"
    bad.set_content("x\n")
    async with client_for(server) as client:
        outcomes = await client.send_many([message(0), bad, message(2)])
    assert isinstance(outcomes[0], SendResult) and isinstance(outcomes[2], SendResult)
    assert isinstance(outcomes[1], ValueError) and "To" in str(outcomes[1])
    assert [m.recipients for m in server.messages] == [["to0@example.net"], ["to2@example.net"]]


async def test_send_and_send_many_on_one_connection_each_get_their_own_envelope(
    server: SmtpServer,
) -> None:
    """send and send_many share the connection's memo of the last MAIL and RCPTs (a CPU
    saving): each message still gets the commands of its own envelope and size."""
    async with client_for(server) as client:
        await client.send(message(0, "a@example.net").message, sender=FROM, recipients=["a@x.net"])
        await client.send_many([message(1, "a@x.net"), message(22, "b@x.net"), message(3)])
        await client.send(message(4).message, sender=FROM, recipients=["a@x.net"])
    assert len(server.connections) == 1
    got = [(m.recipients, m.mail_params.get("SIZE")) for m in server.messages]
    sizes = [str(len(message(i).message)) for i in (0, 1, 22, 3, 4)]
    assert got == [
        (["a@x.net"], sizes[0]),
        (["a@x.net"], sizes[1]),
        (["b@x.net"], sizes[2]),
        (["to3@example.net"], sizes[3]),
        (["a@x.net"], sizes[4]),
    ]
