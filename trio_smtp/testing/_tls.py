"""Certificates for the testing server, made on the fly with trustme.

trustme is a test dependency (the ``test`` extra), so it is imported only when a server that
needs TLS is created; without it the error says what to install.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

__all__ = ["TlsMaterial"]

#: Names every testing certificate is valid for.
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def _import_trustme() -> Any:
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "trio_smtp.testing needs 'trustme' to make TLS certificates: "
            "pip install 'trio-smtp[test]' (or pip install trustme), "
            "or create the server with tls='none'"
        ) from exc
    return trustme


class TlsMaterial:
    """A throw-away CA and a server certificate for ``names``."""

    def __init__(self, names: tuple[str, ...] = DEFAULT_NAMES) -> None:
        trustme = _import_trustme()
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert(*dict.fromkeys(names))
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(self.server_context)

    def client_context(self) -> ssl.SSLContext:
        """A new client-side context that trusts (only) this CA, hostname checks on."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM-encoded (for clients configured with a file)."""
        return bytes(self._ca.cert_pem.bytes())

    def write_ca_file(self, path: str | Path) -> Path:
        """Write :attr:`ca_pem` to ``path`` and return it."""
        target = Path(path)
        target.write_bytes(self.ca_pem)
        return target
