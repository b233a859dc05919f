"""Shared fixtures.  The ``smtp_server`` / ``smtp_client_factory`` fixtures come from the
trio_smtp.testing pytest plugin; helpers a test imports live in the :mod:`helpers` package."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest
from helpers.messages import build_message


@pytest.fixture
def make_message() -> Callable[..., EmailMessage]:
    """``make_message(to=..., body=..., **headers)`` -> a small EmailMessage (see
    :func:`build_message`)."""
    return build_message
