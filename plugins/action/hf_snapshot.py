# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of justnews.huggingface.hf_snapshot (documentation: plugins/modules/hf_snapshot.py).

The module runs once, as any module does; when it finds files to download it stops before changing anything
(defer_download) and returns the commit, the listing and the bytes to fetch. The download then runs as an async
job of the same module, given that commit and listing (so it asks the Hub for no metadata again), and this plugin
polls the job, printing the bytes done, the total and the rate past FIRST seconds every EVERY seconds. The
task's result is the module's, with `elapsed` and `mean_rate` over both runs.
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
from ansible_collections.justnews.huggingface.plugins.plugin_utils._progress import DownloadProgress, display

MODULE = "justnews.huggingface.hf_snapshot"
# What async_status adds to the job's result, and what the task executor adds for an async task.
JOB_KEYS = ("ansible_job_id", "started", "finished", "results_file", "stdout", "stderr", "stdout_lines",
            "stderr_lines", "erased", "child_pid")
INTERNAL = ("defer_download", "progress_file")
POLL = 1.5
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


def public_invocation(result):
    """The options this plugin sets for itself are left out of the invocation the task shows."""
    invocation = result.get("invocation")
    if isinstance(invocation, dict) and isinstance(invocation.get("module_args"), dict):
        args = {k: v for k, v in invocation["module_args"].items() if k not in INTERNAL}
        result["invocation"] = dict(invocation, module_args=args)
    return result


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
            return clean_result(dict(launched, failed=True), first, started, time.monotonic())
        jid, results_file = launched["ansible_job_id"], launched["results_file"]
        # The folder async_wrapper actually used, as the job's user expanded it: the progress file is there too.
        async_dir = posixpath.dirname(results_file)
        progress_file = posixpath.join(async_dir, name)
        host = self._task.delegate_to or task_vars.get("inventory_hostname", "host")
        progress = DownloadProgress(host, args.get("repo_id"), sum(b.get("size", 0) for b in first.get(
            "missing_blobs") or []), started=started)
        try:
            job = self.poll(jid, async_dir, progress_file, progress, limit, task_vars)
        finally:
            self.remove(results_file, progress_file)
        return clean_result(job, dict(first, repo_id=args.get("repo_id")), started, time.monotonic(), limit)

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

    def poll(self, jid, async_dir, progress_file, progress, limit, task_vars):
        deadline = time.monotonic() + limit + 60
        while True:
            time.sleep(POLL)
            status = self._execute_module(module_name="ansible.legacy.async_status",
                                          module_args={"jid": jid, "mode": "status", "_async_dir": async_dir},
                                          task_vars=task_vars)
            if status.get("finished") or status.get("failed"):
                return status
            now = time.monotonic()
            if now > deadline:
                return {"failed": True, "msg": "Timeout exceeded"}
            if progress.due(now):
                seen = self.read(progress_file)
                if seen is not None:
                    progress.sent, progress.total = seen
                display.display(progress.line(now))

    def read(self, path):
        """(done, total) from the job's progress file, or None (not written yet, or gone)."""
        try:
            res = self._low_level_execute_command("cat -- %s" % shlex.quote(path), sudoable=True)
        except AnsibleError:
            return None
        return read_progress(res.get("stdout", "")) if res.get("rc") == 0 else None

    def remove(self, *paths):
        """The job's results file and the progress file; rm removes a link itself, never what it leads to."""
        try:
            self._low_level_execute_command("rm -f -- %s" % " ".join(shlex.quote(p) for p in paths), sudoable=True)
        except AnsibleError:
            pass
