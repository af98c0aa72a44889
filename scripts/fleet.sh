#!/usr/bin/env bash
# A fleet of incnn-serve processes behind HAProxy on loopback: HAProxy routes
# each client-named document (PUT /v1/documents/NAME, then its edits) to one
# server by consistent hashing of the path's first three segments, checks
# /healthz every 300 ms, and moves a dead server's names to the others, where
# they answer 404 until the client PUTs the text again (docs/serve.md, "A
# fleet").
#
#   scripts/fleet.sh [-n SERVERS] [-p PORT] [-b BUILD_DIR] [-- incnn-serve options]
#
# Prints "fleet: http://127.0.0.1:PORT/ ..." and the run directory (HAProxy's
# config, each server's pid and log), then runs until SIGTERM/SIGINT, which
# stops every process. PORT 0 picks free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS=3 PORT=8080 BUILD_DIR=build
while getopts "n:p:b:" opt; do
  case $opt in
  n) SERVERS=$OPTARG ;;
  p) PORT=$OPTARG ;;
  b) BUILD_DIR=$OPTARG ;;
  *) echo "usage: scripts/fleet.sh [-n SERVERS] [-p PORT] [-b BUILD_DIR] [-- incnn-serve options]" >&2
     exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
command -v haproxy > /dev/null ||
  { echo "fleet.sh: haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
[ -x "$BUILD_DIR/bin/incnn-serve" ] ||
  { echo "fleet.sh: $BUILD_DIR/bin/incnn-serve is not built: run scripts/setup.sh" >&2; exit 1; }
PROGRAM="$BUILD_DIR/pep-vq.incnn"
[ "$PROGRAM" -nt models/pep-vq/model.safetensors ] ||
  "$BUILD_DIR/bin/incnn-compile" models/pep-vq -o "$PROGRAM" 2> /dev/null
RUN=$(mktemp -d /tmp/incnn-fleet-XXXXXX)
pids=()
stop() {
  kill "${pids[@]}" 2> /dev/null || true
  wait 2> /dev/null || true
}
trap stop EXIT
trap 'exit 0' TERM INT

free_port() {
  /usr/bin/python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}
[ "$PORT" = 0 ] && PORT=$(free_port)
backends=""
for k in $(seq "$SERVERS"); do
  "$BUILD_DIR/bin/incnn-serve" "$PROGRAM" --port 0 "$@" > "$RUN/server-$k.out" 2> "$RUN/server-$k.log" &
  pids+=($!)
  echo $! > "$RUN/server-$k.pid"
  for _ in $(seq 100); do grep -qs "http://" "$RUN/server-$k.out" && break; sleep 0.1; done
  addr=$(grep -o "http://[^/]*" "$RUN/server-$k.out" | head -1 | cut -d/ -f3)
  [ -n "$addr" ] || { echo "fleet.sh: server $k did not start: $(cat "$RUN/server-$k.log")" >&2; exit 1; }
  backends+="  server s$k $addr check"$'\n'
done
cat > "$RUN/haproxy.cfg" << CFG
global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 120s
  timeout server 600s
  timeout http-request 10s
  # A connection refused by a dead server is tried again on another.
  retries 2
  option redispatch 1
frontend incnn
  bind 127.0.0.1:$PORT
  default_backend servers
backend servers
  # /v1/documents/NAME and /v1/documents/NAME/edits hash alike.
  balance uri depth 3
  hash-type consistent
  option httpchk GET /healthz
  http-check expect status 200
  default-server inter 300ms fall 2 rise 2
$backends
CFG
haproxy -f "$RUN/haproxy.cfg" -db > "$RUN/haproxy.log" 2>&1 &
pids+=($!)
echo $! > "$RUN/haproxy.pid"
for _ in $(seq 50); do
  /usr/bin/python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2> /dev/null && break
  sleep 0.1
done
echo "fleet: http://127.0.0.1:$PORT/ ($SERVERS servers behind HAProxy; run directory $RUN)"
wait
