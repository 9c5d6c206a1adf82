"""The peer: what a provider deploys today, a callback server on wechatpy.

Same work as wecom-provider's command URL: signature check, decrypt, receiveid check
(wechatpy's WeChatCrypto does all three), dedupe on a hash of receiveid + plaintext,
a durable SQLite insert (WAL, synchronous=FULL, one commit per callback), `success`.
"""

import hashlib
import os
import sqlite3
import threading
from urllib.parse import parse_qs

from wechatpy.enterprise.crypto import WeChatCrypto

SUITE_ID = os.environ["PEER_SUITE_ID"]
CRYPTO = WeChatCrypto(os.environ["PEER_TOKEN"], os.environ["PEER_AES_KEY"], SUITE_ID)
DATABASE = os.environ["PEER_DATABASE"]
_local = threading.local()


def connection():
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DATABASE, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=15000")
        _local.conn = conn
    return conn


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    try:
        plaintext = CRYPTO.decrypt_message(
            body, query["msg_signature"][0], query["timestamp"][0], query["nonce"][0]
        )
    except Exception:  # any verification failure is a rejection, as in the service
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"rejected"]
    key = hashlib.sha256((SUITE_ID + "\0" + plaintext).encode()).hexdigest()
    connection().execute(
        "INSERT OR IGNORE INTO events (dedupe_key, plaintext) VALUES (?, ?)", (key, plaintext)
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"success"]
