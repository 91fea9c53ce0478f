#!/usr/bin/env python3
"""Demo helpers for `make demo`: an echo upstream and a JWKS server (Python standard library only).

  demo_servers.py UPSTREAM_PORT JWKS_PORT JWKS_FILE

- 127.0.0.1:UPSTREAM_PORT answers every request with 200 and a JSON body listing the method, path, the
  request headers and the request body it received (so the demo shows what passed the filter, and the
  filter's response redaction has personal data to mask).
- 127.0.0.1:JWKS_PORT serves JWKS_FILE at /jwks.json and logs each fetch to stderr.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _echo(self):
        length = int(self.headers.get("content-length") or 0)
        received = self.rfile.read(length) if length else b""
        try:
            echoed = json.loads(received) if received else None
        except ValueError:
            echoed = received.decode("utf-8", "replace")
        body = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": echoed,
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-echo", "1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _echo

    def log_message(self, *args):
        pass


def jwks_handler(path):
    class Jwks(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path.split("?")[0] != "/jwks.json":
                self.send_error(404)
                return
            with open(path, "rb") as f:
                body = f.read()
            sys.stderr.write("jwks server: served /jwks.json\n")
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Jwks


def main():
    upstream_port, jwks_port, jwks_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    servers = [
        ThreadingHTTPServer(("127.0.0.1", upstream_port), Echo),
        ThreadingHTTPServer(("127.0.0.1", jwks_port), jwks_handler(jwks_file)),
    ]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
