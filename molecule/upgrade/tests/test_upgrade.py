"""After the upgrade from COMMIT_A to COMMIT_B (and a failed attempt in between), then a rollout of a model
the agent cannot load, which the role rolled back to COMMIT_B."""

import json
import os

import jn_checks as c
from tools.hub.hubserver import COMMIT_BROKEN

LINK = "/opt/justnews/models/memory/all-MiniLM-L6-v2"


def saved(host, name="upgrade"):
    return json.loads(host.file("/var/tmp/molecule-%s.json" % name).content_string)


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
    # exactly one start of the unit between the state recorded and the end of the upgrade (journal of this boot)
    out = host.check_output("journalctl -b -u %s --since @%s --until @%s -o cat", c.UNIT, str(start_before + 1),
                            str(data["upgraded_at"]))
    starts = [ln for ln in out.splitlines() if ln.startswith("Started ")]
    assert len(starts) == 1, out


def test_dropin_and_environment(host):
    c.assert_dropin(host, endpoint=c.HUB or None, token=False)
    c.assert_unit_env(host)
    c.assert_no_token_file(host)


def test_ready_from_link_at_b(host):
    c.assert_ready(host, commit=c.COMMIT_B, link=LINK)


# --- the broken model, rolled back --------------------------------------------------------------------------

def test_a_model_the_agent_cannot_load_is_rolled_back_to_the_previous_commit(host):
    data = saved(host, "rollback")
    pid, dropin, ref, link, _started, backups = data["after"]
    assert ref == c.COMMIT_B, data
    assert link == c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B, data
    # the drop-in as it was (HF_HUB_OFFLINE=1 again), and no backup left beside it or in the backup folder
    assert dropin == data["before"][1], data
    assert backups == "0", data
    assert int(pid) != int(data["before"][0]), "the agent was not restarted on the previous state"
    c.assert_dropin(host, endpoint=c.HUB or None, token=False)
    c.assert_unit_env(host)


def test_the_agent_is_ready_again_on_the_previous_commit(host):
    c.assert_ready(host, commit=c.COMMIT_B, link=LINK)
    env = host.file("/etc/justnews/memory.env").content_string
    port = [line.split("=", 1)[1] for line in env.splitlines() if line.startswith("MEMORY_PORT=")][-1]
    answer = c.http_json(host, "http://127.0.0.1:%s/ready" % port.strip())
    assert answer["ready"] is True and answer["commit"] == c.COMMIT_B, answer


def test_the_failure_names_the_unit_both_commits_and_what_readiness_answered(host):
    failure = saved(host, "rollback")["failure"]
    assert c.UNIT in failure, failure
    assert "from %s" % COMMIT_BROKEN in failure and "to %s" % c.COMMIT_B in failure, failure
    assert "awaited GET http://127.0.0.1:" in failure and "last result:" in failure, failure
    assert "Ready again on the previous state: %s" % c.UNIT in failure, failure
    assert "60-hf-cache.conf restored" in failure, failure


def test_the_broken_commit_stays_in_the_cache_for_inspection_but_nothing_points_at_it(host):
    assert host.file(c.repo_dir(c.REPO) + "/snapshots/" + COMMIT_BROKEN).is_directory
    refs = host.check_output("cat %s/refs/main", c.repo_dir(c.REPO))
    assert refs.strip() == c.COMMIT_B
