#!/usr/bin/env python3
"""A webhook receiver for trying solopay out: prints every webhook it gets and answers 200.

    python3 tools/webhook-receiver.py [port] [--once]   # default 9000, on 127.0.0.1

With WEBHOOK_SECRET set to a merchant's webhook secret (whsec_...), it checks each request's
Standard Webhooks signature and says whether it holds. With --once it exits after the first
webhook (status 0), or after 60 s without one (status 1). A GET answers 200 and prints nothing,
so a script can wait until the receiver listens. Python's standard library only.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def signature_holds(secret, headers, body):
    """Whether one of the v1 signatures is HMAC-SHA256 of "<id>.<timestamp>.<body>"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
    return any(hmac.compare_digest(expected, s) for s in offered)


class Receiver(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        secret = os.environ.get("WEBHOOK_SECRET")
        verdict = ""
        if secret:
            verdict = " (signature holds)" if signature_holds(secret, self.headers, body) else " (BAD SIGNATURE)"
        try:
            event = json.loads(body)
            order = event.get("data", {})
            print(f"webhook {self.headers.get('webhook-id')}: {event.get('type')} for "
                  f"{order.get('id')} ({order.get('merchant_order_id')}, {order.get('status')}, "
                  f"{order.get('payable_amount')}){verdict}", flush=True)
        except ValueError:
            print(f"webhook {self.path}: {body[:200]!r}{verdict}", flush=True)
        Receiver.received += 1
        self.answer_ok()

    def do_GET(self):
        self.answer_ok()

    def answer_ok(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    once = "--once" in sys.argv[1:]
    numbers = [a for a in sys.argv[1:] if a != "--once"]
    port = int(numbers[0]) if numbers else 9000
    server = HTTPServer(("127.0.0.1", port), Receiver)
    print(f"listening on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
    if not once:
        server.serve_forever()
    server.timeout = 1
    deadline = time.monotonic() + 60
    while Receiver.received == 0 and time.monotonic() < deadline:
        server.handle_request()
    if Receiver.received == 0:
        print("no webhook arrived within 60 s", flush=True)
        sys.exit(1)
