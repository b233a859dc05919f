"""The name the client gives in EHLO/HELO when the user does not choose one.

RFC 5321 §4.1.1.1 and §4.1.4: the argument of EHLO is the client's fully-qualified domain
name "if one is available", otherwise an address literal (§4.1.3: ``[192.0.2.1]`` or
``[IPv6:2001:db8::1]``).  Servers commonly refuse names that are not fully qualified
(Postfix's ``reject_non_fqdn_helo_hostname``, many spam filters), so a name is used only when
it is a syntactically valid domain (§4.1.2 ``Domain``: LDH labels) with at least one dot and
is not a placeholder such as ``localhost`` or ``*.localdomain``; otherwise the address
literal of the connection's local address is sent.

``socket.getfqdn`` may wait on DNS for many seconds, so it runs in a worker thread (abandoned
on cancellation) and its result is cached for the life of the process.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import trio

__all__ = ["address_literal", "is_ehlo_domain", "local_fqdn"]

# RFC 5321 §4.1.2: sub-domain = Let-dig [Ldh-str]; labels of at most 63 octets (RFC 1035).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_PLACEHOLDERS = ("localhost", "localdomain", "local", "invalid", "example", "test")

#: The cached result of socket.getfqdn (None until the first lookup).
_cached_fqdn: str | None = None


def is_ehlo_domain(name: str) -> bool:
    """True when ``name`` is fit to be sent as EHLO's domain: an ASCII LDH domain of at most
    255 octets with at least two labels, and not a placeholder (``localhost``,
    ``*.localdomain``, ``*.local`` and the RFC 2606/6761 reserved top-level names)."""
    name = name[:-1] if name.endswith(".") else name
    if not name.isascii() or len(name) > 255:
        return False
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return False
    # An all-numeric last label means a dotted IP address, which must be a literal instead.
    if labels[-1].isdigit():
        return False
    # "localhost6.localdomain6" and friends come from distribution /etc/hosts defaults.
    first, last = labels[0].lower().rstrip("46"), labels[-1].lower().rstrip("46")
    return first != "localhost" and last not in _PLACEHOLDERS


def address_literal(address: str) -> str:
    """RFC 5321 §4.1.3: ``"192.0.2.1"`` -> ``"[192.0.2.1]"``, ``"::1"`` ->
    ``"[IPv6:::1]"``.  A zone id (``%eth0``) is dropped: it means nothing to the server.
    Raises :exc:`ValueError` for something that is not an IP address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"[{ip.ipv4_mapped}]"
        return f"[IPv6:{ip.compressed}]"
    return f"[{ip}]"


def _lookup() -> str:
    return socket.getfqdn()


async def _fqdn() -> str:
    global _cached_fqdn
    if _cached_fqdn is None:
        # Abandoned on cancellation: the thread finishes on its own, nothing is left open.
        _cached_fqdn = await trio.to_thread.run_sync(_lookup, abandon_on_cancel=True)
    else:
        await trio.lowlevel.checkpoint()
    return _cached_fqdn


async def local_fqdn(local_address: str | None = None) -> str:
    """The EHLO domain: this machine's FQDN, or an address literal when it has none.

    The FQDN comes from :func:`socket.getfqdn`, looked up once in a worker thread and cached.
    When it is not a usable domain (see :func:`is_ehlo_domain`), the result is
    :func:`address_literal` of ``local_address`` — pass the connected socket's local address
    (``sock.getsockname()[0]``), which is what the server sees — or ``"[127.0.0.1]"``
    without one or when it is not an IP address.  Always checkpoints.
    """
    name = await _fqdn()
    if is_ehlo_domain(name):
        return name.rstrip(".")
    try:
        return address_literal(local_address or "127.0.0.1")
    except ValueError:  # not an IP address (a Unix socket's path, say)
        return "[127.0.0.1]"
