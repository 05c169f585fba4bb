#!/usr/bin/env bash
# Browser test of `efea serve`: starts the server on loopback, opens its page in Debian's
# headless Chromium driven by playwright-core (installed here from npm), uploads the group
# photo that the rustface crate ships, checks what the page draws and saves a screenshot.
#
#   tests/e2e/run.sh [SCREENSHOT]      default SCREENSHOT: none (docs/images/serve.png is
#                                      written by `tests/e2e/run.sh docs/images/serve.png`)
# Environment: EFEA_MODEL (a run directory; default: a random network written for the test),
# EFEA_PROFILE (cargo profile of the efea binary, `dev` by default to reuse the test build),
# CHROMIUM (default /usr/bin/chromium).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
screenshot="${1:-}"
[ -n "$screenshot" ] && screenshot="$(realpath -m "$screenshot")" && mkdir -p "$(dirname "$screenshot")"
profile="${EFEA_PROFILE:-dev}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ]; then
    echo "e2e: installing Debian's chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
    echo "e2e: installing playwright-core" >&2
    # playwright-core never downloads a browser; the variable makes sure of it.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$here" --no-audit --no-fund --silent
fi

photo="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/rustface-*/test.png 2>/dev/null | sort | tail -n 1)"
if [ -z "$photo" ]; then
    echo "e2e: no rustface-*/test.png in the cargo registry (run \`cargo fetch\` first)" >&2
    exit 1
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

profile_dir=debug
[ "$profile" = release ] && profile_dir=release
# --workspace: the same feature set as `cargo test --workspace`, so its build is reused.
cargo build --quiet --profile "$profile" --workspace --bin efea --example write_run
target="${CARGO_TARGET_DIR:-$root/target}/$profile_dir"
model="${EFEA_MODEL:-}"
if [ -z "$model" ]; then
    model="$work/run"
    "$target/examples/write_run" "$model" 0.35 >/dev/null
fi

# Port 0: the system picks a free port; efea prints the address it got.
"$target/efea" serve --model "$model" --addr 127.0.0.1:0 --workers 1 --queue 4 \
    2>"$work/server.log" &
server_pid=$!
address=""
for _ in $(seq 1 300); do
    address="$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$work/server.log" | head -n 1 || true)"
    [ -n "$address" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$address" ] || { echo "e2e: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
echo "e2e: efea serving on $address" >&2

status=0
EFEA_URL="$address" EFEA_IMAGE="$photo" EFEA_SCREENSHOT="$screenshot" \
    node --test --test-concurrency=1 "$here/page.test.mjs" || status=$?

# SIGTERM: the server finishes what it is doing and exits 0.
kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
if [ "$server_status" -ne 0 ]; then
    echo "e2e: the server exited with $server_status after SIGTERM" >&2
    cat "$work/server.log" >&2
    status=1
fi
grep -q "efea stopped" "$work/server.log" || { echo "e2e: no clean stop in the log" >&2; status=1; }
[ -n "$screenshot" ] && [ "$status" -eq 0 ] && echo "e2e: screenshot in $screenshot" >&2
exit "$status"
