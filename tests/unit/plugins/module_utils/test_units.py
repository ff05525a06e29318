"""hf_units' preflight and verification, with systemd answered by fakes (`systemctl show` texts, journal lines),
real EnvironmentFiles, a real child switched to an unprivileged user, a local HTTP server for /ready and real
readiness commands."""

import functools
import http.server
import json
import os
import threading
import time

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env, _systemd, _units
from ansible_collections.justnews.huggingface.plugins.modules import hf_units

UNIT = "justnews@memory.service"
OTHER = "justnews@critic.service"
PORTS = {"memory": 8007, "critic": 8006}
EXPECTED = {"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "1",
            "HF_TOKEN": "<unset>"}
MANAGED = list(_agent_env.MANAGED_ENV)
TOKEN = "s3cr3t-mirror-token-42"  # a mirror's token: not shaped like hf_...


@functools.lru_cache(maxsize=None)
def ansible_module():
    """A module with no options: _systemd.run_command runs commands through its run_command."""
    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


def show(user="nobody", group="", env_files=(), load="loaded", active="active", sub="running", pid=4242,
         invocation="0123abcd", restarts=0, environment="HF_HOME=/var/cache/hf", result="success"):
    lines = ["Id=x", "LoadState=" + load, "ActiveState=" + active, "SubState=" + sub, "Result=" + result,
             "User=" + user, "Group=" + group, "SupplementaryGroups=", "MainPID=%d" % pid, "NRestarts=%d" % restarts,
             "InvocationID=" + invocation, "Environment=" + environment]
    lines += ["EnvironmentFiles=%s (ignore_errors=yes)" % f for f in env_files]
    return "\n".join(lines) + "\n"


class Systemd:
    """A fake systemctl and journalctl: `units` maps a unit to its `systemctl show` text, or to a list of texts
    given one after the other (the last one stays)."""

    def __init__(self, units, state="running", journal="justnews.memory INFO loading all-MiniLM-L6-v2"):
        self.units, self.state, self.journal, self.calls = units, state, journal, []

    def __call__(self, argv, timeout=None):
        self.calls.append(argv)
        if argv[:2] == ["systemctl", "is-system-running"]:
            return (0 if self.state == "running" else 1), self.state + "\n", ""
        if argv[:2] == ["systemctl", "show"]:
            answer = self.units[argv[-1]]
            if isinstance(answer, list):
                answer = answer.pop(0) if len(answer) > 1 else answer[0]
            if answer is None:
                return None, "", "did not finish within 30 s; it was killed"
            return 0, answer, ""
        if argv[0] == "journalctl":
            assert argv[-2:] == ["-u", argv[-1]] and "-n" in argv
            return 0, self.journal + "\n", ""
        return _systemd.run_command(ansible_module(), argv, timeout=timeout or 30)  # a readiness command runs


def real_as_user(user, func, *args):
    return _systemd.run_as(user, func, *args, timeout=10)


def params(**extra):
    p = dict(phase="preflight", state="present", units=[{"name": UNIT, "ready": True, "ready_path": "/ready"}],
             agent_ports=PORTS, owner="", group="", dir_mode=0o750, file_mode=0o640, dir_mode_text="0750",
             file_mode_text="0640", managed_env=MANAGED, token_file="/etc/justnews/huggingface-token.env",
             env_conflicts="fail", dropin_name="60-hf-cache.conf", problems=[], host_name="host1", restarted=[],
             previous={}, restart_errors={}, expected_env={}, ready_timeout=2, interval=0.05, http_timeout=2,
             journal_lines=15, command_timeout=10)
    p.update(extra)
    return p


def preflight(systemd, as_user=real_as_user, **extra):
    return _units.Preflight(params(**extra), systemd, as_user).run()


# --- what the preflight reads ----------------------------------------------------------------------------------

def test_a_host_without_systemd_reads_no_unit_and_asks_for_owner_and_group():
    systemd = Systemd({}, state="offline")
    result = preflight(systemd)
    assert result["booted"] is False and result["system_state"] == "offline"
    assert [c[:2] for c in systemd.calls] == [["systemctl", "is-system-running"]]
    assert result["owner"] == result["group"] == "root"
    assert result["problems"] == ["model_cache_owner/model_cache_group are empty and systemd is not running, so the"
                                  " units' User=/Group= cannot be read: set both"]
    assert preflight(Systemd({}, state="offline"), owner="nobody", group="nogroup")["problems"] == []


