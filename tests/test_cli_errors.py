"""The CLI's error paths, as a person reads them: in CLI options, saying what to do.

The CLI runs its own ``trio.run``, so it is called in a worker thread while the testing
server runs in the test's event loop (as in test_cli_send.py).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trio_smtp
from trio_smtp._cli.main import main
from trio_smtp.testing import Handover, SmtpServer


async def run_cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


def run_main(*argv: str) -> int:
    """``main`` with argparse's own usage errors turned into their exit status."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(str(exc.code))


def where(server: SmtpServer) -> str:
    return f"{server.host}:{server.port}"


# -- a TLS-mode mismatch says which mode the port speaks --------------------------------------


@pytest.mark.parametrize("command", ["send", "probe"])
async def test_starttls_url_against_an_implicit_tls_port_says_try_smtps(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server waits for a ClientHello, the client for a greeting: only --timeout ends it.
    async with SmtpServer(tls="implicit") as server:
        ca = str(server.write_ca_file(tmp_path / "ca.pem"))
        url = f"smtp://{where(server)}"
        argv = ["--server", url, "--from", "a@example.org", "--to", "b@example.net"]
        if command == "probe":
            argv = [url]
        with trio.fail_after(60):
            status = await run_cli(command, *argv, "--ca-file", ca, "--timeout", "1")
    err = capsys.readouterr().err
    assert status == 4
    assert "timed out after 1 s waiting for the greeting" in err
    assert (
        f"hint: no greeting: {where(server)} probably expects implicit TLS (the server waits "
        f"for the client to start TLS): try smtps://{where(server)}"
    ) in err


@pytest.mark.parametrize("tls", ["starttls", "none"])
@pytest.mark.parametrize("command", ["send", "probe"])
async def test_smtps_url_against_a_plain_text_port_says_try_smtp(
    command: str, tls: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SmtpServer(tls=tls) as server:
        url = f"smtps://{where(server)}"
        argv = ["--server", url, "--from", "a@example.org", "--to", "b@example.net"]
        if command == "probe":
            argv = [url]
        with trio.fail_after(60):
            status = await run_cli(command, *argv)
    err = capsys.readouterr().err
    assert status == 4
    assert "WRONG_VERSION_NUMBER" in err
    assert (
        f"hint: the server did not answer in TLS: {where(server)} probably speaks plain-text "
        f"SMTP (STARTTLS, or no TLS at all): try smtp://{where(server)}"
    ) in err
    assert "--ca-file" not in err  # a certificate has nothing to do with it


async def test_untrusted_certificate_still_suggests_ca_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(tls="implicit") as server:
        status = await run_cli("probe", f"smtps://{where(server)}")
    err = capsys.readouterr().err
    assert status == 4
    assert "CERTIFICATE_VERIFY_FAILED" in err
    assert "hint: --ca-file to trust a private CA; probe --insecure" in err


async def test_connection_refused_says_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status = await run_cli("probe", f"smtp://127.0.0.1:{port}")
    assert status == 4
    err = capsys.readouterr().err
    assert f"SmtpConnectError: cannot connect to 127.0.0.1:{port}: connection refused" in err


# -- ports and timeouts are checked as arguments ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["serve", "--port", "99999"], "argument --port: '99999' is not a port number"),
        (["serve", "--port", "-1"], "argument --port: '-1' is not a port number"),
        (
            ["send", "--server", "smtp://127.0.0.1:99999", "--from", "a@b.c", "--to", "d@e.f"],
            "argument --server: the port must be a number from 1 to 65535",
        ),
        (["probe", "smtps://127.0.0.1:65536"], "argument URL: the port must be a number"),
        (
            ["send", "--server", "smtp://h", "--from", "a@b.c", "--to", "d@e.f", "--timeout", "0"],
            "argument --timeout: '0' is not a positive number of seconds",
        ),
        (["probe", "smtp://h", "--timeout", "nan"], "argument --timeout: 'nan' is not"),
    ],
)
def test_bad_ports_and_timeouts_are_usage_errors(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(*argv) == 2
    assert complaint in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("--version") == 0
    assert capsys.readouterr().out == f"trio-smtp {trio_smtp.__version__}\n"


# -- send's errors name send's options ----------------------------------------------------------


def test_composed_message_without_recipients(capsys: pytest.CaptureFixture[str]) -> None:
    status = run_main("send", "--server", "smtp://127.0.0.1:1", "--from", "a@example.org")
    assert status == 2
    err = capsys.readouterr().err
    assert err == "trio-smtp send: no recipients: give --to, --cc or --bcc (or --envelope-to)\n"


@pytest.mark.parametrize(
    ("headers", "complaint"),
    [
        (b"From: a@example.org\r\n", "has no recipients (To, Cc, Bcc or --envelope-to)"),
        (b"To: b@example.net\r\n", "has no sender (Sender or From header, or --envelope-from)"),
    ],
)
async def test_eml_without_envelope_names_the_options(
    headers: bytes, complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "note.eml"
    eml.write_bytes(headers + b"Subject: x\r\n\r\nbody\r\n")
    async with SmtpServer() as server:
        status = await run_cli("send", str(eml), "--server", f"smtp://{where(server)}?tls=none")
    assert status == 2
    err = capsys.readouterr().err
    assert f"the message in {eml} {complaint}" in err
    assert "=" not in err  # no Python keyword argument
    assert server.connections == []  # checked before connecting


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--notify", "never,failure", "never cannot be combined with success, failure or delay"),
        ("--envid", "x" * 101, "argument --envid: not a valid envelope identifier"),
    ],
)
def test_dsn_options_are_checked_as_options(
    option: str, value: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", "--server", "smtp://127.0.0.1:1", "--from", "a@b.c", "--to", "d@e.f"]
    assert run_main(*argv, option, value) == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert "DeliveryNotification" not in err


# -- without the test extra ----------------------------------------------------------------------

# trustme made unimportable, as in an installation without the `test` extra.
_WITHOUT_TRUSTME = (
    "import sys; sys.modules['trustme'] = None; "
    "from trio_smtp._cli.main import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["demo"],
            "trio-smtp demo: the demo's server needs trustme (for its TLS certificate), which "
            "comes with the test extra: pip install 'trio-smtp[test]'\n",
        ),
        (
            ["serve", "--port", "0", "--starttls"],
            "trio-smtp serve: --starttls needs trustme (for a throw-away certificate), which "
            "comes with the test extra: pip install 'trio-smtp[test]'; without --starttls, the "
            "server speaks plain text\n",
        ),
    ],
)
def test_without_trustme_says_what_to_install(argv: list[str], complaint: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TRUSTME, *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == complaint  # no traceback
    assert proc.stdout == ""


# -- serve and files --------------------------------------------------------------------------


async def test_serve_on_a_port_in_use_says_so() -> None:
    # A real process: serve receives its signals in the main thread.
    async with SmtpServer() as taken:
        argv = ["serve", "--host", taken.host, "--port", str(taken.port)]
        with trio.fail_after(60):
            proc = await trio.run_process(
                [sys.executable, "-m", "trio_smtp", *argv], capture_stdout=True,
                capture_stderr=True, check=False,
            )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        f"trio-smtp serve: cannot listen on {taken.host}:{taken.port}: the port is in use "
        "(choose another --port, or --port 0 for any free one)\n"
    )


