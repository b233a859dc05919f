"""The SendAsync model: send_async, completed, send_async_cancel, BusyResourceError,
ClosedResourceError, closing semantics, and the constructor's failure table."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import pytest
import trio
import trio.testing

from trio_smtp import (
    DeliveryMethod,
    Security,
    SendCompleted,
    SmtpClient,
    SmtpDeliveryUnknownError,
    SmtpFailedRecipientsError,
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


async def test_send_async_returns_at_once_and_reports_once(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    async with client_for(server) as client:
        client.send_async(make_message(), user_token="job-42")
        event = await client.completed.receive()
        assert event == SendCompleted("job-42", None, False, event.result)
        assert event.result is not None and event.result.accepted == ("rcpt@example.net",)
        client.send_async(make_message(), user_token="job-43")
        assert (await client.completed.receive()).user_token == "job-43"
    with pytest.raises(trio.EndOfChannel):
        await client.completed.receive()  # exactly one event per send_async
    assert len(server.messages) == 2


async def test_error_reported_in_event_not_raised(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("MAIL", Respond(550, "5.7.1 no"), times=1)
    async with client_for(server) as client:
        client.send_async(make_message(), user_token=1)
        event = await client.completed.receive()
    assert isinstance(event.error, SmtpResponseError)
    assert not event.cancelled and event.result is None


async def test_partial_refusal_event_carries_error_and_result(
    server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("RCPT", Respond(550, "5.1.1 no"), match="bad@")
    async with client_for(server) as client:
        client.send_async(make_message("ok@example.net, bad@example.net"))
        event = await client.completed.receive()
    assert isinstance(event.error, SmtpFailedRecipientsError)
    assert event.result is not None and event.result.accepted == ("ok@example.net",)
    assert event.error.result is event.result


async def test_validation_is_synchronous(server: SmtpServer, make_message: MakeMessage) -> None:
    async with client_for(server) as client:
        with pytest.raises(TypeError):
            client.send_async(None)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            client.send_async(make_message(From=""))
        msg = EmailMessage()
        msg["From"] = "a@example.org"
        with pytest.raises(ValueError, match="recipients"):
            client.send_async(msg)
        with pytest.raises(ValueError):
            await client.send(b"x", sender="a@example.org")
        assert client.completed.statistics().current_buffer_used == 0
    assert server.connections == []  # nothing was ever written


async def test_second_send_while_busy(
    autojump_clock: trio.testing.MockClock, server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("MAIL", Delay(5), times=1)
    async with client_for(server) as client:
        client.send_async(make_message(), user_token="first")
        with pytest.raises(trio.BusyResourceError):
            client.send_async(make_message(), user_token="second")
        with pytest.raises(trio.BusyResourceError):
            await client.send(make_message())
        event = await client.completed.receive()
        assert event.user_token == "first" and event.error is None
        client.send_async(make_message(), user_token="third")  # free again once reported
    assert [m.accepted for m in server.messages] == [True, True]


@pytest.mark.parametrize("phase", ["GREETING", "MAIL", "RCPT", "DATA", "END_OF_DATA"])
async def test_send_async_cancel_at_each_phase(
    autojump_clock: trio.testing.MockClock,
    server: SmtpServer,
    make_message: MakeMessage,
    phase: str,
) -> None:
    server.on(phase, Delay(100), times=1)
    async with client_for(server) as client:
        client.send_async(make_message(), user_token="t")
        await trio.sleep(10)  # the send is now stuck waiting for the server
        client.send_async_cancel()
        event = await client.completed.receive()
        if phase == "END_OF_DATA":  # too late to stop it: the server has the message
            assert isinstance(event.error, SmtpDeliveryUnknownError)
            assert (event.cancelled, event.result) == (False, None)
        else:
            assert event == SendCompleted("t", None, True, None)
        client.send_async(make_message(), user_token="next")
        assert (await client.completed.receive()).error is None
    assert len(server.connections) == 2  # the cancelled session was never reused
    assert "QUIT" not in server.connections[0].verbs
    if phase != "END_OF_DATA":
        assert all(m.connection is not server.connections[0] for m in server.messages)


async def test_cancel_during_message_data_never_sends_terminator(
    autojump_clock: trio.testing.MockClock, server: SmtpServer, make_message: MakeMessage
) -> None:
    received = bytearray()

    async def slow_reader(stream: trio.abc.Stream, pending: bytes) -> None:
        # 354, then read slowly (64 KiB per second) until the client goes away.
        await stream.send_all(b"354 go ahead\r\n")
        received.extend(pending)
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not data:
                break
            received.extend(data)
            await trio.sleep(1)

    server.on("DATA", Handover(slow_reader), times=1)
    async with client_for(server) as client:
        client.send_async(make_message(body="z" * 70 + "\n" * 1 + ("z" * 70 + "\n") * 100_000))
        await trio.sleep(20)  # the body is still being written
        client.send_async_cancel()
        event = await client.completed.receive()
        assert event.cancelled and event.error is None
    await server.wait_for_connection_closed(1)
    assert len(received) > 65536  # it was cut off in the middle of the data...
    assert b"\r\n.\r\n" not in received  # ...and the terminator never went out
    assert server.messages == []


async def test_cancel_with_nothing_in_flight_is_harmless(server: SmtpServer) -> None:
    async with client_for(server) as client:
        client.send_async_cancel()


async def test_leaving_waits_for_send_in_flight(
    autojump_clock: trio.testing.MockClock, server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("END_OF_DATA", Delay(30), times=1)
    async with client_for(server) as client:
        client.send_async(make_message(), user_token="slow")
    event = client.completed.receive_nowait()
    assert event.user_token == "slow" and event.error is None and not event.cancelled
    assert server.messages[0].accepted
    assert server.connections[0].verbs[-1] == "QUIT"


async def test_use_after_close(server: SmtpServer, make_message: MakeMessage) -> None:
    async with client_for(server) as client:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await client.send(make_message())
    with pytest.raises(trio.ClosedResourceError):
        client.send_async(make_message())


async def test_use_before_enter_is_an_error(make_message: MakeMessage) -> None:
    client = SmtpClient("mx.example.net")
    with pytest.raises(RuntimeError, match="async with"):
        await client.send(make_message())


async def test_exception_in_block_is_not_wrapped(server: SmtpServer) -> None:
    with pytest.raises(KeyError):
        async with client_for(server):
            raise KeyError("mine")


async def test_outer_cancellation_still_reports_the_event(
    autojump_clock: trio.testing.MockClock, server: SmtpServer, make_message: MakeMessage
) -> None:
    server.on("MAIL", Delay(100), times=1)
    with trio.move_on_after(10):
        async with client_for(server) as client:
            client.send_async(make_message(), user_token="x")
            await trio.sleep_forever()
    event = client.completed.receive_nowait()
    assert event.user_token == "x" and event.cancelled


# -- the constructor's part of the failure table ---------------------------------------------


@pytest.mark.parametrize("host", [None, ""])
def test_network_delivery_needs_a_host(host: str | None) -> None:
    with pytest.raises(ValueError, match="host"):
        SmtpClient(host)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_bad_port(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        SmtpClient("mx.example.net", port)


def test_port_must_be_an_int() -> None:
    with pytest.raises(TypeError):
        SmtpClient("mx.example.net", "25")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("security", "port"),
    [
        (Security.IMPLICIT_TLS, 465),
        (Security.STARTTLS, 587),
        (Security.STARTTLS_OPPORTUNISTIC, 25),
        (Security.NONE, 25),
    ],
)
def test_default_port_follows_security(security: Security, port: int) -> None:
    assert SmtpClient("mx.example.net", security=security)._config.port == port


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.IMPLICIT_TLS])
def test_tls_with_pickup_directory(security: Security, tmp_path: object) -> None:
    with pytest.raises(ValueError, match="pickup"):
        SmtpClient(
            delivery_method=DeliveryMethod.PICKUP_DIRECTORY,
            pickup_directory=str(tmp_path),
            security=security,
        )


def test_bad_credentials_type() -> None:
    with pytest.raises(TypeError, match="credentials"):
        SmtpClient("mx.example.net", credentials=("user",))  # type: ignore[arg-type]


async def test_pickup_directory_delivery(tmp_path: object, make_message: MakeMessage) -> None:
    from pathlib import Path

    from trio_smtp._delivery.pickup import read_pickup_file

    directory = Path(str(tmp_path))
    client = SmtpClient(
        delivery_method=DeliveryMethod.PICKUP_DIRECTORY,
        pickup_directory=directory,
        security=Security.NONE,
    )
    async with client:
        client.send_async(make_message(Bcc="b@example.net"), user_token=7)
        event = await client.completed.receive()
    assert event.error is None and event.result is not None
    assert event.result.accepted == ("rcpt@example.net", "b@example.net")
    (name,) = await trio.to_thread.run_sync(os.listdir, directory)
    picked = await read_pickup_file(directory / name)
    assert picked.recipients == ["rcpt@example.net", "b@example.net"]
