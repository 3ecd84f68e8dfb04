"""Tiny stand-in for an OpenAI-compatible server, for bench.target.launch tests.

Serves GET /v1/models on 127.0.0.1:<port>. Flags make it misbehave the ways real servers do:
slow start, immediate crash, never ready (503 like llama-server while loading), ignoring
SIGTERM, and forking a child that stays in the process group.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(status: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                self.send_error(404)
                return
            body = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print("request:", format % args, flush=True)

    return Handler


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay-s", type=float, default=0.0, help="sleep before listening")
    p.add_argument("--exit-code", type=int, default=None, help="print some lines and exit at once")
    p.add_argument("--status", type=int, default=200, help="status of /v1/models (503: never ready)")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--spawn-child", action="store_true", help="fork a sleeper in the same group")
    args = p.parse_args()

    for i in range(30):
        print(f"fake server boot line {i}", flush=True)
    if args.exit_code is not None:
        print("fatal: model file not found", file=sys.stderr, flush=True)
        return args.exit_code
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"child pid {child.pid}", flush=True)
    time.sleep(args.delay_s)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.status))
    print(f"listening on {args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
