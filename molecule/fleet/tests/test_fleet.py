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
    """Every entry under HF_HOME as the agents read it: path, type, mode, owner, group, size and content hash of
    files. Links are followed: a hub-mode host keeps Xet files in the library's shared store, a host fed by the
    controller as files of the repository, and the library reads both the same."""
    out = host.check_output("find -L %s -path '%s/blobs' -prune -o -path '*/blobs/*' -prune -o "
                            "-printf '%%P|%%y|%%m|%%u|%%g|%%s\\n'", c.HF_HOME, c.HUB_CACHE)
    sums = dict(reversed(line.split("  ", 1)) for line in host.check_output(
        "cd %s && find -L . -path ./hub/blobs -prune -o -path '*/snapshots/*' -type f -print0 | xargs -0 sha256sum",
        c.HF_HOME).splitlines())
    rows = set()
    for line in out.splitlines():
        path, kind, mode, user, group, size = line.split("|")
        if kind != "f" or path.endswith(".lock"):
            size = ""  # directory sizes and the lock files' pid vary
        rows.add((path, kind, mode, user, group, size, sums.get("./" + path, "")))
    return rows


def xet_files(host):
    """Snapshot file name -> Xet hash, from the listing the library cached (trees/<commit>.json)."""
    tree = json.loads(host.file(c.repo_dir(c.REPO) + "/trees/" + c.COMMIT_B + ".json").content_string)
    return {name: entry["xet_hash"] for name, entry in tree["files"].items() if entry.get("xet_hash")}


def reconstructions(stats):
    """Xet hash -> number of reconstructions the CAS answered for it."""
    counts = {}
    for method, path, status in stats["log"]:
        if method == "GET" and "/reconstructions/" in path and status == 200:
            name = path.rsplit("/", 1)[1].split("?")[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


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


def one_copy_bytes(host, names=None):
    """Bytes of one copy of the model's files (all, or those named), whichever layout holds them."""
    snap = c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B
    out = host.check_output("find -L %s -type f -printf '%%P %%s\\n'", snap)
    return sum(int(size) for name, size in (line.rsplit(" ", 1) for line in out.splitlines())
               if names is None or name in names)


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
    assert not host.file("/var/lib/justnews-huggingface/incoming").exists


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
    xet = xet_files(reference_host())
    assert xet, "the Hub serves the model's weights from Xet storage"
    plain = [name for name in files if name not in xet]
    assert file_gets(stats) == {name: 1 for name in plain}, file_gets(stats)
    assert stats["bytes"]["get"] == one_copy_bytes(reference_host(), plain)
    # each Xet file reconstructed once, its compressed xorb ranges read once, nothing through the HTTP bridge
    assert reconstructions(stats) == {h: 1 for h in set(xet.values())}, reconstructions(stats)
    assert 0 < stats["bytes"]["xorb"] <= one_copy_bytes(reference_host(), list(xet))
    assert "bridge" not in stats["bytes"]


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
