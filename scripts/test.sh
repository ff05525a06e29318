#!/usr/bin/env bash
# The whole test suite, run as root on a Debian 12 machine: unit, Hub and functional tests of the module
# against the local test Hub, sanity, lint and changelog; the same functional tests and sanity with every other
# claimed ansible-core release as the controller; then every Molecule scenario on systemd containers. Every
# test that runs Ansible uses the collection artefact built by ansible-galaxy and installed, not the checkout.
#
#   scripts/test.sh                 everything, as CI runs it
#   scripts/test.sh PYTEST-ARGS...  one pytest run with these arguments (e.g. tests/functional -x)
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$@"
cd "$(dirname "$0")/.."
scripts/setup.sh
export CONTAINERS_CONF="$PWD/containers.conf"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
if (($#)); then
  tools/hosts/build-images.sh
  exec .venv/bin/python -m pytest "$@"
fi

started=$SECONDS
step() { printf '\n== %s (at %d s)\n' "$*" $((SECONDS - started)); }
# Module and host tests share no resources between tests: three workers on two cores hide the Hub's waits.
step "ansible-core $(.venv/bin/python -c 'import ansible; print(ansible.__version__)'): unit, Hub, functional, quality"
.venv/bin/python -m pytest tests -m "not molecule" -n 3 --durations=15
venvs=${JUSTNEWS_VENV_CACHE:-/var/tmp/justnews-venvs}
for core in ${JUSTNEWS_MATRIX_CORES-2.17.14 2.18.19}; do
  step "ansible-core $core as the controller: functional tests and sanity"
  JUSTNEWS_TARGET_PYTHON="$PWD/.venv/bin/python" "$venvs/core-$core-$(sha256sum requirements/matrix.txt | cut -c1-12)/bin/python" \
    -m pytest tests/functional tests/test_quality.py::test_ansible_test_sanity -n 3 --durations=5
done
step "host images"
tools/hosts/build-images.sh
step "Molecule scenarios"
.venv/bin/python -m pytest tests -m molecule --durations=10
step "done"
