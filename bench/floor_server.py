"""The floor of start-up: a ThreadingHTTPServer that imports nothing of fcbuild's and answers /health.

python bench/floor_server.py PORT [--host HOST]
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
    ThreadingHTTPServer((host, int(sys.argv[1])), Health).serve_forever()
