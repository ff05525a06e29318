"""After the upgrade from COMMIT_A to COMMIT_B (and a failed attempt in between)."""

import json
import os

import jn_checks as c

LINK = "/opt/justnews/models/memory/all-MiniLM-L6-v2"


def saved(host):
    return json.loads(host.file("/var/tmp/molecule-upgrade.json").content_string)


def test_ref_and_link_moved_to_b(host):
    c.assert_snapshot(host, c.REPO, c.COMMIT_B, "main")
    assert host.file(LINK).is_symlink
    assert host.file(LINK).linked_to == c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B


def test_snapshot_a_still_complete(host):
    # A stays in the cache (the role pins, it does not prune)
    assert host.file(c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_A + "/config.json").exists


def test_only_readme_downloaded(host):
    models = saved(host)["result"]["models"]
    assert len(models) == 1
    m = models[0]
    assert m["commit"] == c.COMMIT_B and m["previous_commit"] == c.COMMIT_A, m
    assert [os.path.basename(f) for f in m["downloaded_files"]] == ["README.md"], m["downloaded_files"]
    assert 0 < m["downloaded_bytes"] < 100000


def test_agent_restarted_once(host):
    data = saved(host)
    assert data["result"]["restarted"] == [c.UNIT]
    pid_before, start_before = int(data["before"][0]), int(data["before"][4].lstrip("@"))
    assert c.main_pid(host) != pid_before
    # exactly one start of the unit since the state was recorded (journal of this boot)
    out = host.check_output("journalctl -b -u %s --since @%s -o cat", c.UNIT, str(start_before + 1))
    starts = [ln for ln in out.splitlines() if ln.startswith("Started ")]
    assert len(starts) == 1, out


def test_dropin_and_environment(host):
    c.assert_dropin(host, endpoint=c.HUB or None, token=False)
    c.assert_unit_env(host)
    c.assert_no_token_file(host)


def test_ready_from_link_at_b(host):
    c.assert_ready(host, commit=c.COMMIT_B, link=LINK)
