"""Turns bench/results/results.jsonl and criterion's estimates into report.md."""

import json
import math
import sys
from pathlib import Path

results = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
criterion = Path(sys.argv[2])


def of(kind):
    return [r for r in results if r["kind"] == kind]


def header(columns, align=""):
    """A markdown table head; `align` has an `r` for each right-aligned (number) column."""
    print("| " + " | ".join(columns) + " |")
    print("| " + " | ".join("---:" if align[i:i + 1] == "r" else "---" for i in range(len(columns))) + " |")


def estimate_ns(group, name):
    path = criterion / group / name / "new" / "estimates.json"
    return json.loads(path.read_text())["mean"]["point_estimate"] if path.exists() else None


machine = of("machine")[0]
print(f"Run of {machine['date']} at {machine['commit']}: {machine['cores']} cores, {machine['cpu']}; load generator (wrk) "
      f"on the same cores; {machine['duration_s']} s per load step; the machine's fsync rate: "
      f"{machine['fsync_commits_per_s']:,} one-row SQLite commits/s.\n")

if of("floor"):
    print("### Callback crypto: signature + decrypt + receiveid check\n")
    header(['plaintext', 'ours per message', 'ours MB/s', 'openssl floor (AES-256-CBC decrypt + SHA-1 of the base64)', 'ours / floor'])
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
    header(['kind', 'per message', 'MB/s'])
    parse_dir = criterion / "parse"
    if parse_dir.exists():
        for kind_dir in sorted(p for p in parse_dir.iterdir() if p.is_dir() and p.name != "report"):
            ns = estimate_ns("parse", kind_dir.name)
            bench = json.loads((kind_dir / "new" / "benchmark.json").read_text())
            size = bench.get("throughput", {}).get("Bytes", 0)
            print(f"| {kind_dir.name} | {ns / 1000:.2f} µs | {size / ns * 1000:.0f} |")



def ms(us):
    return f"{us / 1000:.1f} ms"


def label(run):
    return {"ours": "wecom-provider", "peer": "wechatpy + gunicorn"}.get(run["server"], run["server"])


def checked(run):
    """Stored at least what was acknowledged, and nothing twice."""
    return run["stored"] >= run["acknowledged_at_most"] and run["duplicate_keys"] == 0


def verdict(run):
    """A run whose callbacks ran out sent some twice, so fewer rows than acknowledgements
    prove nothing there: it is reported as unchecked, not as a loss."""
    if run["wrk"]["wrapped"]:
        return "unchecked (the callbacks ran out)"
    return "yes" if checked(run) else "NO"


ingest = [r for r in of("ingest") if not r["settings"] and not r["feed"]]
if ingest:
    print("\n### Durable ingest at the callback URL's real shape (64 connections)\n")
    print("Realistic change_contact/update_user callbacks (1.4 KB plaintext, 2 KB on the wire, Chinese fields). "
          "`fresh`: an empty database; `1 M`: one already holding 1 M events. Ratio: ours over the peer on the same "
          "stamps and database. `server clock`: ours' stored callbacks over the span of their arrival times, "
          "a check on wrk's own count. `kernel, writes`: ours' system CPU per callback, and on SQLite its write "
          "calls and KiB written per callback.\n")
    header(['stamps', 'database', 'server', 'backend', 'callbacks/s', 'server clock', 'p50', 'p99', 'p99.9', 'max', 'CPU per callback', 'kernel, writes', 'stored once, none lost', 'ours / peer'], "llllrrrrrrrrlr")
    for run in ingest:
        w = run["wrk"]
        peer = [p for p in ingest if p["server"] == "peer" and p["stamps"] == run["stamps"] and p["seeded"] == run["seeded"]]
        ratio = f"{run['per_s'] / peer[0]['per_s']:.1f}×" if peer and run["server"] != "peer" and peer[0]["per_s"] else ""
        database = f"{run['rows_before'] / 1e6:.0f} M" if run["seeded"] else "fresh"
        clock = f"{run['stored_per_s']:,}" if run.get("stored_per_s") else ""
        kernel = f"{run['server_system_us_per_request']:.0f} µs" if run.get("server_system_us_per_request") is not None else ""
        if run.get("server_writes_per_request"):
            kernel += f"; {run['server_writes_per_request']['calls']:.1f} writes, {run['server_writes_per_request']['kib']:.1f} KiB"
        print(f"| {run['stamps']} | {database} | {label(run)} | {run['backend']} | {run['per_s']:,} | {clock} | {ms(w['p50_us'])} | "
              f"{ms(w['p99_us'])} | {ms(w['p999_us'])} | {ms(w['max_us'])} | {run['server_cpu_us_per_request']:.0f} µs | {kernel} | "
              f"{verdict(run)} ({run['stored']:,} stored, ≤ {run['acknowledged_at_most']:,} acknowledged) | {ratio} |")

