#!/usr/bin/env bash
# Browser tests of the Hush web app, by hand or in CI: installs what it needs (Debian's
# Chromium, playwright-core and oidc-provider from package-lock.json), builds hush, starts
# `hush up` on a scratch data dir and free ports, runs the flows in flows.mjs with screenshots
# saved under target/web-screenshots/, stops hush, then runs oidc.mjs (the services as separate
# processes against a real OIDC provider over HTTPS), and exits non-zero on any failure. The
# last line it prints is `N passed, M failed`, for both files together.
set -euo pipefail
cd "$(dirname "$0")"
TESTS_DIR=$(pwd)
ROOT=$(cd ../.. && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hush-target}"
SHOTS="$ROOT/target/web-screenshots"

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's Chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Node.js and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q nodejs npm
fi

# No install scripts: nothing here needs one (swagger-ui-dist pulls @scarf/scarf, an install-time analytics ping).
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
# The API reference page's Swagger UI must be exactly the pinned swagger-ui-dist's files.
node vendor.mjs --check

(cd "$ROOT" && cargo build -q -p hush --locked)
HUSH="$CARGO_TARGET_DIR/debug/hush"

# A port base N with N..N+6 all free (hush up uses N, N+1, N+2, N+3, N+5, N+6).
PORT_BASE=$(node -e '
const net = require("node:net");
const free = (p) => new Promise((ok) => { const s = net.createServer(); s.once("error", () => ok(false)); s.listen(p, "127.0.0.1", () => s.close(() => ok(true))); });
(async () => {
  for (let i = 0; i < 50; i++) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    let all = true;
    for (let p = base; p <= base + 6 && all; p++) all = await free(p);
    if (all) { console.log(base); return; }
  }
  process.exit(1);
})();')
DATA=$(mktemp -d)
LOG="$DATA/hush-up.log"
WEB="http://127.0.0.1:$((PORT_BASE + 5))"

"$HUSH" up --data-dir "$DATA" --port-base "$PORT_BASE" >"$LOG" 2>&1 &
HUSH_PID=$!
cleanup() {
  kill "$HUSH_PID" 2>/dev/null || true
  wait "$HUSH_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

ready=0
for _ in $(seq 1 600); do
  if ! kill -0 "$HUSH_PID" 2>/dev/null; then break; fi
  if node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$WEB/readyz"; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "hush up did not become ready; its log:"
  cat "$LOG"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "hush up is ready; the app is at $WEB/"

rm -rf "$SHOTS"
status=0
HUSH_WEB_URL="$WEB" HUSH_SCREENSHOTS="$SHOTS" HUSH_BIN="$HUSH" HUSH_DATA_DIR="$DATA" HUSH_PORT_BASE="$PORT_BASE" \
  node "$TESTS_DIR/flows.mjs" | tee "$DATA/flows.out" || status=$?
if [ "$status" != 0 ]; then
  echo "--- the last lines of hush up's log"
  tail -n 40 "$LOG"
fi

# The same app and services, as separate processes configured by issuer, against a real OIDC
# provider (oidc-provider from package-lock.json) over HTTPS on a test CA: oidc.mjs.
oidc_status=0
HUSH_SCREENSHOTS="$SHOTS" HUSH_BIN="$HUSH" node "$TESTS_DIR/oidc.mjs" 2>"$DATA/oidc.err" | tee "$DATA/oidc.out" || oidc_status=$?
if [ "$oidc_status" != 0 ]; then
  echo "--- oidc.mjs's standard error"
  tail -n 40 "$DATA/oidc.err"
  status=$oidc_status
fi

# One result line for both files, last, where CI looks for it.
count() { { grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" || true; } | tail -n1 | awk -v f="$2" '{ print (f == "p" ? $1 : $3) }'; }
p1=$(count "$DATA/flows.out" p); f1=$(count "$DATA/flows.out" f)
p2=$(count "$DATA/oidc.out" p); f2=$(count "$DATA/oidc.out" f)
[ -n "$f1" ] || f1=1
[ -n "$f2" ] || f2=1
echo "$(( ${p1:-0} + ${p2:-0} )) passed, $(( f1 + f2 )) failed"
exit "$status"
