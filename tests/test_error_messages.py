"""Error messages a person reads: each refused recipient with its own reply."""

from __future__ import annotations

import pytest

from trio_smtp import Security, SmtpClient, SmtpFailedRecipientsError
from trio_smtp.testing import Respond, SmtpServer

BODY = b"Subject: x\r\n\r\nx\r\n"


async def send(server: SmtpServer, recipients: list[str]) -> SmtpFailedRecipientsError:
    client = SmtpClient(server.host, server.port, security=Security.NONE)
    with pytest.raises(SmtpFailedRecipientsError) as caught:
        async with client:
            await client.send(BODY, sender="a@example.org", recipients=recipients)
    return caught.value


async def test_mixed_refusals_each_show_their_own_reply() -> None:
    async with SmtpServer() as server:
        server.on("RCPT", Respond(450, "4.2.1 later"), match="temp@")
        server.on("RCPT", Respond(550, "5.1.1 no such user"), match="perm@")
        error = await send(server, ["ok@example.net", "temp@example.net", "perm@example.net"])
    assert str(error) == (
        "some recipients refused: temp@example.net: 450 4.2.1 later; "
        "perm@example.net: 550 5.1.1 no such user"
    )
    # Mixed: not transient as a whole (the 550 would fail again), each failure says its own.
    assert not error.is_transient
    assert [f.is_transient for f in error.failures] == [True, False]


async def test_all_transient_is_transient() -> None:
    async with SmtpServer() as server:
        server.on("RCPT", Respond(450, "4.2.1 later"))
        error = await send(server, ["t1@example.net", "t2@example.net"])
    assert str(error) == (
        "all recipients refused: t1@example.net: 450 4.2.1 later; t2@example.net: 450 4.2.1 later"
    )
    assert error.is_transient
    assert error.result is None


async def test_a_long_list_is_cut_in_the_message_but_not_in_failures() -> None:
    recipients = [f"r{i}@example.net" for i in range(25)]
    async with SmtpServer() as server:
        server.on("RCPT", Respond(550, "5.1.1 no"))
        error = await send(server, recipients)
    assert len(error.failures) == 25
    assert str(error).endswith("r19@example.net: 550 5.1.1 no; and 5 more")
