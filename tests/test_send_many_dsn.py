"""send_many with per-message DSN (RFC 3461) and REQUIRETLS (RFC 8689) options on
OutgoingMessage, checked in what the testing server recorded: both the pipelined path (no
CHUNKING) and the one-message-at-a-time path (CHUNKING).  Invalid options and options the
server cannot honour are that message's outcome; the batch goes on."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.streams import CountingStream, client_for

from trio_smtp import (
    DeliveryNotification,
    DsnReturn,
    OutgoingMessage,
    Security,
    SendResult,
    SmtpClient,
    SmtpError,
    SmtpTlsError,
)
from trio_smtp.testing import SmtpServer

N = DeliveryNotification
FROM = "from@example.org"
A, B = "a@example.net", "b@example.net"

#: The pipelined path needs PIPELINING without CHUNKING; with CHUNKING each message goes
#: as send() sends it.
PATHS = pytest.mark.parametrize(
    "disable", [{"CHUNKING"}, set()], ids=["pipelined", "one-at-a-time"]
)


def body(i: int) -> bytes:
    return b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i)


def item(i: int, recipients: list[str] | None = None, **options: Any) -> OutgoingMessage:
    return OutgoingMessage(body(i), FROM, recipients or [A], **options)


def plain_client(server: SmtpServer) -> SmtpClient:
    return SmtpClient(server.host, server.port, security=Security.NONE)


def tls_client(server: SmtpServer) -> SmtpClient:
    return SmtpClient(
        server.host, server.port, security=Security.STARTTLS, ssl_context=server.ssl_context
    )


def sent(server: SmtpServer) -> list[bytes]:
    return [m.data for m in server.messages]


@PATHS
async def test_options_on_the_wire_per_message(disable: set[str]) -> None:
    batch = [
        item(
            0,
            [A, B],
            notify={A: N.ON_SUCCESS | N.ON_FAILURE, B: N.NEVER},
            ret=DsnReturn.HEADERS,
            envid="job+0 =x",
            orcpt={A: "orig+a@example.org"},
        ),
        item(1, [A, B]),  # the same envelope, no options: no parameters
        item(2, [A, B], notify=N.DELAY, ret=DsnReturn.FULL),
        item(3, [A, B], notify=N.DELAY, ret=DsnReturn.FULL),  # equal options, new objects
        item(4, [A, B], notify=N.NONE),  # NONE: no NOTIFY at all
    ]
    async with SmtpServer(tls="none", disable=disable) as server, plain_client(server) as client:
        outcomes = await client.send_many(batch)
    assert all(isinstance(o, SendResult) for o in outcomes)
    first, second, third, fourth, fifth = server.messages
    assert first.mail_params["RET"] == "HDRS"
    assert first.mail_params["ENVID"] == "job+2B0+20+3Dx"  # xtext (RFC 3461 §4)
    assert first.rcpt_params == {
        A: {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;orig+2Ba@example.org"},
        B: {"NOTIFY": "NEVER"},
    }
    for plain in (second, fifth):
        assert not {"RET", "ENVID", "REQUIRETLS"} & set(plain.mail_params)
        assert plain.rcpt_params == {A: {}, B: {}}
    for delayed in (third, fourth):
        assert delayed.mail_params["RET"] == "FULL"
        assert "ENVID" not in delayed.mail_params
        assert delayed.rcpt_params == {A: {"NOTIFY": "DELAY"}, B: {"NOTIFY": "DELAY"}}
    assert sent(server) == [body(i) for i in range(5)]
    assert len(server.connections) == 1


async def test_pipelined_batch_with_options_is_still_one_write_per_message() -> None:
    streams: list[CountingStream] = []
    batch = [item(i, [A, B], notify=N.ON_FAILURE, envid=f"id{i}") for i in range(4)]
    async with (
        SmtpServer(tls="none", disable={"CHUNKING"}) as server,
        client_for(server, streams) as client,
    ):
        outcomes = await client.send_many(batch)
        writes = list(streams[0].writes)
    assert all(isinstance(o, SendResult) for o in outcomes)
    first = next(i for i, w in enumerate(writes) if w.startswith(b"MAIL FROM"))
    assert len(writes[first:]) == 5  # the first envelope, then one write per message
    assert [m.mail_params["ENVID"] for m in server.messages] == [f"id{i}" for i in range(4)]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"notify": N.NEVER | N.ON_FAILURE}, ValueError),
        ({"notify": "SUCCESS"}, TypeError),
        ({"notify": {"other@example.net": N.ON_SUCCESS}}, ValueError),
        ({"ret": "FULL"}, TypeError),
        ({"envid": "x" * 101}, ValueError),
        ({"orcpt": {A: "bad\r\nx"}}, ValueError),
        ({"orcpt": {"nobody@example.net": "a@example.org"}}, ValueError),
        ({"requiretls": "yes"}, TypeError),
    ],
)
@PATHS
async def test_invalid_options_are_that_items_outcome(
    disable: set[str], options: dict[str, Any], error: type[Exception]
) -> None:
    batch = [item(0), item(1, **options), item(2)]
    async with SmtpServer(tls="none", disable=disable) as server, plain_client(server) as client:
        first, second, third = await client.send_many(batch)
        stats = client.statistics()
    assert isinstance(first, SendResult) and isinstance(third, SendResult)
    assert isinstance(second, error)
    assert sent(server) == [body(0), body(2)]  # nothing of the invalid one was written
    assert server.connections[0].verbs.count("MAIL") == 2
    assert (stats.messages_sent, stats.messages_failed) == (2, 0)  # as send(): not counted


async def test_only_invalid_items_open_no_connection() -> None:
    async with SmtpServer(tls="none") as server, plain_client(server) as client:
        bad_ret: Any = "HDRS"
        outcomes = await client.send_many([item(0, envid="é"), item(1, ret=bad_ret)])
    assert [type(o) for o in outcomes] == [ValueError, TypeError]
    assert server.connections == []


@PATHS
async def test_server_without_dsn_refuses_those_messages_before_mail(disable: set[str]) -> None:
    batch = [item(0, ret=DsnReturn.FULL), item(1), item(2, notify=N.ON_FAILURE), item(3)]
    async with (
        SmtpServer(tls="none", disable=disable | {"DSN"}) as server,
        plain_client(server) as client,
    ):
        outcomes = await client.send_many(batch)
        # What send() raises for the same message, for comparison.
        with pytest.raises(SmtpError) as single:
            await client.send(body(9), sender=FROM, recipients=[A], ret=DsnReturn.FULL)
    first, second, third, fourth = outcomes
    for refused in (first, third):
        assert type(refused) is type(single.value)
        assert str(refused) == str(single.value)
        assert "DSN" in str(refused)
    assert isinstance(second, SendResult) and isinstance(fourth, SendResult)
    assert sent(server) == [body(1), body(3)]
    assert len(server.connections) == 1  # a local refusal leaves the session good
    assert server.connections[0].verbs.count("MAIL") == 2
    assert all("RET" not in m.mail_params for m in server.messages)


@PATHS
async def test_requiretls_over_tls(disable: set[str]) -> None:
    batch = [item(0, requiretls=True), item(1), item(2, requiretls=True)]
    async with (
        SmtpServer(disable=disable) as server,
        tls_client(server) as client,
    ):  # STARTTLS; REQUIRETLS after TLS
        outcomes = await client.send_many(batch)
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert ["REQUIRETLS" in m.mail_params for m in server.messages] == [True, False, True]
    assert server.connections[0].tls_version is not None


@PATHS
async def test_requiretls_not_offered_is_that_messages_tls_error(disable: set[str]) -> None:
    batch = [item(0), item(1, requiretls=True), item(2)]
    async with SmtpServer(disable=disable | {"REQUIRETLS"}) as server, tls_client(server) as client:
        first, second, third = await client.send_many(batch)
    assert isinstance(second, SmtpTlsError)
    assert "does not offer" in str(second)
    assert isinstance(first, SendResult) and isinstance(third, SendResult)
    assert sent(server) == [body(0), body(2)]
    assert server.connections[0].verbs.count("MAIL") == 2


@PATHS
async def test_requiretls_without_tls_is_that_messages_tls_error(disable: set[str]) -> None:
    batch = [item(0, requiretls=True), item(1)]
    async with SmtpServer(tls="none", disable=disable) as server, plain_client(server) as client:
        first, second = await client.send_many(batch)
    assert isinstance(first, SmtpTlsError)
    assert "TLS session" in str(first)
    assert isinstance(second, SendResult)
    assert sent(server) == [body(1)]
    assert server.connections[0].verbs.count("MAIL") == 1


async def test_last_message_refused_locally_still_flushes_the_one_before() -> None:
    # Pipelined: message 0's data and terminator wait for the next write; the next (and
    # last) message is refused before its MAIL, so they go alone.
    batch = [item(0), item(1, ret=DsnReturn.FULL)]
    async with (
        SmtpServer(tls="none", disable={"CHUNKING", "DSN"}) as server,
        plain_client(server) as client,
    ):
        first, second = await client.send_many(batch)
    assert isinstance(first, SendResult)
    assert isinstance(second, SmtpError) and "DSN" in str(second)
    assert sent(server) == [body(0)]


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        OutgoingMessage(body(0), FROM, [A], N.ON_SUCCESS)  # type: ignore[call-arg]
    message = OutgoingMessage(body(0), FROM, [A], notify=N.ON_SUCCESS, requiretls=True)
    assert message.notify is N.ON_SUCCESS and message.requiretls
    assert OutgoingMessage(body(0)).ret is None
