"""hf_units as Ansible runs it (arguments in, JSON out), with systemctl and journalctl answered by a fake: each
failure has its error_kind and fix, and the readiness URL is read from a real local server."""

import http.server
import json
import subprocess
import sys
import threading

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors, _systemd
from ansible_collections.justnews.huggingface.plugins.modules import hf_units

UNIT = "justnews@memory.service"


def show(active="active", invocation="new", user="root"):
    return ("LoadState=loaded\nActiveState=%s\nSubState=running\nResult=success\nUser=%s\nGroup=\nMainPID=4242\n"
            "NRestarts=0\nInvocationID=%s\nEnvironment=\n" % (active, user, invocation))


@pytest.fixture
def systemd(monkeypatch):
    """The module's commands: systemd runs, the unit answers `fake.show`, its journal one line."""
    fake = type("Fake", (), {"show": show(), "calls": []})()

    def run_command(module, argv, timeout=30):
        assert module.params["phase"]  # the module's own run_command runs the commands
        fake.calls.append((argv, timeout))
        if argv[:2] == ["systemctl", "is-system-running"]:
            return 0, "running\n", ""
        if argv[:2] == ["systemctl", "show"]:
            return 0, fake.show, ""
        if argv[0] == "journalctl":
            return 0, "justnews.memory INFO started\n", ""
        raise AssertionError(argv)

    monkeypatch.setattr(_systemd, "run_command", run_command)
    return fake


