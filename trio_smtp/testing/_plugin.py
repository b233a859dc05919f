"""pytest plugin: fixtures for :mod:`trio_smtp.testing` (registered via ``pytest11``).

Fixtures (for pytest-trio tests):

``smtp_server``
    A running :class:`~trio_smtp.testing.SmtpServer` on 127.0.0.1, STARTTLS, with the
    credentials ``{"user": "password"}``.  Configure it per test with the ``smtp_server``
    marker, whose keyword arguments go to the constructor::

        @pytest.mark.smtp_server(require_auth=True, disable={"PIPELINING"})
        async def test_x(smtp_server): ...

    A crash in a connection handler fails the test at teardown, and so does a fault marked
    ``required`` (or any, with ``require_faults_fired=True``) that never fired.

``smtp_client_factory``
    ``smtp_client_factory(**kwargs)`` returns a :class:`trio_smtp.SmtpClient` pointed at
    ``smtp_server`` with the right security mode and an ``ssl_context`` that trusts its
    certificate; keyword arguments override (for example ``credentials=("user", "password")``).

Everything is imported when a fixture is used, so the plugin loads even where trustme (a
test extra) is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from trio_smtp import SmtpClient
    from trio_smtp.testing import SmtpServer

#: The credentials the default ``smtp_server`` accepts.
DEFAULT_CREDENTIALS = {"user": "password"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "smtp_server(**kwargs): keyword arguments for the smtp_server fixture's SmtpServer",
    )


@pytest.fixture
async def smtp_server(request: pytest.FixtureRequest) -> AsyncIterator[SmtpServer]:
    """A running testing SMTP server (see the module docstring)."""
    from trio_smtp.testing import SmtpServer

    kwargs: dict[str, Any] = {"credentials": DEFAULT_CREDENTIALS}
    marker = request.node.get_closest_marker("smtp_server")
    if marker is not None:
        kwargs.update(marker.kwargs)
    async with SmtpServer(**kwargs) as server:
        yield server


@pytest.fixture
def smtp_client_factory(smtp_server: SmtpServer) -> Callable[..., SmtpClient]:
    """Make :class:`trio_smtp.SmtpClient` objects that talk to ``smtp_server``."""
    from trio_smtp import Security, SmtpClient
    from trio_smtp.testing import TlsMode

    security = {
        TlsMode.NONE: Security.NONE,
        TlsMode.STARTTLS: Security.STARTTLS,
        TlsMode.IMPLICIT: Security.IMPLICIT_TLS,
    }[smtp_server.config.tls]

    def factory(**kwargs: Any) -> SmtpClient:
        kwargs.setdefault("security", security)
        if smtp_server.config.tls is not TlsMode.NONE:
            kwargs.setdefault("ssl_context", smtp_server.ssl_context)
        return SmtpClient(smtp_server.host, smtp_server.port, **kwargs)

    return factory
