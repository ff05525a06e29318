#!/usr/bin/env bash
# Wait until the MCP bus answers GET /health (MCP_BUS_URL, default http://localhost:8000), at most
# MAX_WAIT seconds, as upstream's wait_for_mcp.sh does. The test image has no curl: Python asks.
set -euo pipefail
url="${MCP_BUS_URL:-http://localhost:8000}/health"
max="${MAX_WAIT:-90}"
for ((i = 0; i < max; i++)); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$url" 2>/dev/null; then
    echo "MCP bus is ready"
    exit 0
  fi
  sleep 1
done
echo "MCP bus at $url did not answer within ${max} s" >&2
exit 1