def test_a_hung_systemctl_is_no_systemd_and_says_so():
    def hung(argv, timeout=None):
        return None, "", "did not finish within 30 s; it was killed"
    result = preflight(hung, owner="nobody", group="nogroup")
    assert result["booted"] is False and "did not finish within 30 s" in result["system_state"]


def test_the_units_user_and_its_primary_group_become_the_cache_owner():
    result = preflight(Systemd({UNIT: show(env_files=["/nonexistent/global.env"])}), dir_mode=0o755, file_mode=0o644)
    assert result["problems"] == [], result["problems"]
    assert (result["owner"], result["group"]) == ("nobody", "nogroup")
    unit = result["units"][UNIT]
    assert (unit["user"], unit["group"], unit["groups"]) == ("nobody", "nogroup", ["nogroup"])
    assert unit["env_files"] == ["/nonexistent/global.env"]
    assert (unit["ready_kind"], unit["ready_target"]) == ("http", "http://127.0.0.1:8007/ready")
    assert (unit["main_pid"], unit["invocation_id"], unit["load_state"]) == (4242, "0123abcd", "loaded")


def test_units_that_disagree_on_user_and_group_are_each_named():
    units = [{"name": UNIT}, {"name": OTHER}]
    result = preflight(Systemd({UNIT: show(user="nobody"), OTHER: show(user="root")}), units=units)
    assert result["owner"] == result["group"] == ""
    assert ("the units run as different users (justnews@memory.service: nobody, justnews@critic.service: root):"
            " set model_cache_owner, and let the others read the cache through model_cache_group or the modes"
            in result["problems"])
    assert ("the units run with different groups (justnews@memory.service: nogroup, justnews@critic.service: root):"
            " set model_cache_group" in result["problems"])
    assert preflight(Systemd({UNIT: show(user="nobody"), OTHER: show(user="root")}), units=units, owner="root",
                     group="root", dir_mode=0o755, file_mode=0o644)["problems"] == []


def test_a_unit_not_loaded_one_without_readiness_check_and_a_missing_owner_are_each_a_problem():
    units = [{"name": UNIT}, {"name": "other.service"}]
    result = preflight(Systemd({UNIT: show(user="root", load="not-found"), "other.service": show(user="root")}),
                       units=units, owner="no-such-user-here", group="no-such-group-here")
    assert result["problems"] == [
        "the cache owner no-such-user-here does not exist on host1: set model_cache_owner to the user the agents"
        " run as",
        "the cache group no-such-group-here does not exist on host1: set model_cache_group",
        "unit justnews@memory.service is not loaded: install it (for JustNews the justnews@.service template) or"
        " fix its name in model_cache_units",
        "unit other.service has no known readiness check: set ready_url, ready_port, ready_command or ready: false"
        " in its model_cache_units entry"]
    assert result["msg"].startswith("Nothing was changed on host1: 4 problem(s) to fix first. (1) the cache owner")


def test_state_absent_checks_no_owner_readiness_or_environment_files(tmp_path):
    env = tmp_path / "global.env"
    env.write_text("HF_HOME=/srv/elsewhere\n")
    result = preflight(Systemd({"other.service": show(load="not-found", env_files=[str(env)])}), state="absent",
                       units=[{"name": "other.service"}], owner="no-such-user-here")
    assert result["problems"] == [] and result["conflicts"] == []


def test_the_callers_problems_come_first_in_the_one_message():
    result = preflight(Systemd({UNIT: show(load="masked")}),
                       problems=["model_cache_dropin_name must be a file name ending in .conf"])
    assert result["msg"] == (
        "Nothing was changed on host1: 2 problem(s) to fix first. (1) model_cache_dropin_name must be a file name"
        " ending in .conf. (2) unit justnews@memory.service is not loaded: install it (for JustNews the"
        " justnews@.service template) or fix its name in model_cache_units.")


