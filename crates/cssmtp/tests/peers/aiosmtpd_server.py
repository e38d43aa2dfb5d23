"""A real third-party SMTP server for cssmtp's interop tests: aiosmtpd (Debian's
python3-aiosmtpd), on loopback, with the session limits real servers set.

  /usr/bin/python3 aiosmtpd_server.py --limit N --backlog B --record FILE

--limit N: at most N mails per session; the next MAIL FROM is answered
           "452 4.5.3 Too many messages in this session" (as OpenSMTPD does).
--backlog B: the listen backlog (OpenSMTPD's is 5).
--record FILE: one JSON line per accepted mail (mail_from, rcpt_tos, size, body8bit).
Prints "port N" once listening; runs until its standard input closes.
"""
import argparse
import asyncio
import json
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, limit, record):
        self.limit = limit
        self.record = open(record, "a", buffering=1)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        count = getattr(session, "cssmtp_mails", 0)
        if self.limit and count >= self.limit:
            return "452 4.5.3 Too many messages in this session"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        session.cssmtp_mails = getattr(session, "cssmtp_mails", 0) + 1
        self.record.write(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "size": len(envelope.original_content or b""),
            "mail_options": envelope.mail_options,
        }) + "\n")
        return "250 2.0.0 OK"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--backlog", type=int, default=100)
    ap.add_argument("--record", required=True)
    args = ap.parse_args()
    handler = Handler(args.limit, args.record)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="aiosmtpd.localhost", decode_data=False),
        host="127.0.0.1", port=0, backlog=args.backlog)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    # Until standard input closes (the test ends or is killed).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
