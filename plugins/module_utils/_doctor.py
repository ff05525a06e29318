# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only checks of a host's model cache, its agents and their route to the Hub (hf_doctor).

Each check adds findings: dict(check, subject, verdict, detail, fix). Nothing here writes to the host.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pwd
import re
import shlex
import stat
import subprocess

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
RANK = {SKIP: 0, OK: 1, WARN: 2, FAIL: 3}
TOKEN_KEYS = ("HF_TOKEN", "HF_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN")
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
_SECRET_RE = re.compile(r"hf_[A-Za-z0-9]{6,}")


def finding(check, subject, verdict, detail, fix=""):
    return dict(check=check, subject=subject, verdict=verdict, detail=detail, fix=fix)


def worst(findings):
    return max((f["verdict"] for f in findings), key=RANK.get, default=SKIP)


def mask(text):
    return _SECRET_RE.sub("hf_***", text)


# --- systemd ---------------------------------------------------------------------------------------------------

def parse_show(text):
    """`systemctl show` output -> dict; EnvironmentFiles is a list (one line each), Environment a dict."""
    props = {"EnvironmentFiles": [], "Environment": {}}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "EnvironmentFiles":
            props[key].append(re.sub(r" \(ignore_errors=(yes|no)\)$", "", value))
        elif key == "Environment":
            try:
                words = shlex.split(value)
            except ValueError:
                words = value.split()
            for word in words:
                name, eq, val = word.partition("=")
                if eq:
                    props[key][name] = val
        else:
            props[key] = value
    return props