# --- whether each unit's user will read the cache ----------------------------------------------------------------

@pytest.mark.parametrize("uid, user, groups, dirs, files, readable", [
    (0, "root", [], 0o700, 0o600, True),          # root reads everything
    (1000, "adra", ["adra"], 0o750, 0o640, True),  # the owner's bits
    (1000, "adra", ["adra"], 0o070, 0o040, False),  # the owner is judged by the owner's bits only
    (1001, "bob", ["justnews"], 0o750, 0o640, True),  # a member of the group
    (1001, "bob", ["bob"], 0o750, 0o640, False),  # anyone else: the others' bits
    (1001, "bob", ["bob"], 0o755, 0o644, True),
    (1001, "bob", ["bob"], 0o751, 0o644, False),  # x without r: the folder cannot be listed
    (None, "ghost", [], 0o750, 0o640, False),  # a user the host does not know
])
def test_reading_follows_the_permission_classes(uid, user, groups, dirs, files, readable):
    assert _systemd.reads(uid, user, groups, "adra", "justnews", dirs, files) is readable


def test_a_user_outside_the_cache_group_is_told_how_to_read_it():
    result = preflight(Systemd({UNIT: show(user="nobody")}), owner="root", group="root")
    assert result["problems"] == [
        "unit justnews@memory.service runs as nobody (groups: nogroup), which cannot read the cache (root:root,"
        " dirs 0750, files 0640): set model_cache_owner to nobody, add nobody to group root, or widen"
        " model_cache_dir_mode / model_cache_file_mode"]
    # the user's group, looked up as that user in a child, or the unit's own Group=, lets it read
    assert preflight(Systemd({UNIT: show(user="nobody")}), owner="root", group="nogroup")["problems"] == []
    assert preflight(Systemd({UNIT: show(user="nobody", group="daemon")}), owner="root",
                     group="daemon")["problems"] == []


def test_a_user_lookup_that_hangs_is_a_problem_with_its_deadline():
    def as_user(user, func, *args):
        return _systemd.ChildTimeout(30)
    result = preflight(Systemd({UNIT: show(user="nobody")}), as_user=as_user, owner="root", group="root",
                       dir_mode=0o755, file_mode=0o644)
    assert result["problems"] == ["looking up the user nobody of unit justnews@memory.service did not finish within"
                                  " 30 s; it was killed: check the host's user database (getent passwd nobody;"
                                  " NSS, sssd or LDAP)"]


# --- EnvironmentFiles that override the drop-in ------------------------------------------------------------------

def env_units(tmp_path, **files):
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    return paths


def test_an_environment_file_that_overrides_the_drop_in_is_named_without_its_value(tmp_path):
    paths = env_units(tmp_path, **{"global.env": "export HF_HOME=/srv/hf-elsewhere\nMEMORY_PORT=8007\n",
                                   "memory.env": "MODEL_STORE_ROOT=/srv/models\n"})
    token_file = tmp_path / "huggingface-token.env"
    token_file.write_text("HF_TOKEN=%s\nHF_HUB_TOKEN=%s\n" % (TOKEN, TOKEN))
    systemd = Systemd({UNIT: show(env_files=paths + [str(token_file)])})
    result = preflight(systemd, token_file=str(token_file), dir_mode=0o755, file_mode=0o644)
    assert result["conflicts"] == [{"file": paths[0], "names": ["HF_HOME"]}]  # the token file is the drop-in's
    assert result["conflict_keys"] == ["HF_HOME"]
    (problem,) = result["problems"]
    assert problem == (
        "%s (HF_HOME) set variables that the drop-in 60-hf-cache.conf manages (values not shown). The start script"
        " re-sources these files, so they win over the drop-in: remove HF_HOME from them, or set"
        " model_cache_env_conflicts: warn" % paths[0])
    assert "model_cache_token" not in problem and "/srv/hf-elsewhere" not in json.dumps(result)
    assert TOKEN not in json.dumps(result)


