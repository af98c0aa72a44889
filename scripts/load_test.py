#!/usr/bin/python3
"""Load test of incnn-serve: N concurrent clients replay PEP edit histories through the API.

    /usr/bin/python3 scripts/load_test.py [--program build/pep-vq.incnn] [--clients 16]
        [--edits-per-client 100] [--verify-every 10] [--threads 1] [--memory-budget MB]
        [--url http://HOST:PORT [--kill-busiest RUN_DIR --kill-after S]]

Starts incnn-serve on a free loopback port (or, with --url, uses a running server or fleet).
Each client names its own document (PUT /v1/documents/NAME with the base text of one PEP of
../shared/data/peps/edits.jsonl.gz; clients beyond 80 reuse them) and posts its revision hunks
one at a time as byte-range text edits, with "verify" every K edits (the server then also
tokenizes and runs from scratch and says whether every bit agrees). Like an LSP client it owns
the text: a 404 (its server went away, or evicted it) is answered by PUTting the text again and
re-sending the edit, and a refused connection (502/503 from a balancer) is retried. With
--kill-busiest (the run directory scripts/fleet.sh prints), the fleet's server holding the most
documents still being edited is killed --kill-after seconds in, and latencies are reported before, during (until
the last client recovered) and after.
Prints requests per second, p50/p90/p99 latency per edit, the server's peak memory (VmHWM),
evictions, documents recovered, failed requests and mismatches; exits 1 if any request failed
or any verify disagreed.
"""

import argparse
import glob
import gzip
import json
import os
import signal
import subprocess
import threading
import time
import http.client
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def line_offset(text, line):
    at = 0
    for _ in range(line):
        nl = text.find("\n", at)
        if nl < 0:
            return len(text)
        at = nl + 1
    return at


def hunk_edits(doc, limit):
    """(start, end, text, edited text) byte-range edits of a trace document's revisions, in
    order, with the client's copy of the text after each."""
    text = doc["base"]
    for rev in doc["revisions"]:
        for start, deleted, inserted in sorted(rev["hunks"], key=lambda h: -h[0]):
            a, b = line_offset(text, start), line_offset(text, start + deleted)
            rep = "".join(inserted)
            # Byte offsets of the UTF-8 text the server holds.
            ba = len(text[:a].encode("utf-8"))
            bb = ba + len(text[a:b].encode("utf-8"))
            text = text[:a] + rep + text[b:]
            yield ba, bb, rep, text
            limit -= 1
            if limit == 0:
                return


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))] if xs else 0.0


