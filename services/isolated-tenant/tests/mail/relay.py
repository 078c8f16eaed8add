"""A stand-in corporate relay for the tenant's mail tests: aiosmtpd on loopback.

Usage: python3 relay.py OUT_FILE [PORT] [--starttls CERT KEY | --implicit CERT KEY]
                       [--auth USER:PASSWORD] [--hostname NAME]
Prints "READY <port>" once listening, then appends one JSON line per message received:
{"from": envelope sender, "rcpts": [envelope recipients], "data": message text,
 "tls": whether the session was encrypted, "auth": the user it authenticated as or null}.
Runs until killed.

--starttls offers STARTTLS and requires it: before it, MAIL is answered
"530 Must issue a STARTTLS command first" (as Microsoft 365 and most relays do).
--implicit speaks TLS from the first byte (port 465 style).
--auth requires AUTH (PLAIN or LOGIN, over TLS only) with these credentials: before it, MAIL
is answered "530 5.7.0 Authentication required".
"""
import argparse
import asyncio
import json
import socket
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        line = json.dumps(
            {
                "from": envelope.mail_from,
                "rcpts": list(envelope.rcpt_tos),
                "data": envelope.original_content.decode("utf-8", "replace"),
                "tls": session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
                "auth": session.auth_data.login.decode()
                if isinstance(session.auth_data, LoginPassword)
                else None,
            }
        )
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return "250 2.0.0 Stored"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # handled=False: aiosmtpd answers a refusal with 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("port", nargs="?", type=int)
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--implicit", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth")
    p.add_argument("--hostname", default="127.0.0.1")
    a = p.parse_args()
    port = a.port or free_port()
    extra = {}
    tls = a.starttls or a.implicit
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls[0], tls[1])
        if a.starttls:
            extra.update(tls_context=ctx, require_starttls=True)
        else:
            extra.update(ssl_context=ctx)
    if a.auth:
        user, password = a.auth.split(":", 1)
        extra.update(
            authenticator=authenticator(user, password),
            auth_required=True,
            auth_require_tls=True,
        )
    controller = Controller(
        Recorder(a.out),
        hostname=a.hostname,
        port=port,
        enable_SMTPUTF8=True,
        data_size_limit=64 * 1024 * 1024,
        **extra,
    )
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
