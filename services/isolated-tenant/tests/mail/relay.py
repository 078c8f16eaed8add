"""A stand-in corporate relay for the tenant's mail tests: aiosmtpd on loopback.

Usage: python3 relay.py OUT_FILE [PORT]
Prints "READY <port>" once listening, then appends one JSON line per message received:
{"from": envelope sender, "rcpts": [envelope recipients], "data": message text}.
Runs until killed.
"""
import asyncio
import json
import socket
import sys

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        line = json.dumps(
            {
                "from": envelope.mail_from,
                "rcpts": list(envelope.rcpt_tos),
                "data": envelope.original_content.decode("utf-8", "replace"),
            }
        )
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return "250 2.0.0 Stored"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    out = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else free_port()
    controller = Controller(
        Recorder(out),
        hostname="127.0.0.1",
        port=port,
        enable_SMTPUTF8=True,
        data_size_limit=64 * 1024 * 1024,
    )
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
