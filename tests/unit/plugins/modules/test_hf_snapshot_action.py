"""hf_snapshot's action plugin: when it runs the download as a job, what it hands the job, and what it returns;
and the module's side of it (defer_download, the progress file)."""

import json
import os
import subprocess
import threading
import time
from unittest import mock

import pytest

from ansible.plugins.action import ActionBase

from ansible_collections.justnews.huggingface.plugins.action import hf_snapshot as action
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors, _hub, _snapshot
from ansible_collections.justnews.huggingface.plugins.plugin_utils import _progress

from test_hf_snapshot_plan import COMMIT_A, FILES_A, FOLDER, FakeHub, lay_out, snapshot

MIB = 1024 * 1024
FIRST = {"changed": False, "deferred": True, "commit": COMMIT_A, "ref": "main", "cache_dir": "/c",
         "listing": {"a.bin": {"size": 10 * MIB, "blob_id": "1" * 40}}, "retries_used": 1,
         "missing_blobs": [{"name": "1" * 40, "size": 10 * MIB, "files": ["a.bin"]}], "downloaded_bytes": 10 * MIB,
         "invocation": {"module_args": {"repo_id": "org/model", "token": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
                                        "defer_download": True, "progress_file": None, "listing": None}}}
DONE = {"changed": True, "commit": COMMIT_A, "ref": "main", "downloaded_bytes": 10 * MIB, "retries_used": 0,
        "elapsed": 3.0, "mean_rate": 1, "ansible_job_id": "j1.2", "started": True, "finished": True,
        "results_file": "/root/.ansible_async/j1.2", "stdout": "", "stderr": "", "stdout_lines": [],
        "stderr_lines": [], "invocation": {"module_args": {"listing": {"a.bin": {}}, "progress_file": "x"}}}


@pytest.fixture(autouse=True)
def in_process(monkeypatch):
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))


# --- the module: defer_download ----------------------------------------------------------------------------

def test_the_module_defers_a_download_before_changing_anything(tmp_path):
    snap = snapshot(tmp_path, FakeHub(COMMIT_A, FILES_A), revision=COMMIT_A, defer_download=True,
                    free_space_margin=0)
    result = snap.run()
    assert result["deferred"] is True and result["changed"] is False and result["commit"] == COMMIT_A
    assert set(result["listing"]) == set(FILES_A) and result["ref"] == "main"
    assert result["downloaded_bytes"] == sum(len(d) for d in FILES_A.values()) and result["missing_blobs"]
    assert not (tmp_path / FOLDER).exists()  # no listing, no blob, no ref
    assert snap.hub.calls == [("tree", COMMIT_A)]


