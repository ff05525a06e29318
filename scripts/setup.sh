#!/usr/bin/env bash
# Install what the demo and the tests need on a fresh Debian 12 machine (as root): podman, debootstrap,
# runc from Debian, and a project venv (.venv) with the pinned Python requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for cmd in podman:podman debootstrap:debootstrap runc:runc newuidmap:uidmap; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need_apt+=("${cmd#*:}")
done
if ((${#need_apt[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}" ca-certificates
fi

stamp=.venv/.requirements.sha256
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: the CPU wheel; anything unpinned would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -r requirements/tests.txt
  echo "$want" > "$stamp"
fi

# ansible-test downloads a pip bootstrap script from a host that may be unreachable; use ensurepip instead.
pip_version=$(.venv/bin/python - <<'PY'
import re, ansible_test, pathlib
text = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", text).group(1))
PY
)
mkdir -p ~/.ansible/test/cache
cp tests/sanity/get_pip.py ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
echo "setup: ready (.venv, podman $(podman --version | awk '{print $3}'))"
