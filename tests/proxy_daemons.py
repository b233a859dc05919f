"""Real proxies for the proxy tests: Dante (SOCKS) and tinyproxy (HTTP CONNECT), each started
in the foreground on a free loopback port with its own configuration in a temporary
directory, and stopped when the test ends.  Skipped, with the reason, when not installed."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.daemons import free_port

DANTED = "/usr/sbin/danted"
TINYPROXY = "/usr/bin/tinyproxy"


@dataclass
class RunningProxy:
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the proxy did not listen on port {port}")


@contextlib.contextmanager
def _daemon(argv: list[str], port: int, log: Path) -> Iterator[RunningProxy]:
    with open(log.with_suffix(".out"), "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, port, log.with_suffix(".out"))
        yield RunningProxy(port, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _require(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not installed (Debian package {package}; .ci/run installs it)")


@contextlib.contextmanager
def dante(tmp: Path, *, username: bool = False) -> Iterator[RunningProxy]:
    """danted in the foreground, SOCKS4/5 on a free port; connections to loopback only.
    ``username``: RFC 1929 user/password authentication, checked against system accounts."""
    _require(DANTED, "dante-server")
    port = free_port()
    log = tmp / "danted.log"
    method = "username" if username else "none"
    config = tmp / "danted.conf"
    config.write_text(
        f"logoutput: {log}\n"
        f"internal: 127.0.0.1 port = {port}\n"
        "external: 127.0.0.1\n"
        f"socksmethod: {method}\n"
        "clientmethod: none\n"
        + ("user.privileged: root\nuser.unprivileged: nobody\n" if os.geteuid() == 0 else "")
        + "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
        # Only loopback destinations: the tests never reach outside this machine.
        "socks pass {\n from: 127.0.0.0/8 to: 127.0.0.0/8\n command: connect\n"
        " log: connect error\n}\n"
        "socks block {\n from: 0.0.0.0/0 to: 0.0.0.0/0\n log: error\n}\n"
    )
    pid = tmp / "danted.pid"
    with _daemon([DANTED, "-f", str(config), "-N", "1", "-p", str(pid)], port, log) as proxy:
        yield proxy


@contextlib.contextmanager
def system_user() -> Iterator[tuple[str, str]]:
    """A throw-away system account for Dante's username method (it checks the system's
    password database): created only when running as root, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("Dante's SOCKS5 username method checks system accounts: needs root")
    if shutil.which("useradd") is None or shutil.which("chpasswd") is None:
        pytest.skip("useradd/chpasswd not available to create a throw-away account")
    name = f"tsmtp{secrets.token_hex(4)}"
    password = "pw:" + secrets.token_urlsafe(12)  # a ':' and more, percent-encoded in URLs
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
    )
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n".encode(), check=True)
        yield name, password
    finally:
        subprocess.run(["userdel", name], check=False)


@contextlib.contextmanager
def tinyproxy(
    tmp: Path, connect_port: int, *, credentials: tuple[str, str] | None = None
) -> Iterator[RunningProxy]:
    """tinyproxy in the foreground (-d), HTTP CONNECT allowed to ``connect_port`` only."""
    _require(TINYPROXY, "tinyproxy")
    port = free_port()
    log = tmp / "tinyproxy.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 60",
        "MaxClients 20",
        "Allow 127.0.0.1",
        f"ConnectPort {connect_port}",
        "LogLevel Info",
    ]
    if os.geteuid() == 0:
        lines += ["User nobody", "Group nogroup"]
    if credentials is not None:
        lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
    config = tmp / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n")
    # -d: foreground; the log goes to stdout (LogFile would be opened after dropping root).
    with _daemon([TINYPROXY, "-d", "-c", str(config)], port, log) as proxy:
        proxy.log = log.with_suffix(".out")
        yield proxy
