"""Every Molecule scenario, on systemd containers built from tools/hosts, against the test Hub, with the
collection artefact installed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.harness import REPO

BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))

pytestmark = pytest.mark.molecule


# Scenarios whose agents listen on the images' own ports (18007, 18107) run one after the other on one xdist
# worker; the others have ports of their own (or no network) and may run beside them (`-n 2 --dist loadgroup`).
SHARED_PORTS = {"default", "gated", "upgrade"}


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (scripts/setup.sh)")
@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.xdist_group("image-ports" if s in SHARED_PORTS else s)) for s in SCENARIOS])
def test_molecule_scenario(scenario, hub_process, collections_path):
    url, token_file = hub_process
    env = dict(os.environ,
               PATH="%s:%s" % (BIN, os.environ["PATH"]),
               JUSTNEWS_TEST_HUB=url,
               JUSTNEWS_TEST_HUB_TOKEN_FILE=str(token_file),
               CONTAINERS_CONF=str(REPO / "containers.conf"),
               ANSIBLE_COLLECTIONS_PATH=collections_path,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               ANSIBLE_NOCOLOR="1", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([str(BIN / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=2400, check=False)
    output = proc.stdout + proc.stderr
    (REPO / "tests" / "output").mkdir(exist_ok=True)
    (REPO / "tests" / "output" / ("molecule-%s.log" % scenario)).write_text(output)
    assert proc.returncode == 0, output[-8000:]
    token = token_file.read_text().strip()
    assert token not in output, "the Hub token appeared in the Molecule output"
