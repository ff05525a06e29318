"""Every Molecule scenario, on systemd containers built from tests/hosts, against a local test Hub."""

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))

pytestmark = pytest.mark.molecule


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory):
    """The test Hub as its own process, as the containers (host networking) reach it on 127.0.0.1."""
    work = tmp_path_factory.mktemp("molecule-hub")
    token_file = work / "token"
    token_file.write_text("hf_test_" + secrets.token_hex(8))
    token_file.chmod(0o600)
    port_file = work / "port"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/hub/hubserver.py"), "--port", "0",
                             "--port-file", str(port_file), "--token-file", str(token_file)])
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "test Hub did not start"
        time.sleep(0.2)
    yield "http://127.0.0.1:%s" % port_file.read_text().strip(), token_file
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    root = tmp_path_factory.mktemp("molecule-collections")
    (root / "ansible_collections" / "justnews").mkdir(parents=True)
    (root / "ansible_collections" / "justnews" / "huggingface").symlink_to(REPO)
    return root


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (scripts/setup.sh)")
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario, hub_process, collections):
    url, token_file = hub_process
    env = dict(os.environ,
               PATH="%s:%s" % (BIN, os.environ["PATH"]),
               JUSTNEWS_TEST_HUB=url,
               JUSTNEWS_TEST_HUB_TOKEN_FILE=str(token_file),
               CONTAINERS_CONF=str(REPO / "containers.conf"),
               ANSIBLE_COLLECTIONS_PATH=str(collections),
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