def test_a_warm_cache_and_check_mode_are_not_deferred(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    warm = snapshot(tmp_path, FakeHub(COMMIT_A, FILES_A), revision=COMMIT_A, defer_download=True).run()
    assert "deferred" not in warm and warm["changed"] is False
    check = snapshot(tmp_path / "empty", FakeHub(COMMIT_A, FILES_A), revision=COMMIT_A, defer_download=True,
                     free_space_margin=0)
    check.check = True
    result = check.run()
    assert "deferred" not in result and result["changed"] is True and result["downloaded_files"]


# --- the module: the progress file --------------------------------------------------------------------------

def test_the_progress_file_counts_new_blobs_and_growing_partial_files(tmp_path, monkeypatch):
    jobs = tmp_path / "async"
    jobs.mkdir(mode=0o700)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    monkeypatch.setenv("ANSIBLE_ASYNC_DIR", str(jobs))
    wanted = [{"name": "a" * 40, "size": 100}, {"name": "b" * 40, "size": 300}, {"name": "c" * 40, "size": 50}]
    (blobs / ("a" * 40)).write_bytes(b"x" * 100)
    (blobs / ("b" * 40 + ".1f2e3d4c.incomplete")).write_bytes(b"x" * 120)
    (blobs / ("d" * 40)).write_bytes(b"x" * 999)  # not one of this run's blobs
    progress = _snapshot.ProgressFile.start("hf_snapshot-1.progress", str(blobs), wanted, print)
    try:
        assert progress.done() == 220
        progress.received._value.value = 300  # the library counted more than the files show yet
        progress.write()
        data = json.loads((jobs / "hf_snapshot-1.progress").read_text())
        assert data["done"] == 300 and data["total"] == 450 and data["elapsed"] >= 0
        assert (jobs / "hf_snapshot-1.progress").stat().st_mode & 0o777 == 0o600
    finally:
        progress.stop()
    assert not (jobs / "hf_snapshot-1.progress").exists()


@pytest.mark.parametrize("case", ["group_writable", "link", "path"])
def test_the_progress_file_is_written_only_into_a_private_folder(tmp_path, monkeypatch, case):
    jobs = tmp_path / "async"
    jobs.mkdir(mode=0o700)
    name = "hf_snapshot-1.progress"
    if case == "group_writable":
        jobs.chmod(0o770)
    elif case == "link":
        (tmp_path / "link").symlink_to(jobs)
        jobs = tmp_path / "link"
    else:
        name = "../elsewhere"
    monkeypatch.setenv("ANSIBLE_ASYNC_DIR", str(jobs))
    warnings = []
    assert _snapshot.ProgressFile.start(name, str(tmp_path), [], warnings.append) is None
    assert warnings and "no download progress" in warnings[0]
    assert sorted(os.listdir(tmp_path / "async")) == []


# --- the plugin's decisions ---------------------------------------------------------------------------------

def test_the_job_gets_the_commit_ref_and_listing_of_the_first_run():
    args = {"repo_id": "org/model", "revision": "main", "token": "secret", "timeout": 60}
    second = action.deferred_args(args, FIRST, "hf_snapshot-1.progress")
    assert second == dict(args, revision=COMMIT_A, ref="main", listing=FIRST["listing"], defer_download=False,
                          progress_file="hf_snapshot-1.progress")
    assert action.job_limit(args) == 60 + action.JOB_MARGIN and action.job_limit({}) == 1800 + action.JOB_MARGIN


def test_the_result_is_the_modules_without_the_jobs_keys():
    result = action.clean_result(DONE, FIRST, 100.0, 120.0)
    assert not [k for k in action.JOB_KEYS if k in result]
    assert result["elapsed"] == 20.0 and result["mean_rate"] == round(10 * MIB / 20.0)
    assert result["retries_used"] == 1 and result["changed"] is True
    assert result["invocation"] == {"module_args": {"repo_id": "org/model", "listing": None,
                                                    "token": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}}


def test_a_failed_download_keeps_the_modules_failure():
    failed = dict(DONE, failed=True, changed=False, msg="kept failing [server_error]", error_kind="server_error",
                  fix=_errors.fix("server_error"), status_code=500)
    result = action.clean_result(failed, FIRST, 0.0, 5.0)
    assert result["failed"] is True and result["error_kind"] == "server_error" and result["status_code"] == 500
    assert result["msg"] == "kept failing [server_error]" and result["mean_rate"] == 0


@pytest.mark.parametrize("job, kind", [({"failed": True, "msg": "Timeout exceeded", "child_pid": 4}, "timeout"),
                                       ({"failed": True, "msg": "could not find job", "finished": True}, "other"),
                                       ({"failed": True, "msg": "Traceback...\nKilled", "data": ""}, "other")])
def test_a_job_that_dies_or_hits_its_limit_fails_with_a_kind(job, kind):
    result = action.clean_result(job, dict(FIRST, repo_id="org/model"), 0.0, 5.0, limit=660)
    assert result["failed"] is True and result["changed"] is False and result["error_kind"] == kind
    assert result["fix"] == _errors.fix(kind) and "download job" in result["msg"]
    assert "child_pid" not in result and "data" not in result
    if kind == "timeout":
        assert "660s" in result["msg"] and "org/model" in result["msg"]


def test_dirs_made_by_the_first_run_stay_in_the_result():
    result = action.clean_result(dict(DONE, changed=False), dict(FIRST, changed_dirs=["/c"]), 0.0, 1.0)
    assert result["changed_dirs"] == ["/c"] and result["changed"] is True


def test_the_progress_line_speaks_after_30_seconds_then_every_15():
    now = [100.0]
    progress = _progress.DownloadProgress("web1", "org/model", 1000 * MIB, clock=lambda: now[0])
    lines = []
    for second in range(0, 76):
        now[0] = 100.0 + second
        progress.sent = second * 4 * MIB
        line = progress.line(now[0])
        if line:
            lines.append((second, line))
    assert [s for s, _l in lines] == [30, 45, 60, 75]
    assert lines[0][1] == "hf_snapshot web1 org/model: 120.00 MB of 1000.00 MB (12%) at 4.00 MB/s"


# --- the plugin's calls ------------------------------------------------------------------------------------

class Calls:
    """Stands in for _execute_module and _low_level_execute_command, recording what the plugin asks."""

    def __init__(self, first, polls):
        self.first, self.polls, self.modules, self.commands, self.async_vals = first, list(polls), [], [], []

    def execute(self, plugin):
        def _execute_module(module_name=None, module_args=None, task_vars=None, wrap_async=False):
            self.modules.append((module_name, dict(module_args or {}), wrap_async))
            self.async_vals.append(plugin._task.async_val)
            if module_name == action.MODULE and not wrap_async:
                return dict(self.first)
            if wrap_async:
                return {"started": True, "finished": False, "ansible_job_id": "j1.2", "changed": True,
                        "results_file": "/home/u/.ansible_async/j1.2"}
            return self.polls.pop(0)
        return _execute_module

    def low_level(self, cmd, sudoable=True):
        self.commands.append(cmd)
        if action.SEPARATOR in cmd:
            job = self.polls.pop(0)
            return {"rc": 0, "stdout": "%s\n\n%s\n%s" % (json.dumps(job), action.SEPARATOR, json.dumps(
                {"done": 5 * MIB, "total": 10 * MIB, "elapsed": 31}))}
        return {"rc": 0, "stdout": ""}


def plugin_with(calls, monkeypatch, check_mode=False, async_val=0):
    task = mock.MagicMock(async_val=async_val, check_mode=check_mode, delegate_to=None,
                          args={"repo_id": "org/model", "token": "secret", "timeout": 60})
    connection = mock.MagicMock(has_native_async=False)
    connection._shell.tmpdir = None
    plugin = action.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(),
                                 mock.MagicMock())
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    monkeypatch.setattr(plugin, "_execute_module", calls.execute(plugin))
    monkeypatch.setattr(plugin, "_low_level_execute_command", calls.low_level)
    monkeypatch.setattr(plugin, "_remove_tmp_path", lambda path: None)
    return plugin


