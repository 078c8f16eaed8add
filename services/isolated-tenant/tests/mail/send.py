"""Sends one message with Python's smtplib, step by step, and reports the first refusal.

Usage: python3 send.py HOST PORT SENDER RCPT[,RCPT...] MESSAGE_FILE [--no-size] [--starttls]
Prints one JSON line: {"ok": true} or {"ok": false, "step": "mail|rcpt|data", "code": N,
"msg": "..."}. Sender "<>" means the null sender.
"""
import json
import smtplib
import ssl
import sys


def main():
    host, port, sender, rcpts, path = sys.argv[1:6]
    no_size = "--no-size" in sys.argv[6:]
    with open(path, "rb") as f:
        msg = f.read()
    sender = "" if sender == "<>" else sender
    result = {"ok": True}
    with smtplib.SMTP(host, int(port), timeout=60) as s:
        s.ehlo("sender.test.example")
        if "--starttls" in sys.argv[6:]:
            # The test's certificate is self-signed: encryption is what is checked here.
            s.starttls(context=ssl._create_unverified_context())
            s.ehlo("sender.test.example")
            result["tls"] = s.sock.version()
            result["offers_starttls_again"] = s.has_extn("starttls")
        opts = []
        if not no_size and s.has_extn("size"):
            opts.append(f"SIZE={len(msg)}")
        code, text = s.mail(sender, opts)
        if code != 250:
            result.update({"ok": False, "step": "mail", "code": code, "msg": text.decode()})
        else:
            for r in rcpts.split(","):
                code, text = s.rcpt(r)
                if code not in (250, 251):
                    result.update({"ok": False, "step": "rcpt", "code": code, "msg": text.decode()})
                    break
            if result["ok"]:
                code, text = s.data(msg)
                if code != 250:
                    result.update({"ok": False, "step": "data", "code": code, "msg": text.decode()})
        try:
            s.quit()
        except smtplib.SMTPServerDisconnected:
            pass
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
