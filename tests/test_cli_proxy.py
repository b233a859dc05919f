"""``trio-smtp send --proxy`` and ``trio-smtp probe --proxy`` through a real Dante on
loopback (the CLI runs in a worker thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from proxy_daemons import RunningProxy, dante, system_user

from trio_smtp._cli.common import PROXY_PASSWORD_ENV
from trio_smtp._cli.main import main
from trio_smtp.testing import SmtpServer

pytest.importorskip("python_socks", reason="the proxy extra (python-socks) is not installed")


async def run_cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


@pytest.fixture
def socks(tmp_path: Path) -> Iterator[RunningProxy]:
    with dante(tmp_path) as proxy:
        yield proxy


async def test_send_through_a_socks_proxy(
    tmp_path: Path, socks: RunningProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SmtpServer() as server:
        ca = server.write_ca_file(tmp_path / "ca.pem")
        status = await run_cli(
            "send", "--server", f"smtp://{server.host}:{server.port}", "--ca-file", str(ca),
            "--proxy", f"socks5h://127.0.0.1:{socks.port}",
            "--from", "me@example.org", "--to", "you@example.net", "--body", "via SOCKS",
        )  # fmt: skip
        message = await server.wait_for_message()
    assert status == 0, capsys.readouterr().err
    assert b"via SOCKS" in message.data
    assert f"127.0.0.1.{server.port}" in socks.log_text()


async def test_probe_through_a_socks_proxy_with_password_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with system_user() as (user, password), dante(tmp_path, username=True) as proxy:
        monkeypatch.setenv(PROXY_PASSWORD_ENV, password)
        async with SmtpServer(tls="implicit") as server:
            ca = server.write_ca_file(tmp_path / "ca.pem")
            status = await run_cli(
                "probe", f"smtps://{server.host}:{server.port}", "--ca-file", str(ca),
                "--proxy", f"socks5://{user}@127.0.0.1:{proxy.port}",
            )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "TLS" in captured.out
    assert password not in captured.out + captured.err


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("socks5://u:secret@127.0.0.1:1080", f"set {PROXY_PASSWORD_ENV}"),
        ("socks5://u@127.0.0.1:1080", f"set {PROXY_PASSWORD_ENV}"),
        ("gopher://127.0.0.1:70", "proxy must be a"),
    ],
)
@pytest.mark.parametrize("command", ["send", "probe"])
def test_proxy_usage_errors_exit_2(
    command: str,
    proxy: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PROXY_PASSWORD_ENV, raising=False)
    argv = ["send", "--server", "smtp://mail.example.org", "--to", "a@example.org",
            "--from", "b@example.org", "--body", "x"] if command == "send" else [
            "probe", "smtp://mail.example.org"]  # fmt: skip
    assert main([*argv, "--proxy", proxy]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "secret" not in err
