#!/usr/bin/env bash
# Start one JustNews agent the way upstream's justnews-start-agent.sh does: load
# /etc/justnews/global.env and /etc/justnews/<agent>.env again with `set -a` (their keys override a
# drop-in's Environment=), export the usual defaults, then exec the agent's Python.
set -euo pipefail
agent="${1:?usage: justnews-start-agent.sh AGENT}"
for f in /etc/justnews/global.env "/etc/justnews/${agent}.env"; do
  if [[ -f "$f" ]]; then
    echo "[INFO] Loading environment from $f"
    set -a
    # shellcheck source=/dev/null
    source "$f"
    set +a
  fi
done
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-1}"
py="${PYTHON_BIN:-python3}"
command -v "$py" >/dev/null 2>&1 || py=python3
echo "[INFO] Executing: $py /opt/justnews/agents/${agent}.py"
exec "$py" "/opt/justnews/agents/${agent}.py"
