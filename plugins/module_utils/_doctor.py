# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only checks of a host's model cache, its agents and their route to the Hub (hf_doctor).

Each check adds findings: dict(check, subject, verdict, detail, fix). Nothing here writes to the host. How a unit,
its EnvironmentFiles, its process and its readiness are read and judged is _systemd's, shared with hf_units.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import stat

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _store
from ansible_collections.justnews.huggingface.plugins.module_utils import _systemd

# A unit that systemctl cannot show (_systemd.show's failure) is a finding, never the module's error kind.
CONTAINS_FAILURES_OF = ("_systemd",)
# The fix of a unit that systemctl cannot show, by the kind of _systemd.show's failure.
SHOW_FIXES = {_errors.TIMEOUT: "check systemd on the host (systemctl status), then run the doctor again",
              None: "run the doctor on a host booted with systemd"}
OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
RANK = {SKIP: 0, OK: 1, WARN: 2, FAIL: 3}
SHOW_PROPS = "Id,LoadState,ActiveState,SubState,User,MainPID,InvocationID,Environment,EnvironmentFiles"

# What an agent's journal shows when it goes to the Hub instead of the cache. huggingface_hub logs a warning
# per HTTP error it retries, and tqdm progress bars name each downloaded file.
JOURNAL_PATTERNS = {  # first match wins: a 429 on a /resolve/ URL is a rate limit, not a download
    "rate_limited": re.compile(r"\b429\b|Too Many Requests|rate.?limit", re.I),
    # not OfflineModeIsEnabled alone: agents log it for the login they attempt and tolerate offline
    "offline_errors": re.compile(r"LocalEntryNotFoundError|outgoing traffic has been disabled|cannot find the"
                                 r" requested files in the (local|disk) cache|couldn't connect to '?https?://"),
    "downloads": re.compile(r"Fetching \d+ files|Downloading|\|\s*[\d.]+[kMG]?B?/[\d.]+[kMG]?B?\s|/resolve/"),
}
_CHUNK = 4 * 1024 * 1024
REFETCH = "then run justnews.huggingface.prefetch for this host (it fetches the file again)"


def finding(check, subject, verdict, detail, fix=""):
    return dict(check=check, subject=subject, verdict=verdict, detail=detail, fix=fix)


def worst(findings):
    return max((f["verdict"] for f in findings), key=RANK.get, default=SKIP)


# --- the checks ------------------------------------------------------------------------------------------------

class Checks:
    """What every check shares: the parameters, the injected side effects, the findings so far, the token values
    seen and the environment files read (each once)."""

    def __init__(self, params, run_command, as_user, http_get, secrets=None):
        self.p = params
        self.run_command = run_command  # argv -> (rc, out, err); rc None when it did not finish in time
        self.as_user = as_user  # (user, func, *args) -> func's JSON-able result, None or a ChildTimeout
        self.http_get = http_get  # _systemd.http_get: (url, timeout, token, proxy) -> (status, headers, body)
        self.findings = []
        self.units = {}  # name -> its systemctl show properties (None when it is not loaded or not read)
        self.entries = {unit["name"]: unit for unit in params["units"]}  # _systemd.UNIT_OPTIONS
        self.secrets = secrets or _systemd.Secrets()  # the module's, so that its failures mask them too
        self.secrets.add(params.get("token"))
        self.env_files = _systemd.EnvFiles(self.secrets, params["cache_dir"])

    def add(self, *args, **kwargs):
        self.findings.append(finding(*args, **kwargs))

    def mask(self, text):
        return self.secrets.mask(text)

    def env_file(self, path, check, subject):
        """The file's {key: value}, read once; a file that is not read is a finding (once), then None."""
        first = path not in self.env_files.values
        values = self.env_files.read(path)
        if first and path in self.env_files.unread:
            self.add(check, path, FAIL, "%s (subject: %s)" % (self.env_files.unread[path], subject),
                     "replace %s with a regular file only root can write (rm it as root first; do not follow a"
                     " link or read a FIFO there)" % path if path in self.env_files.refused
                     else "check the file's path and permissions")
        return values

    def token(self):
        """The token the token file holds, or None."""
        values = self.env_file(self.p["token_file"], "token", self.p["token_file"]) if self.p["token_file"] else None
        return (values or {}).get("HF_TOKEN") or (values or {}).get("HF_HUB_TOKEN")


