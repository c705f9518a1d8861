"""A loopback SMTP server standing for the remote hosts Exim delivers to:
it answers each RCPT by the recipient's local part, so a test decides which
deliveries really bounce or defer (Exim's smtp transport sees real replies):

  bounce*   550 5.1.1 at RCPT (Exim bounces the recipient)
  defer*    451 4.3.0 at RCPT (Exim defers the recipient and retries)
  anything else  250 (delivered; the message is kept in .received)
"""
import socketserver
import threading


class _Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def rcpt(self, arg):
        address = arg.split(":", 1)[1].strip().strip("<>")
        local = address.split("@", 1)[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 no such user here"
        if local.startswith("defer"):
            return "451 4.3.0 try again later"
        self.server.sink.accepted.append(address)
        return "250 OK"

    def handle(self):
        self.reply("220 sink.test ESMTP")
        while True:
            line = self.rfile.readline().decode(errors="replace").rstrip("\r\n")
            if not line:
                return
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink.test")
            elif verb == "RCPT":
                self.reply(self.rcpt(line))
            elif verb == "DATA":
                self.reply("354 go ahead")
                while self.rfile.readline().rstrip(b"\r\n") != b".":
                    pass
                self.server.sink.received += 1
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:  # MAIL, RSET, NOOP
                self.reply("250 OK")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink:
    """Listens on 127.0.0.1:port (a free one by default) until stop()."""

    def __init__(self, port=0):
        self.accepted = []   # recipients answered 250
        self.received = 0    # messages taken after DATA
        self.server = _Server(("127.0.0.1", port), _Session)
        self.server.sink = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
