"""A stateful fake of WeCom's server API for bench/cluster.sh, on loopback only.

It issues suite and corp tokens and accepts only the ones it issued, answers each
auth code `code-*` once (a second exchange is refused as WeCom refuses it, 40029),
answers get_corp_token after DELAY seconds so concurrent callers overlap the
refresh, and counts every call: GET /_stats returns the counts as JSON.

Usage: python3 bench/fake_wecom.py PORT [DELAY_SECONDS]
"""

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
lock = threading.Lock()
calls = Counter()  # path → calls
exchanges = Counter()  # auth code → get_permanent_code calls
corp_token_refreshes = Counter()  # corpid → get_corp_token calls
suite_tokens, corp_tokens = set(), set()
rejected = Counter()  # path → calls with a token this fake never issued


def issue(tokens, prefix):
    with lock:
        token = f"{prefix}-{len(tokens)}"
        tokens.add(token)
    return token


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_stats":
            with lock:
                self.answer({
                    "calls": calls,
                    "exchanges": exchanges,
                    "codes_exchanged_twice": sum(1 for n in exchanges.values() if n > 1),
                    "corp_token_refreshes": corp_token_refreshes,
                    "rejected": rejected,
                })
            return
        self.handle_call(url, {})

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length", 0))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        self.handle_call(url, body)

    def handle_call(self, url, body):
        path = url.path.removeprefix("/cgi-bin/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with lock:
            calls[path] += 1
        if path == "service/get_suite_token":
            return self.answer({"suite_access_token": issue(suite_tokens, "suite-token"), "expires_in": 7200})
        if path.startswith("service/"):
            if query.get("suite_access_token") not in suite_tokens:
                with lock:
                    rejected[path] += 1
                return self.answer({"errcode": 42009, "errmsg": "suite_access_token expired"})
            if path in ("service/get_permanent_code", "service/v2/get_permanent_code"):
                code = body.get("auth_code", "")
                with lock:
                    exchanges[code] += 1
                    first = exchanges[code] == 1
                if not first or not code.startswith("code-"):
                    return self.answer({"errcode": 40029, "errmsg": "invalid code"})
                corpid = "wpBench" + code.rsplit("-", 1)[-1]
                return self.answer({
                    "permanent_code": f"permanent-{code}",
                    "auth_corp_info": {"corpid": corpid, "corp_name": "Bench Corp"},
                    "auth_info": {"agent": [{"agentid": 1000001, "auth_mode": 0}]},
                })
            if path == "service/get_corp_token":
                with lock:
                    corp_token_refreshes[body.get("auth_corpid", "")] += 1
                time.sleep(DELAY)
                return self.answer({"access_token": issue(corp_tokens, "corp-token"), "expires_in": 7200})
            return self.answer({"errcode": 0, "errmsg": "ok"})
        if query.get("access_token") not in corp_tokens:
            with lock:
                rejected[path] += 1
            return self.answer({"errcode": 40014, "errmsg": "invalid access_token"})
        if path == "agent/get_admin_list":
            return self.answer({"errcode": 0, "admin": [{"userid": "admin", "auth_type": 1}]})
        return self.answer({"errcode": 0, "errmsg": "ok"})


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
