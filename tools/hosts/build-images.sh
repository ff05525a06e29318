#!/usr/bin/env bash
# Build the systemd-booted JustNews test-host images (Debian 12 bookworm, Debian 13 trixie):
#   localhost/justnews-host:bookworm   localhost/justnews-host:trixie
# and, from the trixie root, localhost/justnews-host:upstream (laid out like upstream JustNews:
# user adra, no justnews user, rootfs-upstream/ on top), each with a content tag
# localhost/justnews-host:<name>-<hash>. A build is skipped when the content tags exist (hash of
# this script, rootfs/, rootfs-upstream/ for trixie, the suite's pinned requirements).
#
# Usage: build-images.sh [--force] [SUITE...]     (default suites: bookworm trixie)
# Env:   JUSTNEWS_IMAGE_CACHE (default /var/tmp/justnews-images): debootstrap package cache,
#        wheelhouses (wheelhouse-py311, wheelhouse-py313, wheelhouse-olah-py311), temporary roots.
#        JUSTNEWS_IMAGE (default localhost/justnews-host), DEBIAN_MIRROR, PYTHON (host python with pip).
set -euo pipefail
{ # read the whole script before running it (safe against edits while a build runs)

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
IMAGE="${JUSTNEWS_IMAGE:-localhost/justnews-host}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-python3}"
# openssh-server is installed but disabled: with host networking it would bind the machine's port 22.
# tools/hosts/ssh.py starts it per container, on a port of its own on 127.0.0.1 (fleets run over SSH).
PACKAGES="systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,ca-certificates,procps,sudo,acl"
PACKAGES="$PACKAGES,openssh-server,openssh-sftp-server"

HUB_HOSTS=(huggingface.co hf.co cdn-lfs.huggingface.co cdn-lfs.hf.co cdn-lfs-us-1.hf.co cas-bridge.xethub.hf.co cas-server.xethub.hf.co transfer.xethub.hf.co)

die() { echo "build-images.sh: $*" >&2; exit 1; }
log() { echo "build-images.sh: $*" >&2; }

FORCE=0
SUITES=()
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    bookworm|trixie) SUITES+=("$a") ;;
    *) die "unknown argument '$a' (suites: bookworm trixie)" ;;
  esac
done
[ ${#SUITES[@]} -gt 0 ] || SUITES=(bookworm trixie)

# ---------------------------------------------------------------- preflight
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and rootful podman)"
missing=()
for c in podman debootstrap runc chroot tar sha256sum; do
  command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (apt-get install podman debootstrap runc uidmap)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' does not work (set PYTHON=)"
[ -f "$CONTAINERS_CONF" ] || die "CONTAINERS_CONF=$CONTAINERS_CONF does not exist"
for s in "${SUITES[@]}"; do
  [ -e "/usr/share/debootstrap/scripts/$s" ] || die "this debootstrap has no script for $s"
done
mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
flock 9 || die "cannot lock $CACHE/build.lock"   # one build at a time

suite_py() { case "$1" in bookworm) echo 311 ;; trixie) echo 313 ;; esac; }
# The Memory agent's HTTP port (MEMORY_PORT in /etc/justnews/memory.env): one per image, because the
# test containers share the machine's network. The upstream image keeps upstream's 8007.
suite_port() { case "$1" in bookworm) echo 18007 ;; trixie) echo 18107 ;; esac; }

