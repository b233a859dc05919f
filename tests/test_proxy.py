"""SmtpClient(proxy=...): SOCKS through Dante, HTTP CONNECT through tinyproxy, both real and
started by the tests on loopback; TLS end to end through the tunnel; errors name the proxy
and never its credentials."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import trio
from helpers.daemons import free_port
from helpers.messages import build_message
from proxy_daemons import RunningProxy, dante, system_user, tinyproxy

from trio_smtp import (
    Security,
    SmtpAuthenticationError,
    SmtpClient,
    SmtpConnectError,
    SmtpPool,
    SmtpTimeoutError,
    SmtpTlsError,
    Timeouts,
)
from trio_smtp._io.connect import open_transport
from trio_smtp._io.proxy import ascii_host, parse_proxy
from trio_smtp.testing import SmtpServer
from trio_smtp.testing._tls import TlsMaterial

pytest.importorskip("python_socks", reason="the proxy extra (python-socks) is not installed")


@pytest.fixture
def socks(tmp_path: Path) -> Iterator[RunningProxy]:
    with dante(tmp_path) as proxy:
        yield proxy


@pytest.fixture
def socks_user() -> Iterator[tuple[str, str]]:
    with system_user() as account:
        yield account


def _proxied(server: SmtpServer, proxy: str, **kwargs: object) -> SmtpClient:
    if "ssl_context" not in kwargs:
        kwargs["ssl_context"] = server.ssl_context
    return SmtpClient(server.host, server.port, proxy=proxy, **kwargs)  # type: ignore[arg-type]


async def _send_one(client: SmtpClient, server: SmtpServer) -> bytes:
    async with client:
        result = await client.send(build_message())
    assert result.accepted == ("rcpt@example.net",)
    message = await server.wait_for_message()
    assert message.accepted
    return message.data


# -- SOCKS5 through Dante ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a"])
async def test_starttls_through_dante(socks: RunningProxy, scheme: str) -> None:
    async with SmtpServer(tls="starttls") as server:
        client = _proxied(server, f"{scheme}://127.0.0.1:{socks.port}")
        data = await _send_one(client, server)
        assert b"Hello from trio_smtp." in data
        assert server.connections[0].tls_version  # STARTTLS happened inside the tunnel
    # The SMTP connection really went through Dante, to the server's port.
    assert f"127.0.0.1.{server.port}" in socks.log_text()


def _server_for_only(name: str, **kwargs: object) -> SmtpServer:
    """A testing server on 127.0.0.2 whose certificate names ``name`` and nothing else."""
    server = SmtpServer(host="127.0.0.2", **kwargs)  # type: ignore[arg-type]
    server._tls = TlsMaterial((name,))  # the default certificate also names 127.0.0.1
    return server


async def test_implicit_tls_checks_the_smtp_servers_name_not_the_proxys(
    socks: RunningProxy,
) -> None:
    # The proxy is 127.0.0.1; the certificate names only the SMTP server, 127.0.0.2.
    async with _server_for_only("127.0.0.2", tls="implicit") as server:
        client = SmtpClient(
            "127.0.0.2",
            server.port,
            security=Security.IMPLICIT_TLS,
            ssl_context=server.ssl_context,
            proxy=f"socks5h://127.0.0.1:{socks.port}",
        )
        await _send_one(client, server)


async def test_certificate_for_the_proxys_name_is_refused(socks: RunningProxy) -> None:
    # A certificate valid for the proxy's name (127.0.0.1) but not for the SMTP server's.
    async with _server_for_only("127.0.0.1", tls="implicit") as server:
        client = SmtpClient(
            "127.0.0.2",
            server.port,
            security=Security.IMPLICIT_TLS,
            ssl_context=server.ssl_context,
            proxy=f"socks5://127.0.0.1:{socks.port}",
        )
        async with client:
            with pytest.raises(SmtpTlsError, match=r"127\.0\.0\.2"):
                await client.send(build_message())
        assert not server.messages


async def test_credentials_never_go_in_clear_through_a_local_proxy(socks: RunningProxy) -> None:
    # Without a proxy, a loopback server may get credentials in clear; through one it may
    # be anywhere, so it never does.
    async with SmtpServer(tls="none", credentials={"user": "pw"}) as server:
        client = SmtpClient(
            server.host,
            server.port,
            security=Security.NONE,
            credentials=("user", "pw"),
            proxy=f"socks5://127.0.0.1:{socks.port}",
        )
        async with client:
            with pytest.raises(SmtpAuthenticationError, match="without TLS"):
                await client.send(build_message())


# -- SOCKS5 username authentication (RFC 1929) ----------------------------------------------


async def test_socks5_username_authentication(
    tmp_path: Path, socks_user: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    user, password = socks_user
    caplog.set_level(logging.DEBUG)
    url = f"socks5://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1"
    with dante(tmp_path, username=True) as proxy:
        async with SmtpServer() as server:
            client = _proxied(server, f"{url}:{proxy.port}")
            assert password not in repr(client._config)
            await _send_one(client, server)
    assert "connected through the proxy socks5://127.0.0.1" in caplog.text
    assert password not in caplog.text
    assert user not in caplog.text


@pytest.mark.parametrize("userinfo", ["", "{user}:wrong@"])
async def test_socks5_authentication_failure_names_the_proxy_not_the_secret(
    tmp_path: Path, socks_user: tuple[str, str], userinfo: str
) -> None:
    user, _ = socks_user
    userinfo = userinfo.format(user=user)
    with dante(tmp_path, username=True) as proxy:
        async with SmtpServer() as server:
            client = _proxied(server, f"socks5://{userinfo}127.0.0.1:{proxy.port}")
            async with client:
                with pytest.raises(SmtpConnectError) as caught:
                    await client.send(build_message())
            assert not server.connections  # the proxy never opened the tunnel
    text = str(caught.value)
    assert f"the proxy socks5://127.0.0.1:{proxy.port}" in text
    assert "wrong" not in text
    assert user not in text


# -- HTTP CONNECT through tinyproxy -----------------------------------------------------------


async def test_starttls_through_tinyproxy(tmp_path: Path) -> None:
    async with SmtpServer(tls="starttls") as server:
        with tinyproxy(tmp_path, server.port) as proxy:
            await _send_one(_proxied(server, f"http://127.0.0.1:{proxy.port}"), server)
        assert server.connections[0].tls_version
    assert f"CONNECT 127.0.0.1:{server.port}" in proxy.log_text()


async def test_a_pool_connects_through_tinyproxy(tmp_path: Path) -> None:
    # SmtpPool(proxy=) as SmtpClient's: every connection of the pool goes through the tunnel.
    async with SmtpServer(tls="starttls") as server:
        with tinyproxy(tmp_path, server.port) as proxy:
            proxy_url = f"http://127.0.0.1:{proxy.port}"
            async with (
                SmtpPool(
                    server.host,
                    server.port,
                    ssl_context=server.ssl_context,
                    proxy=proxy_url,
                    max_connections=2,
                ) as pool,
                trio.open_nursery() as nursery,
            ):
                for i in range(4):
                    nursery.start_soon(pool.send, build_message(f"rcpt{i}@example.net"))
            opened = pool.statistics().connections_opened
        assert len(server.messages) == 4
        assert all(connection.tls_version for connection in server.connections)
    assert proxy.log_text().count(f"CONNECT 127.0.0.1:{server.port}") == opened == 2


def test_pool_from_url_takes_a_proxy() -> None:
    proxy_url = "socks5h://al%40ice:p%40ss@proxy.example.org:1080"
    pool = SmtpPool.from_url(f"smtps://u:pw@mail.example.org?proxy={quote(proxy_url, safe='')}")
    proxy = pool._config.proxy
    assert proxy is not None
    assert proxy.display == "socks5h://proxy.example.org:1080"
    assert proxy._username == "al@ice"


async def test_implicit_tls_through_tinyproxy_with_basic_auth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with _server_for_only("127.0.0.2", tls="implicit") as server:
        with tinyproxy(tmp_path, server.port, credentials=("alice", "s3cret")) as proxy:
            client = SmtpClient(
                "127.0.0.2",
                server.port,
                security=Security.IMPLICIT_TLS,
                ssl_context=server.ssl_context,
                proxy=f"http://alice:s3cret@127.0.0.1:{proxy.port}",
            )
            await _send_one(client, server)
    assert "s3cret" not in caplog.text


async def test_http_proxy_authentication_failure(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        with tinyproxy(tmp_path, server.port, credentials=("alice", "s3cret")) as proxy:
            client = _proxied(server, f"http://alice:wrong@127.0.0.1:{proxy.port}")
            async with client:
                with pytest.raises(
                    SmtpConnectError, match=r"authentication failed: 40[17]"
                ) as caught:
                    await client.send(build_message())
    assert f"the proxy http://127.0.0.1:{proxy.port}" in str(caught.value)
    assert "wrong" not in str(caught.value)


async def test_http_proxy_refusing_the_port(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        with tinyproxy(tmp_path, connect_port=server.port + 1) as proxy:  # not this port
            client = _proxied(server, f"http://127.0.0.1:{proxy.port}")
            async with client:
                with pytest.raises(SmtpConnectError, match=r"did not connect to .*: 403"):
                    await client.send(build_message())
        assert not server.connections


# -- HTTP CONNECT framing: the greeting in the same segment as the 200 ---------------------


async def _fake_http_proxy(
    listener: trio.SocketListener, server: SmtpServer, head_parts: list[bytes]
) -> None:
    """Answers one CONNECT with ``head_parts`` written separately, the last one in the same
    write as the SMTP server's greeting, then relays."""
    client = await listener.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        request += await client.receive_some(1024)
    upstream = await trio.open_tcp_stream(server.host, server.port)
    greeting = await upstream.receive_some(1024)
    for part in head_parts[:-1]:
        await client.send_all(part)
        await trio.sleep(0.05)
    await client.send_all(head_parts[-1] + greeting)

    async def pump(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        nursery.cancel_scope.cancel()  # one side is done: so is the tunnel

    async with client, upstream, trio.open_nursery() as nursery:
        nursery.start_soon(pump, client, upstream)
        nursery.start_soon(pump, upstream, client)


@pytest.mark.parametrize(
    "head_parts",
    [
        [b"HTTP/1.1 200 Connection established\r\nProxy-agent: fake\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r", b"\nVia: fake\r\n", b"\r", b"\n"],
    ],
    ids=["greeting-in-the-same-segment", "head-split-across-segments"],
)
async def test_http_connect_reads_exactly_the_response_head(head_parts: list[bytes]) -> None:
    async with SmtpServer(tls="none") as server:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_fake_http_proxy, listeners[0], server, head_parts)
            client = _proxied(
                server, f"http://127.0.0.1:{port}", security=Security.NONE, ssl_context=None
            )
            with trio.fail_after(30):
                await _send_one(client, server)
            nursery.cancel_scope.cancel()


