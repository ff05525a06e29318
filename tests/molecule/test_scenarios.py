"""Every Molecule scenario, on systemd containers built from tools/hosts, against the test Hub, with the
collection artefact installed."""

import json
import os
import shutil
import subprocess
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tools.harness import REPO

BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))

pytestmark = pytest.mark.molecule


# Scenarios whose agents listen on the images' own ports (18007, 18107) run one after the other on one xdist
# worker; the others have ports of their own (or no network) and may run beside them (`-n 2 --dist loadgroup`).
SHARED_PORTS = {"default", "gated", "upgrade"}
IMAGE_PORTS = (18007, 18107)


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (scripts/setup.sh)")
@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.xdist_group("image-ports" if s in SHARED_PORTS else s)) for s in SCENARIOS])
def test_molecule_scenario(scenario, tmp_path, collections_path):
    # A Hub of its own per scenario: its counters then tell what this scenario's hosts asked for.
    launcher = [str(REPO / "tools" / "hub" / "hub.sh")]
    hub_env = dict(os.environ, PYTHON=sys.executable)
    url = subprocess.run(launcher + ["start", str(tmp_path / "hub")], env=hub_env, check=True, capture_output=True,
                         text=True, timeout=300).stdout.strip()
    token_file = tmp_path / "hub" / "hub.token"
    try:
        if scenario in SHARED_PORTS:
            _wait_ports_free(IMAGE_PORTS)
        output, returncode = _molecule(scenario, url, token_file, collections_path)
        with urllib.request.urlopen(url + "/_test/stats", timeout=30) as answer:
            lifetime = json.load(answer)["lifetime"]
    finally:
        subprocess.run(launcher + ["stop", str(tmp_path / "hub")], env=hub_env, check=False, timeout=60)
        _remove_leftovers(scenario)
    assert returncode == 0, output[-8000:]
    token = token_file.read_text().strip()
    assert token not in output, "the Hub token appeared in the Molecule output"
    if scenario in FROM_THE_HUB:
        # Xet storage end to end: the model's weights came from the CAS, never as plain HTTP through the bridge.
        requests, sent = lifetime["requests"], lifetime["bytes"]
        assert requests.get("xet_token", 0) >= 1 and requests.get("reconstruction", 0) >= 1, lifetime
        assert sent.get("xorb", 0) > 0 and sent.get("bridge", 0) == 0, lifetime


# Every scenario downloads from the Hub: the air-gapped host's bundle is made from it on the controller.
FROM_THE_HUB = set(SCENARIOS)


def _molecule(scenario, url, token_file, collections_path):
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
    return output, proc.returncode


def _containers(scenario):
    out = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", "name=^mc-%s(-|$)" % scenario],
                         capture_output=True, text=True, timeout=60, check=False).stdout
    return out.split()


def _remove_leftovers(scenario):
    """Molecule's podman destroy ignores a failed `podman rm -f` (`|| true`): a container left running would keep
    its agent on the image's port and break the next scenario. Remove it here, or say so."""
    for _ in range(3):
        names = _containers(scenario)
        if not names:
            return
        subprocess.run(["podman", "rm", "-f", "-t", "5"] + names, capture_output=True, timeout=120, check=False)
        time.sleep(2)
    pytest.fail("containers of scenario %s survive `podman rm -f`: %s" % (scenario, _containers(scenario)))


def _listening(port):
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_ports_free(ports, timeout=120):
    """These scenarios' agents bind the images' own ports on the machine's network: wait until nothing holds them,
    or name who does."""
    deadline = time.monotonic() + timeout
    while any(_listening(p) for p in ports):
        if time.monotonic() > deadline:
            held = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, check=False).stdout \
                if shutil.which("ss") else ""
            pods = subprocess.run(["podman", "ps", "-a"], capture_output=True, text=True, check=False).stdout
            pytest.fail("ports %s are still taken before the scenario starts:\n%s\n%s" % (ports, held, pods))
        time.sleep(2)
