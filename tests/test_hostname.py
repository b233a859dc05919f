"""The default EHLO domain: FQDN without blocking, address literal otherwise."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import trio

from trio_smtp._io import hostname as _hostname
from trio_smtp._io.hostname import address_literal, is_ehlo_domain, local_fqdn


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _hostname._cached_fqdn = None
    yield
    _hostname._cached_fqdn = None


def fake_lookup(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []

    def lookup() -> str:
        calls.append(threading.get_ident())
        return name

    monkeypatch.setattr(_hostname, "_lookup", lookup)
    return calls


async def test_uses_the_fqdn_and_caches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_lookup(monkeypatch, "mail-client.example.org")
    assert await local_fqdn() == "mail-client.example.org"
    assert await local_fqdn("192.0.2.7") == "mail-client.example.org"
    assert len(calls) == 1
    # The lookup ran in a worker thread, not on the event loop's thread.
    assert calls[0] != threading.get_ident()


async def test_trailing_dot_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_lookup(monkeypatch, "host.example.org.")
    assert await local_fqdn() == "host.example.org"


@pytest.mark.parametrize(
    "name",
    ["localhost", "localhost.localdomain", "localhost6.localdomain6", "box", "box.local", ""],
)
async def test_non_fqdn_falls_back_to_address_literal(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    fake_lookup(monkeypatch, name)
    assert await local_fqdn() == "[127.0.0.1]"
    assert await local_fqdn("192.0.2.7") == "[192.0.2.7]"
    assert await local_fqdn("2001:db8::7") == "[IPv6:2001:db8::7]"
    assert await local_fqdn("/run/smtp.sock") == "[127.0.0.1]"  # a Unix socket


async def test_real_lookup_gives_something_sendable() -> None:
    result = await local_fqdn()
    assert result == socket.getfqdn().rstrip(".") or result == "[127.0.0.1]"
    assert is_ehlo_domain(result) or result == "[127.0.0.1]"


async def test_slow_lookup_does_not_block_and_can_be_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow_lookup() -> str:
        entered.set()
        release.wait(30)
        return "late.example.org"

    monkeypatch.setattr(_hostname, "_lookup", slow_lookup)
    ticks = 0
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(local_fqdn)
            await trio.to_thread.run_sync(entered.wait, 30)
            for _ in range(10):  # the event loop still runs while the lookup hangs
                ticks += 1
                await trio.lowlevel.checkpoint()
            scope.cancel()
    release.set()
    assert ticks == 10
    assert scope.cancelled_caught
    assert _hostname._cached_fqdn is None  # an abandoned lookup is not cached


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("mail.example.org", True),
        ("a-b.c-d.org", True),
        ("xn--bcher-kva.example", False),  # reserved TLD "example"
        ("xn--bcher-kva.de", True),
        ("MAIL.Example.ORG", True),
        ("under_score.example.org", False),
        ("-lead.example.org", False),
        ("trail-.example.org", False),
        ("bücher.de", False),  # must be A-labels (ASCII)
        ("a" * 64 + ".org", False),
        (".".join(["a" * 63] * 4) + ".org", False),  # over 255 octets
        ("192.0.2.1", False),
        ("host..example.org", False),
        ("host.test", False),
        ("host.invalid", False),
        ("localhost.example.org", False),
    ],
)
def test_is_ehlo_domain(name: str, ok: bool) -> None:
    assert is_ehlo_domain(name) is ok


@pytest.mark.parametrize(
    ("address", "literal"),
    [
        ("192.0.2.1", "[192.0.2.1]"),
        ("::1", "[IPv6:::1]"),
        ("2001:DB8:0:0::1", "[IPv6:2001:db8::1]"),
        ("fe80::1%eth0", "[IPv6:fe80::1]"),
        ("::ffff:192.0.2.1", "[192.0.2.1]"),
    ],
)
def test_address_literal(address: str, literal: str) -> None:
    assert address_literal(address) == literal


def test_address_literal_rejects_names() -> None:
    with pytest.raises(ValueError):
        address_literal("mail.example.org")


async def test_cached_call_still_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_lookup(monkeypatch, "mail.example.org")
    await local_fqdn()
    with trio.CancelScope() as scope:
        scope.cancel()
        await local_fqdn()  # a checkpoint raises Cancelled inside a cancelled scope
    assert scope.cancelled_caught
