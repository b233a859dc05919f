"""Checking :class:`~trio_smtp.SmtpClient`'s constructor arguments.

Everything wrong with the configuration is a ``TypeError`` or ``ValueError`` raised by the
constructor, before any task or connection exists (the seed's failure table: no host with
network delivery, a bad port, TLS with a pickup directory).  The result is the immutable
:class:`~trio_smtp._delivery.session.SessionConfig` the client uses for every connection.
"""

from __future__ import annotations

import ipaddress
import math
import os
import ssl

from .. import sasl
from .._config import DeliveryMethod, Security, Timeouts, default_port
from .._credentials import Credentials, OAuth2
from .._delivery.session import SessionConfig
from .._io.proxy import Proxy, check_destination, parse_proxy
from .._io.transport import StreamFactory
from ..protocol import LocalProtocolError, validate_domain

__all__ = ["check_pool_options", "session_config"]


def session_config(
    host: str | None,
    port: int | None,
    *,
    security: Security | None,
    credentials: Credentials | None,
    ssl_context: ssl.SSLContext | None,
    local_hostname: str | None,
    timeouts: Timeouts | None,
    delivery_method: DeliveryMethod,
    pickup_directory: str | os.PathLike[str] | None,
    stream_factory: StreamFactory | None,
    unix_socket: str | os.PathLike[str] | None,
    proxy: str | None = None,
    source_address: str | None = None,
) -> SessionConfig:
    """Validate the constructor's arguments; see :class:`~trio_smtp.SmtpClient`."""
    _check_types(security, delivery_method, timeouts, credentials)
    pickup = delivery_method is DeliveryMethod.PICKUP_DIRECTORY
    security = _security(security, pickup=pickup, unix=unix_socket is not None)
    if pickup and pickup_directory is None:
        raise ValueError("pickup_directory is required for pickup-directory delivery")
    socket_path = _check_unix_socket(unix_socket, port, stream_factory, host, security)
    if not pickup and not host and socket_path is None:
        raise ValueError("host is required for network delivery")
    if ssl_context is None and security is not Security.NONE:
        ssl_context = ssl.create_default_context()  # verifies certificates and host names
    return SessionConfig(
        host=host or "",
        port=_check_port(port, security),
        security=security,
        ssl_context=ssl_context,
        timeouts=timeouts if timeouts is not None else Timeouts(),
        credentials=credentials,
        local_hostname=_check_local_hostname(local_hostname),
        stream_factory=stream_factory,
        unix_socket=socket_path,
        proxy=_check_proxy(proxy, host, pickup, stream_factory, socket_path),
        source_address=_check_source_address(
            source_address, pickup, stream_factory, socket_path, proxy
        ),
    )


def _security(security: Security | None, *, pickup: bool, unix: bool) -> Security:
    """``None`` (not given): NONE for a pickup directory or a Unix socket (both local),
    STARTTLS (required) for the network.  Given: TLS with a pickup directory is refused
    (.NET: "EnableSsl set to true with a pickup directory")."""
    if security is None:
        return Security.NONE if pickup or unix else Security.STARTTLS
    if pickup and security is not Security.NONE:
        raise ValueError(
            f"a pickup directory cannot use TLS (security={security.name}): "
            "leave security out or pass Security.NONE"
        )
    return security


def _check_unix_socket(
    unix_socket: str | os.PathLike[str] | None,
    port: int | None,
    stream_factory: StreamFactory | None,
    host: str | None,
    security: Security,
) -> str | None:
    if unix_socket is None:
        return None
    path = os.fspath(unix_socket)
    if not isinstance(path, str) or not path:
        raise TypeError("unix_socket must be a non-empty str or os.PathLike[str]")
    if "\0" in path:
        raise ValueError("unix_socket contains a NUL character")
    if port is not None:
        raise ValueError("give either unix_socket or port, not both")
    if stream_factory is not None:
        raise ValueError("give either unix_socket or stream_factory, not both")
    if security is not Security.NONE and not host:
        # The certificate is checked against a name; a socket path is not one.
        raise ValueError("TLS over a Unix socket needs host= (the name on the certificate)")
    return path


