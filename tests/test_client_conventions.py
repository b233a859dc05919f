"""Trio's conventions on SmtpClient: leaving the block with an exception cancels the send in
flight as a nursery would (each send still reports its one event), a useful repr, a
SendCompleted generic in its token, and one-call :func:`trio_smtp.send`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_smtp
from trio_smtp import (
    DeliveryMethod,
    Security,
    SendCompleted,
    SmtpClient,
    SmtpDeliveryUnknownError,
    SmtpResponseError,
)
from trio_smtp.testing import Delay, Handover, Respond, SmtpServer

MakeMessage = Callable[..., EmailMessage]


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tls="none", disable={"CHUNKING"}) as srv:
        yield srv


def client_for(server: SmtpServer) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE)


# -- leaving the block with an exception --------------------------------------------------------


@pytest.mark.parametrize("phase", ["MAIL", "DATA"])
async def test_exception_in_block_cancels_the_send_in_flight(
    autojump_clock: trio.testing.MockClock,
    server: SmtpServer,
    make_message: MakeMessage,
    phase: str,
) -> None:
    server.on(phase, Delay(3600), times=1)
    started = trio.current_time()
    with pytest.raises(KeyError, match="mine"):
        async with client_for(server) as client:
            client.send_async(make_message(), user_token="in flight")
            # The send is now waiting for the (slow) server's reply.
            await server.wait_for(lambda: any(phase in c.verbs for c in server.connections))
            raise KeyError("mine")
    # The user's exception arrived at once, not after the server's hour (or a deadline).
    assert trio.current_time() - started < 10
    # The cancelled send still reported its one outcome, and nothing was delivered.
    assert client.completed.receive_nowait() == SendCompleted("in flight", None, True, None)
    with pytest.raises(trio.EndOfChannel):
        client.completed.receive_nowait()
    assert server.messages == []


async def test_exception_after_end_of_data_reports_maybe_delivered(
    autojump_clock: trio.testing.MockClock, server: SmtpServer, make_message: MakeMessage
) -> None:
    # Too late to stop: the end of data is written.  The event says so (never "cancelled").
    end_of_data = trio.Event()

    async def never_reply(stream: trio.abc.Stream, pending: bytes) -> None:
        end_of_data.set()
        await trio.sleep_forever()

    server.on("END_OF_DATA", Handover(never_reply), times=1)
    started = trio.current_time()
    with pytest.raises(KeyError):
        async with client_for(server) as client:
            client.send_async(make_message(), user_token="late")
            await end_of_data.wait()
            raise KeyError("mine")
    assert trio.current_time() - started < 10
    event = client.completed.receive_nowait()
    assert event.user_token == "late" and not event.cancelled
    assert isinstance(event.error, SmtpDeliveryUnknownError)


async def test_exception_with_nothing_in_flight_leaves_queued_events(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    with pytest.raises(KeyError):
        async with client_for(server) as client:
            client.send_async(make_message(), user_token="done")
            event = await client.completed.receive()
            assert event.error is None
            client.send_async(make_message(), user_token="queued")
            await server.wait_for_message(2)
            await trio.testing.wait_all_tasks_blocked()  # its event is on the channel
            assert not client.statistics().send_in_flight
            raise KeyError("mine")
    assert client.completed.receive_nowait().user_token == "queued"
    assert len(server.messages) == 2


async def test_normal_exit_still_waits_for_the_send(
    autojump_clock: trio.testing.MockClock, server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("END_OF_DATA", Delay(30), times=1)
    started = trio.current_time()
    async with client_for(server) as client:
        client.send_async(make_message(), user_token="slow")
    assert trio.current_time() - started >= 30
    event = client.completed.receive_nowait()
    assert event.error is None and not event.cancelled
    assert server.messages[0].accepted


# -- repr ---------------------------------------------------------------------------------------


async def test_repr_shows_where_how_and_state(
    autojump_clock: trio.testing.MockClock, server: SmtpServer, make_message: MakeMessage
) -> None:
    client = client_for(server)
    where = f"host={server.host!r} port={server.port} security=NONE"
    assert repr(client) == f"<SmtpClient {where} state=new>"
    async with client:
        assert repr(client) == f"<SmtpClient {where} state=idle>"
        server.on("MAIL", Delay(10), times=1)
        client.send_async(make_message())
        await trio.sleep(1)
        assert repr(client) == f"<SmtpClient {where} state=sending>"
        await client.completed.receive()
        assert repr(client) == f"<SmtpClient {where} state=connected>"
    assert repr(client) == f"<SmtpClient {where} state=closed>"


def test_repr_for_other_destinations(tmp_path: Path) -> None:
    pickup = SmtpClient(delivery_method=DeliveryMethod.PICKUP_DIRECTORY, pickup_directory=tmp_path)
    assert repr(pickup) == (
        f"<SmtpClient pickup_directory={str(tmp_path)!r} security=NONE state=new>"
    )
    unix = SmtpClient(unix_socket="/run/smtp.sock")
    assert repr(unix) == "<SmtpClient unix_socket='/run/smtp.sock' security=NONE state=new>"
    tls = SmtpClient("smtp.example.org", credentials=("me", "secret"))
    assert repr(tls) == "<SmtpClient host='smtp.example.org' port=587 security=STARTTLS state=new>"
    assert "secret" not in repr(tls)


# -- SendCompleted[T] ---------------------------------------------------------------------------


async def test_send_completed_is_generic_in_its_token(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    async with client_for(server) as client:
        client.send_async(make_message(), user_token=42)
        event: SendCompleted[int] = await client.completed.receive()
    token: int = event.user_token  # mypy --strict checks this line: no cast needed
    assert token + 1 == 43
    assert SendCompleted[int] is not SendCompleted  # subscriptable at run time too
    with pytest.raises(AttributeError):
        event.user_token = 1  # type: ignore[misc]  # still frozen


# -- trio_smtp.send -----------------------------------------------------------------------------


async def test_send_one_call_with_keywords(server: SmtpServer, make_message: MakeMessage) -> None:
    result = await trio_smtp.send(
        make_message(), host=server.host, port=server.port, security=Security.NONE
    )
    assert result.accepted == ("rcpt@example.net",)
    assert server.messages[0].accepted
    # It opened, sent and closed: QUIT was said.
    await server.wait_for_connection_closed(1)
    assert server.connections[0].verbs[-1] == "QUIT"


async def test_send_one_call_with_a_url_and_send_options(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    url = f"smtp://{server.host}:{server.port}?tls=none"
    result = await trio_smtp.send(
        b"Subject: raw\r\n\r\nbody\r\n",
        url,
        sender="me@example.org",
        recipients=["you@example.net", "them@example.net"],
    )
    assert result.accepted == ("you@example.net", "them@example.net")
    assert server.messages[0].sender == "me@example.org"


async def test_send_one_call_keywords_override_the_url(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    url = f"smtp://{server.host}:1?tls=none"
    result = await trio_smtp.send(make_message(), url, port=server.port)
    assert result.accepted


async def test_send_one_call_raises_the_clients_errors(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("MAIL", Respond(550, "5.7.1 not you"))
    with pytest.raises(SmtpResponseError) as info:
        await trio_smtp.send(
            make_message(), host=server.host, port=server.port, security=Security.NONE
        )
    assert info.value.reply is not None and info.value.reply.code == 550
    with pytest.raises(ValueError, match="host"):
        await trio_smtp.send(make_message())
    with pytest.raises(ValueError):
        await trio_smtp.send(b"no envelope", host=server.host, security=Security.NONE)
    assert len(server.connections) == 1  # bad input never connected


async def test_send_one_call_to_a_pickup_directory(
    tmp_path: Path, make_message: MakeMessage
) -> None:
    await trio_smtp.send(
        make_message(),
        delivery_method=DeliveryMethod.PICKUP_DIRECTORY,
        pickup_directory=tmp_path,
    )
    [written] = await trio.Path(tmp_path).glob("*.eml")
    pickup = await trio_smtp.read_pickup_file(written)
    assert pickup.recipients == ["rcpt@example.net"]


# -- the window in which a cancel stops a send (docs/quickstart.rst) ---------------------------


async def test_with_pipelining_and_chunking_a_small_message_is_past_cancelling_at_mail(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    # MAIL, RCPT and "BDAT n LAST" with the whole message leave in one write: once MAIL is
    # on the wire, so is the end of the data, and a cancel can no longer claim to stop it.
    async with SmtpServer(tls="none") as server, client_for(server) as client:
        server.on("MAIL", Delay(3600), times=1)
        client.send_async(make_message(), user_token="small")
        await server.wait_for(lambda: any("MAIL" in c.verbs for c in server.connections))
        client.send_async_cancel()
        event = await client.completed.receive()
    assert isinstance(event.error, SmtpDeliveryUnknownError)
    assert (event.cancelled, event.result) == (False, None)


async def test_before_the_first_write_a_cancel_stops_the_send(
    autojump_clock: trio.testing.MockClock, make_message: MakeMessage
) -> None:
    async with SmtpServer(tls="none") as server, client_for(server) as client:
        server.on("EHLO", Delay(3600), times=1)  # still setting up the connection
        client.send_async(make_message(), user_token="early")
        await server.wait_for(lambda: any("EHLO" in c.verbs for c in server.connections))
        client.send_async_cancel()
        event = await client.completed.receive()
    assert event == SendCompleted("early", None, True, None)
    assert server.messages == []
