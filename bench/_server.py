"""trio_smtp's testing server for the session and CHUNKING scenarios, in a process of its own.

``python bench/_server.py --cafile PATH`` listens on 127.0.0.1 (a free port) with STARTTLS
(a trustme certificate) and AUTH, writes the CA certificate to PATH, prints one JSON line
(host, port, cafile, user, password) and serves until its stdin is closed; then it prints a
second JSON line with the number of messages it received.  ``--plain`` serves without TLS
and AUTH instead (PIPELINING and CHUNKING offered, as by default): the CHUNKING server of the
``long_chunking`` scenario, where smtp-sink (no CHUNKING) cannot serve.

The server's bounds are set so that they do not shape a long run: it keeps only the last
few message, connection and command records (the defaults keep 1000 of each, and trimming
or growing them costs time per message; the count comes from :meth:`statistics`, which
counts everything), 10 MiB messages and 100 connections at once (the defaults: far above
what a scenario sends).

Only AUTH PLAIN is offered, so both clients authenticate the same way: with SCRAM or CRAM-MD5
on offer each library would pick its own favourite and the scenario would compare SASL
mechanisms rather than clients. TLS and AUTH are required before MAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import trio

from trio_smtp.testing import SmtpServer

USER = "bench"
PASSWORD = "bench-password"


KEEP = 10  # records kept of each kind: enough to look at, too few to cost anything


async def serve(cafile: str | None) -> None:
    bounds: dict[str, Any] = {
        "max_kept_messages": KEEP,
        "max_kept_connections": KEEP,
        "max_kept_commands": KEEP,
    }
    if cafile is None:
        server = SmtpServer(tls="none", **bounds)
    else:
        server = SmtpServer(
            credentials={USER: PASSWORD},
            auth_mechanisms=("PLAIN",),
            require_tls=True,
            require_auth=True,
            **bounds,
        )
    async with server:
        address: dict[str, Any] = {"host": server.host, "port": server.port}
        if cafile is not None:
            server.write_ca_file(cafile)
            address.update(cafile=cafile, user=USER, password=PASSWORD)
        print(json.dumps(address), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stdin:
            while await stdin.receive_some():  # until the parent closes our stdin
                pass
        received = server.statistics().messages
        server.messages.clear()
    print(json.dumps({"messages": received}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cafile", help="STARTTLS + AUTH; write the CA certificate here")
    mode.add_argument("--plain", action="store_true", help="no TLS, no AUTH (CHUNKING)")
    trio.run(serve, p.parse_args().cafile)


if __name__ == "__main__":
    main()