def _check_proxy(
    proxy: str | None,
    host: str | None,
    pickup: bool,
    stream_factory: StreamFactory | None,
    unix_socket: str | None,
) -> Proxy | None:
    """``proxy=`` is a URL (see :func:`~trio_smtp._io.proxy.parse_proxy`) for TCP delivery."""
    if proxy is None:
        return None
    if pickup:
        raise ValueError("proxy= cannot be used with a pickup directory")
    if stream_factory is not None or unix_socket is not None:
        what = "stream_factory" if stream_factory is not None else "a Unix socket"
        raise ValueError(f"proxy= cannot be used with {what}")
    parsed = parse_proxy(proxy)
    check_destination(host or "")
    return parsed


def _check_source_address(
    address: str | None,
    pickup: bool,
    stream_factory: StreamFactory | None,
    unix_socket: str | None,
    proxy: str | None,
) -> str | None:
    """``source_address=`` is the local IP address TCP connections to the server leave from
    (the port is the system's choice): an address literal, for TCP delivery only."""
    if address is None:
        return None
    if not isinstance(address, str):
        raise TypeError(f"source_address must be a str, not {type(address).__name__}")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(
            f"source_address must be an IP address of this machine, not {address!r}"
        ) from None
    for given, what in (
        (pickup, "a pickup directory"),
        (stream_factory is not None, "stream_factory"),
        (unix_socket is not None, "a Unix socket"),
        (proxy is not None, "proxy= (the connection goes to the proxy)"),
    ):
        if given:
            raise ValueError(f"source_address= cannot be used with {what}")
    return str(parsed)


def _check_local_hostname(name: str | None) -> str | None:
    """RFC 5321 §4.1.1.1: EHLO's argument is a domain or an address literal (ASCII)."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"local_hostname must be a str, not {type(name).__name__}")
    try:
        return validate_domain(name)
    except LocalProtocolError as exc:
        raise ValueError(f"invalid local_hostname {name!r}: {exc}") from None


def _check_types(
    security: object, delivery_method: object, timeouts: object, credentials: object
) -> None:
    if security is not None and not isinstance(security, Security):
        raise TypeError(f"security must be a trio_smtp.Security, not {security!r}")
    if not isinstance(delivery_method, DeliveryMethod):
        raise TypeError(f"delivery_method must be a DeliveryMethod, not {delivery_method!r}")
    if timeouts is not None and not isinstance(timeouts, Timeouts):
        raise TypeError(f"timeouts must be a trio_smtp.Timeouts, not {timeouts!r}")
    if credentials is None or isinstance(credentials, (sasl.Mechanism, OAuth2)):
        return
    if callable(credentials):
        return
    if not (
        isinstance(credentials, tuple)
        and len(credentials) == 2
        and all(isinstance(part, str) for part in credentials)
    ):
        raise TypeError(
            "credentials must be (user, password), trio_smtp.OAuth2, a SASL mechanism, or None"
        )


def _check_port(port: object, security: Security) -> int:
    if port is None:
        return default_port(security)
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 < port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, not {port}")
    return port


def check_pool_options(
    max_connections: int,
    idle_timeout: float | None,
    max_messages: int | None,
    rate: float | None,
) -> None:
    """:class:`~trio_smtp.SmtpPool`'s own options, checked (ValueError)."""
    if not isinstance(max_connections, int) or max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    if idle_timeout is not None and not idle_timeout > 0:
        raise ValueError("idle_timeout must be positive (or None)")
    if max_messages is not None and max_messages < 1:
        raise ValueError("max_messages_per_connection must be at least 1 (or None)")
    if rate is not None and not (0 < rate < math.inf):
        raise ValueError("rate must be a positive number of messages per second (or None)")
