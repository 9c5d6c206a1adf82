"""Turns bench/results/results.jsonl and criterion's estimates into report.md."""

import json
import math
import sys
from pathlib import Path

results = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
criterion = Path(sys.argv[2])


def of(kind):
    return [r for r in results if r["kind"] == kind]


def estimate_ns(group, name):
    path = criterion / group / name / "new" / "estimates.json"
    return json.loads(path.read_text())["mean"]["point_estimate"] if path.exists() else None


machine = of("machine")[0]
print(f"Machine: {machine['cores']} cores, {machine['cpu']}; load generator (wrk) on the same machine; "
      f"{machine['duration_s']} s per load step.\n")

print("### Callback crypto: signature + decrypt + receiveid check\n")
print("| plaintext | ours per message | ours MB/s | openssl floor (AES-256-CBC decrypt + SHA-1 of the base64) | ours / floor |")
print("| --- | --- | --- | --- | --- |")
names = {200: "200B", 1024: "1KiB", 4096: "4KiB", 16384: "16KiB"}
for floor in of("floor"):
    size = floor["size"]
    ours = estimate_ns("open", names[size])
    ciphertext = math.ceil((size + 4 + 16 + 12 + 1) / 32) * 32
    b64 = math.ceil(ciphertext / 3) * 4
    floor_ns = ciphertext / (floor["aes_kBps"] * 1000) * 1e9 + b64 / (floor["sha1_kBps"] * 1000) * 1e9
    if ours is None:
        continue
    print(f"| {size} B | {ours / 1000:.2f} µs | {size / ours * 1000:.0f} | {floor_ns / 1000:.2f} µs | {ours / floor_ns:.2f}× |")

print("\n### XML parsing per message kind (parse + typed message)\n")
print("| kind | per message | MB/s |")
print("| --- | --- | --- |")
parse_dir = criterion / "parse"
if parse_dir.exists():
    for kind_dir in sorted(p for p in parse_dir.iterdir() if p.is_dir() and p.name != "report"):
        ns = estimate_ns("parse", kind_dir.name)
        bench = json.loads((kind_dir / "new" / "benchmark.json").read_text())
        size = bench.get("throughput", {}).get("Bytes", 0)
        print(f"| {kind_dir.name} | {ns / 1000:.2f} µs | {size / ns * 1000:.0f} |")


def rate(run):
    wrk = run["wrk"]
    return wrk["requests"] / (wrk["duration_us"] / 1e6) if wrk["duration_us"] else 0.0


def acked(run):
    return run["wrk"]["requests"] - run["wrk"]["non2xx"]


peer = {r["connections"]: r for r in of("ingest") if r["server"] == "peer"}
print("\n### Durable callback ingest (each acknowledged callback committed with fsync first)\n")
print("| server | database | connections | callbacks/s | p50 | p99 | max | acknowledged | stored | peak RSS | ours / peer |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for run in of("ingest"):
    wrk = run["wrk"]
    ratio = ""
    if run["server"] == "ours" and run["connections"] in peer and rate(peer[run["connections"]]) > 0:
        ratio = f"{rate(run) / rate(peer[run['connections']]):.1f}×"
    rss = f"{run['peak_rss_kib'] / 1024:.0f} MiB" if run["peak_rss_kib"] else "–"
    note = " (file wrapped)" if wrk["wrapped"] else ""
    server = {"ours": "wecom-provider", "ours-1m": "wecom-provider, 1M events stored", "peer": "wechatpy + gunicorn"}[run["server"]]
    print(f"| {server} | {run['backend']} | {run['connections']} | {rate(run):,.0f} | {wrk['p50_us'] / 1000:.2f} ms | "
          f"{wrk['p99_us'] / 1000:.2f} ms | {wrk['max_us'] / 1000:.1f} ms | {acked(run):,}{note} | {run['stored']:,} | {rss} | {ratio} |")

print("\nEvery run: stored ≥ acknowledged (a callback answered `success` is in the table; the few above are "
      "requests in flight when wrk stopped), and no callback is stored twice (`dedupe_key` is unique; "
      "rows = distinct keys):")
for run in of("ingest"):
    ok = run["stored"] >= acked(run) and run["total_rows"] == run["distinct_rows"]
    print(f"- {run['server']} {run['backend']} c={run['connections']}: acknowledged {acked(run):,}, stored {run['stored']:,}, "
          f"non-2xx {run['wrk']['non2xx']}, socket errors {run['wrk']['socket_errors']} → {'OK' if ok else 'MISMATCH'}")

print("\n### Cached corp token: `GET /api/v1/suites/{id}/corps/{corpid}/token`\n")
print("| database | connections | requests/s | p50 | p99 | max | non-2xx | peak RSS |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for run in of("token"):
    wrk = run["wrk"]
    print(f"| {run['backend']} | {run['connections']} | {rate(run):,.0f} | {wrk['p50_us'] / 1000:.2f} ms | "
          f"{wrk['p99_us'] / 1000:.2f} ms | {wrk['max_us'] / 1000:.1f} ms | {wrk['non2xx']} | {run['peak_rss_kib'] / 1024:.0f} MiB |")

print("\n### Events feed latency by table size (SQLite, `limit=100`, median of 20)\n")
print("| rows in table | after= | median |")
print("| --- | --- | --- |")
for run in of("feed"):
    print(f"| {run['rows']:,} | {run['after']:,} | {run['median_ms']:.2f} ms |")