# -- unreachable, silent, misconfigured ------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_unreachable_proxy(scheme: str) -> None:
    port = free_port()  # nothing listens there
    client = SmtpClient("127.0.0.1", 2525, proxy=f"{scheme}://u:s3cr3t-pw@127.0.0.1:{port}")
    async with client:
        with pytest.raises(SmtpConnectError, match="cannot reach the proxy") as caught:
            await client.send(build_message())
    assert f"{scheme}://127.0.0.1:{port}" in str(caught.value)
    assert "s3cr3t-pw" not in str(caught.value)


async def test_silent_proxy_times_out_naming_it(autojump_clock: trio.abc.Clock) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    timeouts = Timeouts(connect=5)
    proxy = parse_proxy(f"socks5://127.0.0.1:{port}")
    with pytest.raises(SmtpTimeoutError, match=f"through the proxy socks5://127.0.0.1:{port}"):
        await open_transport(
            "127.0.0.1", 25, security=Security.NONE, context=None, timeouts=timeouts, proxy=proxy
        )
    await listeners[0].aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://h:1", "proxy must be a"),
        ("socks5://h:1/path", "no path"),
        ("http://h", "needs a port"),
        ("socks5://user@h", "needs a password"),
        ("socks4://user:secret@h", "SOCKS4 has no password"),
        ("socks5://h:99999", "port"),
        ("socks5://:secret@h", "empty user name"),
    ],
)
def test_malformed_proxy_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        SmtpClient("mail.example.org", proxy=url)
    assert "secret" not in str(caught.value)


