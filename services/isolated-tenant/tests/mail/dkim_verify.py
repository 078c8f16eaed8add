"""Verifies a message's DKIM signature with dkimpy, an independent implementation.

Usage: python3 dkim_verify.py MESSAGE_FILE KEY [--arc] [--key NAME RECORD]...
KEY is the DNS record (`v=DKIM1; k=rsa; p=...`, or only the base64 of p=) that answers every
<selector>._domainkey.<domain> lookup that no --key names; each --key answers NAME alone.
With --arc, verifies the ARC chain (RFC 8617) instead: success when its validation is "pass".
Prints the result (for ARC: cv, reason, and the instance count); exit status 0 when it verifies.
"""
import sys

import dkim


def record(text):
    text = text.strip()
    return (text if text.startswith("v=DKIM1") else "v=DKIM1; k=rsa; p=" + text).encode()


def main():
    args = sys.argv[1:]
    with open(args.pop(0), "rb") as f:
        message = f.read()
    default = record(args.pop(0))
    keys, arc = {}, False
    while args:
        a = args.pop(0)
        if a == "--arc":
            arc = True
        elif a == "--key":
            name = args.pop(0).rstrip(".").lower()
            keys[name] = record(args.pop(0))

    def dns(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return keys.get(name.rstrip(".").lower(), default)

    if arc:
        cv, results, reason = dkim.arc_verify(message, dnsfunc=dns)
        print(cv.decode() if isinstance(cv, bytes) else cv, reason, len(results), flush=True)
        ok = cv == dkim.CV_Pass
    else:
        ok = dkim.verify(message, dnsfunc=dns)
    print("pass" if ok else "fail", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
