"""hf_snapshot's action plugin: a long download runs as an async job whose progress the play shows; a warm run,
check mode and a failure stay what the module alone returns."""

import re

from tools.hub.hubserver import COMMIT_A

from test_hf_snapshot import FOLDER, LFS_FILE, args

LINE = re.compile(r"hf_snapshot localhost sentence-transformers/all-MiniLM-L6-v2: ([\d.]+ \w+) of ([\d.]+ \w+)"
                  r" \((\d+)%\) at ([\d.]+ \w+)/s")
JOB_KEYS = ("ansible_job_id", "started", "finished", "results_file", "stdout_lines", "stderr_lines")


def module_runs(output, name):
    """The module files ansible-playbook -vvv says it used, for `name`."""
    return [line for line in output.splitlines() if "Using module file" in line and line.rstrip().endswith(
        "/" + name + ".py")]


def launched_a_job(output):
    return "async_wrapper.py" in output


def async_files(home):
    folder = home / ".ansible_async"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_long_download_shows_its_progress_and_returns_the_modules_result(hub, cache, run, tmp_path):
    # About 91 MB of xorbs at 2 MB/s a request (hf_xet overlaps a few): 35 to 45 seconds, one line past 30 s.
    hub.set_faults([{"kind": "throttle", "endpoint": "xorb", "count": -1, "value": 2_000_000}])
    home = tmp_path / "home"
    home.mkdir()
    result = run(args(hub, cache, revision=COMMIT_A), env={"HOME": str(home)})
    assert result.get("failed") is not True, run.output
    lines = LINE.findall(run.output)
    assert lines, run.output
    done, total, pct, rate = lines[0]
    planned = sum(b["size"] for b in result["missing_blobs"])
    assert total == "%.2f MB" % (planned / 1024 ** 2) and 0 < int(pct) <= 100 and not rate.startswith("0.00 "), lines
    assert float(done.split()[0]) > 0
    assert result["changed"] is True and result["commit"] == COMMIT_A and LFS_FILE in result["downloaded_files"]
    assert result["elapsed"] > 30
    assert result["mean_rate"] == round(result["downloaded_bytes"] / result["elapsed"])
    assert not [k for k in JOB_KEYS if k in result] and "deferred" not in result
    assert not result.get("invocation", {}).get("module_args", {}).get("listing")
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A
    # one request for the listing, from the planning run; the job sends none again
    assert [p for m, p, _s in hub.stats()["log"] if "/tree/" in p].__len__() == 1
    assert async_files(home) == []  # the job's results file and the progress file are gone


def test_a_warm_run_is_one_module_run_and_no_request(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    hub.reset()
    result = run(args(hub, cache, revision=COMMIT_A), verbosity=3)
    assert result["changed"] is False and result.get("failed") is not True, run.output
    assert len(module_runs(run.output, "hf_snapshot")) == 1
    assert not launched_a_job(run.output) and not module_runs(run.output, "async_status")
    assert hub.stats()["total"] == 0
    assert "defer_download" not in result.get("invocation", {}).get("module_args", {})


def test_a_failed_download_job_fails_as_the_module_does(hub, cache, run, tmp_path):
    # The CAS's reconstruction answer fails before hf_xet starts a writer: with the xorb reads failing instead,
    # hf_xet at times reports its writer's end ("Data sender was dropped") rather than the 500 behind it.
    hub.set_faults([{"kind": "500", "endpoint": "reconstruction", "count": -1}])
    home = tmp_path / "home"
    home.mkdir()
    result = run(args(hub, cache, revision=COMMIT_A, retries=1), env={"HOME": str(home)}, verbosity=3)
    assert result["failed"] is True and result["changed"] is False, run.output
    assert result["error_kind"] == "server_error" and "500" in result["msg"] and result["fix"], result
    assert result["retries_used"] == 1 and result["mean_rate"] == 0 and result["elapsed"] > 0
    assert launched_a_job(run.output), run.output  # the failure came from the job
    assert not [k for k in JOB_KEYS if k in result] and "deferred" not in result
    assert not (cache / FOLDER / "refs" / "main").exists()
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists()
    assert async_files(home) == []


def test_check_mode_is_one_module_run_that_changes_nothing(hub, cache, run):
    result = run(args(hub, cache, revision=COMMIT_A), check=True, verbosity=3)
    assert result["changed"] is True and LFS_FILE in result["downloaded_files"], run.output
    assert len(module_runs(run.output, "hf_snapshot")) == 1 and not launched_a_job(run.output)
    assert not (cache / FOLDER / "snapshots").exists()
    assert "deferred" not in result