class UnitChecks(Checks):
    """Each unit: loaded, active and ready; the environment it gets and its process runs with; its journal."""

    def collect_secrets(self):
        """Every token value the units can see, read before any check quotes a line that may hold one."""
        if self.p["token_file"]:
            self.env_file(self.p["token_file"], "token", self.p["token_file"])
        for name, props in self.units.items():
            if not props:
                continue
            self.secrets.add_tokens(props["Environment"])
            for path in self.env_paths(name, props):
                self.env_file(path, "environment", name)

    def env_paths(self, name, props):
        return [path.replace("%i", _systemd.instance(name))
                for path in props["EnvironmentFiles"] + self.p["sourced_files"]]

    def unit(self, name):
        try:
            props = _systemd.show(self.run_command, name, SHOW_PROPS)
        except _errors.Failure as exc:
            self.add("unit", name, FAIL, exc.msg, SHOW_FIXES.get(exc.kind, SHOW_FIXES[None]))
            return None
        self.secrets.add_tokens(props["Environment"])
        if props.get("LoadState") != "loaded":
            self.add("unit", name, FAIL, "the unit is %s" % props.get("LoadState", "unknown"),
                     "install the unit, or remove it from model_cache_units")
            return None
        state = "%s/%s" % (props.get("ActiveState"), props.get("SubState"))
        how, target = _systemd.ready_check(self.entries[name], self.p["agent_ports"])
        url = self.p["ready_urls"].get(name) or (target if how == "http" else "")
        if props.get("ActiveState") != "active":
            self.add("unit", name, FAIL, "the unit is %s" % state,
                     "journalctl -u %s -n 50, then systemctl restart %s" % (name, name))
        elif url:
            ready, status, body = _systemd.ready_url(self.http_get, url, self.p["timeout"])
            if ready:
                self.add("unit", name, OK, "%s, GET %s answers 200" % (state, url))
            else:
                self.add("unit", name, FAIL, "%s but GET %s answers %s"
                         % (state, url, status or self.mask(body)[:200]),
                         "journalctl -u %s -n 50: the agent did not finish loading its model" % name)
        else:
            self.add("unit", name, OK, state)
        props["user"] = props.get("User") or "root"
        return props

    def check_environment(self, name, props):
        if not props:
            return
        expected = self.p["expected_env"]
        effective, sources = _systemd.effective_environment(
            props["Environment"], self.env_paths(name, props), self.p["managed_env"],
            lambda path: self.env_file(path, "environment", name))
        source = {k: sources[k][-1] if k in sources else "the unit or its drop-ins" for k in effective}
        if self.p["token_expected"] and self.token() and self.p["token_file"] in props["EnvironmentFiles"]:
            effective.setdefault("HF_TOKEN", "<from %s>" % self.p["token_file"])
        unit_problems = []
        for key, want in sorted(expected.items()):
            got = effective.get(key)
            if not _systemd.matches(want, got):
                unit_problems.append((key, _systemd.shown(key, got), source.get(key, "nowhere")))
        if unit_problems:
            detail = "; ".join("%s=%s set by %s, the role sets %s" % (k, v, s, _systemd.shown(k, expected[k]))
                               for k, v, s in unit_problems)
            self.add("environment", name, FAIL, detail,
                     "; ".join(("remove %s from %s (the start script re-sources it after systemd)" % (k, s))
                               if s != "nowhere" and s != "the unit or its drop-ins"
                               else "run justnews.huggingface.prefetch to rewrite the drop-in"
                               for k, v, s in unit_problems))
        pid = int(props.get("MainPID") or 0)
        if pid <= 0:
            return
        subject = "%s (pid %d)" % (name, pid)
        found = _systemd.process_differences(self.as_user, props["user"], pid, expected, self.secrets,
                                             _systemd.TOKEN_KEYS)
        if isinstance(found, _systemd.ChildTimeout):
            self.add("environment", subject, FAIL, "reading the process environment as %s %s"
                     % (props["user"], found.describe()),
                     "check the process (cat /proc/%d/status) and the host's load, then run the doctor again" % pid)
            return
        if found is None:
            self.add("environment", subject, WARN,
                     "the process environment could not be read as %s" % props["user"], "")
            return
        stale = ["%s=%s" % (key, value) for _pid, key, value in found]
        if stale and not unit_problems:
            self.add("environment", subject, FAIL,
                     "the running process has %s, unlike the unit's settings" % ", ".join(sorted(set(stale))),
                     "systemctl restart %s (it runs with settings from before the last change)" % name)
        elif stale:
            self.add("environment", subject, FAIL,
                     "the running process has %s" % ", ".join(sorted(set(stale))),
                     "fix the unit's environment above, then systemctl restart %s" % name)
        else:
            self.add("environment", subject, OK,
                     "the unit and its running process use %s as the role sets them"
                     % ", ".join(sorted(expected)))

    def check_journal(self, name, props):
        if not props:
            return
        invocation = props.get("InvocationID")
        argv = ["journalctl", "--no-pager", "-q", "-o", "cat"]
        argv += ["_SYSTEMD_INVOCATION_ID=" + invocation] if invocation else ["-b", "-u", name]
        rc, out, err = self.run_command(argv)
        if rc is None:
            self.add("journal", name, FAIL, "journalctl %s" % err,
                     "check systemd-journald on the host (systemctl status systemd-journald; a journal that"
                     " large may need journalctl --vacuum-size), then run the doctor again")
            return
        if rc != 0:
            self.add("journal", name, WARN, "journalctl failed: %s" % self.mask(err.strip())[:200], "")
            return
        counts, samples = journal_counts(out.splitlines())
        detail = "since the last start: %d download line(s), %d rate-limit line(s), %d offline error(s)" % (
            counts["downloads"], counts["rate_limited"], counts["offline_errors"])
        first = [self.mask(line)[:160] for line in samples]
        if counts["rate_limited"] or counts["offline_errors"]:
            self.add("journal", name, FAIL, detail + "; first: " + " | ".join(first),
                     "the agent goes to the Hub: fix the environment findings (HF_HUB_OFFLINE=1, HF_HUB_CACHE),"
                     " complete the model with justnews.huggingface.prefetch, then restart %s" % name)
        elif counts["downloads"]:
            self.add("journal", name, WARN, detail + "; first: " + " | ".join(first),
                     "the agent downloaded at start: fix the environment and model findings, then restart")
        else:
            self.add("journal", name, OK, detail)


class CacheChecks(Checks):
    """The cache as the units' users read it, and each model complete at its commit (read offline)."""

    def users(self):
        """The units' users; root when no unit is given, so that the cache is still checked."""
        return sorted({props["user"] for props in self.units.values() if props}) or (
            [] if self.units else ["root"])

    def check_cache(self):
        cache = self.p["cache_dir"]
        if not os.path.isdir(cache):
            self.add("cache", cache, FAIL, "the cache directory does not exist",
                     "run justnews.huggingface.prefetch on this host")
            return
        folders = [_names.repo_folder_name(m["repo_id"], m["repo_type"]) for m in self.p["models"]]
        commits = {}
        for model in self.p["models"]:
            commit = self.commit_of(model, report=False)
            if commit:
                commits.setdefault(_names.repo_folder_name(model["repo_id"], model["repo_type"]), []).append(commit)
        for user in self.users():
            problems = self.as_user(user, access_problems, cache, sorted(set(folders)),
                                    {k: sorted(set(v)) for k, v in commits.items()})
            subject = "%s as %s" % (cache, user)
            if isinstance(problems, _systemd.ChildTimeout):
                self.add("cache", subject, FAIL, "reading the cache as %s %s" % (user, problems.describe()),
                         "find what blocks a read there (a FIFO, a device, a hung mount): ls -la it as root, rm"
                         " what the cache's owner planted, then run justnews.huggingface.prefetch")
            elif problems is None:
                self.add("cache", subject, WARN, "could not switch to user %s" % user,
                         "check that the user exists on the host")
            elif problems:
                more = "; and %d more" % (len(problems) - 10) if len(problems) > 10 else ""
                self.add("cache", subject, FAIL, "; ".join(problems[:10]) + more,
                         "run justnews.huggingface.prefetch again (it sets the owner and modes), or"
                         " chown -R %s %s; rm (as root, without following it) any link, FIFO or device named"
                         " here" % (user, cache))
            else:
                self.add("cache", subject, OK, "%s can read the snapshots and take the locks" % user)

    def planted(self, rel, want):
        """A fail finding when the cache entry `rel` (or a folder on its way) is not what huggingface_hub
        makes there: a link, or not a `want` ("dir" or "file"). Read with lstat/readlink only. True if so."""
        cache = self.p["cache_dir"]
        try:
            st = _fs.lstat_at(cache, rel)
        except _fs.Refused as exc:
            self.add_planted(exc.path, "%s %s" % (exc.path, exc.reason))
            return True
        except OSError as exc:
            self.add_planted(os.path.join(cache, rel), "%s cannot be inspected (%s)"
                             % (os.path.join(cache, rel), exc.strerror or exc))
            return True
        if st is None:
            return False
        path = os.path.join(cache, rel)
        if stat.S_ISLNK(st.st_mode):
            self.add_planted(path, "planted link: %s is a symlink to %r, where huggingface_hub keeps a %s;"
                             " never followed" % (path, _fs.readlink_at(cache, rel),
                                                  "folder" if want == "dir" else "file"))
            return True
        if (want == "dir" and not stat.S_ISDIR(st.st_mode)) or (want == "file" and not stat.S_ISREG(st.st_mode)):
            self.add_planted(path, "%s is %s, not a %s; never opened" % (
                path, _fs.describe(st.st_mode), "folder" if want == "dir" else "regular file"))
            return True
        return False

    def add_planted(self, path, detail):
        if not any(f["check"] == "cache" and f["subject"] == path for f in self.findings):
            self.add("cache", path, FAIL, detail,
                     "rm %s as root (removes the entry only; do not follow it), find out what made it, %s"
                     % (path, REFETCH))

    def commit_of(self, model, report=True):
        """The commit a model's revision names: the revision itself, or what its ref records (read without
        following a link); None when there is none (with `report`, a planted ref is a finding)."""
        if _names.is_commit(model["revision"]):
            return model["revision"]
        folder = _names.repo_folder_name(model["repo_id"], model["repo_type"])
        try:
            rel = posixpath.join(folder, "refs", _names.check_ref_name(model.get("ref") or model["revision"]))
        except _names.UnsafeName:
            return None
        if report and self.planted(rel, "file"):
            return None
        try:
            data = _fs.read_file(self.p["cache_dir"], rel, 256)
        except (OSError, ValueError):
            return None
        value = (data or b"").decode("ascii", "replace").strip()
        return value if _names.is_commit(value) else None

    def check_model(self, model):
        subject = "%s@%s" % (model["repo_id"], model["revision"])
        fix = "run justnews.huggingface.prefetch for this host (it fetches what is missing)"
        repo = _cache.RepoCache(self.p["cache_dir"], model["repo_id"], model["repo_type"])
        folder = repo.folder_name
        unsafe = "inspect %s; remove the repository (state absent) and fetch it again" % repo.root
        try:
            if any(self.planted(rel, "dir") for rel in (
                    folder, ".locks", posixpath.join(".locks", folder),
                    *(posixpath.join(folder, sub) for sub in ("blobs", "refs", "trees", "snapshots")))):
                self.add("model", subject, FAIL, "the cache cannot be read safely: see the cache finding(s)", unsafe)
                return
            if not repo.root_dir(create=False):
                self.add("model", subject, FAIL, "not in the cache (%s)" % repo.root, fix)
                return
            repo.check_layout()
            ref = model.get("ref") or model["revision"]
            commit = self.commit_of(model)
            if not commit:
                if any(f["check"] == "cache" and f["subject"].startswith(os.path.join(repo.root, "refs"))
                       for f in self.findings):
                    self.add("model", subject, FAIL, "refs/%s cannot be read safely: see the cache finding" % ref,
                             unsafe)
                else:
                    self.add("model", subject, FAIL, "the cache has no refs/%s" % ref, fix)
                return
            if self.planted(posixpath.join(folder, "snapshots", commit), "dir") or \
                    self.planted(posixpath.join(folder, "trees", commit + ".json"), "file"):
                self.add("model", subject, FAIL, "the cache cannot be read safely at %s: see the cache finding"
                         % commit, unsafe)
                return
            tree = repo.read_tree(commit)
            if tree is None:
                self.add("model", subject, FAIL, "no listing of %s in the cache (%s), so its files cannot be"
                         " checked offline" % (commit, repo.tree_path(commit)), fix)
                return
            wanted = select(tree, model.get("allow_patterns"), model.get("ignore_patterns"))
            states = {path: snapshot_file(self.p["cache_dir"], folder, commit, path) for path in wanted}
            missing = [path for path in wanted if states[path].kind is None]
            if missing:
                self.add("model", subject, FAIL, "%d of %d files missing at %s: %s"
                         % (len(missing), len(wanted), commit, ", ".join(missing[:5])), fix)
                seen = set()
                for path in missing:
                    problem = states[path].problem
                    if problem and problem[1] not in seen:
                        seen.add(problem[1])
                        self.add(*problem)
                return
            size = sum(int(tree[path].get("size") or 0) for path in wanted)
            if self.p["verify_checksums"]:
                bad = [path for path in wanted if not content_matches(self.p["cache_dir"], states[path], tree[path])]
                if bad:
                    self.add("model", subject, FAIL, "content does not match the listing at %s: %s"
                             % (commit, ", ".join(bad[:5])),
                             "run justnews.huggingface.prefetch: the module replaces files that fail their check")
                    return
            self.add("model", subject, OK, "complete at %s: %d files, %d bytes%s"
                     % (commit, len(wanted), size, ", checksums verified" if self.p["verify_checksums"] else ""))
        except (_names.UnsafeName, OSError) as exc:
            self.add("model", subject, FAIL, "the cache cannot be read safely: %s" % exc, unsafe)


class HubChecks(Checks):
    """The token file and the route to the Hub, when the host is meant to reach it."""

    def check_token(self):
        path = self.p["token_file"]
        exists = bool(path) and os.path.lexists(path)
        if not self.p["token_expected"]:
            self.add("token", path or "-", OK if not exists else WARN,
                     "no token configured" + (" but %s exists" % path if exists else ""),
                     "" if not exists else
                     "remove it with the role (model_cache_token empty), or set model_cache_token")
            return
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                st = os.stat(path)
        except OSError:
            self.add("token", path, FAIL, "the token file is missing",
                     "run justnews.huggingface.prefetch with model_cache_token set (from Ansible Vault)")
            return
        if st.st_uid != 0 or st.st_mode & 0o077:
            self.add("token", path, FAIL, "the token file is readable beyond root (owner uid %d, mode %04o)"
                     % (st.st_uid, st.st_mode & 0o7777),
                     "chmod 0600 and chown root:root %s, then rotate the token" % path)
            return
        if not self.token():
            if not any(f["check"] == "token" and f["subject"] == path and f["verdict"] == FAIL
                       for f in self.findings):
                self.add("token", path, FAIL, "the token file holds no HF_TOKEN",
                         "run justnews.huggingface.prefetch with model_cache_token set")
            return
        for name, props in self.units.items():
            if props and path not in props["EnvironmentFiles"]:
                self.add("token", name, FAIL, "the unit does not read %s (EnvironmentFile=)" % path,
                         "run justnews.huggingface.prefetch: its drop-in loads the token file")
        if not self.p["reach_hub"]:
            self.add("token", path, OK, "present and root-only; not tested against the Hub (this host is"
                     " offline by design)")
            return
        url = self.p["endpoint"].rstrip("/") + "/api/whoami-v2"
        status, _headers, body = self.http_get(url, self.p["timeout"], self.token(), proxy=True)
        if status == 200:
            self.add("token", path, OK, "present, root-only and accepted by %s" % self.p["endpoint"])
        elif status == 401:
            self.add("token", path, FAIL, "%s rejects the token (401)" % self.p["endpoint"],
                     "replace model_cache_token with a valid token and run justnews.huggingface.prefetch")
        else:
            self.add("token", path, WARN, "present and root-only; %s did not say whether it is valid (%s)"
                     % (self.p["endpoint"], status or self.mask(body)[:200]),
                     "a mirror may not answer /api/whoami-v2: the model checks below still test access")

    def check_hub(self):
        endpoint = self.p["endpoint"].rstrip("/")
        if not self.p["reach_hub"]:
            self.add("hub", endpoint, SKIP, "not checked: this host receives its models from the controller"
                     " or a bundle and is not meant to reach the Hub")
            return
        token = self.token() if self.p["token_expected"] else None
        for model in self.p["models"]:
            subject = "%s (%s@%s)" % (endpoint, model["repo_id"], model["revision"])
            kind = {"model": "models", "dataset": "datasets", "space": "spaces"}[model["repo_type"]]
            url = "%s/api/%s/%s/revision/%s" % (endpoint, kind, model["repo_id"], model["revision"])
            status, headers, body = self.http_get(url, self.p["timeout"], token, proxy=True)
            if status == 200:
                self.add("hub", subject, OK,
                         "reachable; the revision resolves" + (" with the token" if token else ""))
            elif status is None:
                self.add("hub", subject, FAIL, "unreachable from this host: %s" % self.mask(body)[:300],
                         "check the host's route, proxy (https_proxy/no_proxy) and DNS to %s, or use"
                         " model_cache_source: controller" % endpoint)
            elif status == 429:
                self.add("hub", subject, WARN, "rate-limited now (429, Retry-After %s)"
                         % self.mask(str(headers.get("Retry-After", "-")))[:100],
                         "wait, set model_cache_token, or use model_cache_source: controller")
            elif status in (401, 403):
                self.add("hub", subject, FAIL, "%s refuses access (%d)" % (endpoint, status),
                         "set model_cache_token to a token with access to %s (gated: request access on its"
                         " page)" % model["repo_id"] if not token else
                         "grant the token access to %s, or replace model_cache_token" % model["repo_id"])
            elif status == 404:
                self.add("hub", subject, FAIL, "%s does not know this revision (404)" % endpoint,
                         "check repo_id and revision in model_cache_models")
            else:
                self.add("hub", subject, WARN, "answered %d" % status, "check %s and run again" % endpoint)


class Doctor(UnitChecks, CacheChecks, HubChecks):
    """Every check, in the order the findings are reported: `run()` returns them."""

    def run(self):
        for name in self.entries:
            self.units[name] = self.unit(name)
        self.collect_secrets()
        self.check_cache()
        for model in self.p["models"]:
            self.check_model(model)
        self.check_token()
        self.check_hub()
        for name, props in self.units.items():
            self.check_environment(name, props)
        if self.p["journal"]:
            for name, props in self.units.items():
                self.check_journal(name, props)
        for item in self.findings:  # whatever a check quoted (a journal line, a Hub's answer), no token in it
            for key in ("subject", "detail", "fix"):
                item[key] = self.mask(item[key])
        return self.findings


# --- a snapshot's files, read below the cache without following anything --------------------------------------

class SnapshotFile:
    """What a snapshot file leads to: `kind` FILE (blobs/<name> is a regular file), STORE (it links to a
    regular store entry) or None (not usable; `problem` is the finding that says why, when there is one)."""

    def __init__(self, kind=None, blob=None, xet_hash=None, problem=None):
        self.kind, self.blob, self.xet_hash, self.problem = kind, blob, xet_hash, problem


def _refused(exc):
    return SnapshotFile(problem=("cache", exc.path, FAIL, "%s %s; never followed" % (exc.path, exc.reason),
                                 "rm %s as root (removes the entry only; do not follow it), find out what made it,"
                                 " %s" % (exc.path, REFETCH)))


def _foreign(link, what, target, where):
    """A link (`what` of the file) that names something the library would not link to."""
    return SnapshotFile(problem=(
        "blob", link, FAIL, "foreign link: %s links to %r, %s" % (what, target, where),
        "rm %s (removes the link only; do not follow it), find out what made it, %s" % (link, REFETCH)))


def _dangling(link, what, missing):
    """A link (`what` of the file) whose target `missing` is not there."""
    return SnapshotFile(problem=("blob", link, FAIL, "dangling link: %s links to %s, which is not there"
                                 % (what, missing), "rm %s, %s" % (link, REFETCH)))


def snapshot_file(cache, folder, commit, path):
    """Classify `<folder>/snapshots/<commit>/<path>` with lstat and readlink from descriptors of the cache's
    folders: a snapshot link must name `../../blobs/<id>` of this repository, and that blob must be a regular
    file or a link of the library's form to a regular store entry. Nothing is followed or opened."""
    entry_rel = posixpath.join(folder, "snapshots", commit, path)
    entry = os.path.join(cache, entry_rel)
    try:
        st = _fs.lstat_at(cache, entry_rel)
        if st is None or not stat.S_ISLNK(st.st_mode):
            return SnapshotFile()  # plainly missing (or not a link): the model finding names it
        target = _fs.readlink_at(cache, entry_rel) or ""
        named = posixpath.normpath(posixpath.join(posixpath.dirname(entry_rel), target))
        if target.startswith("/") or posixpath.dirname(named) != posixpath.join(folder, "blobs") \
                or not _names.BLOB_RE.match(posixpath.basename(named)):
            return _foreign(entry, "the snapshot file %s" % path, target, "outside this repository's blobs folder")
        blob = os.path.join(cache, named)
        bst = _fs.lstat_at(cache, named)
        if bst is None:
            return _dangling(entry, "the snapshot file %s" % path, "the blob %s" % blob)
        if stat.S_ISREG(bst.st_mode):
            return SnapshotFile(_store.FILE, named)
        if not stat.S_ISLNK(bst.st_mode):
            return SnapshotFile(problem=(
                "blob", blob, FAIL, "the blob of %s is %s, not a regular file or a link into the shared store"
                " (never opened)" % (path, _fs.describe(bst.st_mode)),
                "rm %s after finding out what made it, %s" % (blob, REFETCH)))
        btarget = _fs.readlink_at(cache, named) or ""
        xet_hash = _store.parse_target(btarget)
        if xet_hash is None:
            return _foreign(blob, "the blob of %s" % path, btarget,
                            "not into the shared store (../../blobs/<2 hex>/<xet hash>)")
        entry_rel = posixpath.join(_store.STORE_DIR, xet_hash[:2], xet_hash)
        where = os.path.join(cache, entry_rel)
        est = _fs.lstat_at(cache, entry_rel)
        if est is None:
            return _dangling(blob, "the blob of %s" % path, "the store entry %s" % where)
        if not stat.S_ISREG(est.st_mode):
            return SnapshotFile(problem=(
                "blob", where, FAIL, "the store entry of %s is %s, not a regular file (never opened)"
                % (path, _fs.describe(est.st_mode)),
                "rm %s as root after finding out what made it (the cache's owner can write the store), %s"
                % (where, REFETCH)))
        return SnapshotFile(_store.STORE, named, xet_hash)
    except _fs.Refused as exc:
        return _refused(exc)


