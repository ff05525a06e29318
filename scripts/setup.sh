#!/usr/bin/env bash
# Install what the demo and the tests need on a fresh Debian 12 machine (as root): podman, debootstrap,
# runc, shellcheck (for ansible-test sanity) and openssh-client (test hosts over SSH) from Debian, and a project venv (.venv) with the pinned Python requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for cmd in podman:podman debootstrap:debootstrap runc:runc newuidmap:uidmap shellcheck:shellcheck ssh:openssh-client; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need_apt+=("${cmd#*:}")
done
if ((${#need_apt[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}" ca-certificates
fi

stamp=.venv/.requirements.sha256
# The importer's pins (requirements/importer.txt) are its own venv's, below: they do not rebuild this one.
main_requirements=()
for file in requirements/*.txt; do
  [[ "$file" == requirements/importer.txt ]] || main_requirements+=("$file")
done
want=$(cat "${main_requirements[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: the CPU wheel; anything unpinned would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -r requirements/tests.txt
  echo "$want" > "$stamp"
fi

# Every ansible-core release the collection claims (meta/runtime.yml) that runs on this Python gets a controller
# venv of its own, kept outside the clone so that later runs on this machine reuse it.
MATRIX_CORES=${JUSTNEWS_MATRIX_CORES-2.17.14 2.18.19}
venvs=${JUSTNEWS_VENV_CACHE:-/var/tmp/justnews-venvs}
mkdir -p "$venvs"
for core in $MATRIX_CORES; do
  dir="$venvs/core-$core-$(sha256sum requirements/matrix.txt | cut -c1-12)"
  if [[ ! -x "$dir/bin/ansible-test" ]]; then
    rm -rf "$venvs/core-$core-"*  # older requirements
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
    "$dir/bin/python" -m pip install -q "ansible-core==$core" -r requirements/matrix.txt
  fi
done

# galaxy-importer, the checks Galaxy runs on an upload, runs on the built artefact (tests/test_quality.py) from a venv
# of its own, kept beside the controller venvs: it pins some packages below the project venv's.
importer="$venvs/importer-$(sha256sum requirements/importer.txt | cut -c1-12)"
if [[ ! -f "$importer/.complete" ]]; then
  rm -rf "$venvs/importer-"*  # older requirements, or a venv an interrupted run left half-built
  python3 -m venv "$importer"
  "$importer/bin/python" -m pip install -q --upgrade pip
  "$importer/bin/python" -m pip install -q -r requirements/importer.txt
  touch "$importer/.complete"
fi

# ansible-test downloads a pip bootstrap script from a host that may be unreachable; use ensurepip instead.
mkdir -p ~/.ansible/test/cache
for python in .venv/bin/python "$venvs"/core-*/bin/python; do
  [[ -x "$python" ]] || continue
  pip_version=$("$python" - <<'PY'
import re, ansible_test, pathlib
text = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", text).group(1))
PY
)
  cp tests/sanity/get_pip.py ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
done
echo "setup: ready (.venv, podman $(podman --version | awk '{print $3}'), ansible-core matrix: ${MATRIX_CORES:-none}, galaxy-importer in $importer)"