def read_env_file(path):
    """KEY=VALUE lines of an EnvironmentFile (or a file a start script sources): {key: value}, None if absent."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    values = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, eq, value = line.partition("=")
        if eq and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
    return values


def shown(key, value):
    """A value as the report may show it: tokens only as <set>/<unset>."""
    if value is None:
        return "<unset>"
    return "<set>" if key in TOKEN_KEYS else value


def matches(expected, actual):
    if expected == "<set>":
        return actual is not None and actual != ""
    if expected == "<unset>":
        return actual is None
    return actual == expected


# --- the checks ------------------------------------------------------------------------------------------------

class Doctor:
    def __init__(self, params, run_command, as_user, http_get):
        self.p = params
        self.run_command = run_command  # argv -> (rc, out, err)
        self.as_user = as_user  # (user, func, *args) -> func's JSON-able result, run with the user's ids
        self.http_get = http_get  # (url, token) -> (status or None, headers, body or error text)
        self.findings = []
        self.units = {}

    def add(self, *args, **kwargs):
        self.findings.append(finding(*args, **kwargs))

    def run(self):
        for name in self.p["units"]:
            self.units[name] = self.unit(name)
        self.check_cache()
        for model in self.p["models"]:
            self.check_model(model)
        self.check_token()
        self.check_hub()
        for name, props in self.units.items():
            self.check_environment(name, props)
            if self.p["journal"]:
                self.check_journal(name, props)
        return self.findings

    # units -------------------------------------------------------------------------------------------------
    def unit(self, name):
        rc, out, err = self.run_command(["systemctl", "show", "--property=" + SHOW_PROPS, "--", name])
        if rc != 0:
            self.add("unit", name, FAIL, "systemctl show failed: %s" % (err.strip() or rc),
                     "run the doctor on a host booted with systemd")
            return None
        props = parse_show(out)
        if props.get("LoadState") != "loaded":
            self.add("unit", name, FAIL, "the unit is %s" % props.get("LoadState", "unknown"),
                     "install the unit, or remove it from model_cache_units")
            return None
        state = "%s/%s" % (props.get("ActiveState"), props.get("SubState"))
        url = self.p["ready_urls"].get(name)
        if props.get("ActiveState") != "active":
            self.add("unit", name, FAIL, "the unit is %s" % state,
                     "journalctl -u %s -n 50, then systemctl restart %s" % (name, name))
        elif url:
            status, _headers, body = self.http_get(url, None)
            try:
                answer = json.loads(body)
            except ValueError:
                answer = None
            if status == 200 and not (isinstance(answer, dict) and answer.get("ready", True) is not True):
                self.add("unit", name, OK, "%s, GET %s answers 200" % (state, url))
            else:
                self.add("unit", name, FAIL, "%s but GET %s answers %s" % (state, url, status or body[:200]),
                         "journalctl -u %s -n 50: the agent did not finish loading its model" % name)
        else:
            self.add("unit", name, OK, state)
        props["user"] = props.get("User") or "root"
        return props

    # cache -------------------------------------------------------------------------------------------------
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
        folders = [_cache.repo_folder_name(m["repo_id"], m["repo_type"]) for m in self.p["models"]]
        commits = {}
        for model in self.p["models"]:
            commit = self.commit_of(model)
            if commit:
                commits[_cache.repo_folder_name(model["repo_id"], model["repo_type"])] = commit
        for user in self.users():
            problems = self.as_user(user, access_problems, cache, folders, commits)
            if problems is None:
                self.add("cache", "%s as %s" % (cache, user), WARN, "could not switch to user %s" % user,
                         "check that the user exists on the host")
            elif problems:
                self.add("cache", "%s as %s" % (cache, user), FAIL, "; ".join(problems[:5]),
                         "run justnews.huggingface.prefetch again (it sets the owner and modes), or"
                         " chown -R %s %s" % (user, cache))
            else:
                self.add("cache", "%s as %s" % (cache, user), OK,
                         "%s can read the snapshots and take the locks" % user)

    def commit_of(self, model):
        repo = _cache.RepoCache(self.p["cache_dir"], model["repo_id"], model["repo_type"])
        try:
            if _cache.is_commit(model["revision"]):
                return model["revision"]
            return repo.read_ref(model.get("ref") or model["revision"])
        except _cache.UnsafeName:
            return None

    def check_model(self, model):
        subject = "%s@%s" % (model["repo_id"], model["revision"])
        fix = "run justnews.huggingface.prefetch for this host (it fetches what is missing)"
        repo = _cache.RepoCache(self.p["cache_dir"], model["repo_id"], model["repo_type"])
        try:
            if not repo.root_dir(create=False):
                self.add("model", subject, FAIL, "not in the cache (%s)" % repo.root, fix)
                return
            repo.check_layout()
            commit = self.commit_of(model)
            if not commit:
                self.add("model", subject, FAIL, "the cache has no refs/%s" % (model.get("ref") or model["revision"]),
                         fix)
                return
            tree = repo.read_tree(commit)
            if tree is None:
                self.add("model", subject, FAIL, "no listing of %s in the cache (%s), so its files cannot be"
                         " checked offline" % (commit, repo.tree_path(commit)), fix)
                return
            wanted = select(tree, model.get("allow_patterns"), model.get("ignore_patterns"))
            missing = repo.missing_files(commit, wanted)
            if missing:
                self.add("model", subject, FAIL, "%d of %d files missing at %s: %s"
                         % (len(missing), len(wanted), commit, ", ".join(missing[:5])), fix)
                for problem in blob_problems(repo, commit, missing):
                    self.add(*problem)
                return
            size = sum(int(tree[path].get("size") or 0) for path in wanted)
            if self.p["verify_checksums"]:
                bad = repo.verify(commit, wanted, tree)
                if bad:
                    self.add("model", subject, FAIL, "content does not match the listing at %s: %s"
                             % (commit, ", ".join(b[0] for b in bad[:5])),
                             "run justnews.huggingface.prefetch: the module replaces files that fail their check")
                    return
            self.add("model", subject, OK, "complete at %s: %d files, %d bytes%s"
                     % (commit, len(wanted), size, ", checksums verified" if self.p["verify_checksums"] else ""))
        except (_cache.UnsafeName, OSError) as exc:
            self.add("model", subject, FAIL, "the cache cannot be read safely: %s" % exc,
                     "inspect %s; remove the repository (state absent) and fetch it again" % repo.root)

    # token and Hub -----------------------------------------------------------------------------------------
    def token(self):
        values = read_env_file(self.p["token_file"]) if self.p["token_file"] else None
        return (values or {}).get("HF_TOKEN") or (values or {}).get("HF_HUB_TOKEN")

    def check_token(self):
        path = self.p["token_file"]
        if not self.p["token_expected"]:
            self.add("token", path or "-", OK if not (path and os.path.exists(path)) else WARN,
                     "no token configured" + (" but %s exists" % path if path and os.path.exists(path) else ""),
                     "" if not (path and os.path.exists(path)) else
                     "remove it with the role (model_cache_token empty), or set model_cache_token")
            return
        try:
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
        status, _headers, body = self.http_get(url, self.token())
        if status == 200:
            self.add("token", path, OK, "present, root-only and accepted by %s" % self.p["endpoint"])
        elif status == 401:
            self.add("token", path, FAIL, "%s rejects the token (401)" % self.p["endpoint"],
                     "replace model_cache_token with a valid token and run justnews.huggingface.prefetch")
        else:
            self.add("token", path, WARN, "present and root-only; %s did not say whether it is valid (%s)"
                     % (self.p["endpoint"], status or mask(body)[:200]),
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
            status, headers, body = self.http_get(url, token)
            if status == 200:
                self.add("hub", subject, OK,
                         "reachable; the revision resolves" + (" with the token" if token else ""))
            elif status is None:
                self.add("hub", subject, FAIL, "unreachable from this host: %s" % mask(body)[:300],
                         "check the host's route, proxy (https_proxy/no_proxy) and DNS to %s, or use"
                         " model_cache_source: controller" % endpoint)
            elif status == 429:
                self.add("hub", subject, WARN, "rate-limited now (429, Retry-After %s)"
                         % headers.get("Retry-After", "-"),
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

    # environment and journal -------------------------------------------------------------------------------
    def check_environment(self, name, props):
        if not props:
            return
        expected = self.p["expected_env"]
        effective = dict(props["Environment"])
        source = {k: "the unit or its drop-ins" for k in effective}
        for path in props["EnvironmentFiles"] + self.p["sourced_files"]:
            values = read_env_file(path.replace("%i", instance(name)))
            for key, value in (values or {}).items():
                if key in self.p["managed_env"]:
                    effective[key], source[key] = value, path.replace("%i", instance(name))
        if self.p["token_expected"] and self.token() and self.p["token_file"] in props["EnvironmentFiles"]:
            effective.setdefault("HF_TOKEN", "<from %s>" % self.p["token_file"])
        unit_problems = []
        for key, want in sorted(expected.items()):
            got = effective.get(key)
            if not matches(want, got):
                unit_problems.append((key, shown(key, got), source.get(key, "nowhere")))
        if unit_problems:
            detail = "; ".join("%s=%s set by %s, the role sets %s" % (k, v, s, shown(k, expected[k]))
                               for k, v, s in unit_problems)
            self.add("environment", name, FAIL, detail,
                     "; ".join(("remove %s from %s (the start script re-sources it after systemd)" % (k, s))
                               if s != "nowhere" and s != "the unit or its drop-ins"
                               else "run justnews.huggingface.prefetch to rewrite the drop-in"
                               for k, v, s in unit_problems))
        pid = int(props.get("MainPID") or 0)
        if pid <= 0:
            return
        environ = self.as_user(props["user"], process_environment, pid, sorted(expected))
        if not environ:
            self.add("environment", "%s (pid %d)" % (name, pid), WARN,
                     "the process environment could not be read as %s" % props["user"], "")
            return
        stale = ["%s=%s" % (k, shown(k, v)) for p, env in environ for k, v in sorted(env.items())
                 if not matches(expected[k], v)]
        if stale and not unit_problems:
            self.add("environment", "%s (pid %d)" % (name, pid), FAIL,
                     "the running process has %s, unlike the unit's settings" % ", ".join(sorted(set(stale))),
                     "systemctl restart %s (it runs with settings from before the last change)" % name)
        elif stale:
            self.add("environment", "%s (pid %d)" % (name, pid), FAIL,
                     "the running process has %s" % ", ".join(sorted(set(stale))),
                     "fix the unit's environment above, then systemctl restart %s" % name)
        else:
            self.add("environment", "%s (pid %d)" % (name, pid), OK,
                     "the unit and its running process use %s as the role sets them"
                     % ", ".join(sorted(expected)))

    def check_journal(self, name, props):
        if not props:
            return
        invocation = props.get("InvocationID")
        argv = ["journalctl", "--no-pager", "-q", "-o", "cat"]
        argv += ["_SYSTEMD_INVOCATION_ID=" + invocation] if invocation else ["-b", "-u", name]
        rc, out, err = self.run_command(argv)
        if rc != 0:
            self.add("journal", name, WARN, "journalctl failed: %s" % err.strip()[:200], "")
            return
        counts, samples = journal_counts(out.splitlines())
        detail = "since the last start: %d download line(s), %d rate-limit line(s), %d offline error(s)" % (
            counts["downloads"], counts["rate_limited"], counts["offline_errors"])
        first = [mask(line)[:160] for line in samples]
        if counts["rate_limited"] or counts["offline_errors"]:
            self.add("journal", name, FAIL, detail + "; first: " + " | ".join(first),
                     "the agent goes to the Hub: fix the environment findings (HF_HUB_OFFLINE=1, HF_HUB_CACHE),"
                     " complete the model with justnews.huggingface.prefetch, then restart %s" % name)
        elif counts["downloads"]:
            self.add("journal", name, WARN, detail + "; first: " + " | ".join(first),
                     "the agent downloaded at start: fix the environment and model findings, then restart")
        else:
            self.add("journal", name, OK, detail)


def _entry_kind(cache_dir, xet_hash):
    try:
        return _store.describe(os.lstat(_store.entry_path(cache_dir, xet_hash)).st_mode)
    except OSError:
        return "not there"


def blob_problems(repo, commit, paths):
    """Why each snapshot file is not readable through the cache: findings (check, subject, verdict, detail, fix)
    for a dangling link, a link that leaves the repository's blobs or the shared store (a foreign link), and a
    store entry that is not a regular file. Links are read, never followed; nothing is opened."""
    found = []
    refetch = "then run justnews.huggingface.prefetch for this host (it fetches the file again)"
    for path in paths:
        entry = os.path.join(repo.snapshot_path(commit), path)
        try:
            st = os.lstat(entry)
        except OSError:
            continue  # plainly missing: the model finding names it
        if not stat.S_ISLNK(st.st_mode):
            continue
        target = os.readlink(entry)
        named = os.path.normpath(os.path.join(os.path.dirname(entry), target))
        if os.path.dirname(named) != os.path.normpath(repo.blobs) or not _cache.BLOB_RE.match(os.path.basename(named)):
            found.append(("blob", entry, FAIL, "foreign link: the snapshot file %s links to %r, outside this"
                          " repository's blobs folder" % (path, target),
                          "rm %s (removes the link only; do not follow it), find out what made it, %s"
                          % (entry, refetch)))
            continue
        blob = _store.inspect_blob(repo.cache_dir, named)
        if blob.kind == _store.MISSING:
            found.append(("blob", entry, FAIL, "dangling link: the snapshot file %s links to the blob %s, which is"
                          " not there" % (path, named), "rm %s, %s" % (entry, refetch)))
        elif blob.kind != _store.REFUSED:
            continue
        elif blob.xet_hash is None and os.path.islink(named):
            found.append(("blob", named, FAIL, "foreign link: the blob of %s links to %r, not into the shared store"
                          " (../../blobs/<2 hex>/<xet hash>)" % (path, os.readlink(named)),
                          "rm %s (removes the link only; do not follow it), find out what made it, %s"
                          % (named, refetch)))
        elif blob.xet_hash is None:
            found.append(("blob", named, FAIL, "the blob of %s is %s, not a regular file or a link into the shared"
                          " store" % (path, _store.describe(os.lstat(named).st_mode)),
                          "rm %s after finding out what made it, %s" % (named, refetch)))
        elif _entry_kind(repo.cache_dir, blob.xet_hash) == "not there":
            found.append(("blob", named, FAIL, "dangling link: the blob of %s links to the store entry %s, which is"
                          " not there" % (path, _store.entry_path(repo.cache_dir, blob.xet_hash)),
                          "rm %s, %s" % (named, refetch)))
        else:
            where = _store.entry_path(repo.cache_dir, blob.xet_hash)
            found.append(("blob", where, FAIL, "the store entry of %s is %s, not a regular file (never opened)"
                          % (path, _entry_kind(repo.cache_dir, blob.xet_hash)),
                          "rm %s as root after finding out what made it (the cache's owner can write the store),"
                          " %s" % (where, refetch)))
    return found


def instance(unit):
    match = re.match(r"^[^@]*@([^.]*)\.", unit)
    return match.group(1) if match else ""


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


# --- run with a unit's user ids (in a child process) -----------------------------------------------------------

def access_problems(cache, folders, commits):
    problems = []
    if not os.access(cache, os.R_OK | os.X_OK):
        return ["cannot enter %s" % cache]
    locks = os.path.join(cache, ".locks")
    for folder in folders:
        repo_locks = os.path.join(locks, folder)
        if not os.path.isdir(repo_locks):
            # huggingface_hub creates the repository's lock folder on its first download
            if os.path.isdir(locks) and not os.access(locks, os.W_OK | os.X_OK):
                problems.append("cannot create %s" % repo_locks)
        else:
            if not os.access(repo_locks, os.W_OK | os.X_OK):
                problems.append("cannot create locks in %s" % repo_locks)
            for name in sorted(os.listdir(repo_locks)):
                path = os.path.join(repo_locks, name)
                if name.endswith(".lock") and os.path.isfile(path) and not os.access(path, os.W_OK):
                    problems.append("cannot take the lock %s" % path)
                    break
        commit = commits.get(folder)
        if not commit:
            continue
        snapshot = os.path.join(cache, folder, "snapshots", commit)
        for dirpath, _dirs, names in os.walk(snapshot):
            for name in names:
                path = os.path.join(dirpath, name)
                try:
                    # O_NONBLOCK: a FIFO planted in the store must not hang the check
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                except OSError as exc:
                    problems.append("cannot read %s (%s)" % (os.path.relpath(path, cache), exc.strerror))
                    continue
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        os.read(fd, 1)
                    else:
                        problems.append("%s is not a regular file" % os.path.relpath(path, cache))
                except OSError as exc:
                    problems.append("cannot read %s (%s)" % (os.path.relpath(path, cache), exc.strerror))
                finally:
                    os.close(fd)
    return problems


def process_environment(pid, keys):
    """[(pid, {key: value or None})] for the process and its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            with open("/proc/%d/environ" % current, "rb") as handle:
                raw = handle.read().split(b"\0")
        except OSError:
            continue
        env = dict(item.decode("utf-8", "replace").split("=", 1) for item in raw if b"=" in item)
        found.append((current, {key: env.get(key) for key in keys}))
    return found


def run_as(user, func, *args):
    """Run func(*args) in a child with the user's uid, gid and groups; return its JSON result (None: failed)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.initgroups(user, entry.pw_gid)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            data = json.dumps(func(*args)).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as handle:
        data = handle.read()
    _pid, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    return json.loads(data.decode())


def run_command(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
