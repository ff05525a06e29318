# Sourced by the entry points: apt-get, podman with systemd containers and mounts need root. As another user,
# re-run the calling script under sudo (keeping the project's JUSTNEWS_* settings), or say how to proceed.
# shellcheck shell=bash
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "$(basename "$0"): needs root; run it as root (sudo is not installed)" >&2
    exit 1
  fi
  keep=$(compgen -e | grep '^JUSTNEWS_' | paste -sd, -)
  exec sudo ${keep:+--preserve-env="$keep"} -- "$0" "$@"
fi
