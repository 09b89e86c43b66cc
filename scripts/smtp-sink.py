#!/usr/bin/python3
"""A real SMTP server for the tests (Debian's aiosmtpd), keeping every mail it accepts.

    scripts/smtp-sink.py DIR [--port N] [--port-file FILE] [--tls | --implicit-tls]
                             [--auth USER:PASSWORD]

Listens on 127.0.0.1, on --port or on a free port, and announces it: `listening on PORT` on
standard output (one line, flushed) and, with --port-file, the port alone in that file (written
once the socket listens). SIGTERM or SIGINT stops it cleanly; started again with the same port
and DIR it carries on where it stopped (the test of a mail server that was down for a while).

Each accepted message is written into DIR as NNNNNN.eml (the message as received) and then
NNNNNN.json (its envelope: {"mail_from", "rcpt_tos", "eml"}), each atomically (a temporary file
renamed): a reader that sees the .json sees the whole message.

--tls offers STARTTLS and refuses MAIL before it; --implicit-tls speaks TLS from the first byte
(smtps). Either makes, once per DIR, a throwaway certificate authority (DIR/ca.pem, the file a
client trusts) and a certificate for localhost and 127.0.0.1 signed by it, with the openssl
command. --auth requires AUTH PLAIN or LOGIN with these credentials before MAIL.

Debian's Python (/usr/bin/python3, the shebang): aiosmtpd is its package, `make smtp-sink`.

Failure injection, by the recipient's local part: one beginning `tempfail` is answered 451
(try again later), one beginning `reject` 550 (refused for good).
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Sink:
    """The handler: refuses the recipients the tests ask it to, keeps every message."""

    def __init__(self, directory: Path):
        self.directory = directory
        numbers = [int(p.stem) for p in directory.glob("*.json") if p.stem.isdigit()]
        self.next = max(numbers, default=0) + 1

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "451 4.3.0 Temporary failure (injected by the test server)"
        if local.startswith("reject"):
            return "550 5.1.1 Mailbox unavailable (injected by the test server)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = self.next
        self.next += 1
        name = f"{n:06d}"
        content = envelope.original_content or b""
        atomic_write(self.directory / f"{name}.eml", content)
        envelope_json = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "eml": f"{name}.eml",
        }
        atomic_write(self.directory / f"{name}.json", json.dumps(envelope_json).encode())
        return "250 2.0.0 Message accepted"


def certificate(directory: Path) -> ssl.SSLContext:
    """The server's TLS context: a certificate for localhost signed by DIR/ca.pem, made once."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, cert = directory / "server.key", directory / "server.pem"
    if not cert.exists():
        def openssl(*args, **kw):
            subprocess.run(["openssl", *args], check=True, capture_output=True, **kw)

        # A CA and a leaf signed by it: TLS clients (rustls) refuse a CA certificate
        # presented as the server's own.
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=smtp-sink test CA", "-keyout", ca_key, "-out", ca)
        csr = directory / "server.csr"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", key, "-out", csr)
        ext = directory / "server.ext"
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        )
        tmp = directory / ".server.pem.tmp"
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                "-days", "2", "-extfile", ext, "-out", tmp)
        os.replace(tmp, cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="offer and require STARTTLS")
    tls.add_argument("--implicit-tls", action="store_true", help="TLS from the start (smtps)")
    parser.add_argument("--auth", metavar="USER:PASSWORD")
    args = parser.parse_args()

    args.directory.mkdir(parents=True, exist_ok=True)
    context = certificate(args.directory) if args.tls or args.implicit_tls else None
    credentials = None
    if args.auth is not None:
        user, _, password = args.auth.partition(":")
        credentials = LoginPassword(user.encode(), password.encode())

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data == credentials
        # handled=False: aiosmtpd itself answers a failure (535).
        return AuthResult(success=ok, handled=False)

    sink = Sink(args.directory)

    def factory():
        return SMTP(
            sink,
            hostname="localhost",
            enable_SMTPUTF8=True,
            tls_context=context if args.tls else None,
            require_starttls=bool(args.tls),
            authenticator=authenticator if credentials else None,
            auth_required=credentials is not None,
            # Over plain SMTP too when the test asks for AUTH without TLS.
            auth_require_tls=context is not None,
            timeout=60,
        )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory,
            host="127.0.0.1",
            port=args.port,
            ssl=context if args.implicit_tls else None,
            reuse_address=True,
        )
        port = server.sockets[0].getsockname()[1]
        if args.port_file:
            atomic_write(args.port_file, f"{port}\n".encode())
        print(f"listening on {port}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