content_hash() { # suite
  local py; py="$(suite_py "$1")"
  {
    echo "suite=$1 packages=$PACKAGES"
    sha256sum "$HERE/build-images.sh" "$HERE/agent-requirements-py$py.txt" | awk '{print $1}'
    local dirs=(rootfs); [ "$1" != trixie ] || dirs+=(rootfs-upstream)
    for d in "${dirs[@]}"; do
      (cd "$HERE/$d" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z \
         | xargs -0 stat -c "$d %n %a" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    done
  } | sha256sum | cut -c1-12
}

wheelhouse() { # py (311|313) [set]: download the pinned wheels of <set>-requirements-py<py>.txt (default
  # agent, into wheelhouse-py<py>; another set into wheelhouse-<set>-py<py>). Idempotent: present files are reused.
  local py="$1" set="${2:-agent}" dir
  dir="$CACHE/wheelhouse-$([ "$set" = agent ] || echo "$set-")py$py"
  mkdir -p "$dir"
  log "wheelhouse $dir"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "3.${py#3}" --implementation cp --abi "cp$py" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform linux_x86_64 --platform any \
    -d "$dir" -r "$HERE/$set-requirements-py$py.txt" \
    2> >(grep -v -e 'is ignored: it is neither a file nor a directory' >&2)
}

in_root() { # root cmd...: run in the chroot with a clean environment (no host PIP_* etc.)
  local root="$1"; shift
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    chroot "$root" "$@"
}

build() { # suite hash
  local suite="$1" hash="$2" py root t0
  py="$(suite_py "$suite")"
  root="$CACHE/root-$suite"
  t0=$SECONDS
  wheelhouse "$py"

  rm -rf "$root"
  mkdir -p "$CACHE/debs-$suite"
  log "debootstrap $suite -> $root"
  debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE/debs-$suite" \
    "$suite" "$root" "$MIRROR" > "$CACHE/debootstrap-$suite.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap-$suite.log" >&2; die "debootstrap $suite failed (log: $CACHE/debootstrap-$suite.log)"; }
  log "debootstrap $suite done in $((SECONDS - t0)) s"

  # user and group justnews (system user, home /var/lib/justnews)
  in_root "$root" useradd --system --user-group --home-dir /var/lib/justnews --create-home \
    --shell /usr/sbin/nologin justnews

  # the host's files: /etc/justnews, the unit template and drop-in, the start script, the agent
  (cd "$HERE/rootfs" && tar --owner=0 --group=0 -cf - .) | tar -C "$root" --no-overwrite-dir -xf -
  chmod 0755 "$root/usr/local/bin/justnews-start-agent.sh"
  printf 'MEMORY_PORT=%s\n' "$(suite_port "$suite")" >> "$root/etc/justnews/memory.env"
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/opt/justnews/models/memory"
  ln -sfn /etc/systemd/system/justnews@.service \
    "$root/etc/systemd/system/multi-user.target.wants/justnews@memory.service"
  in_root "$root" chown -R justnews:justnews /opt/justnews/models

  # the agent's venv, from the wheelhouse (pip in the guest cannot reach PyPI reliably)
  rm -rf "$root/tmp/wheelhouse"
  cp -al "$CACHE/wheelhouse-py$py" "$root/tmp/wheelhouse" 2>/dev/null \
    || cp -a "$CACHE/wheelhouse-py$py" "$root/tmp/wheelhouse"
  cp "$HERE/agent-requirements-py$py.txt" "$root/tmp/agent-requirements.txt"
  in_root "$root" python3 -m venv /opt/justnews/venv
  in_root "$root" /opt/justnews/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
    --no-index --find-links /tmp/wheelhouse -r /tmp/agent-requirements.txt
  rm -rf "$root/tmp/wheelhouse" "$root/tmp/agent-requirements.txt"

  # Hub names resolve to loopback (podman builds a container's /etc/hosts from the image's):
  # nothing in a test host may reach the real Hub; 127.0.0.1:443 is closed.
  # (needs base_hosts_file = "image" in containers.conf; fleet.sh also passes --add-host)
  { printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
    printf '127.0.0.1\t%s\n' "${HUB_HOSTS[@]}"; } > "$root/etc/hosts"

  # sshd off until tools/hosts/ssh.py starts it with a port, a host key and an authorized key of its own
  in_root "$root" systemctl disable --quiet ssh.service ssh.socket
  rm -f "$root"/etc/ssh/ssh_host_*

  # container hygiene: per-container machine-id, no getty on the console, small image
  : > "$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  for u in console-getty.service getty@tty1.service systemd-firstboot.service; do
    ln -sfn /dev/null "$root/etc/systemd/system/$u"
  done
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/root/.cache

  import_root "$root" "$suite" "$suite" "$hash"
  [ "$suite" != trixie ] || upstream "$root" "$hash"
  rm -rf "$root"
  log "built $IMAGE:$suite-$hash in $((SECONDS - t0)) s"
}

import_root() { # root suite name hash
  log "importing $IMAGE:$3-$4"
  tar -C "$1" -c . | podman import \
    --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
    --change "LABEL org.justnews.host.suite=$2" --change "LABEL org.justnews.host.hash=$4" \
    - "$IMAGE:$3-$4" >/dev/null 2>"$CACHE/import-$3.log" \
    || { cat "$CACHE/import-$3.log" >&2; die "podman import failed"; }
}

upstream() { # trixie-root hash: the same host laid out like upstream JustNews
  local root="$CACHE/root-upstream"
  rm -rf "$root"
  cp -a "$1" "$root"
  # the deploy user runs the agents; there is no justnews user
  in_root "$root" userdel justnews
  rm -rf "$root/var/lib/justnews"
  in_root "$root" useradd --user-group --create-home --shell /bin/bash adra
  rm -f "$root/etc/justnews/"*.env
  (cd "$HERE/rootfs-upstream" && tar --owner=0 --group=0 -cf - .) | tar -C "$root" --no-overwrite-dir -xf -
  chmod 0755 "$root/usr/local/bin/justnews-start-agent.sh" "$root/usr/local/bin/wait_for_mcp.sh"
  rm -rf "$root/opt/justnews/models"
  mkdir -p "$root/opt/justnews/model_store"
  in_root "$root" chown -R adra:adra /opt/justnews/model_store
  import_root "$root" trixie upstream "$2"
  rm -rf "$root"
}

images_of() { [ "$1" = trixie ] && echo "trixie upstream" || echo "$1"; }

for suite in "${SUITES[@]}"; do
  hash="$(content_hash "$suite")"
  cached=1
  for name in $(images_of "$suite"); do podman image exists "$IMAGE:$name-$hash" || cached=0; done
  if [ "$FORCE" = 0 ] && [ "$cached" = 1 ]; then
    log "$IMAGE:$suite-$hash exists: cached"
    wheelhouse "$(suite_py "$suite")"   # fleet.sh mounts it; cheap when complete
  else
    build "$suite" "$hash"
  fi
  # Olah for the hub_mirror role in the Molecule scenario 'sites' (mounted at /opt/wheelhouse-olah); not part of
  # the image, so not of its hash.
  [ "$suite" != bookworm ] || wheelhouse 311 olah
  for name in $(images_of "$suite"); do
    podman tag "$IMAGE:$name-$hash" "$IMAGE:$name"
    # drop stale content tags of this image
    for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep -E "^$IMAGE:$name-[0-9a-f]{12}\$" || true); do
      [ "$old" = "$IMAGE:$name-$hash" ] || podman rmi "$old" >/dev/null 2>&1 || true
    done
    echo "$IMAGE:$name -> $IMAGE:$name-$hash"
  done
done
exit 0
}