def keystrokes(a, docs, post, base, server):
    """Single characters typed at a few places of a ~10,000-token document, one request each
    (--caret top: all of them in its first 5%, where an edit reaches every later row)."""
    text = ""
    for d in sorted(docs, key=lambda d: -len(d["base"])):
        text += d["base"] + "\n"
        if len(text.encode("utf-8")) > 34000:
            break
    status, r = post("/v1/documents", {"text": text})
    did, tokens, times = r["id"], r["stats"]["tokens"], []
    served, updates = [], []  # the server's request and update times
    recomputed, flips = [], []  # per layer, summed over the keystrokes
    parts = []  # per layer: [plan, delta terms, full rows] in µs, summed
    size = len(text.encode("utf-8"))
    region = size // 20 if a.caret == "top" else size
    at = region // 2
    word = "incremental "
    # One connection kept alive, as the page's fetch() keeps it (a connection per request, as
    # post() opens, adds its setup to every keystroke).
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)

    def typed(path, body):
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())

    for i in range(a.keystrokes):
        if i % 50 == 0:  # move the caret now and then
            at = (at * 7919 + 13) % region
            while at < len(text) and text[at] != " ":
                at += 1  # an ASCII position, so byte offsets stay simple
        ch = word[i % len(word)]
        t0 = time.perf_counter()
        status, r = typed("/v1/documents/%s/edits" % did,
                          {"edits": [{"start": at, "end": at, "text": ch}]})
        times.append((time.perf_counter() - t0) * 1e3)
        if status != 200:
            print("failed: %s" % r)
            return 1
        served.append(r["stats"]["us"] / 1e3)
        updates.append(r["stats"]["update_us"] / 1e3)
        for total, layers in ((recomputed, r["stats"].get("dirty_rows", [])),
                              (flips, r["stats"].get("code_flips", []))):
            total.extend([0] * (len(layers) - len(total)))
            for i, x in enumerate(layers):
                total[i] += x
        for i, t in enumerate(r["stats"].get("attention_us", [])):
            if i == len(parts):
                parts.append([0.0, 0.0, 0.0])
            for k, key in enumerate(("plan", "delta_terms", "full_rows")):
                parts[i][k] += t[key]
        text = text[:at] + ch + text[at:]
        at += 1
    conn.close()
    status, r = post("/v1/documents/%s/edits" % did, {"edits": [], "verify": True})
    if server:
        server.terminate()
        server.wait()
    print("%d keystrokes (caret: %s) into a %d-token document: round trip p50 %.2f ms, p90 %.2f ms, "
          "p99 %.2f ms, max %.2f ms; verify %s" %
          (a.keystrokes, a.caret, tokens, percentile(times, 0.5), percentile(times, 0.9),
           percentile(times, 0.99), max(times), "exact" if r.get("exact") else "MISMATCH"))
    for name, xs in (("in the server", served), ("of that the update", updates)):
        print("  %s: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms" %
              (name, percentile(xs, 0.5), percentile(xs, 0.9), percentile(xs, 0.99)))
    print("  in all: rows recomputed per layer %s, code flips per VQ %s" % (recomputed, flips))
    summed = max(sum(updates), 1e-9) * 1e3
    print("  share of the summed update time per layer (plan, delta terms, full rows): %s" %
          "; ".join("layer %d %.0f%%, %.0f%%, %.0f%%" % ((i,) + tuple(100 * x / summed for x in p))
                    for i, p in enumerate(parts)))
    return 0 if r.get("exact") else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--program", default=os.path.join(ROOT, "build", "pep-vq.incnn"))
    ap.add_argument("--server", default=os.path.join(ROOT, "build", "bin", "incnn-serve"))
    ap.add_argument("--trace", default=os.path.join(ROOT, "..", "shared", "data", "peps",
                                                    "edits.jsonl.gz"))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--edits-per-client", type=int, default=100)
    ap.add_argument("--verify-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="incnn-serve --threads")
    ap.add_argument("--memory-budget", type=int, default=2048, help="MB")
    ap.add_argument("--max-tokens", type=int, default=65536,
                    help="incnn-serve --max-tokens (whole PEPs reach 39,000 tokens)")
    ap.add_argument("--url", help="a running server or fleet (none is started)")
    ap.add_argument("--kill-busiest", metavar="RUN_DIR",
                    help="kill the fleet's server holding the most documents still being edited...")
    ap.add_argument("--kill-after", type=float, default=2.0, help="...this many seconds in")
    ap.add_argument("--keystrokes", type=int, default=0,
                    help="instead: one client types this many characters, one request each, "
                         "into a document of about 10,000 tokens, and the round trips are timed")
    ap.add_argument("--caret", choices=["scattered", "top"], default="scattered",
                    help="with --keystrokes: where the caret goes (top: the first 5%%)")
    a = ap.parse_args()
    with gzip.open(a.trace, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    server = None
    if a.url:
        base = a.url.rstrip("/")
    else:
        server = subprocess.Popen([a.server, a.program, "--port", "0", "--threads",
                                   str(a.threads), "--memory-budget", str(a.memory_budget),
                                   "--max-tokens", str(a.max_tokens),
                                   "--max-documents", str(max(64, a.clients))],
                                  stdout=subprocess.PIPE, text=True)
        base = "http://" + server.stdout.readline().split("http://")[1].split("/")[0]

    def post(path, body, method="POST"):
        """(status, JSON answer); connection failures, answers cut short and balancer
        errors are retried for up to 30 s."""
        deadline = time.time() + 30
        while True:
            req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                         method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code not in (502, 503, 504) or time.time() > deadline:
                    return e.code, json.loads(e.read() or b"{}")
            except (urllib.error.URLError, OSError, http.client.HTTPException,
                    ValueError) as e:
                # Refused, reset, or cut mid-answer (a server killed while it replied).
                if time.time() > deadline:
                    return 0, {"error": str(e)}
            time.sleep(0.05)

    if a.keystrokes:
        return keystrokes(a, docs, post, base, server)
    latencies, failures, mismatches, verified = [], [], [0], [0]
    recovered = []  # (time, client) of each document PUT again after a 404
    lock = threading.Lock()
    run = "load-%d" % os.getpid()

    replaying = set(range(a.clients))

    def client(k):
        try:
            replay(k)
        except Exception as e:  # a client that stops must fail the run, with its reason
            with lock:
                failures.append((k, "exception", 0, repr(e)))
        finally:
            with lock:
                replaying.discard(k)

    def replay(k):
        doc = docs[k % len(docs)]
        path = "/v1/documents/%s-%d" % (run, k)
        text = doc["base"]
        status, r = post(path, {"text": text}, "PUT")
        if status != 200:
            with lock:
                failures.append((k, "create", status, r.get("error")))
            return
        for i, (start, end, rep, edited) in enumerate(hunk_edits(doc, a.edits_per_client)):
            body = {"edits": [{"start": start, "end": end, "text": rep}]}
            check = a.verify_every > 0 and i % a.verify_every == a.verify_every - 1
            if check:
                body["verify"] = True
            t0 = time.perf_counter()
            status, r = post(path + "/edits", body)
            # The document's server went away (or evicted it): send the text again. While
            # a balancer still moves names between servers this can take a few rounds.
            for _ in range(10):
                if status != 404:
                    break
                with lock:
                    recovered.append((time.time(), k))
                status, r = post(path, {"text": text}, "PUT")
                if status == 200:
                    status, r = post(path + "/edits", body)
            dt = time.perf_counter() - t0
            with lock:
                if status != 200:
                    failures.append((k, i, status, r.get("error")))
                    return
                if not check:
                    latencies.append((time.time(), dt * 1e3))
                else:
                    verified[0] += 1
                    mismatches[0] += not r.get("exact")
            text = edited

    killed = [None]

    def killer():
        time.sleep(a.kill_after)
        # The server holding the most documents still being edited (asked directly, not
        # through the balancer), then the most documents.
        with lock:
            names = ["/v1/documents/%s-%d" % (run, k) for k in replaying]
        busiest = (-1, -1, None)
        for out in glob.glob(os.path.join(a.kill_busiest, "server-*.out")):
            with open(out) as f:
                url = f.read().split("http://")[1].split("/")[0]
            health = json.loads(urllib.request.urlopen("http://%s/healthz" % url).read())
            held = 0
            for name in names:
                try:
                    urllib.request.urlopen("http://%s%s" % (url, name)).read()
                    held += 1
                except urllib.error.HTTPError:
                    pass
            with open(out[:-4] + ".pid") as f:
                busiest = max(busiest, (held, health["documents"], int(f.read())))
        os.kill(busiest[2], signal.SIGKILL)
        killed[0] = time.time()

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
    if a.kill_busiest:
        threads.append(threading.Thread(target=killer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    n = len(latencies) + verified[0]
    print("incnn-serve load test: %d clients, %d edits (%d verified) in %.1f s" %
          (a.clients, n, verified[0], wall))
    print("throughput      %.1f requests/s" % (n / wall))
    ms = [m for _, m in latencies]
    print("latency per edit (unverified)  p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms" %
          (percentile(ms, 0.5), percentile(ms, 0.9), percentile(ms, 0.99), max(ms or [0])))
    if killed[0]:
        end = max([killed[0] + 1.0] + [t for t, _ in recovered])
        for name, lo, hi in [("before", 0, killed[0]), ("during", killed[0], end),
                             ("after", end, float("inf"))]:
            part = [m for t, m in latencies if lo <= t < hi]
            print("  %-6s the failover: %4d edits, p50 %.1f ms, p99 %.1f ms" % (
                name, len(part), percentile(part, 0.5), percentile(part, 0.99)))
        print("failover        one server killed %.1f s in; %d documents recovered by their "
              "clients within %.2f s" % (killed[0] - t0, len({k for _, k in recovered}),
                                         end - killed[0] if recovered else 0.0))
    if server:
        health = json.loads(urllib.request.urlopen(base + "/healthz").read())
        with open("/proc/%d/status" % server.pid) as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
        server.terminate()
        server.wait()
        print("server memory   peak %.0f MB resident; %d documents, %.0f MB of caches at the "
              "end" % (hwm, health["documents"], health["cache_bytes"] / 2**20))
        print("evictions       %d" % health["evicted"])
    print("failed requests %d%s" % (len(failures), (": %s" % failures[:3]) if failures else ""))
    print("mismatches      %d of %d verified edits" % (mismatches[0], verified[0]))
    return 1 if failures or mismatches[0] else 0


if __name__ == "__main__":
    raise SystemExit(main())