def test_nothing_to_download_is_one_module_run(monkeypatch):
    warm = {"changed": False, "commit": COMMIT_A, "downloaded_files": [], "elapsed": 0.1, "mean_rate": 0}
    calls = Calls(warm, [])
    result = plugin_with(calls, monkeypatch).run(task_vars={"inventory_hostname": "web1"})
    assert result == warm
    assert [(m, a.get("defer_download"), w) for m, a, w in calls.modules] == [(action.MODULE, True, False)]
    assert calls.commands == []


def test_check_mode_and_the_users_async_run_the_module_once_unchanged(monkeypatch):
    calls = Calls({"changed": True}, [])
    plugin_with(calls, monkeypatch, check_mode=True).run(task_vars={})
    assert [(a.get("defer_download"), w) for _m, a, w in calls.modules] == [(False, False)]
    calls = Calls({"changed": True}, [])
    plugin_with(calls, monkeypatch, async_val=300).run(task_vars={})
    assert len(calls.modules) == 1 and calls.modules[0][2] is True and "defer_download" not in calls.modules[0][1]


def test_a_download_is_launched_as_a_job_polled_and_cleaned_up(monkeypatch):
    running = {"started": True, "finished": False, "ansible_job_id": "j1.2"}
    calls = Calls(FIRST, [running, running, DONE])
    clock = iter([0.0, 40.0, 41.0, 42.0, 60.0, 61.0, 62.0, 63.0])
    monkeypatch.setattr(action.time, "monotonic", lambda: next(clock))
    shown = []
    monkeypatch.setattr(action.display, "display", shown.append)
    plugin = plugin_with(calls, monkeypatch)
    result = plugin.run(task_vars={"inventory_hostname": "web1"})
    launch = calls.modules[1]
    assert launch[0] == action.MODULE and launch[2] is True
    assert launch[1]["revision"] == COMMIT_A and launch[1]["listing"] == FIRST["listing"]
    assert launch[1]["defer_download"] is False and launch[1]["progress_file"].startswith("hf_snapshot-")
    assert calls.async_vals[1] == 60 + action.JOB_MARGIN and plugin._task.async_val == 0  # restored
    # no async_status module run: one waiting shell command per look
    assert [m for m, _a, _w in calls.modules] == [action.MODULE, action.MODULE]
    looks = [c for c in calls.commands if action.SEPARATOR in c]
    assert len(looks) == 3 and all("/home/u/.ansible_async/j1.2" in c for c in looks)
    assert shown == ["hf_snapshot web1 org/model: 5.00 MB of 10.00 MB (50%) at 124.88 KB/s"]  # at 41 s
    progress_file = "/home/u/.ansible_async/" + launch[1]["progress_file"]
    assert calls.commands[-1] == "rm -f -- /home/u/.ansible_async/j1.2 " + progress_file
    assert not [k for k in action.JOB_KEYS if k in result] and result["changed"] is True
    assert "secret" not in json.dumps(result)


