"""Run OpenDKIM against a public key served from a local DNS server.

OpenDKIM takes public keys from DNS only, through libunbound (its ``Nameservers``
setting): ``opendkim -t FILE`` (the filter's test mode, which verifies a message in a file
without an MTA) and ``opendkim-testkey``.  This script is run by tests/test_dkim.py as root
inside new network and mount namespaces (``unshare -n -m``): it brings up that namespace's
loopback, serves one TXT record on 127.0.0.1:53, points OpenDKIM at it (and bind-mounts a
resolv.conf naming it over /etc/resolv.conf, private to the namespace, for any resolver
that reads it), and runs the tool.  In a fresh network namespace no packet can leave the
machine, whatever a resolver tries.

Usage: opendkim_check.py verify NAME VALUE < message      (prints OpenDKIM's dkim= result)
       opendkim_check.py testkey NAME VALUE DOMAIN SELECTOR KEYFILE
Exit status and output are the tool's.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset


def serve_dns(sock: socket.socket, name: str, value: str) -> None:
    while True:
        data, peer = sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.name.to_text().rstrip(".").lower() == name.lower():
            # RFC 1035 §3.3: a character-string holds at most 255 octets.
            strings = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", strings))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(response.to_wire(), peer)


def main(argv: list[str]) -> int:
    tool, name, value, *rest = argv
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    threading.Thread(target=serve_dns, args=(sock, name, value), daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        resolv = Path(tmp, "resolv.conf")
        resolv.write_text("nameserver 127.0.0.1\noptions edns0 timeout:2 attempts:2\n")
        subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
        config = Path(tmp, "opendkim.conf")
        config.write_text("Mode v\nSyslog no\nNameservers 127.0.0.1\n")
        if tool == "verify":
            message = Path(tmp, "message.eml")
            message.write_bytes(sys.stdin.buffer.read())
            argv = ["/usr/sbin/opendkim", "-x", str(config), "-t", str(message), "-vv"]
            return subprocess.run(argv).returncode
        domain, selector, keyfile = rest
        argv = ["/usr/sbin/opendkim-testkey", "-x", str(config), "-d", domain, "-s", selector]
        return subprocess.run([*argv, "-k", keyfile, "-vvv"]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
