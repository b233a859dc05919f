"""Small messages for tests."""

from __future__ import annotations

from email.message import EmailMessage


def build_message(
    to: str = "rcpt@example.net", *, body: str = "Hello from trio_smtp.\n", **headers: str
) -> EmailMessage:
    """A small message from ``sender@example.org`` to ``to``; extra headers by keyword
    (underscores become hyphens: ``Message_ID=...``)."""
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.org>"
    msg["To"] = to
    msg["Subject"] = "test"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg
