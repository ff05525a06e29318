# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two host-side checks of a rollout to the agents' units (hf_units), each one call on the host.

Preflight, before anything changes: whether systemd manages the host, each unit's settings, user, groups and
readiness check, the cache owner and group they imply, whether each unit's user will read the cache as it is to
be laid out, and which EnvironmentFiles set a variable the drop-in manages. Every problem found is collected, so
that one failure names them all.

Verify, after the restarts: each restarted unit active with a new process and answering its readiness check
before a deadline, every other unit active, and - with state present - the processes (MainPID and children) of
every unit running with the drop-in's settings. The failure names the unit, what was awaited, the last answer,
the unit's state and its journal's last lines.

How a unit, its files and its processes are read is _systemd's (shared with hf_doctor). Side effects are injected
(run_command, as_user, http_get, clock, sleep) so that the decisions are unit-tested. Nothing here writes to the
host; token values are never returned (<set>/<unset> only) and masked in every text.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shlex
import time

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _systemd

SHOW_PROPS = ("Id,LoadState,ActiveState,SubState,Result,User,Group,SupplementaryGroups,MainPID,NRestarts,"
              "InvocationID,Environment,EnvironmentFiles")
STATE_PROPS = ("ActiveState", "SubState", "Result", "MainPID", "NRestarts")
# A unit that systemctl cannot show (_systemd.show's failure) is a problem or a state the result names, never the
# module's error kind.
CONTAINS_FAILURES_OF = ("_systemd",)
ANSWER_MAX = 200  # characters of a readiness answer quoted in a message


def unique(values):
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def clip(text, limit=ANSWER_MAX):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def unit_state(props):
    """What a result says of a unit's current state (from parse_show's dict)."""
    def number(key):
        try:
            return int(props.get(key) or 0)
        except ValueError:
            return 0
    return dict(load_state=props.get("LoadState", "unknown"), active_state=props.get("ActiveState", ""),
                sub_state=props.get("SubState", ""), result=props.get("Result", ""), main_pid=number("MainPID"),
                n_restarts=number("NRestarts"), invocation_id=props.get("InvocationID", ""))


def state_text(props):
    return " ".join("%s=%s" % (key, props.get(key, "")) for key in STATE_PROPS)


def dropin_path(unit, name):
    return "/etc/systemd/system/%s.d/%s" % (unit, name)


class Checks:
    """What both phases share: the parameters, the injected side effects, the token values seen so far and the
    EnvironmentFiles read (each once)."""

    def __init__(self, params, run_command, as_user):
        self.p = params
        self.run_command = run_command  # (argv, timeout=None) -> (rc, out, err); rc None past the deadline
        self.as_user = as_user  # (user, func, *args) -> func's JSON-able result, None, or a ChildTimeout
        self.secrets = _systemd.Secrets()
        self.env_files = _systemd.EnvFiles(self.secrets)
        self.units = {unit["name"]: unit for unit in params["units"]}

    def overrides(self, env_files):
        """Of a unit's EnvironmentFiles, those that may override its drop-in: all but the drop-in's token file."""
        return [path for path in env_files if path != self.p["token_file"]]

    def read_token_file(self):
        if self.p["token_file"]:
            self.env_files.read(self.p["token_file"])  # only its token values matter: they are masked everywhere

    def mask(self, text):
        return self.secrets.mask(text)


# --- preflight -------------------------------------------------------------------------------------------------

class Preflight(Checks):
    """Reads only. `run()` returns the result (its `problems` empty when the rollout may go on)."""

    def __init__(self, params, run_command, as_user):
        super().__init__(params, run_command, as_user)
        self.problems = []
        self.warnings = []
        self.uids = {}  # unit -> the uid its user has (None when the user is unknown)

    def run(self):
        p = self.p
        present = p["state"] == "present"
        system_state, booted = _systemd.system_state(self.run_command)
        info = {name: self.unit(name, booted) for name in self.units}
        users = unique(u["user"] for u in info.values() if u["user"])
        groups = unique(u["group"] for u in info.values() if u["group"])
        # no unit, or units without User=: root, as systemd runs them
        owner = p["owner"] or (users[0] if len(users) == 1 else "" if users else "root")
        group = p["group"] or (groups[0] if len(groups) == 1 else "" if groups else "root")
        conflicts = []
        if present:
            self.check_owner(info, booted, users, groups, owner, group)
            for name, unit in info.items():
                if booted and unit["load_state"] not in ("loaded", ""):
                    self.problems.append("unit %s is not loaded: install it (for JustNews the justnews@.service"
                                         " template) or fix its name in model_cache_units" % name)
                if unit["ready_kind"] == "unknown":
                    self.problems.append("unit %s has no known readiness check: set ready_url, ready_port,"
                                         " ready_command or ready: false in its model_cache_units entry" % name)
            if booted:
                self.check_readable(info, owner, group)
                conflicts = self.check_conflicts(info)
        problems = list(p["problems"]) + [self.mask(text) for text in self.problems]
        return dict(booted=booted, system_state=system_state, units=info, owner=owner, group=group,
                    conflicts=conflicts, conflict_keys=unique(k for c in conflicts for k in c["names"]),
                    problems=problems, warnings=self.warnings,
                    msg="Nothing was changed on %s: %d problem(s) to fix first. %s" % (
                        p["host_name"], len(problems), " ".join(
                            "(%d) %s." % (index, text) for index, text in enumerate(problems, 1)))
                    if problems else "")

    def unit(self, name, booted):
        how, target = _systemd.ready_check(self.units[name], self.p["agent_ports"])
        unit = dict(load_state="unknown", active_state="", sub_state="", result="", main_pid=0, n_restarts=0,
                    invocation_id="", user="", group="", groups=[], env_files=[], ready_kind=how,
                    ready_target=target)
        if not booted:
            return unit
        try:
            props = _systemd.show(self.run_command, name, SHOW_PROPS)
        except _errors.Failure as exc:
            self.problems.append("unit %s cannot be read (%s): check systemd on the host (systemctl status %s)"
                                 % (name, exc, name))
            unit["load_state"] = ""
            return unit
        self.secrets.add_tokens(props["Environment"])
        unit.update(unit_state(props))
        user = props.get("User") or "root"
        unit_groups = [props.get("Group", "")] + props.get("SupplementaryGroups", "").split()
        ids = self.as_user(user, _systemd.credentials, [g for g in unit_groups if g])
        if isinstance(ids, _systemd.ChildTimeout):
            self.problems.append("looking up the user %s of unit %s %s: check the host's user database (getent"
                                 " passwd %s; NSS, sssd or LDAP)" % (user, name, ids.describe(), user))
            ids = None
        unit.update(user=user, group=props.get("Group") or (ids or {}).get("group", ""),
                    groups=(ids or {}).get("groups", []), env_files=props["EnvironmentFiles"])
        self.uids[name] = (ids or {}).get("uid")
        return unit

    def check_owner(self, info, booted, users, groups, owner, group):
        p = self.p
        if not booted and not (p["owner"] and p["group"]):
            self.problems.append("model_cache_owner/model_cache_group are empty and systemd is not running, so the"
                                 " units' User=/Group= cannot be read: set both")
        if not p["owner"] and len(users) > 1:
            self.problems.append("the units run as different users (%s): set model_cache_owner, and let the others"
                                 " read the cache through model_cache_group or the modes"
                                 % ", ".join("%s: %s" % (n, u["user"]) for n, u in info.items()))
        if not p["group"] and len(groups) > 1:
            self.problems.append("the units run with different groups (%s): set model_cache_group"
                                 % ", ".join("%s: %s" % (n, u["group"]) for n, u in info.items()))
        if owner and not exists(pwd.getpwnam, owner):
            self.problems.append("the cache owner %s does not exist on %s: set model_cache_owner to the user the"
                                 " agents run as" % (owner, p["host_name"]))
        if group and not exists(grp.getgrnam, group):
            self.problems.append("the cache group %s does not exist on %s: set model_cache_group"
                                 % (group, p["host_name"]))

    def check_readable(self, info, owner, group):
        """Each unit's user reads the cache as it will be: owner:group with dir_mode and file_mode, judged with
        the ids and groups that user really has (looked up as that user) and the unit's Group=."""
        p = self.p
        if p["dir_mode"] is None or p["file_mode"] is None:
            return  # not octal: the caller's own problems name them
        for name, unit in info.items():
            if not unit["user"] or _systemd.reads(self.uids.get(name), unit["user"], unit["groups"], owner, group,
                                                  p["dir_mode"], p["file_mode"]):
                continue
            self.problems.append(
                "unit %s runs as %s (groups: %s), which cannot read the cache (%s:%s, dirs %s, files %s): set"
                " model_cache_owner to %s, add %s to group %s, or widen model_cache_dir_mode /"
                " model_cache_file_mode" % (name, unit["user"], ",".join(unit["groups"]), owner, group,
                                            p["dir_mode_text"], p["file_mode_text"], unit["user"], unit["user"],
                                            group))

    def check_conflicts(self, info):
        """The EnvironmentFiles (of any unit, in order) that set a variable the drop-in manages."""
        paths = unique(path for unit in info.values() for path in self.overrides(unit["env_files"]))
        found = [dict(file=path, names=list(values)) for path, values in
                 _systemd.overriding(paths, self.p["managed_env"], self.env_files.read)]
        for path in paths:
            if path in self.env_files.unread:
                self.problems.append("the EnvironmentFile %s: replace it with a regular file only root can write"
                                     " (rm it as root first; a link or a FIFO there is never followed)"
                                     % self.env_files.unread[path])
        if not found:
            return found
        files = "; ".join("%s (%s)" % (c["file"], ", ".join(c["names"])) for c in found)
        keys = unique(k for c in found for k in c["names"])
        if self.p["env_conflicts"] == "fail":
            self.problems.append(
                "%s set variables that the drop-in %s manages (values not shown). The start script re-sources these"
                " files, so they win over the drop-in: remove %s from them%s, or set model_cache_env_conflicts: warn"
                % (files, self.p["dropin_name"], ", ".join(keys),
                   " (give the token in model_cache_token instead)"
                   if any(k in _systemd.TOKEN_KEYS for k in keys) else ""))
        else:
            self.warnings.append("%s override the drop-in %s (values not shown). The verification reports the"
                                 " values the agents really use." % (files, self.p["dropin_name"]))
        return found


def exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


# --- verify ----------------------------------------------------------------------------------------------------

class Verify(Checks):
    """Reads only (and waits). `run()` returns the result; `env_failed` tells whether the processes' settings
    fail the run (its `not_ready` entries tell whether readiness does)."""

    def __init__(self, params, run_command, as_user, http_get, clock=time.monotonic, sleep=time.sleep):
        super().__init__(params, run_command, as_user)
        self.http_get = http_get  # _systemd.http_get: (url, timeout) -> (status or None, headers, body or error)
        self.clock, self.sleep = clock, sleep
        self.env_failed = False
        self.unread = {}  # unit -> why its process's environment was not read

    def run(self):
        p = self.p
        self.read_token_file()
        names = list(self.units)
        restarted = [name for name in names if name in p["restarted"]]
        answers, passed = self.wait(restarted)
        states, texts, props_of = {}, {}, {}
        for name in names:
            try:
                props_of[name] = _systemd.show(self.run_command, name, SHOW_PROPS)
                self.secrets.add_tokens(props_of[name]["Environment"])
                states[name], texts[name] = unit_state(props_of[name]), state_text(props_of[name])
            except _errors.Failure as exc:
                states[name], texts[name] = unit_state({}), exc.msg
        not_ready = []
        for name in names:
            was_restarted = name in restarted
            if states[name]["active_state"] == "active" and (not was_restarted or name in passed):
                continue
            how, target = _systemd.ready_check(self.units[name], p["agent_ports"])
            not_ready.append(dict(
                unit=name, restarted=was_restarted, awaited=self.awaited(how, target) if was_restarted
                else "ActiveState=active",
                last=answers.get(name) if was_restarted and name in answers
                else states[name]["active_state"] or texts[name],
                state=texts[name], journal=[]))
        for entry in not_ready:
            if p["journal_lines"] > 0:
                entry["journal"] = [self.mask(line) for line in _systemd.journal_tail(
                    self.run_command, entry["unit"], p["journal_lines"])]
        ready = [name for name in names if name not in [e["unit"] for e in not_ready]]
        environment, checked = [], []
        if not not_ready and p["state"] == "present" and p["expected_env"]:
            environment, checked = self.check_environment(names, states, props_of)
        result = dict(ready=ready, not_ready=not_ready, units=states, environment=environment)
        result["msg"] = self.mask(self.message(restarted, ready, not_ready, environment, checked))
        for entry in not_ready:
            entry["last"] = self.mask(entry["last"])
        return result

    # waiting ---------------------------------------------------------------------------------------------------
    def wait(self, restarted):
        """Probe each restarted unit until it is active with a new process and ready, or the deadline passes.
        ({unit: the last answer}, {units that passed})."""
        deadline = self.clock() + self.p["ready_timeout"]
        pending, answers, passed = list(restarted), {}, set()
        while True:
            for name in list(pending):
                ok, answers[name] = self.probe(name, deadline)
                if ok:
                    pending.remove(name)
                    passed.add(name)
            left = deadline - self.clock()
            if not pending or left <= 0:
                return answers, passed
            self.sleep(min(self.p["interval"], left))

    def probe(self, name, deadline):
        """(ready, what the unit answered) for one look at a restarted unit."""
        try:
            props = _systemd.show(self.run_command, name, SHOW_PROPS)
        except _errors.Failure as exc:
            return False, exc.msg
        self.secrets.add_tokens(props["Environment"])
        now = unit_state(props)
        if now["active_state"] != "active":
            return False, "the unit is %s/%s%s" % (now["active_state"] or "?", now["sub_state"] or "?",
                                                   " (Result=%s)" % now["result"] if now["result"] else "")
        if not _systemd.restarted_since(self.p["previous"].get(name), now):
            return False, "the unit still runs MainPID %d, the process from before its restart" % now["main_pid"]
        how, target = _systemd.ready_check(self.units[name], self.p["agent_ports"])
        left = max(1, int(deadline - self.clock()))
        if how == "none":
            return True, "active"
        if how == "http":
            ready, status, body = _systemd.ready_url(self.http_get, target, min(self.p["http_timeout"], left))
            if not status:
                return False, "no answer: %s" % clip(body)
            return ready, "HTTP %d%s" % (
                status, " " + clip(body) if status == 200 and body.strip() else "")
        if how == "command":
            try:
                argv = shlex.split(target)
            except ValueError as exc:
                return False, "the command cannot be split into words: %s" % exc
            if not argv:
                return False, "the command is empty"
            rc, _out, err = self.run_command(argv, timeout=min(self.p["command_timeout"], left))
            if rc is None:
                return False, "the command %s" % err
            return rc == 0, "rc %d: %s" % (rc, clip(err))
        return False, "no readiness check is known for the unit"

    @staticmethod
    def awaited(how, target):
        if how == "http":
            return "GET %s answering 200 with ready: true" % target
        if how == "command":
            return "the command `%s` exiting 0" % target
        if how == "unknown":
            return "a readiness check (none is known: set ready_url, ready_port, ready_command or ready: false)"
        return "ActiveState=active"

    # the processes' settings -----------------------------------------------------------------------------------
    def check_environment(self, names, states, props_of):
        """[{unit, pid, key, value, source}] where a unit's process (MainPID and children, read as the unit's
        user) differs from expected_env; the units whose processes were read."""
        expected = self.p["expected_env"]
        findings, checked = [], []
        for name in names:
            pid = states[name]["main_pid"]
            if pid <= 0 or name not in props_of:
                continue
            checked.append(name)
            user = props_of[name].get("User") or "root"
            _effective, sources = _systemd.effective_environment(
                {}, self.overrides(props_of[name]["EnvironmentFiles"]), self.p["managed_env"], self.env_files.read)
            found = _systemd.process_differences(self.as_user, user, pid, expected, self.secrets)
            if found is None or isinstance(found, _systemd.ChildTimeout):
                self.unread[name] = "could not be read as %s" % user if found is None else \
                    "was not read as %s: reading it %s" % (user, found.describe())
                findings.append(dict(unit=name, pid=pid, key="/proc/%d/environ" % pid, value="not readable",
                                     source=""))
                continue
            for process, key, value in found:
                findings.append(dict(unit=name, pid=process, key=key, value=value,
                                     source=", ".join(sources.get(key, []))))
        for item in findings:
            item["value"] = self.mask(item["value"])
        self.env_failed = bool(findings) and (
            self.p["env_conflicts"] == "fail" or any(not item["source"] for item in findings))
        return findings, checked

    # the message -----------------------------------------------------------------------------------------------
    def message(self, restarted, ready, not_ready, environment, checked):
        p = self.p
        if not_ready:
            text = ("Restarted %s; back and ready: %s; not back: %s. " % (
                ", ".join(restarted), ", ".join(ready) or "none", ", ".join(e["unit"] for e in not_ready))
                if restarted else "")
            return text + " ".join(self.not_ready_text(entry) for entry in not_ready)
        parts = ["Restarted %s: all back and ready (%s)." % (", ".join(restarted), ", ".join(ready))
                 if restarted else ""]
        if environment:
            parts.append("The running agents do not use the drop-in's settings: " + " ".join(
                self.environment_text(item) for item in environment))
        elif checked:
            parts.append("%s run with %s as the drop-in sets them (MainPID and children)."
                         % (", ".join(checked), ", ".join(p["expected_env"])))
        return " ".join(part for part in parts if part)

    def not_ready_text(self, entry):
        p = self.p
        unit, restarted = entry["unit"], entry["restarted"]
        said = p["restart_errors"].get(unit)
        text = "%s is not %sready%s: awaited %s; last result: %s. systemctl: %s." % (
            unit, "back and " if restarted else "",
            " within %s s of its restart" % p["ready_timeout"] if restarted else "",
            entry["awaited"], entry["last"], entry["state"])
        if p["dropin_name"]:
            text += " Drop-in: %s%s%s." % (dropin_path(unit, p["dropin_name"]),
                                           " (removed)" if p["state"] == "absent" else "",
                                           "; systemctl restart said: %s" % said if said else "")
        elif said:
            text += " systemctl restart said: %s." % said
        if p["journal_lines"] > 0:
            text += " Last %d lines of journalctl -u %s:\n%s\n" % (
                p["journal_lines"], unit, "\n".join(entry["journal"]))
        return text

    def environment_text(self, item):
        if item["key"].startswith("/proc/"):
            return "%s (pid %s): its environment %s; it must be read to check the drop-in's settings." % (
                item["unit"], item["pid"], self.unread.get(item["unit"], "could not be read"))
        return "%s (pid %s) has %s=%s, the drop-in sets %s; %s." % (
            item["unit"], item["pid"], item["key"], item["value"], self.p["expected_env"].get(item["key"], "it"),
            "set by %s, which the start script re-sources" % item["source"] if item["source"]
            else "not from the unit's EnvironmentFiles: look for a later drop-in or the start script")


