#!/usr/bin/env bash
# Smoke test of one justnews-host image: boot, Memory agent fails offline without a cache,
# becomes ready once a Hub cache is populated from the local test Hub (tools/hub/hub.sh).
#
# Usage: smoke-test.sh [SUITE]    (bookworm | trixie; default bookworm). Needs the image built.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SUITE="${1:-bookworm}"
IMAGE="${JUSTNEWS_IMAGE:-localhost/justnews-host}:$SUITE"
export JUSTNEWS_FLEET_PREFIX="justnews-smoke-$SUITE"
NAME="$JUSTNEWS_FLEET_PREFIX-1"
PY="${HUB_PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
TMP="$(mktemp -d)"
READY=/run/justnews/memory.ready
HFHOME=/var/lib/justnews/hf
DROPIN=/etc/systemd/system/justnews@memory.service.d/90-smoke.conf

cleanup() {
  [ -n "${KEEP:-}" ] && return 0
  PYTHON="$PY" "$REPO/tools/hub/hub.sh" stop "$TMP/hub" || true
  "$HERE/fleet.sh" down >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; podman exec "$NAME" journalctl -u justnews@memory --no-pager -n 30 >&2 || true; exit 1; }
ok() { echo "ok: $*"; }
x() { podman exec "$NAME" "$@"; }

agent_restart() { # env lines for the drop-in
  printf '[Service]\n' > "$TMP/dropin"
  for e in "$@"; do printf 'Environment=%s\n' "$e" >> "$TMP/dropin"; done
  podman cp "$TMP/dropin" "$NAME:$DROPIN"
  x systemctl daemon-reload
  x systemctl reset-failed justnews@memory.service || true
  x systemctl restart justnews@memory.service
}

wait_for() { # seconds cmd...
  local n="$1"; shift
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 1; done
  return 1
}
exited_1() { [ "$(x systemctl show -p ExecMainStatus --value justnews@memory.service)" = 1 ]; }
is_ready() { x test -s "$READY"; }

t0=$SECONDS
"$HERE/fleet.sh" up 1 "$IMAGE" >/dev/null
s="$(x systemctl is-system-running || true)"
[ "$s" = running ] || [ "$s" = degraded ] || fail "system state $s"
ok "$SUITE booted in $((SECONDS - t0)) s: $s"
x systemctl stop justnews@memory.service
[ "$(x getent hosts huggingface.co | awk 'NR==1{print $1}')" = 127.0.0.1 ] || fail "huggingface.co does not resolve to 127.0.0.1"
ok "huggingface.co -> 127.0.0.1"

# 1. offline and no cache: the agent exits non-zero
agent_restart HF_HUB_OFFLINE=1 "HF_HOME=$HFHOME"
wait_for 120 exited_1 || fail "agent did not fail offline without a cache"
is_ready && fail "ready file present although the model is not cached"
ok "offline without cache: agent exits 1 ($(x systemctl show -p ActiveState,SubState --value justnews@memory.service | tr '\n' ' '))"

# 2. populate the cache from the local test Hub, then offline load
x systemctl stop justnews@memory.service
HUB="$(PYTHON="$PY" "$REPO/tools/hub/hub.sh" start "$TMP/hub")" || fail "the test Hub did not start"
x runuser -u justnews -- env HF_HOME="$HFHOME" HF_ENDPOINT="$HUB" NO_PROXY=127.0.0.1,localhost \
  HF_HUB_DISABLE_TELEMETRY=1 /opt/justnews/venv/bin/python -c \
  'from huggingface_hub import snapshot_download; print(snapshot_download("sentence-transformers/all-MiniLM-L6-v2"))' \
  || fail "snapshot_download from the test Hub failed"
PYTHON="$PY" "$REPO/tools/hub/hub.sh" stop "$TMP/hub"
agent_restart HF_HUB_OFFLINE=1 "HF_HOME=$HFHOME" HF_HUB_TOKEN=hf_smoke_secret_token
wait_for 180 is_ready || fail "agent not ready with a populated cache"
x cat "$READY"
x python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["dim"]==384 and d["source"]=="hub" and len(d["commit"] or "")==40 and d["offline"]=="1", d' "$READY" \
  || fail "unexpected readiness file"
login_warned() { x journalctl -u justnews@memory --no-pager | grep -q "login failed"; }
wait_for 15 login_warned || fail "no login warning logged"   # journald may lag the ready file
x journalctl -u justnews@memory --no-pager | grep -q hf_smoke_secret_token && fail "token printed in the journal"
ok "offline with cache: ready (failed token login only warned, token not logged)"

# 3. SIGTERM removes the readiness file
x systemctl stop justnews@memory.service
is_ready && fail "ready file left after stop"
ok "stop removes the readiness file"
echo "smoke-test $SUITE passed in $((SECONDS - t0)) s"
