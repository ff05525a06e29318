#!/usr/bin/env bash
# The whole test suite: unit and functional tests of the module against the local test Hub, sanity and
# lint, then every Molecule scenario on systemd containers. Run as root on a Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CONTAINERS_CONF="$PWD/containers.conf"
tests/hosts/build-images.sh
exec .venv/bin/python -m pytest tests "$@"