def test_destination_is_checked_for_the_proxys_request() -> None:
    with pytest.raises(ValueError, match="white space"):
        SmtpClient("mail.example.org\r\nX: y", proxy="http://p:3128")
    with pytest.raises(ValueError, match="IDNA"):
        SmtpClient("ü" + "a" * 70 + ".example", proxy="http://p:3128")
    assert ascii_host("bücher.example") == "xn--bcher-kva.example"


def test_socks_default_port_and_repr_hide_credentials() -> None:
    proxy = parse_proxy("socks5h://us%40er:p%3Aw@[::1]")
    assert proxy.display == "socks5h://[::1]:1080"
    assert repr(proxy) == "<Proxy socks5h://[::1]:1080>"
    assert proxy.remote_dns


@pytest.mark.parametrize(
    "other",
    [
        {"unix_socket": "/tmp/s"},
        {"stream_factory": trio.open_tcp_stream},
        {"delivery_method": "pickup"},
    ],
)
def test_proxy_excludes_other_ways_to_connect(other: dict[str, object]) -> None:
    from trio_smtp import DeliveryMethod

    kwargs = dict(other)
    if "delivery_method" in kwargs:
        kwargs = {"delivery_method": DeliveryMethod.PICKUP_DIRECTORY, "pickup_directory": "/tmp"}
    if "unix_socket" in kwargs:
        kwargs["security"] = Security.NONE
    with pytest.raises(ValueError, match="proxy= cannot be used with"):
        SmtpClient("h", proxy="socks5://p:1080", **kwargs)  # type: ignore[arg-type]


