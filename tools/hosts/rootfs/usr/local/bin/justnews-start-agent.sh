#!/usr/bin/env bash
# Start one JustNews agent (like the real start script): re-read the env files with `set -a`,
# so their keys override anything a systemd drop-in put in Environment=, then exec the agent.
set -euo pipefail
agent="${1:?usage: justnews-start-agent.sh AGENT}"
set -a
# shellcheck disable=SC1091
[ -r /etc/justnews/global.env ] && . /etc/justnews/global.env
# shellcheck disable=SC1090
[ -r "/etc/justnews/${agent}.env" ] && . "/etc/justnews/${agent}.env"
set +a
exec "${PYTHON_BIN:-/opt/justnews/venv/bin/python}" "/opt/justnews/agents/${agent}.py"
