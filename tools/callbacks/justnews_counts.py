# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test harness callback: per playbook run and host, the PLAY RECAP's ok=, the part of it that the collection's
own playbooks and role ran (a scenario's test plays left out: what an operator's run of the playbook shows), and
the module round trips (each task or loop item that ran a module on the host, not on the controller), and, when
JUSTNEWS_TEST_HUB names the test Hub, the requests it answered during the run (its counters read at the start and
the end of the playbook), appended as one JSON line to the file named by JUSTNEWS_TASK_COUNTS. Molecule's
idempotence assertions read it."""

from __future__ import annotations

DOCUMENTATION = r"""
name: justnews_counts
type: aggregate
short_description: Counts tasks and module round trips per host (test harness)
description: Appends one JSON line per playbook run to the file named by E(JUSTNEWS_TASK_COUNTS).
requirements:
  - enable in callbacks_enabled
"""

import json
import os
import urllib.request

from ansible import context
from ansible.plugins.callback import CallbackBase

# Actions that run on the controller only: no round trip to the host.
CONTROLLER_ONLY = {"set_fact", "debug", "assert", "fail", "meta", "include_tasks", "import_tasks", "include_role",
                   "import_role", "validate_argument_spec", "include_vars", "add_host", "group_by", "set_stats",
                   "pause", "fetch_summary"}


# Where the installed collection's playbooks and role live (task paths).
OURS = "/ansible_collections/justnews/huggingface/"


def hub_requests():
    """The test Hub's request counters per endpoint since it started (its control routes are not counted), or
    None without a test Hub."""
    url = os.environ.get("JUSTNEWS_TEST_HUB")
    if not url:
        return None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url.rstrip("/") + "/_test/stats", timeout=30) as answer:
        return json.load(answer)["lifetime"]["requests"]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "justnews_counts"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.playbook = None
        self.hosts = {}

    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(playbook._file_name)
        self.hub_before = hub_requests()

    def _host(self, result):
        return self.hosts.setdefault(result._host.get_name(), {"round_trips": 0, "tasks": [], "ok_collection": 0})

    def _count(self, result, status):
        task = result._task
        action = task.action.split(".")[-1]
        delegated = task.delegate_to not in (None, "", result._host.get_name())
        if action in CONTROLLER_ONLY or delegated:
            return
        items = result._result.get("results")
        trips = len([r for r in items if not r.get("skipped")]) if isinstance(items, list) else 1
        entry = self._host(result)
        if trips:
            entry["round_trips"] += trips
            entry["tasks"].append({"task": task.get_name(), "action": task.action, "trips": trips, "status": status})

    def v2_runner_on_ok(self, result):
        task = result._task
        role = getattr(task, "_role", None)
        if OURS in (task.get_path() or "") or (role is not None and OURS in (getattr(role, "_role_path", "") or "")):
            self._host(result)["ok_collection"] += 1
        self._count(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "failed")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("JUSTNEWS_TASK_COUNTS")
        if not path:
            return
        hosts = {}
        for name in sorted(stats.processed):
            summary = stats.summarize(name)
            entry = self.hosts.get(name, {"round_trips": 0, "tasks": [], "ok_collection": 0})
            hosts[name] = dict(entry, ok=summary["ok"], changed=summary["changed"])
        with open(path, "a") as out:
            line = {"playbook": self.playbook, "check": bool(context.CLIARGS.get("check")), "hosts": hosts}
            after = hub_requests()
            if self.hub_before is not None and after is not None:
                line["hub_requests"] = {k: n - self.hub_before.get(k, 0) for k, n in after.items()
                                        if n != self.hub_before.get(k, 0)}
            out.write(json.dumps(line) + "\n")