def test_a_token_in_an_environment_file_is_pointed_at_model_cache_token(tmp_path):
    paths = env_units(tmp_path, **{"memory.env": "HF_HUB_TOKEN=%s\nHF_HUB_OFFLINE=0\n" % TOKEN})
    result = preflight(Systemd({UNIT: show(env_files=paths)}), dir_mode=0o755, file_mode=0o644)
    assert "(HF_HUB_TOKEN, HF_HUB_OFFLINE)" in result["problems"][0]
    assert "remove HF_HUB_TOKEN, HF_HUB_OFFLINE from them (give the token in model_cache_token instead)" in \
        result["problems"][0]
    assert TOKEN not in json.dumps(result)


def test_with_warn_an_override_is_a_warning_not_a_problem(tmp_path):
    paths = env_units(tmp_path, **{"global.env": "HF_HOME=/srv/hf-elsewhere\n"})
    p = _units.Preflight(params(env_conflicts="warn", dir_mode=0o755, file_mode=0o644),
                         Systemd({UNIT: show(env_files=paths)}), real_as_user)
    result = p.run()
    assert result["problems"] == [] and result["conflict_keys"] == ["HF_HOME"]
    assert result["warnings"] == ["%s (HF_HOME) override the drop-in 60-hf-cache.conf (values not shown). The"
                                  " verification reports the values the agents really use." % paths[0]]


def test_an_environment_file_that_is_a_fifo_is_a_problem_and_never_read(tmp_path):
    fifo = tmp_path / "memory.env"
    os.mkfifo(fifo)
    started = time.monotonic()
    result = preflight(Systemd({UNIT: show(env_files=[str(fifo)])}), dir_mode=0o755, file_mode=0o644)
    assert time.monotonic() - started < 5
    (problem,) = result["problems"]
    assert problem.startswith("the EnvironmentFile %s is a FIFO; it was not read: replace it" % fifo), problem


# --- readiness checks --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, check", [
    ({"name": UNIT}, ("http", "http://127.0.0.1:8007/ready")),
    ({"name": UNIT, "ready_path": "/health"}, ("http", "http://127.0.0.1:8007/health")),
    ({"name": "justnews@scout.service", "ready_port": 9002}, ("http", "http://127.0.0.1:9002/ready")),
    ({"name": "agent.service", "ready_url": "http://127.0.0.1:1/up"}, ("http", "http://127.0.0.1:1/up")),
    ({"name": UNIT, "ready_command": "/usr/local/bin/ready --unit memory"},
     ("command", "/usr/local/bin/ready --unit memory")),
    ({"name": UNIT, "ready": False}, ("none", "http://127.0.0.1:8007/ready")),
    ({"name": "agent.service"}, ("unknown", "")),
])
def test_the_readiness_check_of_a_unit(entry, check):
    assert _systemd.ready_check(entry, PORTS) == check


@pytest.mark.parametrize("status, body, ready", [
    (200, '{"ready": true}', True), (200, '{"ready": false}', False), (200, "ok", True), (200, '{"up": 1}', True),
    (200, '{"ready": "yes"}', False), (503, '{"ready": true}', False), (None, "refused", False)])
def test_a_readiness_answer_means_ready_only_when_200_and_not_false(status, body, ready):
    assert _systemd.ready_answer(status, body) is ready


# --- the verification --------------------------------------------------------------------------------------------

