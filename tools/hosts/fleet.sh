#!/usr/bin/env bash
# Run a small fleet of systemd-booted JustNews test hosts (podman, host networking).
#
#   fleet.sh up N [IMAGE]   start justnews-host-1..N (default IMAGE localhost/justnews-host:bookworm)
#                           and wait until `systemctl is-system-running` says running/degraded
#   fleet.sh down           remove the fleet's containers
#   fleet.sh status         list them with their systemd state
#   fleet.sh ssh DIR        start sshd in each (host i on 127.0.0.1:JUSTNEWS_FLEET_SSH_BASE + i) with the key
#                           DIR/ssh/id_ed25519 (made if missing) and write DIR/inventory.yml that reaches them
#
# Env: JUSTNEWS_FLEET_PREFIX (default justnews-host), JUSTNEWS_IMAGE_CACHE (wheelhouses, mounted
#      read-only at /opt/wheelhouse), JUSTNEWS_BOOT_TIMEOUT (default 120 s), JUSTNEWS_FLEET_SSH_BASE
#      (default 22100), PYTHON (default python3).
# With host networking every container shares the machine's ports: nothing in the image listens until
# `fleet.sh ssh` (tools/hosts/ssh.py) starts sshd on a loopback port of each host's own.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PREFIX="${JUSTNEWS_FLEET_PREFIX:-justnews-host}"
TIMEOUT="${JUSTNEWS_BOOT_TIMEOUT:-120}"
LABEL="org.justnews.fleet=$PREFIX"

die() { echo "fleet.sh: $*" >&2; exit 1; }
command -v podman >/dev/null 2>&1 || die "podman is not installed (apt-get install podman runc uidmap)"
command -v runc >/dev/null 2>&1 || die "runc is not installed (apt-get install runc)"
[ -f "$CONTAINERS_CONF" ] || die "CONTAINERS_CONF=$CONTAINERS_CONF does not exist"

members() { podman ps -a --filter "label=$LABEL" --format '{{.Names}}' | sort -V; }

state() { # name -> systemd state (or "-")
  podman exec "$1" systemctl is-system-running 2>/dev/null || true
}

wait_booted() { # name
  local name="$1" s="" t=0
  while [ "$t" -lt "$TIMEOUT" ]; do
    s="$(state "$name")"
    case "$s" in
      running) return 0 ;;
      degraded)
        echo "fleet.sh: $name is degraded; failed units:" >&2
        podman exec "$name" systemctl --failed --no-legend >&2 || true
        return 0 ;;
    esac
    sleep 1; t=$((t + 1))
  done
  echo "fleet.sh: $name did not boot within ${TIMEOUT}s (state: ${s:-none})" >&2
  podman logs --tail 30 "$name" >&2 || true
  return 1
}

up() {
  local n="${1:?usage: fleet.sh up N [IMAGE]}" image="${2:-localhost/justnews-host:bookworm}" wh i name
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer"
  podman image exists "$image" || die "image $image not found: run tools/hosts/build-images.sh"
  case "$image" in *trixie*) wh="$CACHE/wheelhouse-py313" ;; *) wh="$CACHE/wheelhouse-py311" ;; esac
  local mount=()
  if [ -d "$wh" ]; then mount=(-v "$wh:/opt/wheelhouse:ro"); else echo "fleet.sh: no $wh: not mounted" >&2; fi
  # Belt and braces with the image's /etc/hosts: the real Hub resolves to loopback.
  local h hub_hosts=()
  for h in huggingface.co hf.co cdn-lfs.huggingface.co cdn-lfs.hf.co cas-bridge.xethub.hf.co; do
    hub_hosts+=(--add-host "$h:127.0.0.1")
  done
  for i in $(seq 1 "$n"); do
    name="$PREFIX-$i"
    if podman container exists "$name"; then
      podman start "$name" >/dev/null
    else
      podman run -d --name "$name" --hostname "$name" --label "$LABEL" "${hub_hosts[@]}" \
        --systemd=always --network host "${mount[@]}" "$image" /sbin/init >/dev/null
    fi
  done
  local rc=0 port
  for i in $(seq 1 "$n"); do wait_booted "$PREFIX-$i" || rc=1; done
  # One machine network: the Memory agent of host i listens on the image's MEMORY_PORT + i - 1.
  for i in $(seq 2 "$n"); do
    name="$PREFIX-$i"
    port="$(podman exec "$name" sed -n 's/^MEMORY_PORT=//p' /etc/justnews/memory.env)"
    [ -n "$port" ] || continue
    podman exec "$name" sed -i "s/^MEMORY_PORT=.*/MEMORY_PORT=$((port + i - 1))/" /etc/justnews/memory.env
    podman exec "$name" systemctl restart justnews@memory.service || true
  done
  status
  return $rc
}

down() {
  local m
  mapfile -t m < <(members)
  [ "${#m[@]}" -eq 0 ] && { echo "fleet.sh: no containers"; return 0; }
  podman rm -f -t 10 "${m[@]}" >/dev/null
  echo "fleet.sh: removed ${m[*]}"
}

status() {
  local name
  printf '%-22s %-10s %-12s %s\n' NAME STATUS SYSTEMD IMAGE
  for name in $(members); do
    printf '%-22s %-10s %-12s %s\n' "$name" \
      "$(podman inspect -f '{{.State.Status}}' "$name")" "$(state "$name" || true)" \
      "$(podman inspect -f '{{.ImageName}}' "$name")"
  done
}

ssh_up() { # DIR: sshd in every member, and an Ansible inventory that reaches them over SSH
  local dir="${1:?usage: fleet.sh ssh DIR}" base="${JUSTNEWS_FLEET_SSH_BASE:-22100}" py="${PYTHON:-python3}"
  local key name i=0 m
  mapfile -t m < <(members)
  [ "${#m[@]}" -gt 0 ] || die "no containers: fleet.sh up N first"
  key="$("$py" "$HERE/ssh.py" keypair "$dir")"
  { echo "all:"; echo "  hosts:"
    for name in "${m[@]}"; do
      i="${name##*-}"
      [[ "$i" =~ ^[0-9]+$ ]] || die "$name: no host number to derive its port from"
      echo "    $name: $("$py" "$HERE/ssh.py" enable "$name" "$((base + i))" "$key")"
    done; } > "$dir/inventory.yml.tmp"
  mv "$dir/inventory.yml.tmp" "$dir/inventory.yml"
  echo "fleet.sh: ${#m[@]} hosts over SSH, inventory $dir/inventory.yml"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  ssh) ssh_up "$@" ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
