"""An upstream-layout JustNews host (user adra, MCP-bus gate, env files re-sourced, HTTP readiness), reached over
SSH with pipelining (tools/hosts/ssh.py)."""

import hashlib
import json
import os
from pathlib import Path

import jn_checks as c

ROOTFS = Path(__file__).resolve().parents[3] / "tools" / "hosts" / "rootfs-upstream"
HOST_FILES = ["etc/systemd/system/justnews@.service", "usr/local/bin/justnews-start-agent.sh",
              "etc/justnews/global.env", "etc/justnews/memory.env",
              "etc/systemd/system/justnews@memory.service.d/20-restart-policy.conf"]
READY_URL = "http://127.0.0.1:8007/ready"


def saved(host):
    return json.loads(host.file("/var/tmp/molecule-upstream.json").content_string)


def test_reached_over_ssh_on_its_own_port(host):
    # this verifier connects the way the playbooks did: a login to this container's sshd on the inventory's port
    client, _cport, server, sport = host.check_output("printenv SSH_CONNECTION").split()
    assert (client, server, sport) == ("127.0.0.1", "127.0.0.1", "22180")
    assert host.check_output("hostname") == "mc-upstream"
    conf = host.file("/etc/ssh/sshd_config.d/jn-test.conf").content_string
    assert "Port 22180" in conf and "ListenAddress 127.0.0.1" in conf, conf
    # shipped disabled: started for the run, not at boot
    assert host.run("systemctl is-enabled ssh.service").stdout.strip() == "disabled"


def test_host_is_laid_out_like_upstream(host):
    assert not host.user("justnews").exists
    assert host.user("adra").exists
    assert c.unit_props(host, "User")["User"] == "adra"


def test_unit_start_script_and_env_files_untouched(host):
    for rel in HOST_FILES:
        assert host.file("/" + rel).sha256sum == hashlib.sha256((ROOTFS / rel).read_bytes()).hexdigest(), rel


def test_cache_owned_by_the_units_user(host):
    c.assert_cache_dir(host, user="adra")
    c.assert_snapshot(host, c.REPO, c.COMMIT_B, "main", user="adra")


def test_dropin_and_process_environment(host):
    c.assert_dropin(host, endpoint=c.HUB or None, token=False,
                    other_dropin="/etc/systemd/system/justnews@memory.service.d/20-restart-policy.conf")
    c.assert_unit_env(host, user="adra")


def test_agent_ready_over_http(host):
    r = c.http_json(host, READY_URL)
    assert r["ready"] is True and r["commit"] == c.COMMIT_B and r["offline"] == "1", r
    assert r["pid"] == c.main_pid(host)
    assert c.http_json(host, "http://127.0.0.1:8007/health")["status"] == "ok"


def test_readiness_timeout_names_unit_url_state_journal_and_dropin(host):
    msg = saved(host)["ready_failure"]
    assert "justnews@memory.service is not back and ready within 8 s" in msg, msg
    assert "GET http://127.0.0.1:8007/no-such-path" in msg and "HTTP 404" in msg, msg
    assert "ActiveState=active" in msg and "NRestarts=0" in msg, msg
    assert "/etc/systemd/system/justnews@memory.service.d/60-hf-cache.conf" in msg, msg
    # the agent's own journal lines are in the message
    assert "journalctl -u justnews@memory.service" in msg and "justnews.memory INFO" in msg, msg
    # model_cache_rollback: false leaves the host on the run's state and says so
    assert "Not rolled back (model_cache_rollback is false)" in msg, msg


def test_hf_home_in_global_env_fails_before_any_change(host):
    data = saved(host)
    msg = data["conflict_failure"]
    assert msg.startswith("Nothing was changed"), msg
    assert "/etc/justnews/global.env (HF_HOME)" in msg, msg
    assert "model_cache_token" not in msg, msg            # HF_HOME is no token
    assert data["after_conflict"] == data["before_conflict"]   # same MainPID, drop-in, cache


def test_hf_home_in_global_env_with_warn_reports_the_effective_value(host):
    result = saved(host)["warn_result"]
    assert result["restarted"] == [c.UNIT] and result["ready"] == [c.UNIT]
    assert [(e["key"], e["value"], e["source"]) for e in result["environment"]] == [
        ("HF_HOME", "/srv/hf-elsewhere", "/etc/justnews/global.env")], result["environment"]


def test_remove_removes_what_the_role_made_and_checks_the_agent(host):
    data = saved(host)
    removed = data["removed"]
    assert "60-hf-cache.conf" not in removed and "20-restart-policy.conf" in removed
    assert {"no-token-file", "no-venv", "no-venv-parent"} <= set(removed), removed
    # without the cache settings the agent cannot load its model here: the remove run says so
    msg = data["remove_failure"]
    assert "not back: justnews@memory.service" in msg and "GET http://127.0.0.1:8007/ready" in msg, msg


def test_remove_then_carry_returns_the_host_to_the_same_state(host):
    data = saved(host)
    assert data["prefetched"] == data["converged"]


def test_first_converge_downloaded_every_file_on_the_host(host):
    # source hub over SSH: the host's own download job fetched the snapshot from the Hub
    record = Path(os.environ["UPSTREAM_RECORD_DIR"]) / ("converge-%s.json" % host.check_output("hostname"))
    result = json.loads(record.read_text())
    (model,) = result["models"]
    assert model["source"] == "hub" and model["received_from"] == c.HUB and model["commit"] == c.COMMIT_B, model
    names = sorted(line.split(None, 1)[1][len("./"):] for line in saved(host)["converged_tree"])
    assert sorted(model["downloaded_files"]) == names and "model.safetensors" in names, model
    assert model["downloaded_bytes"] == model["bytes"] > 0, model
    assert result["restarted"] == [c.UNIT] and result["ready"] == [c.UNIT], result


def test_carry_from_the_controller_refilled_the_removed_cache(host):
    data = saved(host)
    # the cache was removed: every file of the snapshot came from the controller over SSH
    assert "/var/cache/hf" not in "\n".join(data["removed"]), data["removed"]
    (model,) = data["carried"]["models"]
    assert model["source"] == "controller" and model["received_from"] == "controller", model
    assert model["commit"] == c.COMMIT_B and model["changed"] is True, model
    names = sorted(line.split(None, 1)[1][len("./"):] for line in data["converged_tree"])
    assert sorted(model["downloaded_files"]) == names and "model.safetensors" in names, model
    assert model["downloaded_bytes"] == model["bytes"] > 0, model
    # the same bytes as the host's own download from the Hub, file for file
    assert data["carried_tree"] == data["converged_tree"]
    assert data["carried"]["restarted"] == [c.UNIT] and data["carried"]["ready"] == [c.UNIT], data["carried"]


def test_second_carry_sends_and_changes_nothing(host):
    (model,) = saved(host)["carried_again"]["models"]
    assert model["changed"] is False and model["received_from"] is None, model
    assert model["downloaded_files"] == [] and model["downloaded_bytes"] == 0, model
    assert saved(host)["carried_again"]["restarted"] == []
