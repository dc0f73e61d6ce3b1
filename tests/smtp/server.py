#!/usr/bin/python3
"""A real SMTP server for lull's delivery tests: Debian's aiosmtpd with its
Mailbox handler (every accepted message lands in DIR/new/ as a Maildir file).

Over `python3 -m aiosmtpd` it adds what the tests need: it listens on a
port the OS picks and prints `PORT <n>` once it accepts connections;
optional STARTTLS (required when given a certificate), optional AUTH
(LOGIN/PLAIN with one user, only after STARTTLS as real relays insist),
recipients containing `reject` get a permanent 550 and those containing
`tempfail` a 451, `--implicit-tls` speaks TLS from the first byte, and `--delay-ms` holds each DATA before answering (to land
a kill -9 between sending and acceptance).
"""
import argparse
import asyncio
import mailbox
import ssl
import sys
import time

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--maildir", required=True)
p.add_argument("--port", type=int, default=0)
p.add_argument("--tlscert")
p.add_argument("--tlskey")
p.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (port 465 style) instead of STARTTLS")
p.add_argument("--auth", help="USER:PASSWORD required before MAIL")
p.add_argument("--delay-ms", type=int, default=0)
a = p.parse_args()


class Handler(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "reject" in address:
            return "550 5.1.1 mailbox unavailable (test rejection)"
        if "tempfail" in address:
            return "451 4.3.0 try again later (test)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if a.delay_ms:
            await asyncio.sleep(a.delay_ms / 1000)
        return await super().handle_DATA(server, session, envelope)


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    user, password = a.auth.split(":", 1)
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    # handled=False: aiosmtpd answers (235, or 535 on failure) itself.
    return AuthResult(success=ok, handled=False)


handler = Handler(a.maildir)
tls = None
if a.tlscert:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(a.tlscert, a.tlskey)


def factory():
    kw = {}
    if a.auth:
        kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(tls))
    if a.implicit_tls:
        return SMTP(handler, hostname="localhost", **kw)
    return SMTP(handler, hostname="localhost", tls_context=tls, require_starttls=bool(tls), **kw)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host="127.0.0.1", port=a.port,
                                      ssl=tls if a.implicit_tls else None)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()

try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
