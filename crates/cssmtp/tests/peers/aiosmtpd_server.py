"""A real third-party SMTP server for cssmtp's interop tests: aiosmtpd (Debian's
python3-aiosmtpd), on loopback, with the session limits real servers set.

  /usr/bin/python3 aiosmtpd_server.py --limit N --backlog B --record FILE

--limit N: at most N mails per session; the next MAIL FROM is answered
           "452 4.5.3 Too many messages in this session" (as OpenSMTPD does).
--backlog B: the listen backlog (OpenSMTPD's is 5).
--record FILE: one JSON line per accepted mail (mail_from, rcpt_tos, size, body8bit;
           login, auths: the AUTH commands of its session, tls).
--tls-cert FILE --tls-key FILE: offer STARTTLS with this certificate.
--client-ca FILE: with --tls-cert, require a client certificate signed by this CA
           (recorded: client_cert, its subject's common name).
--auth USER:PASSWORD: require AUTH (PLAIN, LOGIN) with these credentials.
--token TOKEN: also offer XOAUTH2, accepting USER with this bearer token.
--auth-in-clear: offer AUTH without TLS too (aiosmtpd requires TLS by default).
--hide-auth: offer no AUTH at all in EHLO.
--exclude MECH: do not offer this mechanism (repeatable).
--smtputf8: offer SMTPUTF8 (RFC 6531); the record then holds the text ("content",
           base64).
Prints "port N" once listening; runs until its standard input closes.
"""
import argparse
import asyncio
import json
import base64
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class CountingSMTP(SMTP):
    """Counts the AUTH commands of each session (one per connection is expected)."""

    async def smtp_AUTH(self, arg):
        self.session.cssmtp_auths = getattr(self.session, "cssmtp_auths", 0) + 1
        return await super().smtp_AUTH(arg)


class Handler:
    def __init__(self, limit, record, hide_auth=False):
        self.limit = limit
        self.record = open(record, "a", buffering=1)
        self.hide_auth = hide_auth
        self.keep_content = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.hide_auth:
            return [r for r in responses if not r.startswith("250-AUTH")]
        return responses


    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        count = getattr(session, "cssmtp_mails", 0)
        if self.limit and count >= self.limit:
            return "452 4.5.3 Too many messages in this session"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        session.cssmtp_mails = getattr(session, "cssmtp_mails", 0) + 1
        login = getattr(session.auth_data, "login", None)
        if isinstance(login, bytes):
            login = login.decode()
        self.record.write(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "size": len(envelope.original_content or b""),
            "mail_options": envelope.mail_options,
            "login": login,
            "auths": getattr(session, "cssmtp_auths", 0),
            "tls": session.ssl is not None,
            "client_cert": (dict(x[0] for x in server.transport.get_extra_info("peercert")["subject"])
                            .get("commonName") if server.transport.get_extra_info("peercert") else None),
            "peer": session.peer[0],
            **({"content": base64.b64encode(envelope.original_content or b"").decode()}
               if self.keep_content else {}),
        }) + "\n")
        return "250 2.0.0 OK"


class XOAuth2Handler(Handler):
    def __init__(self, limit, record, user, token, hide_auth=False):
        super().__init__(limit, record, hide_auth)
        self.user = user
        self.token = token

    async def auth_XOAUTH2(self, server, args):
        if len(args) == 2:
            blob = args[1]
        else:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(blob).decode()
        try:
            text = base64.b64decode(blob, validate=True).decode()
        except Exception:
            return AuthResult(success=False, handled=False, message="501 5.5.2 bad base64")
        expected = f"user={self.user}\x01auth=Bearer {self.token}\x01\x01"
        if text == expected:
            return AuthResult(success=True, handled=False,
                              auth_data=LoginPassword(self.user.encode(), b""))
        # As Google and Microsoft do: an error challenge, then 535 after the client's
        # empty line.
        await server.challenge_auth('{"status":"401"}')
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Username and token not accepted")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--backlog", type=int, default=100)
    ap.add_argument("--record", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--auth")
    ap.add_argument("--token")
    ap.add_argument("--auth-in-clear", action="store_true")
    ap.add_argument("--hide-auth", action="store_true")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--smtputf8", action="store_true")
    ap.add_argument("--client-ca")
    args = ap.parse_args()
    user, password = (args.auth.split(":", 1) if args.auth else (None, None))
    if args.token:
        handler = XOAuth2Handler(args.limit, args.record, user, args.token, args.hide_auth)
    else:
        handler = Handler(args.limit, args.record, args.hide_auth)
    handler.keep_content = args.smtputf8
    options = {}
    if args.smtputf8:
        options["enable_SMTPUTF8"] = True
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            # A client certificate signed by this CA is required.
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
        options["tls_context"] = context
    if args.auth:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == user.encode()
                  and auth_data.password == password.encode())
            return AuthResult(success=ok, handled=False, auth_data=auth_data)
        options.update(authenticator=authenticator, auth_required=True,
                       auth_require_tls=not args.auth_in_clear,
                       auth_exclude_mechanism=args.exclude)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CountingSMTP(handler, hostname="aiosmtpd.localhost", decode_data=False,
                             **options),
        host="127.0.0.1", port=0, backlog=args.backlog)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    # Until standard input closes (the test ends or is killed).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