# --- the waiting command, run by a real shell ----------------------------------------------------------------

def run_wait(results, progress, seconds, step=0.05):
    cmd = action.wait_command(str(results), str(progress), seconds=seconds, step=step)
    started = time.monotonic()
    out = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
    return action.read_job(out), time.monotonic() - started


def test_the_wait_returns_as_soon_as_the_job_wrote_its_result(tmp_path):
    results, progress = tmp_path / "j1.2", tmp_path / "hf_snapshot-1.progress"
    results.write_text(json.dumps({"started": True, "finished": False, "ansible_job_id": "j1.2"}))
    progress.write_text(json.dumps({"done": 1, "total": 2, "elapsed": 0.5}))

    def finish():
        time.sleep(0.5)
        done = tmp_path / "j1.2.tmp"
        done.write_text(json.dumps({"changed": True, "commit": COMMIT_A}))
        os.replace(done, results)  # as async_wrapper writes it

    writer = threading.Thread(target=finish)
    writer.start()
    (job, seen), took = run_wait(results, progress, seconds=10)
    writer.join()
    assert job == {"changed": True, "commit": COMMIT_A, "finished": True} and seen == (1, 2)
    assert took < 3


def test_the_wait_gives_up_after_its_window_while_the_job_runs_and_tells_a_missing_job(tmp_path):
    results, progress = tmp_path / "j1.2", tmp_path / "none.progress"
    results.write_text(json.dumps({"started": True, "finished": False, "ansible_job_id": "j1.2"}))
    (job, seen), took = run_wait(results, progress, seconds=0.3)
    assert job is None and seen is None and 0.2 < took < 3
    results.unlink()
    (job, seen), _took = run_wait(results, progress, seconds=0.2)
    assert job == {} and seen is None
    results.write_text('{"changed": tr')  # half written: still running
    assert run_wait(results, progress, seconds=0.1)[0][0] is None


def test_a_job_whose_results_file_is_gone_fails_as_async_status_would(monkeypatch):
    calls = Calls(FIRST, [{}, {}, {}])
    calls.low_level = lambda cmd, sudoable=True: (calls.commands.append(cmd) or {
        "rc": 0, "stdout": "\n%s\n" % action.SEPARATOR})
    plugin = plugin_with(calls, monkeypatch)
    result = plugin.run(task_vars={"inventory_hostname": "web1"})
    assert result["failed"] is True and result["error_kind"] == "other" and "could not find job" in result["msg"]


def test_the_wait_is_read_the_same_through_a_terminal(tmp_path):
    """Over SSH with become Ansible allocates a terminal (ssh -tt): every line of the wait's output ends in CR LF."""
    results, progress = tmp_path / "job", tmp_path / "progress"
    results.write_text(json.dumps({"changed": True, "commit": "c" * 40}))
    progress.write_text(json.dumps({"done": 5, "total": 10}))
    out = subprocess.run(["sh", "-c", action.wait_command(str(results), str(progress), seconds=1, step=0.05)],
                         capture_output=True, text=True, check=True).stdout
    job, seen = action.read_job(out.replace("\n", "\r\n"))
    assert job == {"changed": True, "commit": "c" * 40, "finished": True} and seen == (5, 10)