def open_content(cache, state):
    """A blocking descriptor of a present file's content (its blob or store entry), opened without following
    a link and only if it is a regular file."""
    if state.kind == _store.STORE:
        fd = _store.open_entry(cache, state.xet_hash)
        os.set_blocking(fd, True)
        return fd
    return _fs.open_file(cache, state.blob)


def content_matches(cache, state, entry):
    """The file's SHA-256 (LFS) or git blob id equals the listing's; False when it cannot be read safely."""
    if entry.get("lfs_sha256"):
        expected, digest, git = entry["lfs_sha256"], hashlib.sha256(), False
    elif entry.get("blob_id"):
        expected, git = entry["blob_id"], True
    else:
        return True
    try:
        fd = open_content(cache, state)
    except (OSError, _store.StoreRefused):
        return False
    try:
        if git:
            digest = hashlib.sha1(b"blob %d\0" % os.fstat(fd).st_size)
        while True:
            data = os.read(fd, _CHUNK)
            if not data:
                break
            digest.update(data)
    finally:
        os.close(fd)
    return digest.hexdigest() == expected


def journal_counts(lines):
    counts = {kind: 0 for kind in JOURNAL_PATTERNS}
    samples = []
    for line in lines:
        for kind, pattern in JOURNAL_PATTERNS.items():
            if pattern.search(line):
                counts[kind] += 1
                if len(samples) < 3:
                    samples.append(line)
                break
    return counts, samples


def select(tree, allow, ignore):
    """The files of a listing after allow/ignore patterns, as huggingface_hub filters them."""
    def norm(patterns):
        if isinstance(patterns, str):
            patterns = [patterns]
        return [p + "*" if p.endswith("/") else p for p in patterns or []]

    allow, ignore = norm(allow), norm(ignore)
    return sorted(path for path in tree
                  if (not allow or any(fnmatch.fnmatch(path, p) for p in allow))
                  and not any(fnmatch.fnmatch(path, p) for p in ignore))


