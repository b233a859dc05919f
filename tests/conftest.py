"""Shared fixtures (kept minimal).  The ``smtp_server`` / ``smtp_client_factory`` fixtures
come from the trio_smtp.testing pytest plugin."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest


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


@pytest.fixture
def make_message() -> Callable[..., EmailMessage]:
    """``make_message(to=..., body=..., **headers)`` -> a small EmailMessage (see
    :func:`build_message`)."""
    return build_message
