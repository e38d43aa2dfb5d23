#!/usr/bin/python3
"""Verifies every DKIM-Signature of a mail with dkimpy (Debian's python3-dkim), an
independent verifier of the signatures cssmtp makes. The public keys come from the
command line instead of DNS (dkimpy's dnsfunc hook).

Usage: dkim_verify.py MAIL NAME=TXT...
  MAIL  the mail as received (CRLF lines, no dot-stuffing)
  NAME  <selector>._domainkey.<domain>; TXT its record ("v=DKIM1; k=rsa; p=...")
Prints one line per signature, "signature <i> <domain> <selector> pass|fail"; exits 0
when the mail has at least one signature and every one verifies, else 1.
"""
import sys

import dkim

mail = open(sys.argv[1], "rb").read()
records = {}
for arg in sys.argv[2:]:
    name, txt = arg.split("=", 1)
    records[name.lower().rstrip(".")] = txt.encode()


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.lower().rstrip("."))


d = dkim.DKIM(mail)
count = len([v for k, v in d.headers if k.lower() == b"dkim-signature"])
ok = count > 0
if count == 0:
    print("no DKIM-Signature")
for i in range(count):
    try:
        good = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        print("error", e)
        good = False
    print("signature", i, d.domain.decode(), d.selector.decode(), "pass" if good else "fail")
    ok = ok and good
sys.exit(0 if ok else 1)