# --- the cache as a unit's user reads it (run in a child with its ids: _systemd.run_as) ---------------------

def _problem(exc, cache):
    if isinstance(exc, _fs.Refused):
        return "%s %s; never followed" % (os.path.relpath(exc.path, cache), exc.reason)
    return "cannot read %s (%s)" % (os.path.relpath(exc.filename, cache) if exc.filename else "?",
                                    exc.strerror or exc)


def _lock_problems(cache, folder):
    """Whether this user can create and take the repository's locks; lock files are judged by lstat only."""
    problems = []
    locks_rel = posixpath.join(".locks", folder)
    where = os.path.join(cache, locks_rel)
    try:
        fd = _fs.open_dir(cache, locks_rel)
    except FileNotFoundError:
        # huggingface_hub creates the repository's lock folder on its first download
        try:
            os.close(_fs.open_dir(cache, ".locks"))
        except FileNotFoundError:
            return problems
        except _fs.Refused as exc:
            return ["%s %s; never followed" % (os.path.relpath(exc.path, cache), exc.reason)]
        if not os.access(os.path.join(cache, ".locks"), os.W_OK | os.X_OK):
            problems.append("cannot create %s" % where)
        return problems
    except _fs.Refused as exc:
        return ["%s %s; never followed" % (os.path.relpath(exc.path, cache), exc.reason)]
    except OSError as exc:
        return ["cannot enter %s (%s)" % (where, exc.strerror)]
    try:
        if not os.access(where, os.W_OK | os.X_OK):
            problems.append("cannot create locks in %s" % where)
        for name in sorted(os.listdir(fd)):
            if not name.endswith(".lock"):
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append("the lock %s is %s, not a regular file; never opened"
                                % (os.path.join(where, name), _fs.describe(st.st_mode)))
            elif not os.access(name, os.W_OK, dir_fd=fd):
                problems.append("cannot take the lock %s" % os.path.join(where, name))
    finally:
        os.close(fd)
    return problems


def _read_one(cache, rel, state=None):
    """Read a byte of a regular file (or of a present snapshot file's content) below the cache, opened with
    O_NOFOLLOW and O_NONBLOCK and checked with fstat first; the problem, or None."""
    _systemd.note(os.path.join(cache, rel))
    try:
        fd = open_content(cache, state) if state else _fs.open_file(cache, rel)
    except _fs.Refused as exc:
        return _problem(exc, cache)
    except _store.StoreRefused as exc:
        return "%s: %s" % (rel, exc)
    except OSError as exc:
        return "cannot read %s (%s)" % (rel, exc.strerror)
    try:
        os.read(fd, 1)
    except OSError as exc:
        return "cannot read %s (%s)" % (rel, exc.strerror)
    finally:
        os.close(fd)
    return None


def _snapshot_problems(cache, folder, commit):
    problems = []
    base = posixpath.join(folder, "snapshots", commit)
    try:
        for rel, st in _fs.walk(cache, base):
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISREG(st.st_mode):
                problem = _read_one(cache, rel)
            elif stat.S_ISLNK(st.st_mode):
                state = snapshot_file(cache, folder, commit, posixpath.relpath(rel, base))
                if state.kind is None:
                    problem = state.problem[3] if state.problem else "%s is not usable" % rel
                else:
                    problem = _read_one(cache, rel, state)
            else:
                problem = "%s is not a regular file" % rel
            if problem:
                problems.append(problem)
    except _fs.Refused as exc:
        problems.append(_problem(exc, cache))
    except OSError as exc:
        problems.append("cannot read %s (%s)" % (base, exc.strerror))
    return problems


def access_problems(cache, folders, commits):
    """What keeps this user (the child runs with a unit's ids) from reading the snapshots and taking the
    locks. Everything below the cache is reached from its descriptor without following a link the library
    would not make; a FIFO, device or socket is never read."""
    problems = []
    if not os.access(cache, os.R_OK | os.X_OK):
        return ["cannot enter %s" % cache]
    for folder in folders:
        problems += _lock_problems(cache, folder)
        wanted = commits.get(folder) or []
        for commit in [wanted] if isinstance(wanted, str) else wanted:
            if _names.is_commit(commit):
                problems += _snapshot_problems(cache, folder, commit)
    return problems
