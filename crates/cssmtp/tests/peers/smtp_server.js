// A real third-party SMTP server for cssmtp's interop tests: nodemailer's smtp-server
// (npm, installed by `.ci/install-peers smtp-server`), on loopback, requiring AUTH.
//
//   /usr/bin/node smtp_server.js --modules DIR --record FILE --tls-cert F --tls-key F
//                                --auth USER:PASSWORD [--token TOKEN]
//
// --modules DIR: where smtp-server was installed (DIR/node_modules/smtp-server).
// --record FILE: one JSON line per accepted mail (mail_from, rcpt_tos, login, auths:
//                the AUTH commands of its connection, tls).
// --auth USER:PASSWORD: PLAIN and LOGIN accept these credentials.
// --token TOKEN: XOAUTH2 accepts USER with this bearer token.
// Prints "port N" once listening; runs until its standard input closes.
"use strict";
const fs = require("fs");
const path = require("path");

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
const { SMTPServer } = require(path.join(args.modules, "node_modules", "smtp-server"));
const [user, password] = (args.auth || ":").split(/:(.*)/s);
const record = fs.openSync(args.record, "a");

const server = new SMTPServer({
  key: fs.readFileSync(args["tls-key"]),
  cert: fs.readFileSync(args["tls-cert"]),
  authMethods: ["PLAIN", "LOGIN", "XOAUTH2"],
  logger: false,
  onAuth(auth, session, callback) {
    session.cssmtpAuths = (session.cssmtpAuths || 0) + 1;
    if (auth.method === "XOAUTH2") {
      if (args.token && auth.username === user && auth.accessToken === args.token) {
        return callback(null, { user });
      }
      return callback(null, { data: { status: "401", schemes: "bearer" } });
    }
    if (auth.username === user && auth.password === password) {
      return callback(null, { user });
    }
    return callback(new Error("Invalid username or password"));
  },
  onData(stream, session, callback) {
    let size = 0;
    stream.on("data", (chunk) => (size += chunk.length));
    stream.on("end", () => {
      fs.writeSync(
        record,
        JSON.stringify({
          mail_from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          rcpt_tos: session.envelope.rcptTo.map((r) => r.address),
          size,
          login: session.user || null,
          auths: session.cssmtpAuths || 0,
          tls: Boolean(session.secure),
        }) + "\n",
      );
      callback(null, "OK");
    });
  },
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`port ${server.server.address().port}\n`);
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
