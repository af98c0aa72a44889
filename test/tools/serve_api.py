#!/usr/bin/python3
"""incnn-serve's JSON API, end to end (docs/serve.md).

    /usr/bin/python3 serve_api.py BIN_DIR PROGRAM.incnn TEXT_FILE [--edits N]

Starts incnn-serve on a free loopback port and checks:
  * N random text edits (ASCII and non-ASCII, inserts, deletes, replacements, whitespace runs)
    posted one at a time end at exactly the output `incnn-run --text` gives for the final text,
    bit for bit, and every `verify` says exact;
  * bad requests (malformed JSON, unknown ids, offsets out of range or inside a UTF-8 character,
    a body over the size limit, missing fields) answer a 4xx JSON error naming the problem, and
    the document is exactly as before;
  * documents edited from several threads at once all stay exact;
  * with --max-documents 2 the least recently used document is evicted and its id answers 404
    saying so; DELETE removes a document;
  * a kept-alive connection gets its replies without waiting for a delayed ACK.
Prints one line per check and "serve api: ok" at the end; exits 1 on the first failure.
"""

import http.client
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


class Server:
    def __init__(self, bin_dir, program, *flags):
        self.proc = subprocess.Popen([os.path.join(bin_dir, "incnn-serve"), program, "--port", "0"]
                                     + list(flags), stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:
            sys.exit("incnn-serve did not start: %r" % line)
        self.base = line.split("http://")[1].split("/")[0]

    def request(self, method, path, body=None, raw=None, headers=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        req = urllib.request.Request("http://%s%s" % (self.base, path), data=data, method=method,
                                     headers=h)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def check(cond, what):
    if not cond:
        print("FAIL " + what)
        sys.exit(1)


PIECES = ["the", " ", "  ", "\n", "\n\n", "PEP", " 8", "caf\u00e9", "\u00fcber", "\u4e2d\u6587",
          "\U0001F600", "import", "(x)", ", ", ".", "\t", "proposal"]


def random_edit(rng, text):
    """A random edit of `text` (str) as (byte start, byte end, replacement, new str)."""
    n = len(text)
    a = rng.randrange(n + 1)
    b = min(n, a + (rng.randrange(12) if rng.random() < 0.6 else 0))
    rep = "" if rng.random() < 0.3 else "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 4)))
    start = len(text[:a].encode("utf-8"))
    end = start + len(text[a:b].encode("utf-8"))
    return start, end, rep, text[:a] + rep + text[b:]


def incnn_run_output(bin_dir, program, text, tmp):
    path = tmp + ".final.txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    out = subprocess.run([os.path.join(bin_dir, "incnn-run"), program, "--text", path, "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[0])["output"]


def main():
    bin_dir, program, text_file = sys.argv[1:4]
    edits = int(sys.argv[sys.argv.index("--edits") + 1]) if "--edits" in sys.argv else 200
    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "incnn-serve-api-%d" % os.getpid())
    rng = random.Random(5)
    server = Server(bin_dir, program)
    try:
        status, model = server.request("GET", "/v1/model")
        check(status == 200 and model["labels"], "GET /v1/model")
        status, doc = server.request("POST", "/v1/documents", {"text": text})
        check(status == 200 and "id" in doc, "POST /v1/documents: %s" % doc)
        did = doc["id"]
        print("created a document of %d tokens: %s" % (doc["stats"]["tokens"], doc["prediction"]))

        inexact = 0
        for i in range(edits):
            start, end, rep, text = random_edit(rng, text)
            body = {"edits": [{"start": start, "end": end, "text": rep}]}
            if i % 10 == 0:
                body["verify"] = True
            status, r = server.request("POST", "/v1/documents/%s/edits" % did, body)
            check(status == 200, "edit %d: %s" % (i, r))
            if "exact" in r:
                inexact += not r["exact"]
        check(inexact == 0, "%d verified edits were not exact" % inexact)
        status, r = server.request("GET", "/v1/documents/" + did)
        want = incnn_run_output(bin_dir, program, text, tmp)
        got = r["output"]
        check(len(got) == len(want) and all(f32(a) == f32(b) for a, b in zip(got, want)),
              "final output %s differs from incnn-run --text %s" % (got, want))
        check(r["text_bytes"] == len(text.encode("utf-8")), "text length")
        print("%d edits posted one at a time: final output equals incnn-run --text, "
              "every verify exact" % edits)

        # Bad requests leave the document as it was.
        before = server.request("GET", "/v1/documents/" + did)[1]
        n = before["text_bytes"]
        inside = len(text[:text.index("\u00e9")].encode("utf-8")) + 1 if "\u00e9" in text else None
        edits = "/v1/documents/%s/edits" % did
        bad = [("POST", edits, None, b"{not json", "malformed JSON"),
               ("POST", edits, {"edits": [{"start": 0}]}, None, "integer 'end'"),
               ("POST", edits, {"edits": [{"start": 0, "end": n + 5, "text": "x"}]}, None,
                "outside the document"),
               ("POST", edits, {"edits": [{"start": 1, "end": 1, "text": "ok"},
                                          {"start": -1, "end": 0, "text": ""}]}, None, "edit 1"),
               ("POST", "/v1/documents/ffffffff/edits", {"edits": []}, None, "no document"),
               ("POST", "/v1/documents", {"text": "x" * (5 << 20)}, None, "over the limit"),
               ("POST", "/v1/documents", {"txt": "hello"}, None, "unexpected key 'txt'"),
               ("GET", "/v1/../../etc/passwd", None, None, "no such endpoint"),
               # Each refusal says what is wrong, distinctly.
               ("POST", edits, None, b'{"edits": [{"start": 18446744073709551615, "end": 0, '
                b'"text": ""}]}', "'start' is out of range"),
               ("POST", edits, None, b'{"edits": [], "x": 1e400}', "number overflow"),
               ("POST", edits, None, b'{"edits": [{"start": 0, "end": 0, "text": "\xff"}]}',
                "UTF-8"),
               ("POST", edits, {"edits": [], "verify": "yes"}, None, "'verify' must be true"),
               ("POST", edits, {"edits": [{"start": 0, "end": 3}]}, None, "string 'text'"),
               ("PUT", edits, {"edits": []}, None, "not allowed"),
               ("POST", "/v1/documents", {"text": text * 20}, None, "--max-tokens")]
        if inside is not None:
            bad.append(("POST", "/v1/documents/%s/edits" % did,
                        {"edits": [{"start": inside, "end": inside, "text": "x"}]}, None,
                        "splits a UTF-8 character"))
        for method, path, body, raw, needle in bad:
            status, r = server.request(method, path, body, raw)
            check(400 <= status < 500 and needle in r.get("error", ""),
                  "%s %s: expected a 4xx naming %r, got %d %s" % (method, path, needle, status, r))
        # A runtime refusal carries its status code (docs/json.md#errors).
        for body, code in (({"edits": [{"start": 0, "end": n + 5, "text": "x"}]},
                            "out_of_range"),
                           ({"edits": [{"start": 0, "end": 0, "text": "\u00e9"},
                                       {"start": 1, "end": 1, "text": "x"}]},
                            "invalid_argument")):
            status, r = server.request("POST", edits, body)
            check(status == 400 and r.get("code") == code,
                  "expected 400 with code %r, got %d %s" % (code, status, r))
        after = server.request("GET", "/v1/documents/" + did)[1]
        check(after == before, "a rejected request changed the document")
        # A Range header is ignored: the whole answer comes back.
        status, r = server.request("GET", "/v1/documents/" + did,
                                   headers={"Range": "bytes=0-5"})
        check(status == 200 and r == before, "a Range request: %d %s" % (status, r))
        print("%d bad requests: 4xx JSON errors, document unchanged" % len(bad))

        # One kept-alive connection, as a page's fetch() keeps it: a reply must not wait for
        # the client's delayed ACK (40 ms on Linux) between its headers and its body.
        host, port = server.base.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        trips = []
        for _ in range(20):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/documents/%s/edits" % did, body=b'{"edits": []}',
                         headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            answer.read()
            trips.append(time.perf_counter() - t0)
            check(answer.status == 200, "kept-alive request: %d" % answer.status)
        conn.close()
        trips.sort()
        check(trips[len(trips) // 2] < 0.02,
              "kept-alive round trips wait for delayed ACKs: median %.1f ms" %
              (1e3 * trips[len(trips) // 2]))
        print("kept-alive connection: replies leave without waiting for a delayed ACK")

        # Several documents edited at once.
        docs = []
        for t in range(4):
            status, d = server.request("POST", "/v1/documents", {"text": text[: 2000 + 500 * t]})
            docs.append((d["id"], text[: 2000 + 500 * t]))
        failures = []

        def worker(k):
            did2, t2 = docs[k]
            r2 = random.Random(k)
            for j in range(15):
                s2, e2, rep2, t2 = random_edit(r2, t2)
                st, r = server.request("POST", "/v1/documents/%s/edits" % did2,
                                       {"edits": [{"start": s2, "end": e2, "text": rep2}],
                                        "verify": True})
                if st != 200 or not r.get("exact"):
                    failures.append((k, j, st, r.get("error")))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(docs))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        check(not failures, "concurrent edits: %s" % failures[:3])
        print("4 documents edited concurrently: every edit exact")

        status, r = server.request("DELETE", "/v1/documents/" + did)
        check(status == 200, "DELETE")
        status, r = server.request("GET", "/v1/documents/" + did)
        check(status == 404, "GET after DELETE")
    finally:
        server.close()

    # Eviction: the least recently used of three documents, with room for two.
    server = Server(bin_dir, program, "--max-documents", "2", "--remember-evicted", "2")
    try:
        ids = [server.request("POST", "/v1/documents", {"text": "document %d text" % k})[1]["id"]
               for k in range(3)]
        status, r = server.request("GET", "/v1/documents/" + ids[0])
        check(status == 404 and "evicted" in r["error"], "evicted document: %d %s" % (status, r))
        check(server.request("GET", "/v1/documents/" + ids[2])[0] == 200, "newest kept")
        check(server.request("GET", "/healthz")[1]["evicted"] == 1, "eviction count")
        print("eviction: the least recently used document answers 404 'evicted'")
        # Evicted ids are remembered up to --remember-evicted, then forgotten.
        for k in range(2):
            server.request("POST", "/v1/documents", {"text": "more %d" % k})
        status, r = server.request("GET", "/v1/documents/" + ids[0])
        check(status == 404 and "evicted" not in r["error"], "a forgotten id: %s" % r)
        check("evicted" in server.request("GET", "/v1/documents/" + ids[2])[1]["error"],
              "a remembered id")
        print("evicted ids: the oldest forgotten past --remember-evicted 2")
        # A DELETE while an edit is in flight: the edit does not bring the id back.
        status, slow = server.request("POST", "/v1/documents", {"text": text})
        done = []
        th = threading.Thread(target=lambda: done.append(server.request(
            "POST", "/v1/documents/%s/edits" % slow["id"],
            {"edits": [{"start": 0, "end": 0, "text": "x"}], "verify": True})))
        th.start()
        time.sleep(0.02)
        check(server.request("DELETE", "/v1/documents/" + slow["id"])[0] == 200, "DELETE")
        th.join()
        evicted = server.request("GET", "/healthz")[1]["evicted"]
        for k in range(3):
            server.request("POST", "/v1/documents", {"text": "after %d" % k})
        check(server.request("GET", "/healthz")[1]["evicted"] == evicted + 2,
              "a deleted id was evicted again (the edit in flight resurrected it)")
        status, r = server.request("GET", "/v1/documents/" + slow["id"])
        check(status == 404 and "evicted" not in r["error"], "deleted id: %s" % r)
        print("a DELETE during an edit: the id stays deleted (edit answered %d)" % done[0][0])
    finally:
        server.close()

    # Client-named documents, metrics, the access log and bearer tokens.
    log = tmp + ".access.log"
    server = Server(bin_dir, program, "--token", "s3cret", "--access-log", log)
    auth = {"Authorization": "Bearer s3cret"}
    try:
        status, r = server.request("GET", "/v1/model")
        check(status == 401 and "--token" in r["error"], "no token: %d %s" % (status, r))
        status, r = server.request("GET", "/v1/model", headers={"Authorization": "Bearer x"})
        check(status == 401, "a wrong token: %d" % status)
        req = urllib.request.Request("http://%s/" % server.base)
        with urllib.request.urlopen(req, timeout=30) as page:
            check(page.status == 200, "the page needs no token")
        status, a = server.request("PUT", "/v1/documents/notes-1.md", {"text": "first text"},
                                   headers=auth)
        check(status == 200 and a["id"] == "notes-1.md", "PUT a name: %d %s" % (status, a))
        status, b = server.request("PUT", "/v1/documents/notes-1.md", {"text": text[:3000]},
                                   headers=auth)
        check(status == 200, "PUT replaces: %d" % status)
        status, r = server.request("GET", "/v1/documents/notes-1.md", headers=auth)
        check(r["output"] == b["output"] and r["text_bytes"] == len(text[:3000].encode()),
              "the replaced document")
        status, r = server.request("POST", "/v1/documents/notes-1.md/edits",
                                   {"edits": [{"start": 0, "end": 0, "text": "x"}],
                                    "verify": True}, headers=auth)
        check(status == 200 and r["exact"], "an edit by name: %d %s" % (status, r))
        for name in ["", ".hidden", "a/b", "x" * 129, "sp ace"]:
            status, r = server.request("PUT", "/v1/documents/" + urllib.parse.quote(name),
                                       {"text": "t"}, headers=auth)
            check(status in (400, 404, 405), "PUT %r: %d %s" % (name, status, r))
        req = urllib.request.Request("http://%s/metrics" % server.base, headers=auth)
        with urllib.request.urlopen(req, timeout=30) as m:
            metrics = m.read().decode()
            check(m.headers["Content-Type"].startswith("text/plain; version=0.0.4"),
                  "metrics content type")
        samples = {}
        for line in metrics.splitlines():
            if line.startswith("#"):
                check(line.startswith("# HELP ") or line.startswith("# TYPE "), line)
                continue
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
        check(samples.get('incnn_requests_total{route="put",status="200"}') == 2,
              "PUTs counted: %s" % metrics[:400])
        check(samples.get('incnn_requests_total{route="refused",status="401"}') == 2,
              "refusals counted")
        check(samples.get('incnn_refusals_total{reason="token"}') == 2, "token refusals")
        check(samples.get("incnn_update_seconds_count", 0) >= 3, "update histogram")
        check(samples.get('incnn_update_seconds_bucket{le="+Inf"}') ==
              samples.get("incnn_update_seconds_count"), "+Inf bucket equals the count")
        check(samples.get("incnn_verifies_total") == 1 and
              samples.get("incnn_verify_failures_total") == 0, "verify counters")
        check(samples.get("incnn_documents") == 1 and samples.get("incnn_cache_bytes") > 0,
              "gauges")
        print("PUT by name creates and replaces; /metrics: %d samples in Prometheus text" %
              len(samples))
    finally:
        server.close()
    with open(log) as f:
        lines = [json.loads(l) for l in f]
    check(len(lines) >= 10 and all({"time", "method", "path", "status", "ms"} <= set(l)
                                   for l in lines), "access log: %s" % lines[:2])
    check(any(l["status"] == 401 for l in lines), "refusals are logged")
    os.remove(log)
    print("access log: %d JSON lines; --token: 401 without it, the page served without it" %
          len(lines))
    proc = subprocess.run([os.path.join(bin_dir, "incnn-serve"), program, "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=30)
    check(proc.returncode == 2 and "--token" in proc.stderr, "0.0.0.0 without a token: %s" %
          proc.stderr)
    print("a non-loopback address without --token: refused to start")

    # SIGTERM: requests in flight are answered, then the server exits 0.
    server = Server(bin_dir, program)
    try:
        answers = []
        th = threading.Thread(target=lambda: answers.append(server.request(
            "POST", "/v1/documents", {"text": text * 4})))
        th.start()
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        th.join()
        code = server.proc.wait(timeout=60)
        check(answers and answers[0][0] == 200, "the request in flight: %s" % answers)
        check(code == 0, "exit status %d after SIGTERM" % code)
        print("SIGTERM: the request in flight answered 200, exit status 0")
    finally:
        if server.proc.poll() is None:
            server.close()
    print("serve api: ok")


if __name__ == "__main__":
    main()
