#!/usr/bin/env bash
# Load test of `efea serve`, on loopback only and bounded in count and time: a 640x480 frame
# with about ten faces, posted by 1 to 32 concurrent clients. Prints a Markdown table of
# throughput and p50/p99 latency per concurrency (also written to bench/serve/results.md) and
# fails if the server answers any 5xx other than 503 (load shedding) or does not stop cleanly
# on SIGTERM.
#
#   bench/serve/run.sh            EFEA_MODEL=RUN_DIR, WORKERS (1: one worker's capacity; the
#                                 server's default is 2), QUEUE (8),
#                                 REQUESTS per level (60), SECONDS per level at most (60)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
workers="${WORKERS:-1}"
queue="${QUEUE:-8}"
requests="${REQUESTS:-60}"
seconds="${SECONDS_PER_LEVEL:-60}"

cargo build --quiet --release -p efea-cli
cargo build --quiet --release -p efea-infer --example write_run --example bench_inputs
cargo build --quiet --release -p efea-server --example load
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$bin/examples/bench_inputs" "$work/inputs" >/dev/null
model="${EFEA_MODEL:-}"
if [ -z "$model" ]; then
    model="$work/run"
    "$bin/examples/write_run" "$model" 1.0 >/dev/null
fi

"$bin/efea" serve --model "$model" --addr 127.0.0.1:0 --workers "$workers" --queue "$queue" \
    2>"$work/server.log" &
server_pid=$!
address=""
for _ in $(seq 1 300); do
    address="$(grep -o '127\.0\.0\.1:[0-9]*' "$work/server.log" | head -n 1 || true)"
    [ -n "$address" ] && break
    sleep 0.1
done
[ -n "$address" ] || { cat "$work/server.log" >&2; exit 1; }

status=0
table="$work/table.md"
{
    echo "| clients | requests | 200 | 503 | other 5xx | throughput (req/s) | p50 (ms) | p99 (ms) |"
    echo "|---|---|---|---|---|---|---|---|"
    # Warm-up, not reported.
    "$bin/examples/load" --addr "$address" --image "$work/inputs/frame.jpg" --concurrency 1 --requests 5 >/dev/null
    for clients in 1 2 4 8 16 32; do
        line="$("$bin/examples/load" --addr "$address" --image "$work/inputs/frame.jpg" \
            --concurrency "$clients" --requests "$requests" --seconds "$seconds")" || status=1
        python3 -c '
import json, sys
r = json.loads(sys.argv[1])
s = r["statuses"]
print("| {concurrency} | {requests} | {ok} | {busy} | {other} | {rps:.1f} | {p50:.0f} | {p99:.0f} |".format(
    concurrency=r["concurrency"], requests=r["requests"], ok=s.get("200", 0), busy=s.get("503", 0),
    other=r["other_5xx"], rps=r["throughput_rps"], p50=r["p50_ms"], p99=r["p99_ms"]))
' "$line"
    done
} >"$table"
cat "$table"
cp "$table" "$here/results.md"
echo >>"$here/results.md"
echo "workers $workers, queue $queue, $requests requests per level; $(nproc) cores; $(date -u +%Y-%m-%d); model $( [ -n "${EFEA_MODEL:-}" ] && echo "$EFEA_MODEL" || echo 'random, default size')" >>"$here/results.md"

kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
if [ "$server_status" -ne 0 ] || ! grep -q "efea stopped" "$work/server.log"; then
    echo "the server did not stop cleanly on SIGTERM (exit $server_status)" >&2
    status=1
fi
exit "$status"
