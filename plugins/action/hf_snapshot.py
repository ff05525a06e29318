# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of justnews.huggingface.hf_snapshot (documentation: plugins/modules/hf_snapshot.py).

The module runs once, as any module does; when it finds files to download it stops before changing anything
(defer_download) and returns the commit, the listing and the bytes to fetch. The download then runs as an async
job of the same module, given that commit and listing (so it asks the Hub for no metadata again), and this plugin
watches the job, printing the bytes done, the total and the rate past FIRST seconds every EVERY seconds. The
task's result is the module's, with `elapsed` and `mean_rate` over both runs.

The job is watched by one shell command at a time that waits on the host, up to WAIT seconds, for the job's
results file to hold the result, then prints it and the progress file: the end of the job is seen within STEP
seconds, and no module (async_status) is run per look.
"""

from __future__ import annotations

import json
import posixpath
import secrets
import shlex
import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _record
from ansible_collections.justnews.huggingface.plugins.plugin_utils._progress import DownloadProgress, display

MODULE = "justnews.huggingface.hf_snapshot"
# What async_status adds to the job's result, and what the task executor adds for an async task.
JOB_KEYS = ("ansible_job_id", "started", "finished", "results_file", "stdout", "stderr", "stdout_lines",
            "stderr_lines", "erased", "child_pid")
INTERNAL = ("defer_download", "progress_file")
WAIT = 5.0
STEP = 0.2
SEPARATOR = "--hf_snapshot-progress--"
# A results file missing this many looks in a row: the job is gone (async_status says "could not find job").
MISSING_LOOKS = 3
# The job's limit is the module's own timeout plus this much, for the checks after the download (checksums of
# large files) and the start-up: the module stops itself first.
JOB_MARGIN = 600


def deferred_args(args, first, progress_file):
    """The arguments of the download job: the first run's commit, ref and listing, so that it makes no metadata
    request and records the commit under the same ref."""
    second = dict(args, revision=first["commit"], ref=first["ref"], listing=first["listing"],
                  defer_download=False, progress_file=progress_file)
    return second


def job_limit(args):
    try:
        timeout = int(args.get("timeout") or 1800)
    except (TypeError, ValueError):
        timeout = 1800
    return max(timeout, 1) + JOB_MARGIN


def clean_result(job, first, started, now, limit=None):
    """The module's result as a synchronous run returns it: async_status's keys removed, a job that died or hit
    its limit made a failure with a kind, `elapsed` and `mean_rate` over the whole task."""
    result = {k: v for k, v in job.items() if k not in JOB_KEYS}
    if result.get("failed") and not result.get("error_kind"):
        if result.get("msg") == "Timeout exceeded":
            kind = _errors.TIMEOUT
            msg = ("the download job of %s at %s was stopped at its limit of %ss (timeout + %ds) before it"
                   " answered; the next run takes up what arrived. Fix: %s"
                   % (first.get("repo_id") or "the repository", first.get("commit"),
                      limit if limit is not None else "?", JOB_MARGIN, _errors.fix(kind)))
        else:
            kind = _errors.OTHER
            msg = "the download job ended without a result (%s). Fix: %s" % (
                (result.get("msg") or "no message").strip().splitlines()[-1] if result.get("msg") else "no message",
                _errors.fix(kind))
        result = {"failed": True, "changed": False, "msg": msg, "error_kind": kind, "fix": _errors.fix(kind),
                  "cache_dir": first.get("cache_dir"), "commit": first.get("commit")}
    if first.get("changed_dirs") and not result.get("changed_dirs"):
        result["changed_dirs"] = first["changed_dirs"]
        result["changed"] = result.get("changed", False) or not result.get("failed")
    if isinstance(first.get("invocation"), dict) and "invocation" in result:
        # what the task was given, not the commit, listing and progress file this plugin handed the job
        result["invocation"] = first["invocation"]
    public_invocation(result)
    result["retries_used"] = int(result.get("retries_used") or 0) + int(first.get("retries_used") or 0)
    elapsed = round(max(now - started, 0.0), 3)
    result["elapsed"] = elapsed
    moved = result.get("downloaded_bytes", 0) if result.get("changed") and not result.get("failed") else 0
    result["mean_rate"] = round(moved / elapsed) if moved and elapsed > 0 else 0
    return result


def job_record(result, args, first):
    """The task's record: the job was given the commit as its revision, so the model is the first run's."""
    result["record"] = _record.build(first.get("record") or args, result, "hub", args.get("endpoint"),
                                     bool(args.get("token")))
    return result


def public_invocation(result):
    """The options this plugin sets for itself are left out of the invocation the task shows."""
    invocation = result.get("invocation")
    if isinstance(invocation, dict) and isinstance(invocation.get("module_args"), dict):
        args = {k: v for k, v in invocation["module_args"].items() if k not in INTERNAL}
        result["invocation"] = dict(invocation, module_args=args)
    return result


def wait_command(results_file, progress_file, seconds=WAIT, step=STEP):
    """A POSIX shell command that waits on the host, up to `seconds`, while the job's results file is missing,
    empty or still async_wrapper's first {"started": true, ...} (one line), then prints that file, SEPARATOR on
    a line of its own, and the progress file. Each look at the file is the shell's own (test, read, case): the
    only process a step starts is its sleep."""
    results, progress = shlex.quote(results_file), shlex.quote(progress_file)
    return ("i=0; while [ $i -lt %d ]; do if [ -s %s ]; then l=; IFS= read -r l < %s || :; case $l in"
            " *'\"started\": true'*) ;; *) break ;; esac; fi; sleep %s 2>/dev/null || sleep 1; i=$((i+1)); done;"
            " cat -- %s 2>/dev/null; echo; echo %s; cat -- %s 2>/dev/null; exit 0"
            % (max(1, int(seconds / step)), results, results, step, results, SEPARATOR, progress))


def read_job(text):
    """(job, progress) from wait_command's output: job is None while the job runs, {} when its results file is
    missing, else the job's result with finished=True; progress is read_progress() of the progress file."""
    # Over SSH with become, Ansible asks for a terminal (-tt), which ends every line with CR LF.
    results, _sep, progress_text = text.replace("\r\n", "\n").partition("\n%s\n" % SEPARATOR)
    results = results.strip()
    if not results:
        return {}, read_progress(progress_text)
    try:
        data = json.loads(results)
    except ValueError:
        return None, read_progress(progress_text)  # being written: still running, as async_status sees it
    if not isinstance(data, dict) or ("started" in data and not data.get("finished")):
        return None, read_progress(progress_text)
    return dict(data, finished=True), read_progress(progress_text)


