"""One mail transaction: MAIL, RCPT..., DATA, the message, and the outcome.

Theory of operation: with PIPELINING (RFC 2920) MAIL, every RCPT and DATA go in one write and
every reply is read and matched in order; without it, one command at a time.  Then:

* MAIL refused: SmtpResponseError.  Every recipient refused: SmtpFailedRecipientsError with
  ``result=None`` and no body is sent (only the terminator, if a pipelined DATA got 354,
  RFC 2920 §3.1).  DATA refused: SmtpResponseError.
* Otherwise the message goes to the accepted recipients; if some were refused, the message
  is delivered to the others and SmtpFailedRecipientsError is raised with ``.result`` saying
  who got it (the seed's behaviour).
* After a failed transaction the server is told RSET (RFC 5321 §4.1.1.5); a 421 anywhere
  closes the connection (RFC 5321 §3.8) so the next send reconnects.
"""

from __future__ import annotations

from typing import Literal

from ._errors import (
    SmtpConnectError,
    SmtpError,
    SmtpFailedRecipientError,
    SmtpFailedRecipientsError,
    SmtpResponseError,
)
from ._message import PreparedMessage, check_against_server
from ._results import SendResult
from ._transport import Transport
from .protocol import BodyKind, Data, Extensions, LocalProtocolError, Mail, Rcpt, Reply, Rset

__all__ = ["ConnectionStaleError", "deliver"]


class ConnectionStaleError(SmtpConnectError):
    """A reused connection turned out dead before the server accepted anything (it closed
    an idle session, or said 421): safe to retry once on a new connection."""


async def deliver(transport: Transport, prepared: PreparedMessage) -> SendResult:
    """Run one transaction on a ready session; see the module docstring for the outcomes."""
    extensions = transport.conn.extensions
    check_against_server(prepared, extensions)  # RFC 1870 §4, RFC 6531 §3.4: before MAIL
    mail = _mail_command(prepared, extensions)
    try:
        result = await _transaction(transport, prepared, mail)
    except SmtpError as exc:
        await _after_failure(transport, exc)
        raise
    transport.transactions += 1
    return result


def _mail_command(prepared: PreparedMessage, extensions: Extensions) -> Mail:
    body: Literal["8BITMIME"] | None = None
    if prepared.body_kind is not BodyKind.SEVEN_BIT and extensions.eightbitmime:
        body = "8BITMIME"  # RFC 6152 §3
    return Mail(
        prepared.envelope.sender,
        size=prepared.size if "SIZE" in extensions else None,  # RFC 1870 §6
        body=body,
        smtputf8=prepared.smtputf8_required or (prepared.smtputf8_wanted and extensions.smtputf8),
    )


async def _transaction(transport: Transport, prepared: PreparedMessage, mail: Mail) -> SendResult:
    recipients = prepared.envelope.recipients
    data_reply: Reply | None
    if transport.conn.extensions.pipelining:
        mail_reply, rcpt_replies, data_reply = await _envelope_pipelined(
            transport, mail, recipients
        )
    else:
        mail_reply, rcpt_replies, data_reply = await _envelope_one_by_one(
            transport, mail, recipients
        )
    accepted: list[str] = []
    rejected: dict[str, Reply] = {}
    for recipient, reply in zip(recipients, rcpt_replies, strict=False):
        if reply.code // 100 == 2:
            accepted.append(recipient)
        else:
            rejected[recipient] = reply
    if (
        data_reply is not None
        and data_reply.code == 354
        and (not accepted or mail_reply.code != 250)
    ):
        # RFC 2920 §3.1: DATA went in the same write; never send a body nobody should get.
        await transport.write(transport.conn.end_data(), "the end of data", None)
        await transport.read_reply("the end of data", transport.timeouts.data_termination)
        data_reply = None
    if mail_reply.code != 250:
        raise SmtpResponseError("the server refused the sender (MAIL)", reply=mail_reply)
    if not accepted:
        raise SmtpFailedRecipientsError(_failures(rejected))
    assert data_reply is not None
    if data_reply.code != 354:
        raise SmtpResponseError("the server refused DATA", reply=data_reply)
    final = await transport.send_message(prepared.data)
    if final.code // 100 != 2:
        raise SmtpResponseError("the server refused the message", reply=final)
    result = SendResult(tuple(accepted), rejected, final, prepared.message_id)
    if rejected:
        raise SmtpFailedRecipientsError(_failures(rejected), result)
    return result


def _failures(rejected: dict[str, Reply]) -> list[SmtpFailedRecipientError]:
    return [SmtpFailedRecipientError(r, reply) for r, reply in rejected.items()]


def _check_421(reply: Reply) -> Reply:
    # RFC 5321 §3.8: 421 means the server is closing the channel; stop reading replies.
    if reply.code == 421:
        raise SmtpResponseError("the server is closing the connection", reply=reply)
    return reply


async def _mail_reply(transport: Transport, mail: Mail) -> Reply:
    """The MAIL reply; a reused connection that is already dead becomes ConnectionStale."""
    limit = transport.timeouts.mail
    try:
        if transport.conn.extensions.pipelining:
            reply = await transport.read_reply("MAIL", limit)
        else:
            reply = await transport.command(mail, "MAIL", limit)
    except SmtpConnectError as exc:
        if transport.transactions:
            raise ConnectionStaleError(f"the reused connection was closed: {exc}") from exc
        raise
    if reply.code == 421 and transport.transactions:
        raise ConnectionStaleError("the reused connection was closed", reply=reply)
    return _check_421(reply)


async def _envelope_pipelined(
    transport: Transport, mail: Mail, recipients: tuple[str, ...]
) -> tuple[Reply, list[Reply], Reply]:
    conn = transport.conn
    group = [conn.send(mail), *(conn.send(Rcpt(r)) for r in recipients), conn.send(Data())]
    await transport.write(b"".join(group), "MAIL", transport.timeouts.mail)  # one write
    mail_reply = await _mail_reply(transport, mail)
    rcpt_replies = [
        _check_421(await transport.read_reply("RCPT", transport.timeouts.rcpt)) for _ in recipients
    ]
    data_reply = await transport.read_reply("DATA", transport.timeouts.data_initiation)
    return mail_reply, rcpt_replies, _check_421(data_reply)


async def _envelope_one_by_one(
    transport: Transport, mail: Mail, recipients: tuple[str, ...]
) -> tuple[Reply, list[Reply], Reply | None]:
    mail_reply = await _mail_reply(transport, mail)
    if mail_reply.code != 250:
        return mail_reply, [], None
    rcpt_replies = []
    for recipient in recipients:
        reply = await transport.command(Rcpt(recipient), "RCPT", transport.timeouts.rcpt)
        rcpt_replies.append(_check_421(reply))
    if not any(reply.code // 100 == 2 for reply in rcpt_replies):
        return mail_reply, rcpt_replies, None
    data_reply = await transport.command(Data(), "DATA", transport.timeouts.data_initiation)
    return mail_reply, rcpt_replies, _check_421(data_reply)


async def _after_failure(transport: Transport, error: SmtpError) -> None:
    """RSET after a refused transaction; close after 421 or a broken session."""
    if transport.broken:
        return
    if isinstance(error, SmtpFailedRecipientsError) and error.result is not None:
        return  # delivered to the others: the transaction completed
    if error.reply is not None and error.reply.code == 421:
        transport.mark_broken()
        return
    try:
        reply = await transport.command(Rset(), "RSET", transport.timeouts.command)
    except (SmtpError, LocalProtocolError):
        transport.mark_broken()  # the original error matters more than RSET's
        return
    if reply.code != 250:
        transport.mark_broken()
