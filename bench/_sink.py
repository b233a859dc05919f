"""Postfix's smtp-sink on loopback: the server every plain-text scenario talks to.

smtp-sink is a C server that accepts and discards mail as fast as the kernel delivers it, so
the client is the bottleneck being measured. It advertises PIPELINING, 8BITMIME, DSN,
ENHANCEDSTATUSCODES (and an AUTH it does not check) by default; it does not implement CHUNKING
(BDAT gets 500), so every client sends DATA with dot-stuffing here.

``-c`` makes it print a running message counter; the harness reads it to check that each
client really delivered every message it claims to have sent.  The counter goes to a file,
read only when a measurement ends: a pipe would need a reader woken on every message, and on a
two-core machine that reader competes for CPU with the client being measured.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
_COUNTER = re.compile(rb"mesg=(\d+)")


def ensure_postfix() -> None:
    """Install the ``postfix`` package (for smtp-sink/smtp-source) when they are missing."""
    if os.path.exists(SMTP_SINK) and os.path.exists(SMTP_SOURCE):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        raise SystemExit(f"{SMTP_SINK} is missing; install postfix (needs root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Preseed debconf so the package does not ask for a mail configuration.
    preseed = b"postfix postfix/main_mailer_type select No configuration\n"
    subprocess.run([*sudo, "debconf-set-selections"], input=preseed, check=True, env=env)
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", "postfix"],
        check=True,
        env=env,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Return once something accepts on 127.0.0.1:port; fail if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Sink:
    """A running smtp-sink and its message counter."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in close()
        cmd = [SMTP_SINK, "-c", "-h", "bench.sink"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
        # backlog 256: queued connections for the session scenario never get refused.
        cmd += [f"{self.host}:{self.port}", "256"]
        self.command = cmd
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        # The probe connection counts as a session, not as a message.
        wait_listening(self.port, self._proc)

    @property
    def messages(self) -> int:
        """Messages the sink has received (a "." after DATA) since it started."""
        # Counters are separated by "\r"; the newest complete one is near the end of the file.
        size = os.fstat(self._log.fileno()).st_size
        tail = os.pread(self._log.fileno(), 256, max(0, size - 256))
        for item in reversed(tail.split(b"\r")):
            if m := _COUNTER.search(item):
                return int(m.group(1))
        return 0

    def wait_messages(self, target: int, timeout: float = 5.0) -> int:
        """Wait until the counter reaches ``target`` (or ``timeout``); return the counter."""
        deadline = time.monotonic() + timeout
        while self.messages < target and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages

    def close(self) -> None:
        """Stop smtp-sink and wait for it."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