def read_progress(text):
    """(done, total) from the progress file's text, or None."""
    try:
        data = json.loads(text)
        return int(data["done"]), int(data["total"])
    except (ValueError, TypeError, KeyError):
        return None


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        if self._task.async_val:
            # The user's own async task: passed through as the normal action does; the executor polls it.
            wrap_async = not self._connection.has_native_async
            result = merge_hash(result, self._execute_module(module_name=MODULE, task_vars=task_vars,
                                                             wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)  # pylint: disable=protected-access
            return result
        started = time.monotonic()
        args = dict(self._task.args)
        try:
            watch = not self._task.check_mode and not self._connection.has_native_async
            first = self._execute_module(module_name=MODULE, task_vars=task_vars,
                                         module_args=dict(args, defer_download=watch))
            if not first.get("deferred"):
                return merge_hash(result, public_invocation(first))
            return merge_hash(result, self.download(args, first, started, task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)  # pylint: disable=protected-access

    # --- the download job ------------------------------------------------------------------------------------
    def download(self, args, first, started, task_vars):
        name = "hf_snapshot-%s.progress" % secrets.token_hex(8)
        limit = job_limit(args)
        launched = self.launch(deferred_args(args, first, name), limit, task_vars)
        if launched.get("failed") or not launched.get("ansible_job_id") or not launched.get("results_file"):
            return job_record(clean_result(dict(launched, failed=True), first, started, time.monotonic()), args,
                              first)
        jid, results_file = launched["ansible_job_id"], launched["results_file"]
        # The folder async_wrapper actually used, as the job's user expanded it: the progress file is there too.
        async_dir = posixpath.dirname(results_file)
        progress_file = posixpath.join(async_dir, name)
        host = self._task.delegate_to or task_vars.get("inventory_hostname", "host")
        progress = DownloadProgress(host, args.get("repo_id"), sum(b.get("size", 0) for b in first.get(
            "missing_blobs") or []), started=started)
        try:
            job = self.watch(results_file, progress_file, progress, limit)
        finally:
            self.remove(results_file, progress_file)
        return job_record(clean_result(job, dict(first, repo_id=args.get("repo_id")), started, time.monotonic(),
                                       limit), args, first)

    def launch(self, module_args, limit, task_vars):
        """The module as an async job (async_wrapper); the task's async_val is its limit only for the launch,
        or the task executor would poll the job itself."""
        saved = self._task.async_val
        self._task.async_val = limit
        try:
            return self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars,
                                        wrap_async=True)
        finally:
            self._task.async_val = saved

    def watch(self, results_file, progress_file, progress, limit):
        """The job's result, looking at the host with wait_command until it is there or the limit passed."""
        deadline = time.monotonic() + limit + 60
        missing = 0
        while True:
            try:
                res = self._low_level_execute_command(wait_command(results_file, progress_file), sudoable=True)
                job, seen = read_job(res.get("stdout", ""))
            except AnsibleError:
                job, seen = None, None
            if job == {}:
                missing += 1
                if missing >= MISSING_LOOKS:
                    return {"failed": True, "msg": "could not find job"}
            elif job is not None:
                return job
            else:
                missing = 0
            now = time.monotonic()
            if now > deadline:
                return {"failed": True, "msg": "Timeout exceeded"}
            if progress.due(now):
                if seen is not None:
                    progress.sent, progress.total = seen
                display.display(progress.line(now))

    def remove(self, *paths):
        """The job's results file and the progress file; rm removes a link itself, never what it leads to."""
        try:
            self._low_level_execute_command("rm -f -- %s" % " ".join(shlex.quote(p) for p in paths), sudoable=True)
        except AnsibleError:
            pass
