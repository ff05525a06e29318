"""Every Molecule scenario, on systemd containers built from tools/hosts, against the test Hub, with the
collection artefact installed."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tools.harness import REPO

BIN = Path(sys.executable).parent
# Longest first (measured minutes in CI, two at a time: upgrade 7.7, fleet 5.3, gated 5, default 4.8, upstream
# 4.2, daytwo 3.4, airgap 1.5; sites not measured yet, placed by its six hosts): xdist hands the groups out in this
# order, so the short ones fill the gaps at the end.
LONGEST_FIRST = ("upgrade", "sites", "fleet", "gated", "default", "upstream", "daytwo", "airgap")
SCENARIOS = sorted((p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml")),
                   key=lambda s: (LONGEST_FIRST.index(s) if s in LONGEST_FIRST else len(LONGEST_FIRST), s))

pytestmark = pytest.mark.molecule


# Every scenario's agents have ports of their own (or a network of their own): scenarios run side by side, one
# per xdist worker (`--dist loadgroup`), beside the fleet fault suite (tests/fleet).


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (scripts/setup.sh)")
@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.xdist_group(s)) for s in SCENARIOS])
def test_molecule_scenario(scenario, tmp_path, collections_path):
    # A Hub of its own per scenario: its counters then tell what this scenario's hosts asked for.
    launcher = [str(REPO / "tools" / "hub" / "hub.sh")]
    hub_env = dict(os.environ, PYTHON=sys.executable)
    url = subprocess.run(launcher + ["start", str(tmp_path / "hub")], env=hub_env, check=True, capture_output=True,
                         text=True, timeout=300).stdout.strip()
    token_file = tmp_path / "hub" / "hub.token"
    counts = tmp_path / "task-counts.jsonl"
    try:
        output, returncode = _molecule(scenario, url, token_file, collections_path, counts)
        with urllib.request.urlopen(url + "/_test/stats", timeout=30) as answer:
            lifetime = json.load(answer)["lifetime"]
    finally:
        subprocess.run(launcher + ["stop", str(tmp_path / "hub")], env=hub_env, check=False, timeout=60)
        _remove_leftovers(scenario)
    assert returncode == 0, output[-8000:]
    token = token_file.read_text().strip()
    assert token not in output, "the Hub token appeared in the Molecule output"
    if scenario in THROUGH_MIRRORS:
        # The hosts fetch through their site's mirror with Xet off: the mirrors take the bytes from the Hub's
        # resolver and bridge, and nothing goes past them to the CAS.
        sent = lifetime["bytes"]
        assert sent.get("bridge", 0) > 0 and sent.get("xorb", 0) == 0, lifetime
    if scenario in FROM_THE_HUB:
        # Xet storage end to end: the model's weights came from the CAS, never as plain HTTP through the bridge.
        requests, sent = lifetime["requests"], lifetime["bytes"]
        assert requests.get("xet_token", 0) >= 1 and requests.get("reconstruction", 0) >= 1, lifetime
        assert sent.get("xorb", 0) > 0 and sent.get("bridge", 0) == 0, lifetime
    _assert_warm_path(scenario, counts)


# A run with nothing to do (Molecule's idempotence step: the second run of converge.yml): per host at most 8 tasks
# of the collection's playbook in PLAY RECAP's ok= (a scenario's own test plays left out) and at most 4 module
# round trips, whatever the source; and not one request to the Hub (the scenarios hold their models with state
# present: a complete cache answers for the commit, pinned or recorded under its ref).
WARM_OK, WARM_TRIPS = 8, 4


def _assert_warm_path(scenario, counts):
    runs = [json.loads(line) for line in counts.read_text().splitlines()]
    converges = [r for r in runs if r["playbook"] == "converge.yml" and not r["check"]]
    assert len(converges) >= 2, [(r["playbook"], r["check"]) for r in runs]
    warm = converges[1]
    report = {host: (c["ok_collection"], c["round_trips"], [t["task"] for t in c["tasks"]])
              for host, c in warm["hosts"].items()}
    print("warm run of %s: %s" % (scenario, json.dumps(report, indent=1)))
    for host, c in warm["hosts"].items():
        if MIRROR_HOST in host:
            continue
        assert c["ok_collection"] <= WARM_OK and c["round_trips"] <= WARM_TRIPS, (host, report[host])
    assert "hub_requests" in warm, "the test Hub's counters were not read around the run"
    # The counters do move when a run asks the Hub (every scenario downloads in some run).
    assert any(r.get("hub_requests") for r in runs), [(r["playbook"], r.get("hub_requests")) for r in runs]
    asked = dict(warm["hub_requests"])
    if scenario in THROUGH_MIRRORS:
        mirrors = len([host for host in warm["hosts"] if MIRROR_HOST in host])
        # Each mirror's probe file: Olah checks every file request upstream with one HEAD, cached or not.
        assert asked.pop("head", 0) == mirrors, "the warm run of %s asked the Hub: %s" % (scenario, asked)
        # Olah's connection check (olah/server.py): a HEAD of a dataset file every 5 minutes per mirror, whoever
        # asks, which the test Hub does not route ('other'). How many fall in the run depends on how long it
        # takes; the scenario's verifier checks each request's path and their number against the time it took
        # (molecule/sites/tests/test_sites.py).
        asked.pop("other", None)
    assert asked == {}, "the warm run of %s asked the Hub: %s" % (scenario, warm["hub_requests"])


# Every scenario downloads from the Hub: the air-gapped host's bundle is made from it on the controller. The
# sites scenario's hosts download through Olah mirrors instead, with Xet off (model_cache_xet: false).
THROUGH_MIRRORS = {"sites"}
FROM_THE_HUB = set(SCENARIOS) - THROUGH_MIRRORS
# Hosts that run the hub_mirror role, not the prefetch playbook: its warm run has more steps (package facts, user,
# venv, configuration, unit, port, probe); Molecule's idempotence step still checks that it changes nothing.
MIRROR_HOST = "-mirror-"


def _molecule(scenario, url, token_file, collections_path, counts):
    env = dict(os.environ,
               JUSTNEWS_TASK_COUNTS=str(counts),
               ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tools" / "callbacks"),
               ANSIBLE_CALLBACKS_ENABLED="justnews_counts",
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
    its agent's port and its memory. Remove it here, or say so."""
    for _attempt in range(3):
        names = _containers(scenario)
        if not names:
            return
        subprocess.run(["podman", "rm", "-f", "-t", "5"] + names, capture_output=True, timeout=120, check=False)
        time.sleep(2)
    pytest.fail("containers of scenario %s survive `podman rm -f`: %s" % (scenario, _containers(scenario)))