pruning = [r for r in of("ingest") if r["settings"]]
if pruning:
    print("\n### Ingest beside the background pruner (SQLite, 1 M events two days old, advancing stamps)\n")
    header(['retention', 'callbacks/s', 'p99', 'p99.9', 'rows before → after', 'stored once, none lost'], "lrrrll")
    for run in pruning:
        w = run["wrk"]
        print(f"| {run['settings']} | {run['per_s']:,} | {ms(w['p99_us'])} | {ms(w['p999_us'])} | "
              f"{run['rows_before']:,} → {run['rows_after']:,} | {verdict(run)} |")
    on = [r["per_s"] for r in pruning if r["settings"].endswith("=1")]
    off = [r["per_s"] for r in pruning if not r["settings"].endswith("=1")]
    if on and off:
        print(f"\nMean with the pruner {sum(on) / len(on):,.0f}/s, without {sum(off) / len(off):,.0f}/s: "
              f"{(sum(on) / len(on)) / (sum(off) / len(off)) * 100 - 100:+.1f} %.")

scale = [r for r in of("ingest") if r["feed"]]
if scale:
    print("\n### Cost as the event log grows (SQLite, advancing stamps; feed: `GET /api/v1/events?after=…&limit=100`, median of 20)\n")
    header(['events stored', 'callbacks/s', 'p99', 'p99.9', 'feed at the start', 'feed in the middle', 'feed at the end'], "rrrrrrr")
    for run in scale:
        w, feed = run["wrk"], run["feed"]
        print(f"| {run['rows_before']:,} | {run['per_s']:,} | {ms(w['p99_us'])} | {ms(w['p999_us'])} | "
              + " | ".join(f"{f['median_ms']:.2f} ms" for f in feed) + " |")

cluster = of("cluster")
if cluster:
    print("\n### Several instances on one PostgreSQL behind haproxy (round-robin, loopback)\n")
    header(['instances', 'callbacks/s', 'server clock', 'p50', 'p99', 'p99.9', 'CPU per callback: instances, PostgreSQL, haproxy; machine idle', 'stored once, none lost', 'installs (each callback twice)', 'codes exchanged twice', 'token storm: requests, corps refreshed, most refreshes of one corp'], "rrrrrrlllrl")
    for run in cluster:
        i, inst, storm = run["ingest"], run["installs"], run["storm"]
        clock = f"{i['stored_per_s']:,}" if i.get("stored_per_s") else ""
        cpu = i.get("cpu_us_per_callback")
        spent = (f"{cpu['instances']:.0f}, {cpu['postgres']:.0f}, {cpu['haproxy']:.0f} µs; {i['machine_idle']:.0%}"
                 if cpu else "")
        print(f"| {run['instances']} | {i['per_s']:,} | {clock} | {ms(i['p50_us'])} | {ms(i['p99_us'])} | {ms(i['p999_us'])} | {spent} | "
              f"{'yes' if i['stored_once'] and i['nothing_acknowledged_lost'] else 'NO'} | "
              f"{inst['active']}/{inst['corps']} active in {inst['seconds']} s | {inst['codes_exchanged_twice']} | "
              f"{storm['requests']:,} ({storm['non2xx']} non-2xx), {storm['corps_refreshed']}/{storm['corps']}, {storm['max_refreshes_per_corp']} |")

instructions = of("instructions")
if instructions:
    print("\n### CPU instructions per durable callback (callgrind, SQLite, realistic callbacks)\n")
    header(['stamps', 'callbacks (two runs)', 'instructions per callback'], "llr")
    for run in instructions:
        print(f"| {run['stamps']} | {run['callbacks'][0]:,} and {run['callbacks'][1]:,} | {run['per_callback']:,} |")
