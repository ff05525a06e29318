"""One Hub download for the whole fleet: controller mode, rolled out in batches, a host added later, and a
hub-mode host as the reference the others must equal."""

import json
import os
from pathlib import Path

import pytest
import testinfra

import jn_checks as c

RECORD = Path(os.environ.get("FLEET_RECORD_DIR", ""))
FIRST_ROLLOUT = ["mc-fleet-%d" % i for i in range(1, 6)]
LATE = "mc-fleet-6"
REFERENCE = "mc-fleet-hub"


def record(name):
    return json.loads((RECORD / (name + ".json")).read_text())


def reference_host():
    return testinfra.get_host("podman://" + REFERENCE)


def cache_tree(host):
    """Every entry under HF_HOME: path, type, mode, owner, group, link target, size (files)."""
    out = host.check_output("find %s -printf '%%P|%%y|%%m|%%u|%%g|%%l|%%s\\n'", c.HF_HOME)
    rows = set()
    for line in out.splitlines():
        path, kind, mode, user, group, target, size = line.split("|")
        if kind != "f" or path.endswith(".lock"):
            size = ""  # directory sizes and the lock files' pid vary
        rows.add((path, kind, mode, user, group, target, size))
    return rows


def file_gets(stats):
    """Repository file path -> number of GETs the Hub served for it."""
    counts = {}
    for method, path, status in stats["log"]:
        if method == "GET" and "/resolve/" in path and status == 200:
            name = path.split("/resolve/", 1)[1].split("/", 1)[1]
            counts[name] = counts.get(name, 0) + 1
    return counts


def model_files(host):
    snap = c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B
    return sorted(host.check_output("find %s -mindepth 1 ! -type d -printf '%%P\\n'", snap).split())


def one_copy_bytes(host):
    blobs = c.repo_dir(c.REPO) + "/blobs"
    return sum(int(s) for s in host.check_output("find %s -type f -printf '%%s\\n'", blobs).split())


# --- every host: the same result as the hub-mode host, the agent ready offline on its own port ---------------

def test_cache_and_snapshot(host):
    c.assert_cache_dir(host)
    c.assert_snapshot(host, c.REPO, c.COMMIT_B, "main")


def test_dropin_and_agent_environment(host):
    c.assert_dropin(host, endpoint=c.HUB or None, token=False)
    c.assert_unit_env(host)


def test_agent_ready_on_its_own_port(host):
    c.assert_ready(host, commit=c.COMMIT_B)
    port = int(host.check_output("sed -n 's/^MEMORY_PORT=//p' /etc/justnews/memory.env"))
    assert 18201 <= port <= 18207, port
    answer = c.http_json(host, "http://127.0.0.1:%d/ready" % port)
    assert answer["ready"] is True and answer["pid"] == c.main_pid(host), answer


def test_no_staging_left(host):
    assert not host.file(c.HF_HOME + "/.incoming").exists


def test_same_result_as_hub_mode(host):
    if host.backend.get_hostname() == REFERENCE:
        pytest.skip("the reference itself")
    ref = reference_host()
    assert cache_tree(host) == cache_tree(ref)
    assert host.file(c.DROPIN).content_string == ref.file(c.DROPIN).content_string


# --- the fleet: what the Hub served ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files():
    return model_files(reference_host())


def test_first_rollout_fetched_each_file_once(files):
    stats = record("converge")["stats"]
    assert file_gets(stats) == {name: 1 for name in files}, file_gets(stats)
    assert stats["bytes"]["get"] == one_copy_bytes(reference_host())


def test_first_rollout_summary(files):
    rows = record("converge")["summary"]
    assert sorted(r["host"] for r in rows) == FIRST_ROLLOUT
    size = one_copy_bytes(reference_host())
    for r in rows:
        assert r["ran"] and r["model"] == c.REPO and r["commit"] == c.COMMIT_B, r
        assert r["bytes_received"] == size and r["received_from"] == "controller", r
        assert r["restarted"] == [c.UNIT] and r["ready"] == [c.UNIT], r


def test_second_run_served_nothing():
    assert record("idempotence")["stats"]["log"] == record("converge")["stats"]["log"]


def test_host_added_later_received_only_from_the_controller(files):
    late = record("late")
    assert late["stats"]["log"] == record("converge")["stats"]["log"], "the Hub saw requests for the late host"
    (model,) = late["result"]["models"]
    assert model["source"] == "controller" and model["received_from"] == "controller", model
    assert sorted(model["downloaded_files"]) == files
    assert model["downloaded_bytes"] == one_copy_bytes(reference_host())
    assert late["result"]["restarted"] == [c.UNIT] and late["result"]["ready"] == [c.UNIT]
    (row,) = late["summary"]
    assert row["host"] == LATE and row["received_from"] == "controller", row
