"""SmtpResponseError.command: which command the server refused, as a typed attribute a
caller (and SmtpPool's overload detection) can test instead of the error's wording."""

from __future__ import annotations

import pytest

from trio_smtp import OutgoingMessage, Security, SmtpClient, SmtpResponseError
from trio_smtp.testing import Respond, SmtpServer

FROM = "from@example.org"
TO = ["to@example.net"]
DATA = b"Subject: x\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("disable", "trigger", "code", "command"),
    [
        ((), "MAIL", 451, "MAIL"),
        (("CHUNKING",), "DATA", 554, "DATA"),
        (("CHUNKING",), "END_OF_DATA", 452, "end of data"),
        ((), "END_OF_DATA", 552, "end of data"),  # BDAT n LAST
        (("PIPELINING",), "MAIL", 421, None),  # the server closing: no one command
    ],
)
@pytest.mark.parametrize("many", [False, True], ids=["send", "send_many"])
async def test_the_refused_command_is_named(
    disable: tuple[str, ...], trigger: str, code: int, command: str | None, many: bool
) -> None:
    async with SmtpServer(tls="none", disable=disable) as server:
        server.on(trigger, Respond(code, "4.0.0 no" if code < 500 else "5.0.0 no"))
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            if many:
                [outcome] = await client.send_many(
                    [OutgoingMessage(DATA, sender=FROM, recipients=TO)]
                )
                assert isinstance(outcome, SmtpResponseError)
                error = outcome
            else:
                with pytest.raises(SmtpResponseError) as caught:
                    await client.send(DATA, sender=FROM, recipients=TO)
                error = caught.value
    assert error.reply is not None and error.reply.code == code
    assert error.command == command


async def test_a_refused_bdat_chunk_is_named() -> None:
    async with SmtpServer(tls="none") as server:
        server.on("BDAT", Respond(554, "5.0.0 no"))
        async with SmtpClient(server.host, server.port, security=Security.NONE) as client:
            with pytest.raises(SmtpResponseError) as caught:
                # Large enough for more than one chunk: the first, not the last, is refused.
                await client.send(DATA + b"x" * (1 << 20) + b"\r\n", sender=FROM, recipients=TO)
    assert caught.value.command == "BDAT"