class Ready(http.server.BaseHTTPRequestHandler):
    """Answers /ready with the next of the server's `answers` (the last one stays); other paths 404."""

    def do_GET(self):  # noqa: N802 - the name http.server calls
        if self.path != "/ready":
            self.send_error(404)
            return
        answers = self.server.answers
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def agent():
    """A local HTTP server standing in for an agent's /ready; set `answers` to [(status, body), ...]."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    server.answers = [(200, '{"ready": true}')]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def verify(systemd, as_user=real_as_user, **extra):
    checks = _units.Verify(params(phase="verify", **extra), systemd, as_user, _systemd.http_get)
    return checks.run(), checks


def restarted_unit(port, path="/ready", **extra):
    """The parameters of a verification after a restart of UNIT, whose readiness is GET <path> on `port`."""
    extra.update(units=[{"name": UNIT, "ready_port": port, "ready_path": path}], restarted=[UNIT],
                 previous={UNIT: {"main_pid": 4000, "invocation_id": "old"}})
    return extra


def test_a_restarted_unit_is_back_once_its_new_process_answers_ready_true(agent):
    agent.answers = [(503, "loading"), (200, '{"ready": false}'), (200, '{"ready": true}')]
    systemd = Systemd({UNIT: [show(active="activating", sub="start", pid=0, invocation="new"), show(invocation="new")]})
    result, _checks = verify(systemd, **restarted_unit(agent.server_port, ready_timeout=10))
    assert result["ready"] == [UNIT] and result["not_ready"] == []
    assert result["msg"] == "Restarted %s: all back and ready (%s)." % (UNIT, UNIT)
    assert result["units"][UNIT]["invocation_id"] == "new"


def test_a_unit_that_never_answers_ready_is_named_with_what_was_awaited_its_state_and_journal(agent):
    started = time.monotonic()
    systemd = Systemd({UNIT: show(invocation="new")})
    result, _checks = verify(systemd, **restarted_unit(agent.server_port, path="/no-such-path", ready_timeout=1))
    assert time.monotonic() - started < 5
    (entry,) = result["not_ready"]
    url = "http://127.0.0.1:%d/no-such-path" % agent.server_port
    assert entry["awaited"] == "GET %s answering 200 with ready: true" % url and entry["last"] == "HTTP 404"
    msg = result["msg"]
    assert msg.startswith("Restarted %s; back and ready: none; not back: %s. " % (UNIT, UNIT)), msg
    assert "%s is not back and ready within 1 s of its restart: awaited GET %s" % (UNIT, url) in msg
    assert "last result: HTTP 404." in msg
    assert "systemctl: ActiveState=active SubState=running Result=success MainPID=4242 NRestarts=0." in msg
    assert "Drop-in: /etc/systemd/system/justnews@memory.service.d/60-hf-cache.conf." in msg
    assert "Last 15 lines of journalctl -u %s:\njustnews.memory INFO loading" % UNIT in msg
    assert result["ready"] == []


def test_a_unit_still_running_its_process_from_before_the_restart_is_not_back(agent):
    systemd = Systemd({UNIT: show(invocation="old", pid=4000)})
    result, _checks = verify(systemd, **restarted_unit(agent.server_port, ready_timeout=0))
    assert result["not_ready"][0]["last"] == "the unit still runs MainPID 4000, the process from before its restart"


def test_a_unit_that_fails_to_start_says_so_and_the_restart_error_is_quoted(agent):
    systemd = Systemd({UNIT: show(active="failed", sub="failed", result="exit-code", pid=0, invocation="new",
                                  restarts=3)})
    result, _checks = verify(systemd, **restarted_unit(
        agent.server_port, ready_timeout=0, state="absent",
        restart_errors={UNIT: "Unable to restart service %s: Job failed" % UNIT}))
    (entry,) = result["not_ready"]
    assert entry["last"] == "the unit is failed/failed (Result=exit-code)"
    assert "NRestarts=3" in entry["state"]
    assert ("Drop-in: /etc/systemd/system/justnews@memory.service.d/60-hf-cache.conf (removed); systemctl restart"
            " said: Unable to restart service %s: Job failed." % UNIT) in result["msg"]


def test_a_unit_not_restarted_needs_only_to_be_active():
    units = [{"name": UNIT}, {"name": OTHER}]
    systemd = Systemd({UNIT: show(), OTHER: show(active="inactive", sub="dead", pid=0)})
    result, _checks = verify(systemd, units=units)
    assert result["ready"] == [UNIT]
    (entry,) = result["not_ready"]
    assert (entry["unit"], entry["awaited"], entry["last"]) == (OTHER, "ActiveState=active", "inactive")
    assert result["msg"].startswith("%s is not ready: awaited ActiveState=active; last result: inactive." % OTHER)


def test_a_readiness_command_runs_until_it_exits_0(tmp_path):
    marker = tmp_path / "ready"
    script = tmp_path / "ready.sh"
    script.write_text("#!/bin/sh\n[ -e %s ] && exit 0\ntouch %s\necho 'still loading' >&2\nexit 3\n" % (marker, marker))
    script.chmod(0o755)
    units = [{"name": UNIT, "ready_command": "%s --unit memory" % script}]
    result, _checks = verify(Systemd({UNIT: show(invocation="new")}), units=units, restarted=[UNIT], ready_timeout=10)
    assert result["ready"] == [UNIT] and marker.exists()
    units = [{"name": UNIT, "ready_command": "sh -c 'echo never >&2; exit 3'"}]
    result, _checks = verify(Systemd({UNIT: show(invocation="new")}), units=units, restarted=[UNIT], ready_timeout=0)
    assert result["not_ready"][0]["awaited"] == "the command `sh -c 'echo never >&2; exit 3'` exiting 0"
    assert result["not_ready"][0]["last"] == "rc 3: never"


def test_a_readiness_command_that_hangs_is_killed_at_the_deadline():
    units = [{"name": UNIT, "ready_command": "sleep 60"}]
    started = time.monotonic()
    result, _checks = verify(Systemd({UNIT: show(invocation="new")}), units=units, restarted=[UNIT], ready_timeout=1,
                             command_timeout=30)
    assert time.monotonic() - started < 6
    assert result["not_ready"][0]["last"].startswith("the command did not finish within")


def test_the_wait_ends_at_its_deadline_with_a_fake_clock(agent):
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    agent.answers = [(200, '{"ready": false}')]
    checks = _units.Verify(params(phase="verify", **restarted_unit(agent.server_port, ready_timeout=7, interval=2)),
                           Systemd({UNIT: show(invocation="new")}), real_as_user, _systemd.http_get,
                           clock=lambda: now[0], sleep=sleep)
    result = checks.run()
    assert slept == [2, 2, 2, 1] and result["not_ready"][0]["last"] == 'HTTP 200 {"ready": false}'


# --- the processes' settings -------------------------------------------------------------------------------------

def environ_of(values):
    def as_user(user, func, *args):
        assert user == "nobody" and func is _systemd.process_environment  # the unit's user, never root
        pid, keys = args
        return [[pid, {k: values.get(k) for k in keys}], [pid + 1, {k: values.get(k) for k in keys}]]
    return as_user


def test_processes_that_run_with_the_drop_in_settings_are_reported():
    env = {"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "1"}
    result, checks = verify(Systemd({UNIT: show()}), as_user=environ_of(env), expected_env=EXPECTED)
    assert result["environment"] == [] and not checks.env_failed
    assert result["msg"] == ("%s run with HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN as the drop-in sets them"
                             " (MainPID and children)." % UNIT)


def test_a_value_from_an_environment_file_fails_or_with_warn_is_reported_with_its_file(tmp_path):
    paths = env_units(tmp_path, **{"global.env": "HF_HOME=/srv/hf-elsewhere\n"})
    env = {"HF_HOME": "/srv/hf-elsewhere", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "1"}
    systemd = Systemd({UNIT: show(env_files=paths)})
    result, checks = verify(systemd, as_user=environ_of(env), expected_env=EXPECTED)
    assert checks.env_failed
    assert result["environment"] == [
        {"unit": UNIT, "pid": 4242, "key": "HF_HOME", "value": "/srv/hf-elsewhere", "source": paths[0]},
        {"unit": UNIT, "pid": 4243, "key": "HF_HOME", "value": "/srv/hf-elsewhere", "source": paths[0]}]
    assert result["msg"].startswith(
        "The running agents do not use the drop-in's settings: %s (pid 4242) has HF_HOME=/srv/hf-elsewhere, the"
        " drop-in sets /var/cache/hf; set by %s, which the start script re-sources." % (UNIT, paths[0]))
    result, checks = verify(systemd, as_user=environ_of(env), expected_env=EXPECTED, env_conflicts="warn")
    assert not checks.env_failed and len(result["environment"]) == 2


def test_a_value_no_environment_file_explains_fails_even_with_warn():
    env = {"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "0",
           "HF_TOKEN": TOKEN}
    result, checks = verify(Systemd({UNIT: show()}), as_user=environ_of(env), expected_env=EXPECTED,
                            env_conflicts="warn")
    assert checks.env_failed
    keys = {(e["key"], e["value"], e["source"]) for e in result["environment"]}
    assert keys == {("HF_HUB_OFFLINE", "0", ""), ("HF_TOKEN", "<set>", "")}  # the token only as set/unset
    assert "not from the unit's EnvironmentFiles: look for a later drop-in or the start script" in result["msg"]
    assert TOKEN not in json.dumps(result)


def test_a_process_whose_environment_cannot_be_read_fails():
    def as_user(user, func, *args):
        return _systemd.ChildTimeout(30, "/proc/4242/environ")
    result, checks = verify(Systemd({UNIT: show()}), as_user=as_user, expected_env=EXPECTED, env_conflicts="warn")
    assert checks.env_failed
    assert result["environment"] == [{"unit": UNIT, "pid": 4242, "key": "/proc/4242/environ",
                                      "value": "not readable", "source": ""}]
    assert ("%s (pid 4242): its environment was not read as nobody: reading it did not finish within 30 s (it was"
            " reading /proc/4242/environ); it was killed" % UNIT) in result["msg"]


def test_a_real_process_environment_is_read_as_the_units_user():
    """This test's own process (root's), read in a child with the unit's user's ids: the kernel decides."""
    pid = os.getpid()
    expected = {"PATH": os.environ["PATH"]}
    result, _checks = verify(Systemd({UNIT: show(user="root", pid=pid)}), expected_env=expected)
    assert result["environment"] == [] and "run with PATH as the drop-in sets them" in result["msg"]
    result, checks = verify(Systemd({UNIT: show(user="nobody", pid=pid)}), expected_env=expected)
    assert [e["value"] for e in result["environment"]] == ["not readable"] and checks.env_failed


def test_state_absent_does_not_check_the_environment():
    result, checks = verify(Systemd({UNIT: show()}), as_user=environ_of({}), expected_env=EXPECTED, state="absent")
    assert result["environment"] == [] and result["msg"] == "" and not checks.env_failed


def test_token_values_are_masked_in_the_journal_answers_and_message(tmp_path, agent):
    token_file = tmp_path / "huggingface-token.env"
    token_file.write_text("HF_TOKEN=%s\n" % TOKEN)
    agent.answers = [(200, '{"ready": false, "token": "%s", "other": "hf_abcdefgh12345"}' % TOKEN)]
    systemd = Systemd({UNIT: show(invocation="new", environment="HUGGING_FACE_HUB_TOKEN=unit-secret-456")},
                      journal="login with %s and unit-secret-456 failed" % TOKEN)
    result, _checks = verify(systemd, **restarted_unit(agent.server_port, ready_timeout=0, token_file=str(token_file)))
    text = json.dumps(result)
    for secret in (TOKEN, "unit-secret-456", "hf_abcdefgh12345"):
        assert secret not in text, secret
    assert "login with *** and *** failed" in result["not_ready"][0]["journal"][0]


@pytest.mark.parametrize("before, now, new", [
    ({"invocation_id": "a", "main_pid": 10}, {"invocation_id": "b", "main_pid": 10}, True),  # a new start
    ({"invocation_id": "a", "main_pid": 10}, {"invocation_id": "a", "main_pid": 10}, False),
    ({"invocation_id": "", "main_pid": 0}, {"invocation_id": "b", "main_pid": 12}, True),  # it was stopped
    ({"main_pid": 10}, {"main_pid": 11}, True),  # without InvocationID (older systemd): MainPID
    (None, {"invocation_id": "a", "main_pid": 10}, True),  # nothing known of before
])
def test_a_new_process_is_a_new_invocation_or_else_a_new_main_pid(before, now, new):
    assert _systemd.restarted_since(before, now) is new


def test_a_later_environment_file_wins_and_only_managed_variables_count(tmp_path):
    paths = env_units(tmp_path, **{"global.env": "HF_HOME=/a\nMEMORY_PORT=1\n", "memory.env": "HF_HOME=/b\n",
                                   "other.env": "PYTHON_BIN=/usr/bin/python3\n"})
    found = _systemd.overriding(paths + ["/nonexistent.env"], MANAGED, _systemd.read_env_file)
    assert found == [(paths[0], {"HF_HOME": "/a"}), (paths[1], {"HF_HOME": "/b"})]
