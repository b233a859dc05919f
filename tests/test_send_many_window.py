"""send_many with CHUNKING and PIPELINING: a window of transactions in flight on one
connection (trio_smtp/_delivery/window.py).  Several one-write groups go out before the first
reply; each message's outcome stays exact whatever happens to the others (refusals at every
position, 421, a connection lost after any number of replies, timeouts, a stray reply).

Byte-exact scripted servers (tests/helpers/scripted.py) decide when replies arrive; the
project's testing server checks the same against a real SMTP implementation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio.testing
from helpers.scripted import ScriptedServer
from helpers.streams import CountingStream, client_for

from trio_smtp import (
    OutgoingMessage,
    Security,
    SendResult,
    SmtpClient,
    SmtpDeliveryTimeoutError,
    SmtpDeliveryUnknownError,
    SmtpFailedRecipientsError,
    SmtpPool,
    SmtpResponseError,
    Timeouts,
)
from trio_smtp._delivery import window
from trio_smtp.testing import Action, Delay, Respond, Shutdown, SmtpServer

SHORT = Timeouts(mail=5, rcpt=5, data_initiation=5, data_block=5, data_termination=5)


def message(i: int, *recipients: str) -> OutgoingMessage:
    body = b"Subject: message %d\r\n\r\n%s\r\n" % (i, b"x" * (10 + i))
    return OutgoingMessage(
        body, sender=f"s{i}@example.org", recipients=list(recipients) or [f"r{i}@example.net"]
    )


def scripted_client(servers: list[ScriptedServer], **options: Any) -> SmtpClient:
    """A client whose n-th connection is ``servers[n]``."""
    opened = iter(servers)

    async def factory() -> trio.abc.Stream:
        return next(opened)

    return SmtpClient(
        "mx.example", security=Security.NONE, stream_factory=factory, timeouts=SHORT, **options
    )


def delivered(server: ScriptedServer) -> list[int]:
    return [index for index, _ in server.messages]


# -- the window on the wire -----------------------------------------------------------------


async def test_groups_are_written_before_the_first_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The server answers nothing until it has three complete groups: one transaction per
    # round trip would wait for ever (and time out).
    server = ScriptedServer(hold=3)
    async with scripted_client([server]) as client:
        outcomes = await client.send_many([message(i) for i in range(3)])
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    assert server.groups_before_first_reply() == 3
    writes = [data for side, data in server.wire if side == "C" and b"LAST" in data]
    assert writes[0].startswith(b"MAIL FROM:<s0@example.org>")
    # Every group written while another is unanswered starts with RSET (RFC 5321 §4.1.1.5).
    assert all(w.startswith(b"RSET\r\nMAIL FROM:") for w in writes[1:])
    assert delivered(server) == [0, 1, 2]
    assert client.statistics().messages_sent == 3


async def test_the_window_is_bounded(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setattr(window, "WINDOW_MESSAGES", 4)
    server = ScriptedServer(hold=1)
    async with scripted_client([server]) as client:
        outcomes = await client.send_many([message(i) for i in range(10)])
    assert all(isinstance(o, SendResult) for o in outcomes)
    in_flight = most = 0
    for side, data in server.wire[2:]:
        if side == "C":
            in_flight += data.count(b" LAST\r\n")
        else:
            in_flight -= data.count(b"queued as")
        most = max(most, in_flight)
    assert most == 4


async def test_a_large_message_drains_the_window_then_goes_as_send_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    large = OutgoingMessage(b"Subject: big\r\n\r\n" + b"y" * 300_000 + b"\r\n",
                            sender="big@example.org", recipients=["r@example.net"])  # fmt: skip
    server = ScriptedServer(hold=1)
    async with scripted_client([server]) as client:
        outcomes = await client.send_many([message(0), message(1), large, message(3)])
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    # Before the large message's envelope, every reply in flight was read.
    wire = server.wire
    big = next(i for i, (side, data) in enumerate(wire) if b"big@example.org" in data)
    assert sum(d.count(b"queued as") for s, d in wire[:big] if s == "S") == 2
    assert not wire[big][1].endswith(b" LAST\r\n")  # its data went after its envelope


async def test_a_long_batch_stays_on_one_connection() -> None:
    # One RSET per message: the testing server (as Postfix) restarts its junk-command
    # count after each message accepted.
    async with SmtpServer(tls="none") as server, client_for(server) as client:
        outcomes = await client.send_many([message(i % 50) for i in range(250)])
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert len(server.connections) == 1 and len(server.messages) == 250


async def test_pool_send_many_gets_the_window(autojump_clock: trio.testing.MockClock) -> None:
    server = ScriptedServer(hold=3)

    async def factory() -> trio.abc.Stream:
        return server

    async with SmtpPool(
        "mx.example", security=Security.NONE, stream_factory=factory, timeouts=SHORT,
        max_connections=1,
    ) as pool:  # fmt: skip
        outcomes = await pool.send_many([message(i) for i in range(3)])
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    assert server.groups_before_first_reply() == 3


# -- refusals at every position (the testing server) -----------------------------------------


def at_end_of_data(server: SmtpServer, k: int, action: Action) -> None:
    """``action`` on the k-th message's end of data (END_OF_DATA faults match no argument:
    the k before it pass through a fault that does nothing)."""
    if k:
        server.on("END_OF_DATA", Delay(0), times=k)
    server.on("END_OF_DATA", action, times=1)


REFUSALS: dict[str, Callable[[SmtpServer, int], object]] = {
    "MAIL refused": lambda s, k: s.on("MAIL", Respond(550, "5.7.1 no"), match=f"s{k}@"),
    "some RCPT refused": lambda s, k: s.on("RCPT", Respond(550, "5.1.1 no"), match=f"<b{k}@"),
    "BDAT refused": lambda s, k: at_end_of_data(s, k, Respond(554, "5.7.1 spam")),
}


@pytest.mark.parametrize("k", range(5))
@pytest.mark.parametrize("kind", REFUSALS)
async def test_a_refusal_touches_only_its_message(kind: str, k: int) -> None:
    items = [message(i, f"r{i}@example.net", f"b{i}@example.net") for i in range(5)]
    streams: list[CountingStream] = []
    async with SmtpServer(tls="none") as server:
        REFUSALS[kind](server, k)
        async with client_for(server, streams) as client:
            outcomes = await client.send_many(items)
            stats = client.statistics()
    for i, outcome in enumerate(outcomes):
        if i != k:
            assert isinstance(outcome, SendResult), (i, outcome)
            assert outcome.accepted == (f"r{i}@example.net", f"b{i}@example.net")
    refused = outcomes[k]
    if kind == "some RCPT refused":
        assert isinstance(refused, SmtpFailedRecipientsError) and refused.result is not None
        assert refused.result.accepted == (f"r{k}@example.net",)
    else:
        assert isinstance(refused, SmtpResponseError)
        assert refused.status_code == (550 if kind == "MAIL refused" else 554)
    accepted = [m.data for m in server.messages if m.accepted]
    assert accepted == [
        item.message for i, item in enumerate(items) if i != k or kind == "some RCPT refused"
    ]
    assert len(server.connections) == 1
    assert stats.messages_sent + stats.messages_failed == 5
    assert stats.messages_sent == 4 + (kind == "some RCPT refused")
    assert sum(w.count(b" LAST\r\n") for w in streams[0].writes) == 5


@pytest.mark.parametrize("k", range(5))
async def test_every_rcpt_refused_touches_only_its_message(k: int) -> None:
    async with SmtpServer(tls="none") as server:
        server.on("RCPT", Respond(550, "5.1.1 no"), match=f"<r{k}@")
        async with client_for(server) as client:
            outcomes = await client.send_many([message(i) for i in range(5)])
            stats = client.statistics()
    refused = outcomes[k]
    assert isinstance(refused, SmtpFailedRecipientsError) and refused.result is None
    assert all(isinstance(o, SendResult) for i, o in enumerate(outcomes) if i != k)
    assert [m.data for m in server.messages if m.accepted] == [
        message(i).message for i in range(5) if i != k
    ]
    assert (stats.messages_sent, stats.messages_failed) == (4, 1)


@pytest.mark.parametrize("after", ["a large message", "the next send"])
async def test_a_refused_transaction_is_reset_before_the_connection_leaves_the_window(
    after: str,
) -> None:
    # Every recipient of message 1 refused: its BDAT LAST is refused too and the server (as
    # Postfix) stays in the transaction MAIL opened (RFC 5321 §4.1.1.5, RFC 3030 §2).  The
    # window RSETs before its next group -- and must before the connection goes on without
    # it: otherwise what comes next (a message not in one write, or the next send) gets
    # "503 nested MAIL", refused because of message 1.
    large = OutgoingMessage(b"Subject: big\r\n\r\n" + b"y" * 300_000 + b"\r\n",
                            sender="big@example.org", recipients=["r@example.net"])  # fmt: skip
    items = [message(0), message(1)] + ([large] if after == "a large message" else [])
    async with SmtpServer(tls="none") as server:
        server.on("RCPT", Respond(550, "5.1.1 no"), match="<r1@")
        async with client_for(server) as client:
            outcomes = await client.send_many(items)
            then = await client.send(message(2).message, sender="s2@example.org",
                                     recipients=["r2@example.net"])  # fmt: skip
    refused = outcomes[1]
    assert isinstance(refused, SmtpFailedRecipientsError) and refused.result is None
    assert all(isinstance(o, SendResult) for i, o in enumerate(outcomes) if i != 1), outcomes
    assert isinstance(then, SendResult)
    assert len(server.connections) == 1
    assert [m.data for m in server.messages if m.accepted] == [
        item.message for i, item in enumerate(items) if i != 1
    ] + [message(2).message]


@pytest.mark.parametrize(
    ("verb", "k"),
    # (The first message in flight has no RSET.)
    [(verb, k) for verb in ("RSET", "MAIL", "RCPT", "BDAT") for k in range(verb == "RSET", 5)],
)
async def test_421_refuses_its_message_and_the_rest_go_again(
    verb: str, k: int, autojump_clock: trio.testing.MockClock
) -> None:

    def answer(i: int, command: str, argument: str) -> bytes | None:
        return b"421 4.3.2 closing\r\n" if (i, command) == (k, verb) else None

    # Every group is written before the first reply; the server closes after its 421.
    first, second = ScriptedServer(answer, hold=5), ScriptedServer()
    async with scripted_client([first, second]) as client:
        outcomes = await client.send_many([message(i) for i in range(5)])
    assert first.groups_before_first_reply() == 5
    refused = verb in ("RCPT", "BDAT") or (verb == "MAIL" and k == 0)
    for i, outcome in enumerate(outcomes):
        if i == k and refused:
            assert isinstance(outcome, SmtpResponseError) and outcome.status_code == 421
        else:
            # Before it: answered.  After it: not processed (the server closed), so sent
            # again; so is message k when nothing of it was processed (421 to its RSET, or
            # to its MAIL on a connection that already carried a message: stale).
            assert isinstance(outcome, SendResult), (i, outcome)
    again = [i for i in range(5) if i > k or (i == k and not refused)]
    assert delivered(first) == list(range(k))
    assert len(delivered(second)) == len(again)


@pytest.mark.parametrize("k", range(5))
@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "END_OF_DATA"])
async def test_421_from_the_testing_server_never_gives_a_false_outcome(verb: str, k: int) -> None:
    # Over TCP a server that closes with our groups unread may reset the connection, and
    # the reset may take its 421 (and replies before it) with it: then those messages are
    # unknown.  Whatever the timing: delivered => the server has it; refused or not
    # delivered => it does not.
    async with SmtpServer(tls="none") as server:
        if verb == "END_OF_DATA":
            at_end_of_data(server, k, Shutdown())
        else:
            server.on(verb, Shutdown(), match=f"s{k}@" if verb == "MAIL" else f"<r{k}@")
        async with client_for(server) as client:
            outcomes = await client.send_many([message(i) for i in range(5)])
    accepted = [m.data for m in server.messages if m.accepted]
    for i, outcome in enumerate(outcomes):
        copies = accepted.count(bytes(message(i).message))
        if isinstance(outcome, SendResult):
            assert copies == 1, (i, outcome)
        elif not isinstance(outcome, SmtpDeliveryUnknownError):
            assert copies == 0, (i, outcome)
        else:
            assert copies <= 1


# -- a connection lost after j replies --------------------------------------------------------

# Three messages in flight (the window bounded to three), one recipient each: message 0's
# replies are MAIL, RCPT, BDAT (1-3), then RSET, MAIL, RCPT, BDAT for 1 (4-7) and 2 (8-11).
FINAL_REPLY = {0: 3, 1: 7, 2: 11}


@pytest.mark.parametrize("j", range(12))
async def test_connection_lost_after_j_replies(
    j: int, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setattr(window, "WINDOW_MESSAGES", 3)
    first, second = ScriptedServer(hold=3, cut_after=j), ScriptedServer()
    async with scripted_client([first, second]) as client:
        outcomes = await client.send_many([message(i) for i in range(5)])
        after = await client.send(message(9).message, sender="a@b.c", recipients=["d@e.f"])
    assert isinstance(after, SendResult)
    for i in range(3):
        if j >= FINAL_REPLY[i]:
            assert isinstance(outcomes[i], SendResult), (i, outcomes[i])
        else:  # its group was wholly written: the server may have it
            assert isinstance(outcomes[i], SmtpDeliveryUnknownError), (i, outcomes[i])
    # Messages 3 and 4 were not written (or their write failed): the next connection.
    assert all(isinstance(o, SendResult) for o in outcomes[3:]), outcomes[3:]
    assert delivered(second)[:2] == [0, 1]  # (its own numbering: messages 3 and 4)
    assert client.statistics().messages_sent + client.statistics().messages_failed == 6


# -- deadlines --------------------------------------------------------------------------------


@pytest.mark.parametrize("stall", [0, 2, 4, 6])
async def test_a_reply_that_never_comes_times_out_within_its_budget(
    stall: int, autojump_clock: trio.testing.MockClock
) -> None:
    # Replies 0-2 answer message 0, 3-6 message 1, 7-10 message 2.
    server = ScriptedServer(hold=3, stall_at=stall)
    start = trio.current_time()
    async with scripted_client([server, ScriptedServer()]) as client:
        outcomes = await client.send_many([message(i) for i in range(3)])
    # One stalled reply, one budget (data_termination), then the connection is given up.
    assert trio.current_time() - start <= SHORT.data_termination + 1  # type: ignore[operator]
    final = {0: 2, 1: 6, 2: 10}
    for i, outcome in enumerate(outcomes):
        if final[i] < stall:
            assert isinstance(outcome, SendResult)
        else:
            assert isinstance(outcome, SmtpDeliveryTimeoutError), (i, outcome)


async def test_a_slow_source_is_never_timed(autojump_clock: trio.testing.MockClock) -> None:
    async def items() -> AsyncIterator[OutgoingMessage]:
        for i in range(4):
            yield message(i)
            await trio.sleep(100)  # far beyond every budget

    # Before the source is waited on, the window is emptied (tests/test_send_many_slow_source.py):
    # the wait itself is never timed.
    server = ScriptedServer()
    async with scripted_client([server]) as client:
        outcomes = await client.send_many(items())
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes


@pytest.mark.parametrize("how", ["cancelled", "raises"])
async def test_a_batch_stopped_with_groups_in_flight_is_never_reused(
    how: str, autojump_clock: trio.testing.MockClock
) -> None:
    # The source stops the batch (cancelled, or it raises) while two groups are written and
    # unanswered: their replies are still owed.  Reused, the connection would hand them to
    # the next send -- a message the server refuses reported delivered on message 0's 250.
    def answer(i: int, verb: str, argument: str) -> bytes | None:
        return b"554 5.7.1 refused\r\n" if (i, verb) == (2, "BDAT") else None

    first, second = ScriptedServer(answer, hold=3), ScriptedServer()
    async with scripted_client([first, second]) as client:
        with trio.CancelScope() as scope:

            async def items() -> AsyncIterator[OutgoingMessage]:
                yield message(0)
                yield message(1)
                if how == "cancelled":
                    scope.cancel()
                    await trio.lowlevel.checkpoint()
                raise RuntimeError("the source failed")

            with pytest.raises(RuntimeError) if how == "raises" else contextlib.nullcontext():
                await client.send_many(items())
        assert scope.cancelled_caught == (how == "cancelled")
        result = await client.send(message(9).message, sender="s9@example.org",
                                   recipients=["r9@example.net"])  # fmt: skip
    assert isinstance(result, SendResult)
    assert delivered(second) == [0]  # a new connection: the first one still owed replies
    assert [data for side, data in first.wire if side == "C" and b"s9@" in data] == []


# -- a stray reply ----------------------------------------------------------------------------


async def test_a_stray_reply_leaves_what_is_in_flight_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def answer(i: int, verb: str, argument: str) -> bytes | None:
        if i == 1 and verb == "BDAT":  # one reply too many: the rest are out of step
            return b"250 2.0.0 queued\r\n250 2.0.0 stray\r\n"
        if i == 2 and verb == "BDAT":
            return b"554 5.7.1 refused\r\n"
        return None

    first, second = ScriptedServer(answer, hold=4), ScriptedServer()
    async with scripted_client([first, second]) as client:
        outcomes = await client.send_many([message(i) for i in range(4)])
        await client.send(message(9).message, sender="a@b.c", recipients=["d@e.f"])
    # Never a refused message reported delivered: whatever was in flight is unknown.
    assert all(isinstance(o, SmtpDeliveryUnknownError) for o in outcomes), outcomes
    assert delivered(second) == [0]  # the follow-up send, on a new connection


async def test_a_refused_rset_ends_the_connection_after_what_is_in_flight(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setattr(window, "WINDOW_MESSAGES", 3)

    def answer(i: int, verb: str, argument: str) -> bytes | None:
        return b"500 5.5.1 what RSET\r\n" if (i, verb) == (1, "RSET") else None

    # Replies 0-2 answer message 0, 3-6 message 1 (its RSET refused); message 2's come late,
    # after the client has seen the refusal.
    first, second = ScriptedServer(answer, hold=3, late_from=7), ScriptedServer()
    async with scripted_client([first, second]) as client:
        outcomes = await client.send_many([message(i) for i in range(5)])
    # Messages 0-2 were in flight: their own replies decide them.  The session's state is
    # unknown after the refused RSET: 3 and 4 go on a new connection.
    assert all(isinstance(o, SendResult) for o in outcomes), outcomes
    assert delivered(first) == [0, 1, 2]
    assert len(delivered(second)) == 2


async def test_a_stray_reply_before_a_refusal_never_makes_it_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The stray comes with message 0's reply; message 1's refusal (and what follows) comes
    # later, in another read.  Read in order, message 1's RCPT 250 would answer its BDAT:
    # its outcome must wait until the window's replies are all in and found in step.
    def answer(i: int, verb: str, argument: str) -> bytes | None:
        if (i, verb) == (0, "BDAT"):
            return b"250 2.0.0 queued\r\n250 2.0.0 stray\r\n"
        if (i, verb) == (1, "BDAT"):
            return b"554 5.7.1 refused\r\n"
        return None

    # Replies 0-2 answer message 0 (the stray with 2), 3-6 message 1: 6 and on come late.
    first, second = ScriptedServer(answer, hold=3, late_from=6), ScriptedServer()
    async with scripted_client([first, second]) as client:
        outcomes = await client.send_many([message(i) for i in range(3)])
    assert not isinstance(outcomes[1], SendResult)
    assert all(isinstance(o, SmtpDeliveryUnknownError) for o in outcomes), outcomes


async def test_a_stray_refusal_read_as_mail_reply_is_no_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A stray 550 before message 0's MAIL reply: read in order, MAIL looks refused; the
    # surplus shows with the replies that follow, so nothing read is trusted -- message 0
    # (which the server delivered) is unknown, not "not delivered".
    def answer(i: int, verb: str, argument: str) -> bytes | None:
        return b"550 5.7.1 stray\r\n250 2.1.0 ok\r\n" if (i, verb) == (0, "MAIL") else None

    # Reply 0 is MAIL's (with the stray before it); the others come later.
    first, second = ScriptedServer(answer, hold=2, late_from=1), ScriptedServer()
    async with scripted_client([first, second]) as client:
        outcomes = await client.send_many([message(i) for i in range(2)])
    assert delivered(first) == [0, 1]
    assert all(isinstance(o, SmtpDeliveryUnknownError) for o in outcomes), outcomes