def run(args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        hf_units.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("args, words", [
    ({"phase": "verify", "ready_timeout": -1}, "ready_timeout must be at least 0"),
    ({"phase": "verify", "command_timeout": 0}, "command_timeout must be at least 1"),
    ({"phase": "verify", "interval": 0}, "interval must be a positive number"),
    ({"phase": "verify", "units": [{"name": UNIT}], "restarted": ["other.service"]},
     "restarted names other.service, which units does not list"),
    ({"phase": "preflight", "dir_mode": "rwxr-x---"}, 'dir_mode must be an octal string such as "0750"'),
])
def test_an_option_out_of_range_fails_with_invalid_argument_and_its_fix(args, words, capsys, systemd):
    result = run(args, capsys)
    assert result["failed"] and result["error_kind"] == "invalid_argument" and words in result["msg"]
    assert result["fix"] == _errors.fix(_errors.INVALID_ARGUMENT)
    assert systemd.calls == []  # nothing was read


def test_a_mode_the_callers_problems_already_name_is_left_to_them(capsys, systemd):
    result = run({"phase": "preflight", "dir_mode": "750x", "owner": "root", "group": "root",
                  "problems": ['model_cache_dir_mode and model_cache_file_mode must be octal strings such as "0750"']},
                 capsys)
    assert result["error_kind"] == "preflight" and result["problems"] == [
        'model_cache_dir_mode and model_cache_file_mode must be octal strings such as "0750"']


def test_the_module_must_run_as_root(capsys, systemd, monkeypatch):
    monkeypatch.setattr(hf_units.os, "geteuid", lambda: 1000)
    result = run({"phase": "preflight"}, capsys)
    assert result["error_kind"] == "not_root" and result["fix"] == "run the task with become: true"


def test_a_preflight_with_problems_fails_once_naming_them_all(capsys, systemd):
    systemd.show = show().replace("LoadState=loaded", "LoadState=not-found")
    result = run({"phase": "preflight", "units": [{"name": UNIT}, {"name": "agent.service"}], "host_name": "h1",
                  "agent_ports": {"memory": 8007}}, capsys)
    assert result["failed"] and result["error_kind"] == "preflight" and not result["changed"]
    assert result["msg"].startswith("Nothing was changed on h1: 3 problem(s) to fix first. (1) unit"), result["msg"]
    assert result["fix"].startswith("nothing was changed")
    assert set(result["units"]) == {UNIT, "agent.service"} and result["owner"] == "root"


def test_a_clean_preflight_returns_what_the_later_steps_use(capsys, systemd):
    result = run({"phase": "preflight", "units": [{"name": UNIT}], "agent_ports": {"memory": 8007}}, capsys)
    assert not result.get("failed") and not result["changed"]
    assert result["booted"] is True and result["system_state"] == "running"
    assert (result["owner"], result["group"], result["conflicts"], result["problems"]) == ("root", "root", [], [])
    assert result["units"][UNIT]["ready_target"] == "http://127.0.0.1:8007/ready"
    assert all(timeout == 30 for _argv, timeout in systemd.calls)  # every command under its deadline


def test_a_unit_not_back_fails_with_not_ready(capsys, systemd):
    systemd.show = show(active="failed")
    result = run({"phase": "verify", "units": [{"name": UNIT, "ready": False}], "restarted": [UNIT],
                  "ready_timeout": 0, "dropin_name": "60-hf-cache.conf"}, capsys)
    assert result["error_kind"] == "not_ready" and result["ready"] == []
    assert "%s is not back and ready within 0 s of its restart" % UNIT in result["msg"]
    assert "'units' (model_cache_units)" in result["fix"] and "'ready_timeout' (model_cache_ready_timeout)" in \
        result["fix"]


def test_processes_with_other_settings_fail_with_env_overridden(capsys, systemd, monkeypatch):
    monkeypatch.setattr(_systemd, "run_as", lambda user, func, *args, **kw: [[4242, {"HF_HUB_OFFLINE": "0"}]])
    result = run({"phase": "verify", "units": [{"name": UNIT}], "expected_env": {"HF_HUB_OFFLINE": 1}}, capsys)
    assert result["error_kind"] == "env_overridden" and result["environment"][0]["value"] == "0"
    assert "'env_conflicts' (model_cache_env_conflicts)" in result["fix"]


def test_without_expected_env_the_processes_must_see_what_the_dropin_sets(capsys, systemd, monkeypatch):
    seen = {}

    def run_as(user, func, *args, **kw):
        seen["keys"] = args[1]
        return [[4242, {"HF_HOME": "/srv/hf", "HF_HUB_CACHE": "/srv/hf/hub", "HF_HUB_OFFLINE": None,
                        "HF_TOKEN": "secret", "HF_ENDPOINT": "https://mirror.example"}]]

    monkeypatch.setattr(_systemd, "run_as", run_as)
    result = run({"phase": "verify", "units": [{"name": UNIT}], "environment": {
        "hf_home": "/srv/hf", "offline": True, "endpoint": "https://mirror.example", "token": "secret"}}, capsys)
    assert seen["keys"] == ["HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"]
    assert result["error_kind"] == "env_overridden"
    assert [(e["key"], e["value"]) for e in result["environment"]] == [("HF_HUB_OFFLINE", "<unset>")]


def test_a_verification_that_passes_changes_nothing(capsys, systemd):
    result = run({"phase": "verify", "units": [{"name": UNIT, "ready": False}], "restarted": [UNIT]}, capsys)
    assert not result.get("failed") and not result["changed"] and result["ready"] == [UNIT]


# --- the readiness URL ---------------------------------------------------------------------------------------

class Agent(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        body = b'{"ready": true}' if self.path == "/ready" else b"not here"
        self.send_response(200 if self.path == "/ready" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_get_reads_the_answer_the_status_and_a_refused_connection():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d" % server.server_port
        assert _systemd.http_get(url + "/ready", 5)[::2] == (200, '{"ready": true}')
        assert _systemd.http_get(url + "/no-such-path", 5)[::2] == (404, "not here")
        assert _systemd.ready_url(_systemd.http_get, url + "/ready", 5) == (True, 200, '{"ready": true}')
    finally:
        server.shutdown()
        server.server_close()
    status, _headers, text = _systemd.http_get(url + "/ready", 5)  # nothing listens there any more
    assert status is None and "refused" in text.lower(), text


def test_the_preflight_settles_a_host_with_nothing_to_do_in_its_one_call(capsys, systemd, monkeypatch, tmp_path):
    """settle: the fetch plan runs in a real child of the fetch interpreter (here this one, which has
    huggingface_hub); the cache lacks the model, so the host is not settled, and the token stays hidden."""
    import subprocess
    import sys
    fake_systemd = _systemd.run_command
    children = []

    def run_command(module, argv, timeout=30):
        if argv[0] != sys.executable:
            return fake_systemd(module, argv, timeout)
        children.append(argv)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    monkeypatch.setattr(_systemd, "run_command", run_command)
    settle = {"models": [{"repo_id": "org/model", "revision": "a" * 40}],
              "fetch": {"cache_dir": str(tmp_path / "hub"), "endpoint": "http://127.0.0.1:9"},
              "environment": {"units": [UNIT], "systemd_dir": str(tmp_path / "systemd"), "hf_home": str(tmp_path),
                              "token": "hf_s3cretTOKEN42", "facts_file": str(tmp_path / "f.fact")}}
    args = {"phase": "preflight", "units": [{"name": UNIT}], "agent_ports": {"memory": 8007},
            "fetch_python": sys.executable, "fetch_python_named": True, "settle": settle}
    result = run(args, capsys)
    assert not result.get("failed") and result["settled"] is False and result["models"] == []
    assert result["unsettled"] == ["org/model: the fetch asks the Hub (listing the files of %s)" % ("a" * 40)]
    assert "hf_s3cretTOKEN42" not in json.dumps(result)
    assert not (tmp_path / "hub").exists() and not (tmp_path / "systemd").exists()

    assert len(children) == 1

    # with requirements to check, the check and the plan share one child: the interpreter starts once
    children.clear()
    result = run(dict(args, fetch_requirements=["huggingface_hub>=2.0"]), capsys)
    assert result["fetch_tool"]["satisfied"] and len(children) == 1
    assert result["unsettled"] == ["org/model: the fetch asks the Hub (listing the files of %s)" % ("a" * 40)]
    # a requirement that is not met: the plan is not run, and the host is not settled
    result = run(dict(args, fetch_requirements=["huggingface_hub<1"]), capsys)
    assert result["settled"] is False and result["unsettled"] == ["the fetch tool is not installed as required"]

    # without the fetch tool the plan is not even tried
    result = run(dict(args, fetch_python=str(tmp_path / "none"), fetch_python_named=False), capsys)
    assert result["settled"] is False and result["unsettled"] == ["the fetch tool is not installed as required"]
