"""``trio-smtp demo``: one real send, end to end, on loopback.

Starts the testing server (:mod:`trio_smtp.testing`) on 127.0.0.1 with STARTTLS and AUTH,
sends one message through a real :class:`~trio_smtp.SmtpClient` with ``send_async``, and
prints the :class:`~trio_smtp.SendCompleted` event and the message as the server received
it.  Nothing leaves the machine.
"""

from __future__ import annotations

from email.message import EmailMessage

import trio

from .._client.client import SendCompleted, SmtpClient
from .._config import Security

__all__ = ["run_demo"]

_USER, _PASSWORD = "demo", "demo-password"


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Trio SMTP demo <demo@example.org>"
    msg["To"] = "Recipient <rcpt@example.net>"
    msg["Bcc"] = "hidden@example.net"
    msg["Subject"] = "Hello from trio_smtp"
    msg["Message-ID"] = "<demo-1@example.org>"
    msg.set_content("Sent with SmtpClient.send_async over STARTTLS + AUTH.\n.A dotted line.\n")
    return msg


def _show_event(event: SendCompleted[str]) -> None:
    print("SendCompleted event:")
    print(f"  user_token = {event.user_token!r}")
    print(f"  cancelled  = {event.cancelled}")
    print(f"  error      = {event.error!r}")
    if event.result is not None:
        print(f"  accepted   = {list(event.result.accepted)}")
        print(f"  reply      = {event.result.reply}")
        print(f"  message_id = {event.result.message_id}")


async def run_demo() -> int:
    """Run the demo; return the process exit status (0 when the message was delivered)."""
    try:
        from ..testing import SmtpServer
    except ImportError as exc:  # trustme is a test extra
        print(f"trio-smtp demo needs the test extra (pip install 'trio-smtp[test]'): {exc}")
        return 2
    with trio.fail_after(60):  # never hang, whatever happens
        async with SmtpServer(tls="starttls", credentials={_USER: _PASSWORD}) as server:
            print(f"testing server listening on {server.host}:{server.port} (STARTTLS, AUTH)")
            client = SmtpClient(
                server.host,
                server.port,
                security=Security.STARTTLS,
                ssl_context=server.ssl_context,
                credentials=(_USER, _PASSWORD),
            )
            async with client:
                client.send_async(_message(), user_token="demo-1")
                event = await client.completed.receive()
            _show_event(event)
            if not server.messages:
                print("the server received no message")
                return 1
            received = server.messages[0]
            record = server.connections[0]
            print("\nThe server received:")
            print(
                f"  over {record.tls_version}, authenticated as {record.auth_identity!r} "
                f"with {record.auth_mechanism}"
            )
            print(f"  MAIL FROM:<{received.sender}>  RCPT TO: {received.recipients}")
            print("  commands: " + " ".join(verb for verb in record.verbs if verb))
            print("-" * 72)
            print(received.data.decode("utf-8", "replace").replace("\r\n", "\n"), end="")
            print("-" * 72)
    return 0 if event.error is None and not event.cancelled else 1
