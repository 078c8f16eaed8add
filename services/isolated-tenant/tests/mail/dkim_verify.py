"""Verifies a message's DKIM signature with dkimpy, an independent implementation.

Usage: python3 dkim_verify.py MESSAGE_FILE PUBLIC_KEY_BASE64 [--arc]
With --arc, verifies the ARC chain (RFC 8617) instead: success when its validation is "pass".
The DNS lookup of <selector>._domainkey.<domain> is answered with the given key.
Exit status 0 when the signature verifies, 1 when it does not.
"""
import sys

import dkim


def main():
    with open(sys.argv[1], "rb") as f:
        message = f.read()
    record = b"v=DKIM1; k=rsa; p=" + sys.argv[2].encode()

    def dns(name, timeout=5):
        return record

    if "--arc" in sys.argv[3:]:
        cv, _results, reason = dkim.arc_verify(message, dnsfunc=dns)
        print(cv, reason, flush=True)
        ok = cv == dkim.CV_Pass
    else:
        ok = dkim.verify(message, dnsfunc=dns)
    print("pass" if ok else "fail", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
