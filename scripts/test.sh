#!/usr/bin/env bash
# The whole test suite, run as root on a Debian 12 machine: unit, Hub and functional tests of the module
# against the local test Hub, sanity, lint and changelog; the same functional tests and sanity with every other
# claimed ansible-core release as the controller; beside those, faults injected into a rollout on a three-host
# podman fleet (tests/fleet); then every Molecule scenario on systemd containers. Every
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
failed=()
step() { printf '\n== %s (at %d s)\n' "$*" $((SECONDS - started)); }
# Every step runs even when an earlier one failed, so that one run shows everything that is broken.
check() { "$@" || failed+=("$current"); }

current="host images"
step "$current"
check tools/hosts/build-images.sh

# The fleet fault suite (tests/fleet) drives podman while the next steps, which use no container, run beside it;
# the Molecule scenarios wait for it (podman runs one suite's fleet at a time here). Its output is printed after
# step 3, its table is kept in tests/output/fleet-faults.{json,md}.
mkdir -p tests/output
rm -f tests/output/fleet-faults.md tests/output/artefact-files.txt tests/output/galaxy-importer.log \
  tests/output/ansible-lint.log
faults_started=$SECONDS
# CI runs every row but the full cache filesystem, which runs from tests/fleet/README.md's command.
.venv/bin/python -m pytest tests/fleet -m fleet -k "not filesystem_full" -s --durations=10 \
  --basetemp=/tmp/justnews-fleet-faults \
  > tests/output/fleet-faults.log 2>&1 &
faults=$!

# Module and host tests share no resources between tests: three workers on two cores hide the Hub's waits.
current="ansible-core $(.venv/bin/python -c 'import ansible; print(ansible.__version__)'): unit, Hub, functional, quality"
step "$current"
check .venv/bin/python -m pytest tests -m "not molecule and not fleet" -n 3 --durations=15
# What Galaxy gets, as the quality tests of that step left it in tests/output: the artefact's files, and what
# galaxy-importer and ansible-lint's production profile said of it (the tests fail on any warning).
current="the artefact: its files, galaxy-importer, ansible-lint"
step "$current"
for report in artefact-files.txt galaxy-importer.log ansible-lint.log; do
  printf -- '--- tests/output/%s\n' "$report"
  cat "tests/output/$report" 2>/dev/null || { echo "missing: its test did not run"; failed+=("$current"); }
done
venvs=${JUSTNEWS_VENV_CACHE:-/var/tmp/justnews-venvs}
# The managed host's Python and modules are the same for every controller: what an older controller changes is how
# it runs a module and a playbook (arguments, check and diff mode, results), which these two suites cover. The 2 GiB
# bounded-memory download measures the host's processes, the same whatever the controller: step 1 runs it once.
for core in ${JUSTNEWS_MATRIX_CORES-2.17.14 2.18.19}; do
  current="ansible-core $core as the controller: hf_snapshot and bundle functional tests, sanity"
  step "$current"
  check env JUSTNEWS_TARGET_PYTHON="$PWD/.venv/bin/python" \
    "$venvs/core-$core-$(sha256sum requirements/matrix.txt | cut -c1-12)/bin/python" \
    -m pytest tests/functional/test_hf_snapshot.py tests/functional/test_bundle.py \
    tests/test_quality.py::test_ansible_test_sanity -k "not bounded_memory" -n 3 --durations=5
done

current="fleet faults (tests/fleet, started at the host images step)"
step "$current"
check wait "$faults"
printf 'fault suite: %d s\n' $((SECONDS - faults_started))
cat tests/output/fleet-faults.log
[ ! -f tests/output/fleet-faults.md ] || { echo "Fleet faults (tests/fleet):"; cat tests/output/fleet-faults.md; }

current="Molecule scenarios"
step "$current"
# One xdist group per scenario: two at a time, the longest first.
check .venv/bin/python -m pytest tests -m molecule -n 2 --dist loadgroup --durations=10
step "done"
if ((${#failed[@]})); then
  printf 'failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
