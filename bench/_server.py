"""trio_smtp's testing server for the session scenario, in a process of its own.

``python bench/_server.py --cafile PATH`` listens on 127.0.0.1 (a free port) with STARTTLS
(a trustme certificate) and AUTH, writes the CA certificate to PATH, prints one JSON line
(host, port, cafile, user, password) and serves until its stdin is closed; then it prints a
second JSON line with the number of messages it received.

Only AUTH PLAIN is offered, so both clients authenticate the same way: with SCRAM or CRAM-MD5
on offer each library would pick its own favourite and the scenario would compare SASL
mechanisms rather than clients. TLS and AUTH are required before MAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import trio

from trio_smtp.testing import SmtpServer

USER = "bench"
PASSWORD = "bench-password"


async def serve(cafile: str) -> None:
    async with SmtpServer(
        credentials={USER: PASSWORD},
        auth_mechanisms=("PLAIN",),
        require_tls=True,
        require_auth=True,
    ) as server:
        server.write_ca_file(cafile)
        address = {"host": server.host, "port": server.port, "cafile": cafile}
        print(json.dumps({**address, "user": USER, "password": PASSWORD}), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stdin:
            while await stdin.receive_some():  # until the parent closes our stdin
                pass
        received = len(server.messages)
        server.messages.clear()
    print(json.dumps({"messages": received}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cafile", required=True)
    trio.run(serve, p.parse_args().cafile)


if __name__ == "__main__":
    main()