@pytest.mark.parametrize("option", ["EML", "--body-file", "--attach"])
def test_a_missing_file_is_named(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.txt"
    argv = ["send", "--server", "smtp://127.0.0.1:1"]
    if option == "EML":
        argv.append(str(missing))
    else:
        argv += ["--from", "a@b.c", "--to", "d@e.f", option, str(missing)]
    assert run_main(*argv) == 2
    err = capsys.readouterr().err
    assert err == f"trio-smtp send: cannot read {missing}: No such file or directory\n"


# -- pickup:// ----------------------------------------------------------------------------------


def test_send_to_a_pickup_url_writes_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", "--server", f"pickup://{tmp_path}", "--from", "a@example.org"]
    assert run_main(*argv, "--to", "b@example.net", "--subject", "picked") == 0
    (written,) = tmp_path.glob("*.eml")
    assert b"Subject: picked" in written.read_bytes()
    assert capsys.readouterr().out == (
        f"accepted: b@example.net\nwritten:  into the pickup directory {tmp_path}\n"
    )


def test_probe_refuses_a_pickup_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("probe", "pickup:///tmp") == 2
    assert "probe needs a server" in capsys.readouterr().err


# -- more error paths ---------------------------------------------------------------------------


def test_serve_ca_file_without_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("serve", "--port", "0", "--ca-file", str(tmp_path / "ca.pem")) == 2
    assert capsys.readouterr().err == (
        "trio-smtp serve: --ca-file needs --tls or --starttls (a plain-text server has no "
        "certificate)\n"
    )


async def test_starttls_required_but_not_offered_names_the_url_parameter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with SmtpServer(tls="none") as server:
        url = f"smtp://{where(server)}"
        status = await run_cli("send", "--server", url, "--from", "a@b.c", "--to", "d@e.f")
    err = capsys.readouterr().err
    assert status == 4
    assert "STARTTLS is required but the server did not advertise it" in err
    assert f"hint: the server offers no STARTTLS: {url}?tls=opportunistic (or ?tls=none)" in err


# `python -m trio_smtp` as a terminal starts it: Ctrl-C raises KeyboardInterrupt.  A suite
# started in the background by a non-interactive shell (`cmd &`, as a CI job may be) has
# SIGINT ignored, which a child inherits; Python then leaves it ignored, and the client
# would wait out its 30 s greeting deadline instead (what this test once saw).
_AS_FROM_A_TERMINAL = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'trio-smtp'; runpy.run_module('trio_smtp', run_name='__main__')"
)


async def test_ctrl_c_prints_no_traceback() -> None:
    async with SmtpServer() as server:
        connected = trio.Event()

        async def hold(stream: trio.abc.Stream, pending: bytes) -> None:
            connected.set()  # the client is connected and waits for the greeting
            await trio.sleep_forever()

        server.on("GREETING", Handover(hold))
        argv = ["send", "--server", f"smtp://{where(server)}?tls=none", "--from", "a@b.c"]
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", _AS_FROM_A_TERMINAL, *argv, "--to", "d@e.f"],
            stderr=subprocess.PIPE,
        )
        with trio.fail_after(60):
            await connected.wait()
            process.send_signal(signal.SIGINT)
            status = await process.wait()
            assert process.stderr is not None
            err = (await process.stderr.receive_some(65536)).decode()
    assert status == 130, err
    assert err == "\ntrio-smtp send: interrupted\n"
