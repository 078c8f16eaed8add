"""Plays the corporate MTA that DKIM-signs and ARC-seals a message before the tenant sees it
(as Microsoft 365 or Google do), with dkimpy.

Usage: python3 arc_sign.py IN_FILE OUT_FILE PRIVATE_KEY_PEM DOMAIN SELECTOR AUTHSERV_ID
The message must carry an Authentication-Results header of AUTHSERV_ID (dkimpy builds the
ARC-Authentication-Results from it). Writes the message with a DKIM signature and ARC set 1.
"""
import sys

import dkim


def main():
    src, dst, keyfile, domain, selector, srv_id = sys.argv[1:7]
    with open(src, "rb") as f:
        message = f.read()
    with open(keyfile, "rb") as f:
        key = f.read()
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key,
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    message = signature + message
    arc = dkim.arc_sign(
        message,
        selector.encode(),
        domain.encode(),
        key,
        srv_id.encode(),
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    if not arc:
        sys.exit("dkimpy made no ARC set")
    with open(dst, "wb") as f:
        f.write(b"".join(arc) + message)


if __name__ == "__main__":
    main()
