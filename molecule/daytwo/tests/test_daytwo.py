"""Day two: each host's diagnosis and fix, the prune, the disk check and the host facts."""

import json
import os
from pathlib import Path

import pytest

import jn_checks as c

RECORD = Path(os.environ["DAYTWO_RECORD_DIR"])
FACT = "/etc/ansible/facts.d/justnews_huggingface.fact"
LARGE = "models--justnews-test--large"


def record(name):
    return json.loads((RECORD / name).read_text())


def findings(host_name):
    return [f for f in record("doctor.json")["findings"] if f["host"] == host_name]


def verdict(host_name, check):
    return {f["verdict"] for f in findings(host_name) if f["check"] == check}


def only(host_name, check):
    (finding,) = [f for f in findings(host_name) if f["check"] == check and "pid" not in f["subject"]]
    return finding


def name(host):
    return host.backend.get_hostname()


def test_doctor_report_covers_every_host():
    report = record("doctor.json")
    assert sorted(report["hosts"]) == ["mc-daytwo-cache", "mc-daytwo-env", "mc-daytwo-ok"]
    for host_name in report["hosts"]:
        checks = {f["check"] for f in findings(host_name)}
        assert checks == {"unit", "cache", "model", "token", "hub", "environment", "journal"}, host_name
    token = Path(os.environ["JUSTNEWS_TEST_HUB_TOKEN_FILE"]).read_text().strip()
    assert token not in (RECORD / "doctor.json").read_text()


def test_healthy_host_passes_every_check():
    bad = [f for f in findings("mc-daytwo-ok") if f["verdict"] not in ("ok", "skip")]
    assert not bad, bad
    assert "accepted by" in only("mc-daytwo-ok", "token")["detail"]
    assert "13 files" in only("mc-daytwo-ok", "model")["detail"]


def test_env_file_override_and_its_journal_are_diagnosed():
    env = only("mc-daytwo-env", "environment")
    assert env["verdict"] == "fail"
    assert "HF_HUB_OFFLINE=0 set by /etc/justnews/global.env" in env["detail"]
    assert "remove HF_HUB_OFFLINE from /etc/justnews/global.env" in env["fix"]
    journal = only("mc-daytwo-env", "journal")
    assert journal["verdict"] == "fail"
    rate_limited = int(journal["detail"].split(" rate-limit line(s)")[0].rsplit(", ", 1)[1])
    assert rate_limited > 0, journal
    # what is healthy on that host is still said to be
    assert verdict("mc-daytwo-env", "model") == {"ok"}
    assert verdict("mc-daytwo-env", "token") == {"ok"}


def test_broken_cache_and_token_are_diagnosed():
    token = only("mc-daytwo-cache", "token")
    assert token["verdict"] == "fail" and "rejects the token" in token["detail"]
    assert "model_cache_token" in token["fix"]
    cache = only("mc-daytwo-cache", "cache")
    assert cache["verdict"] == "fail"
    assert "cannot create locks in /var/cache/hf/hub/.locks/models--sentence-transformers" in cache["detail"]
    assert "justnews" in cache["subject"]
    model = only("mc-daytwo-cache", "model")
    assert model["verdict"] == "fail" and "tokenizer.json" in model["detail"]
    assert "justnews.huggingface.prefetch" in model["fix"]
    assert verdict("mc-daytwo-cache", "journal") == {"ok"}


@pytest.mark.parametrize("host_name", ["mc-daytwo-ok", "mc-daytwo-cache"])
def test_check_mode_gives_the_same_verdicts(host_name):
    checked = record("doctor-check-%s.json" % host_name)
    assert checked["changed"] is False
    assert [(f["check"], f["subject"], f["verdict"]) for f in checked["findings"]] == [
        (f["check"], f["subject"], f["verdict"]) for f in findings(host_name)]


def test_prune_keeps_the_configured_revision_and_frees_the_rest(host):
    if name(host) != "mc-daytwo-ok":
        pytest.skip("pruned on mc-daytwo-ok only")
    result = record("prune.json")
    repo = c.repo_dir(c.REPO)
    assert not host.file(repo + "/snapshots/" + c.COMMIT_A).exists
    assert host.file(repo + "/snapshots/" + c.COMMIT_B).is_directory
    assert host.file(repo + "/refs/main").content_string.strip() == c.COMMIT_B
    assert c.http_json(host, "http://127.0.0.1:18501/ready")["ready"] is True
    check, run, again = result["check"], result["run"], result["again"]
    assert int(check["freed_bytes"]) == int(run["freed_bytes"]) > 0
    assert result["du_after_check"] == result["du_before"]  # check mode removed nothing
    removed = json.dumps(run["removed_revisions"])
    assert c.COMMIT_A in removed and c.COMMIT_B not in removed
    assert check["removed_revisions"] == run["removed_revisions"]  # check mode named what the run removed
    assert again["removed_revisions"] == [] and int(again["freed_bytes"]) == 0


def test_disk_check_refuses_a_model_that_does_not_fit(host):
    if name(host) != "mc-daytwo-ok":
        pytest.skip("checked on mc-daytwo-ok only")
    result = record("disk.json")
    assert "no_space" in result["error"] or "free" in result["error"], result["error"]
    assert "justnews-test/large" in result["error"]
    assert result["stats"]["requests"].get("get", 0) == 0  # nothing was downloaded
    assert result["stats"]["requests"].get("reconstruction", 0) == 0 and "xorb" not in result["stats"]["requests"]
    assert result["pid_after"] == result["pid_before"]  # the agent was left alone
    assert not host.file(c.HUB_CACHE + "/" + LARGE + "/blobs").exists or host.check_output(
        "find %s -type f | wc -l", c.HUB_CACHE + "/" + LARGE + "/blobs") == "0"


def test_host_facts(host):
    fact = json.loads(host.file(FACT).content_string)
    (model,) = fact["models"]
    commit = c.COMMIT_B if name(host) == "mc-daytwo-ok" else c.COMMIT_A
    assert (model["repo_id"], model["commit"], model["files"]) == (c.REPO, commit, 13)
    assert model["bytes"] > 90_000_000 and model["last_fetched"] and model["last_verified"]
    local = host.ansible("setup", "filter=ansible_local")["ansible_facts"]["ansible_local"]
    assert local["justnews_huggingface"]["models"][0]["commit"] == commit
