"""Faults that cannot fire in silence (issue 13, "The testing server").

``START_OF_DATA`` covers DATA and BDAT alike; ``match`` predicates get the parsed address
for MAIL and RCPT; a fault marked ``required`` (or every fault, with
``require_faults_fired=True``) that never fired fails the test at the server's exit.
"""

from __future__ import annotations

import pytest
import trio
from helpers.raw_client import RawClient, start_session

from trio_smtp import Security, SmtpClient, SmtpResponseError
from trio_smtp.testing import Delay, FaultNotFiredError, Respond, SmtpServer

ENVELOPE = {"sender": "a@example.org", "recipients": ["b@example.org"]}
BODY = b"Subject: t\r\n\r\nhello\r\n"


async def _send(server: SmtpServer) -> None:
    async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
        await client.send(BODY, **ENVELOPE)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
async def test_start_of_data_fires_for_data_and_bdat_alike(
    chunking: bool, autojump_clock: trio.testing.MockClock
) -> None:
    disable = () if chunking else ("CHUNKING",)
    async with SmtpServer(tls="none", disable=disable, idle_timeout=None) as server:
        delay = server.on("START_OF_DATA", Delay(100), times=1)  # within client deadlines
        before = trio.current_time()
        await _send(server)
        assert trio.current_time() - before >= 100  # the delay happened, whatever the verb
        server.on("START_OF_DATA", Respond(554, "5.7.1 Not today"), times=1)
        with pytest.raises(SmtpResponseError, match="Not today"):
            await _send(server)
    assert delay.hits == 1
    assert [m.transfer for m in server.messages] == ["BDAT" if chunking else "DATA"]


async def test_start_of_data_fires_once_per_message_of_many_bdat_chunks() -> None:
    async with SmtpServer(tls="none") as server:
        fault = server.on("START_OF_DATA", Respond(250, "2.0.0 first chunk seen"))
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        for line in (b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n"):
            assert (await client.command(line)).code == 250
        assert (await client.command(b"BDAT 3\r\nabc")).text == "2.0.0 first chunk seen"
        assert (await client.command(b"BDAT 3\r\ndef")).text == "2.0.0 3 octets received"
        assert (await client.command(b"BDAT 2 LAST\r\ng\n")).code == 250
        await client.aclose()
    assert fault.hits == 1
    assert server.messages[0].data == b"abcdefg\n"


async def test_a_data_fault_the_client_never_triggers_fails_at_exit_with_a_hint() -> None:
    # The trap of issue 13: the client uses BDAT, so a fault on "DATA" never fires.
    with pytest.raises(FaultNotFiredError, match="START_OF_DATA covers both") as info:
        async with SmtpServer(tls="none") as server:
            fault = server.on("DATA", Delay(3600), required=True)
            await _send(server)
    assert info.value.faults == [fault] and fault.hits == 0
    assert isinstance(info.value, AssertionError)  # fails a test like an assert


async def test_require_faults_fired_covers_every_fault() -> None:
    with pytest.raises(FaultNotFiredError) as info:
        async with SmtpServer(tls="none", require_faults_fired=True) as server:
            fired = server.on("MAIL", Respond(250, "2.1.0 fine"))
            idle = server.on("VRFY", Respond(550, "no"))
            await _send(server)
    assert info.value.faults == [idle] and fired.hits == 1
    async with SmtpServer(tls="none", require_faults_fired=True) as server:
        server.on("MAIL", Respond(250, "2.1.0 fine"))
        await _send(server)  # every fault fired: no error
    async with SmtpServer(tls="none") as server:
        server.on("VRFY", Respond(550, "no"))  # not required: never firing is fine


async def test_a_required_fault_is_not_reported_over_the_tests_own_exception() -> None:
    with pytest.raises(KeyError):
        async with SmtpServer(tls="none") as server:
            server.on("DATA", Delay(1), required=True)
            raise KeyError("the test's own failure comes out, unmasked")


async def test_match_predicates_get_the_parsed_address() -> None:
    seen: list[str] = []

    def user13(address: str) -> bool:
        seen.append(address)
        return address.startswith("user13@")

    async with SmtpServer(tls="none") as server:
        refuse = server.on("RCPT", Respond(550, "5.1.1 No such user"), match=user13)
        null = server.on("MAIL", Respond(250, "2.1.0 bounce ok"), match=lambda a: a == "")
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await client.command(b"MAIL FROM:<> SIZE=10\r\n")).text == "2.1.0 bounce ok"
        rcpt = b"RCPT TO:<user13@example.org> NOTIFY=NEVER\r\n"
        assert (await client.command(rcpt)).code == 550
        assert (await client.command(b"RCPT TO:<user1@example.org>\r\n")).code == 250
        # A line that does not parse is refused as usual; no predicate sees its junk.
        assert (await client.command(b"RCPT TO:user13@example.org>\r\n")).code == 501
        await client.aclose()
    assert seen == ["user13@example.org", "user1@example.org"]
    assert (refuse.hits, null.hits) == (1, 1)


async def test_a_string_match_still_searches_the_whole_argument() -> None:
    async with SmtpServer(tls="none") as server:
        fault = server.on("RCPT", Respond(550, "5.1.1 no DSN here"), match="notify=never")
        client = await RawClient.connect(server.host, server.port)
        await start_session(client)
        assert (await client.command(b"MAIL FROM:<a@example.org>\r\n")).code == 250
        rcpt = b"RCPT TO:<b@example.org> NOTIFY=NEVER\r\n"
        assert (await client.command(rcpt)).code == 550
        await client.aclose()
    assert fault.hits == 1