def test_missing_extra_is_an_import_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)
    with pytest.raises(ImportError, match=r"trio-smtp\[proxy\]"):
        SmtpClient("mail.example.org", proxy="socks5://127.0.0.1:1080")
    # HTTP CONNECT is built in: no extra needed.
    SmtpClient("mail.example.org", proxy="http://127.0.0.1:3128")


# -- from_url --------------------------------------------------------------------------------


def test_from_url_takes_a_percent_encoded_proxy() -> None:
    proxy_url = "socks5h://al%40ice:p%40ss@proxy.example.org:1080"
    client = SmtpClient.from_url(f"smtps://u:pw@mail.example.org?proxy={quote(proxy_url, safe='')}")
    proxy = client._config.proxy
    assert proxy is not None
    assert proxy.display == "socks5h://proxy.example.org:1080"
    assert client._config.host == "mail.example.org"
    assert client._config.credentials == ("u", "pw")
    assert proxy._username == "al@ice"
    assert proxy._password == "p@ss"


def test_from_url_refuses_a_raw_at_in_the_proxy_parameter() -> None:
    with pytest.raises(ValueError, match="percent-encode the proxy URL") as caught:
        SmtpClient.from_url("smtp://mail.example.org?proxy=socks5://u:secret@p:1080")
    assert "secret" not in str(caught.value)


def test_from_url_proxy_without_credentials_needs_no_encoding() -> None:
    client = SmtpClient.from_url("smtp://u:pw@mail.example.org?proxy=http://proxy:3128")
    assert client._config.proxy is not None
    assert client._config.proxy.display == "http://proxy:3128"
    assert client._config.credentials == ("u", "pw")