# Run by the fetch interpreter itself: for each requirement, the installed version and whether it satisfies it.
# packaging comes with pip in every venv that ansible.builtin.pip built.
_TOOL_SCRIPT = r"""
import json, sys
from importlib.metadata import version, PackageNotFoundError
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
found = {}
# the requirements, then after "--" what a follow-up (fetch_tool's `then`) reads
args = sys.argv[1:]
specs = args[:args.index("--")] if "--" in args else args
for spec in specs:
    try:
        req = Requirement(spec)
    except Exception:
        found[spec] = None
        continue
    try:
        have = version(req.name)
    except PackageNotFoundError:
        found[spec] = {"name": req.name, "version": None, "ok": False}
        continue
    found[spec] = {"name": req.name, "version": have, "ok": req.specifier.contains(have, prereleases=True)}
print(json.dumps(found))
"""


def fetch_tool(python, requirements, run_command, named=False, then=None):
    """Whether the interpreter that runs the fetch exists and has `requirements` installed, so that a run whose
    tool is ready skips the install. A requirement that is not a name with a version range (a path, a URL) counts
    as unsatisfied: the install then runs and decides. Returns (state, problem or None, follow-up's answer).

    `then` (script, args, timeout): more work for the fetch interpreter once the tool is there (the preflight's
    fetch plan), run by the same child after the check when every requirement is satisfied, so that a warm run
    starts that interpreter once; the script reads its args after "--" in sys.argv and prints its answer as the
    last line (returned, else None)."""
    state = {"python": python, "exists": False, "satisfied": False, "installed": {}}
    if not python:
        return state, None, None
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        if named:
            return state, ("model_cache_python %s does not exist: name an interpreter that has huggingface_hub"
                           " (e.g. the agents' venv) or leave it empty to build a venv for the fetch" % python), None
        return state, None, None
    state["exists"] = True
    script, args, timeout = then if then else ("", [], None)
    if not requirements:
        state["satisfied"] = True
        if not then:
            return state, None, None
        rc, out, err = run_command([python, "-I", "-c", "import sys\n" + script, "--"] + list(args), timeout=timeout)
        return state, None, (rc, out, err)
    argv = [python, "-I", "-c", _TOOL_SCRIPT]
    if then:
        argv[-1] += ("if all(v and v['ok'] for v in found.values()):\n"
                     + "".join("    " + line + "\n" for line in script.strip().splitlines()))
        rc, out, err = run_command(argv + list(requirements) + ["--"] + list(args), timeout=timeout)
    else:
        rc, out, err = run_command(argv + list(requirements))
    if rc != 0:
        return state, None, (rc, out, err) if then else None
    lines = out.strip().splitlines()
    try:
        found = json.loads(lines[0])
    except (ValueError, IndexError):
        return state, None, None
    state["installed"] = dict((v["name"], v["version"]) for v in found.values() if v)
    state["satisfied"] = all(v and v["ok"] for v in found.values())
    return state, None, (rc, "\n".join(lines[1:]), err) if then and state["satisfied"] else None
