# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of hf_snapshot on one repository: plan from the cache (and at most two metadata requests), then
download or take in the missing blobs, check them and move the ref. Used by the hf_snapshot module, and by
hf_receive, which runs it for several models in one process.

`module` is anything with `params` (every option of hf_snapshot, see ARGUMENT_SPEC), `check_mode` and
`warn(msg)`.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import threading
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.formatters import bytes_to_human

from ansible_collections.justnews.huggingface.plugins.module_utils import _space
from ansible_collections.justnews.huggingface.plugins.module_utils import _ownership
from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _hub
from ansible_collections.justnews.huggingface.plugins.module_utils import _library
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

# huggingface_hub reads these at import time; a module run must reach the Hub and print nothing on stdout.
os.environ.update(HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
os.environ.pop("TRANSFORMERS_OFFLINE", None)

HF_IMPORT_ERROR = None
try:
    from huggingface_hub import constants as hf_constants
    from huggingface_hub.utils import filter_repo_objects
except ImportError:
    hf_constants = None
    HF_IMPORT_ERROR = traceback.format_exc()

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_DOWNLOAD_MEMORY = "512M"


def require_library(module, reason):
    """End the run as missing_library when huggingface_hub cannot be imported, or lacks a part the modules rely
    on (_library); `reason` says what the module needs it for."""
    if HF_IMPORT_ERROR:
        _errors.fail(module, _errors.MISSING_LIBRARY,
                     missing_required_lib("huggingface_hub", reason=reason) +
                     " Install it for %s, or point ansible_python_interpreter at a venv that has it."
                     % sys.executable, exception=HF_IMPORT_ERROR)
    unsupported = _library.check()
    if unsupported:
        _errors.fail(module, _errors.MISSING_LIBRARY, unsupported)


# What went wrong with the Hub, for the message; the fix comes from _errors, after it.
HUB_FAILURES = {
    _errors.REPO_NOT_FOUND: "repository %(repo)s was not found on %(endpoint)s",
    _errors.REVISION_NOT_FOUND: "revision '%(revision)s' does not exist in %(repo)s",
    _errors.ENTRY_NOT_FOUND: "a file listed in %(repo)s could not be fetched from %(endpoint)s",
    _errors.GATED: "%(repo)s is gated: only an account that accepted its terms may fetch it",
    _errors.UNAUTHORIZED: "the Hub refused access to %(repo)s: the token is missing, invalid or lacks read access",
    _errors.RATE_LIMITED: "rate-limited by %(endpoint)s (HTTP 429)",
    _errors.SERVER_ERROR: "%(endpoint)s kept failing with server errors",
    _errors.UNREACHABLE: "cannot connect to %(endpoint)s",
    _errors.TRANSIENT: "the connection to %(endpoint)s kept dropping",
    _errors.TIMEOUT: "%(endpoint)s did not answer in time",
    _errors.INTEGRITY: "%(endpoint)s sent a file whose size or content does not match its own listing (a mirror or"
                       " proxy may serve stale or damaged files)",
    _errors.UNSAFE_LISTING: "%(endpoint)s answered with a name that would lead outside the cache, or contradicts its"
                            " own listing",
    _errors.DISK_FULL: "no space left in %(cache_dir)s",
    _errors.NOT_WRITABLE: "%(cache_dir)s is not writable by the user running the module",
    _errors.OTHER: "fetching %(repo)s failed",
}


class Plan:
    """What a present/latest run would change, decided from the cache and at most two metadata requests."""

    def __init__(self, **values):
        self.commit = values["commit"]
        self.tree = values["tree"]
        self.tree_fetched = values["tree_fetched"]
        self.wanted = values["wanted"]
        self.absent = values["absent"]
        self.reusable = values["reusable"]
        self.missing = values["missing"]
        self.old_ref = values["old_ref"]
        self.old_link = values["old_link"]
        self.orphans = values["orphans"]
        self.unverified = values["unverified"]
        self.ownership = values["ownership"]
        self.snapshot_existed = values["snapshot_existed"]

    @property
    def missing_blobs(self):
        """[{name, size, files}] for the blobs behind the missing files, each once."""
        blobs = {}
        for path in self.missing:
            entry = self.tree.get(path, {})
            name = _names.blob_name(entry)
            item = blobs.setdefault(name, {"name": name, "size": int(entry.get("size") or 0), "files": []})
            item["files"].append(path)
        return list(blobs.values())

    @property
    def missing_bytes(self):
        return sum(int(self.tree.get(f, {}).get("size") or 0) for f in self.missing)

    def changes(self, snapshot, link):
        return bool(self.absent or self.old_ref != self.commit or (link and self.old_link != snapshot)
                    or self.orphans or self.unverified or self.tree_fetched or self.ownership)


class Snapshot:
    def __init__(self, module):
        self.module = module
        p = module.params
        self.p = p
        self.check = module.check_mode
        self.started = time.monotonic()
        self.result = {"changed": False, "retries_used": 0}
        self.cache_dir = p["cache_dir"] or (os.path.join(p["hf_home"], "hub") if p.get("hf_home") else None) \
            or _names.default_cache_dir(os.environ)
        self.result["cache_dir"] = self.cache_dir
        self.endpoint = (p["endpoint"] or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.revision = p["revision"]
        self.retrier = _hub.Retrier(p["retries"], p["timeout"])
        self.validate()
        self.ref = p["ref"] or ("main" if _names.is_commit(self.revision) else self.revision)
        self.hub = _hub.Hub(self.endpoint, p["token"] or None, p["repo_id"], p["repo_type"])
        self.repo = _cache.RepoCache(self.cache_dir, p["repo_id"], p["repo_type"])
        self.mode = self._parse_mode(p["mode"])
        self.dir_mode = self._parse_dir_mode(p.get("dir_mode"))
        try:
            self.margin = _space.parse_size(p["free_space_margin"])
        except ValueError:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "free_space_margin must be bytes (an integer >= 0) or a size such as '512M' or '1G', got"
                                  " %r" % (p["free_space_margin"],))
        self.memory = self._parse_memory(p.get("download_memory", DEFAULT_DOWNLOAD_MEMORY))
        try:
            self.uid, self.gid = _ownership.resolve_ids(p["owner"], p["group"])
        except KeyError as exc:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "owner or group does not exist on the host: %s; create it first or fix 'owner'/'group'"
                                  % exc)
        self.lock = None
        if p.get("shared_blobs") is False:
            # Read by the library at import (already done here) and at each download: set both before the fork.
            os.environ["HF_HUB_DISABLE_SHARED_BLOBS"] = "1"
            if hf_constants is not None:
                hf_constants.HF_HUB_DISABLE_SHARED_BLOBS = True
        if p.get("read_timeout"):
            # How long one request for a file (its HEAD or its download) may receive nothing before it counts as
            # dropped (the library's 10 s unless set). A caching mirror that fetches a file once for all callers
            # sends the waiting ones no byte until its own fetch of the block is done (Olah: 64 MiB blocks), and
            # answers their HEADs late under load.
            os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = os.environ["HF_HUB_ETAG_TIMEOUT"] = str(p["read_timeout"])
            if hf_constants is not None:
                hf_constants.HF_HUB_DOWNLOAD_TIMEOUT = hf_constants.HF_HUB_ETAG_TIMEOUT = p["read_timeout"]
        if p.get("xet") is False:
            # Every byte from the endpoint's resolve route, none from a CAS it hands out (a mirror's bypass).
            os.environ["HF_HUB_DISABLE_XET"] = "1"
            if hf_constants is not None:
                hf_constants.HF_HUB_DISABLE_XET = True

    # --- input -------------------------------------------------------------
    def validate(self):
        p = self.p
        try:
            _names.check_repo_id(p["repo_id"])
            if not _names.is_commit(self.revision):
                _names.check_ref_name(self.revision, "revision")
            if p["ref"] is not None:
                _names.check_ref_name(p["ref"], "ref")
        except _names.UnsafeName as exc:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s: fix the argument" % exc)
        if p["ref"] and _names.is_commit(p["ref"]):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "ref names a branch or tag under refs/, not a commit: got %r" % p["ref"])
        if p["listing"] is not None and not _names.is_commit(self.revision):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "listing describes one commit: pin 'revision' to the 40-character commit it lists")
        if p["blobs_from"] and not os.path.isdir(p["blobs_from"]):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "blobs_from %s is not a directory: copy the files of missing_blobs there first"
                                  % p["blobs_from"])
        if p["retries"] < 0 or p["timeout"] <= 0:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "retries must be >= 0 and timeout > 0 (seconds)")
        if p.get("read_timeout") is not None and not 0 < p["read_timeout"] <= p["timeout"]:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "read_timeout must be > 0 and at most timeout (%d s), got %d"
                                  % (p["timeout"], p["read_timeout"]))
        link = p["link"]
        if link and _names.location_inside(link, self.cache_dir):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "link %s lies inside cache_dir %s, where it would replace the cache's own files: choose"
                                  " a path outside the cache, such as /opt/justnews/models/<name>" % (link, self.cache_dir))

    def _parse_mode(self, mode):
        if mode is None or mode == "":
            return None
        try:
            value = int(str(mode), 8) if isinstance(mode, str) else int(mode)
        except ValueError:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "mode must be an octal string such as '0644', got %r" % (mode,))
        if value & ~0o777 or not value & 0o400:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "mode %r must be plain permissions that let the owner read, such as '0644' (no setuid,"
                                  " setgid or sticky bit)" % (mode,))
        return value

    @staticmethod
    def _parse_memory(value):
        """download_memory in bytes: 0 (no cap) or at least MIN_DOWNLOAD_MEMORY."""
        try:
            cap = _space.parse_size(DEFAULT_DOWNLOAD_MEMORY if value is None else value)
        except ValueError:
            cap = -1
        if cap != 0 and cap < _hub.MIN_DOWNLOAD_MEMORY:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "download_memory must be a size such as '512M' or '1G' (at least 64M), or 0 for no cap,"
                                  " got %r" % (value,))
        return cap

    @staticmethod
    def _parse_dir_mode(mode):
        if mode is None or mode == "":
            return None
        if not re.match(r"^0?[0-7]{3}$", str(mode)):
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "dir_mode must be an octal string such as '0750', got %r" % (mode,))
        value = int(str(mode), 8)
        if value & 0o500 != 0o500:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "dir_mode %r must let the owner read and enter the folder, such as '0750'" % (mode,))
        return value

    def ensure_dirs(self):
        """With dir_mode: HF_HOME and the hub cache exist, owned by owner/group with dir_mode (check mode: only
        reported). The operator's paths are followed, as a folder given on purpose may be a link to a volume."""
        changed = []
        for path in ([self.p["hf_home"]] if self.p.get("hf_home") else []) + [self.cache_dir]:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise _errors.Failure(_errors.CACHE_DIR_INVALID,
                                      "%s is not a directory: point cache_dir (hf_home) at a directory, or move the file"
                                      " away" % path)
            uid = self.uid if self.uid != -1 else (st.st_uid if st else 0)
            gid = self.gid if self.gid != -1 else (st.st_gid if st else 0)
            if st is not None and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, self.dir_mode):
                continue
            changed.append(path)
            if self.check:
                continue
            if st is None:
                parent = os.path.dirname(path.rstrip("/"))
                if parent and not os.path.isdir(parent):
                    os.makedirs(parent, 0o755)
                os.mkdir(path, 0o700)
            # Changed through a descriptor of a directory (never a hard link), whatever the name holds by now.
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _fs.own_fd(fd, uid, gid, self.dir_mode, path)
            finally:
                os.close(fd)
        if changed:
            self.result["changed"] = True
            self.result["changed_dirs"] = changed

    def check_cache_dir(self):
        """Before any request: cache_dir must be a directory this run can write (reading is enough offline)."""
        path = self.cache_dir
        existing = path
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing) or "/"
        if not os.path.isdir(existing):
            raise _errors.Failure(_errors.CACHE_DIR_INVALID,
                                  "cache_dir %s is not a directory (%s is a file): point cache_dir at a directory, or move"
                                  " the file away" % (path, existing))
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            if self.p["offline"]:
                return
            raise _errors.Failure(_errors.NOT_WRITABLE,
                                  "cache_dir %s is on a read-only filesystem: remount it read-write, or choose another"
                                  " cache_dir" % path)
        if not os.access(existing, os.W_OK | os.X_OK) and not self.p["offline"]:
            raise _errors.Failure(_errors.NOT_WRITABLE,
                                  "cache_dir %s is not writable by %s: use become, or fix the directory's owner"
                                  % (path, os.getuid()))

    # --- results -----------------------------------------------------------
    def hub_failure(self, failure, step):
        extra = {"status_code": failure.status}
        if failure.kind == _errors.RATE_LIMITED and self.retrier.waited_for_hub is not None:
            extra["retry_after"] = round(self.retrier.waited_for_hub)
        return _errors.Failure(failure.kind,
                               "%s while %s: %s (%d attempt(s)). The existing cache was left as it was. Fix: %s. [%s]"
                               % (self.what(failure.kind), step, failure.msg, failure.attempts,
                                  _errors.fix(failure.kind), failure.kind), **extra)

    def what(self, kind):
        return HUB_FAILURES.get(kind, HUB_FAILURES[_errors.OTHER]) % {
            "repo": self.p["repo_id"], "endpoint": self.endpoint, "revision": self.revision,
            "cache_dir": self.cache_dir}

    def os_failure(self, exc):
        if getattr(exc, "errno", None) == 28:
            kind = _errors.DISK_FULL
        elif isinstance(exc, PermissionError):
            kind = _errors.NOT_WRITABLE
        else:
            return _errors.Failure(_errors.OTHER, "cannot update %s: %s" % (self.cache_dir, exc))
        return self.named_failure(kind, exc)

    def named_failure(self, kind, cause, **extra):
        """What happened, the cause and the fix, in one message."""
        return _errors.Failure(kind, "%s: %s. Fix: %s" % (self.what(kind), cause, _errors.fix(kind)), **extra)

    def network(self, step, func, *args):
        try:
            return self.retrier.call(func, *args)
        except _hub.HubFailure as failure:
            raise self.hub_failure(failure, step)

    def finish(self):
        self.result["retries_used"] = self.retrier.retries_used
        elapsed = time.monotonic() - self.started
        self.result["elapsed"] = round(elapsed, 3)
        # bytes per second of the files this run brought in (a check, a failure or nothing to fetch moved none)
        moved = self.result.get("downloaded_bytes", 0) if self.result.get("changed") and not self.check else 0
        self.result["mean_rate"] = round(moved / elapsed) if moved and elapsed > 0 else 0
        return self.result

    # --- the run -----------------------------------------------------------
    def run(self):
        """Returns the result; raises Failure. Every cache write happens under the repository's lock."""
        self.check_cache_dir()
        if self.dir_mode is not None and self.p["state"] != "absent":
            self.ensure_dirs()
        try:
            if not self.check and not self.nothing_to_remove():
                self.lock = _cache.RepoLock(self.repo, max(0.0, self.retrier.remaining()))
                try:
                    self.lock.acquire()
                except _cache.LockTimeout as exc:
                    raise _errors.Failure(_errors.LOCKED, "%s: let it finish, or raise 'timeout'" % exc)
                except _fs.Refused as exc:
                    raise _errors.Failure(_errors.UNSAFE_CACHE,
                                          "%s: remove it as root (rm removes the link itself) and run again" % exc)
                except OSError as exc:
                    if exc.errno != 30 or not self.p["offline"]:  # EROFS: an offline check writes nothing
                        raise
                    self.lock = None
                if self.lock is not None:
                    self.result["lock_wait"] = round(self.lock.waited, 3)
            if self.p["state"] == "absent":
                self.absent()
            else:
                self.present()
        except _fs.Refused as exc:
            raise _errors.Failure(_errors.UNSAFE_CACHE, "%s. Nothing was changed through it" % exc, unsafe_name=exc.path)
        except _names.UnsafeName as exc:
            raise _errors.Failure(_errors.UNSAFE_CACHE,
                                  "%s. Nothing outside the repository's folder was touched and no ref moved; remove the"
                                  " repository from the cache (state=absent) if it persists" % exc,
                                  unsafe_name=exc.name)
        except OSError as exc:
            raise self.os_failure(exc)
        finally:
            if self.lock is not None:
                self.lock.release()
        return self.finish()

    def nothing_to_remove(self):
        link = self.p["link"]
        return self.p["state"] == "absent" and not os.path.lexists(self.repo.root) \
            and not os.path.lexists(self.repo.locks) and not (link and self.repo.links_to_snapshot(link))

    def absent(self):
        link = self.p["link"]
        exists = os.path.lexists(self.repo.root) or os.path.lexists(self.repo.locks)
        link_ours = bool(link) and self.repo.links_to_snapshot(link)
        if link and os.path.lexists(link) and not link_ours:
            self.module.warn("%s is not a link into %s: left in place" % (link, self.repo.root))
        self.result["diff"] = {"before": {"present": exists, "link": _ownership.link_target(link) if link_ours else None},
                               "after": {"present": False, "link": None}}
        if not exists and not link_ours:
            return
        self.result["changed"] = True
        if not self.check:
            if link_ours:
                os.unlink(link)
            self.repo.remove()

    # --- plan --------------------------------------------------------------
    def resolve(self):
        """The commit to hold, without the network when the cache already answers."""
        if _names.is_commit(self.revision):
            return self.revision
        if self.p["offline"] or self.p["state"] == "present":
            cached = self.repo.read_ref(self.revision)
            if cached and (self.p["offline"] or self.complete_offline(cached)):
                return cached
            if self.p["offline"]:
                raise _errors.Failure(_errors.INCOMPLETE,
                                      "revision '%s' of %s is not in %s (no refs/%s) and offline=true: run once online, or"
                                      " pin 'revision' to a cached commit" % (self.revision, self.p["repo_id"],
                                                                              self.cache_dir, self.revision))
        commit = self.network("resolving revision '%s'" % self.revision, self.hub.resolve_commit, self.revision)
        try:
            return _names.check_commit(commit, self.endpoint)
        except _names.UnsafeName as exc:
            raise self.named_failure(_errors.UNSAFE_LISTING, exc, unsafe_name=commit)

    def complete_offline(self, commit):
        tree = self.repo.read_tree(commit)
        return tree is not None and not self.repo.missing_files(commit, self.select(tree))

    def select(self, names):
        return sorted(filter_repo_objects(list(names), allow_patterns=self.p["allow_patterns"],
                                          ignore_patterns=self.p["ignore_patterns"]))

    def listing(self, commit):
        """(tree, fetched): the cached listing, or one fetched from the Hub and checked (not yet written)."""
        tree = self.repo.read_tree(commit)
        given = self.p["listing"]
        if given is not None:
            try:
                given = _names.check_tree(given, "the listing argument")
            except _names.UnsafeName as exc:
                raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s: fix the listing" % exc, unsafe_name=exc.name)
            if tree is not None and tree != given:
                raise _errors.Failure(_errors.INTEGRITY,
                                      "the listing given for %s differs from the cache's own %s: one of them was altered;"
                                      " remove the repository from the cache (state=absent) or check where the listing"
                                      " came from" % (commit, self.repo.tree_path(commit)))
            return given, tree is None
        if tree is not None or self.p["offline"]:
            return tree, False
        tree = self.network("listing the files of %s" % commit, self.hub.list_tree, commit)
        try:
            return _names.check_tree(tree, "%s's listing of %s" % (self.endpoint, commit)), True
        except _names.UnsafeName as exc:
            raise self.named_failure(_errors.UNSAFE_LISTING, exc, unsafe_name=exc.name)

    def plan(self):
        p = self.p
        self.repo.check_layout()
        unverified = self.repo.read_pending()
        commit = self.resolve()
        tree, tree_fetched = self.listing(commit)
        if tree is None:
            # Offline without a listing: the snapshot's own files are all there is to go by.
            self.module.warn("no cached file listing for %s in %s: checking only the files present"
                             % (commit, self.cache_dir))
            tree, wanted = {}, self.select(self.repo.present_files(commit))
        else:
            wanted = self.select(tree)
        if not wanted:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "no file of %s at %s matches allow_patterns/ignore_patterns: fix the patterns"
                                  % (p["repo_id"], commit))
        absent = self.repo.missing_files(commit, wanted)
        # Files whose content is already cached under another commit only need a link, not a download.
        reusable = [f for f in absent if self.repo.has_blob(_names.blob_name(tree.get(f, {})))
                    and _names.blob_name(tree[f]) not in unverified]
        link = p["link"]
        plan = Plan(commit=commit, tree=tree, tree_fetched=tree_fetched, wanted=wanted, absent=absent,
                    reusable=reusable, missing=[f for f in absent if f not in reusable],
                    old_ref=self.repo.read_ref(self.ref), old_link=_ownership.link_target(link) if link else None,
                    orphans=self.repo.orphaned_incomplete(), unverified=unverified, ownership=[],
                    snapshot_existed=os.path.isdir(self.repo.snapshot_path(commit)))
        if self.uid != -1 or self.gid != -1 or self.mode is not None:
            # Judged now, whatever else changes: a hard link with no sound copy is refused before any write.
            plan.ownership = _ownership.plan_ownership(self.repo.owned_paths(), self.uid, self.gid, self.mode,
                                                       self.cache_dir, self.repo.copy_rule)
        return plan

    def diff(self, plan):
        snapshot = self.repo.snapshot_path(plan.commit)
        before = {"commit": plan.old_ref,
                  "files": sorted(set(plan.wanted) - set(plan.absent)) if plan.old_ref == plan.commit else []}
        after = {"commit": plan.commit, "files": plan.wanted}
        if self.p["link"]:
            before["link"], after["link"] = plan.old_link, snapshot
        return {"before": before, "after": after}

    # --- present / latest --------------------------------------------------
    def present(self):
        p = self.p
        if not self.check and self.repo.read_pending():
            # A run that died mid-download left blobs nobody checked: check them before anything uses them.
            self.repo.settle_pending(self.repo.read_pending())
            self.repo.clear_pending()
        plan = self.plan()
        snapshot = self.repo.snapshot_path(plan.commit)
        if plan.missing and p["offline"]:
            raise _errors.Failure(_errors.INCOMPLETE,
                                  "%d file(s) of %s at %s are missing from %s and offline=true: %s. Run without offline to"
                                  " fetch them" % (len(plan.missing), p["repo_id"], plan.commit, self.cache_dir,
                                                   ", ".join(plan.missing)), commit=plan.commit,
                                  missing_files=plan.missing)
        if plan.missing:
            self.check_space(plan)
        self.result.update(commit=plan.commit, ref=self.ref, snapshot_path=snapshot, files=plan.wanted,
                           downloaded_files=plan.missing, downloaded_bytes=plan.missing_bytes,
                           listing=plan.tree, missing_blobs=plan.missing_blobs, diff=self.diff(plan))
        if p["link"]:
            self.result["link"] = p["link"]
        if plan.missing and p.get("defer_download") and not self.check and not p["blobs_from"]:
            # The action plugin runs the download as a job it can watch: nothing was changed here.
            self.result["deferred"] = True
            return
        if not plan.changes(snapshot, p["link"]):
            if p["offline"] and p["verify_checksums"]:
                self.check_content(plan.commit, plan.wanted, plan.tree)
            return
        if self.check:
            self.result["changed"] = True
            return
        try:
            self.apply(plan)
        except BaseException:
            self.roll_back(plan)
            raise
        self.result["changed"] = True

    def check_space(self, plan):
        """Before any download or copy: room for what is still missing plus the margin, or no_space."""
        if not self.margin:
            return
        free, device = _space.free_space(self.cache_dir)
        incoming = sum(blob["size"] for blob in plan.missing_blobs)
        staging = self.p["staging_dir"]
        staged = incoming if staging and _space.free_space(staging)[1] == device else 0
        needed = incoming + staged + self.margin
        self.result.update(needed_bytes=needed, free_bytes=free)
        if needed <= free:
            return
        parts = "%d to download%s + %d margin" % (
            incoming, " + %d for the staged copy in %s" % (staged, staging) if staged else "", self.margin)
        raise _errors.Failure(_errors.NO_SPACE,
                              "not enough free space for %s at %s: needs %d bytes (%s; %s) but the filesystem of %s has"
                              " %d bytes (%s) free; nothing was downloaded. Free space there (remove old revisions with"
                              " justnews.huggingface.hf_prune), choose another cache_dir, or lower free_space_margin"
                              " (0 turns the check off)"
                              % (self.p["repo_id"], plan.commit, needed, parts, bytes_to_human(needed), self.cache_dir,
                                 free, bytes_to_human(free)), needed_bytes=needed, free_bytes=free)

    def apply(self, plan):
        p = self.p
        hashed = {}
        self.repo.check_layout(plan.commit, create=True)
        self.repo.remove_incomplete(plan.orphans)
        if plan.tree_fetched:
            self.repo.write_tree(plan.commit, plan.tree)
        for path in plan.reusable:
            self.repo.link_existing_blob(plan.commit, path, _names.blob_name(plan.tree[path]))
        if plan.missing and p["blobs_from"]:
            self.result["downloaded_bytes"] = self.import_blobs(plan)
        elif plan.missing:
            expected = {f: _names.blob_name(plan.tree[f]) for f in plan.missing}
            # A link the library would follow and take for the file (out of the store, dangling, a FIFO) goes first.
            self.repo.clear_refused(expected.values())
            self.guard_store(plan)
            blobs_before = self.repo.blob_names()
            self.repo.write_pending(expected.values())
            progress = ProgressFile.start(p.get("progress_file"), self.repo.blobs, plan.missing_blobs,
                                          self.module.warn)
            self.result["download_memory"] = self.memory
            if p["verify_checksums"]:
                self.result["verified_while_downloading"] = 0
            try:
                outcome = self.network("downloading %d file(s) of %s at %s" % (len(plan.missing), p["repo_id"],
                                                                               plan.commit),
                                       self.hub.download, plan.commit, self.cache_dir, p["allow_patterns"],
                                       p["ignore_patterns"], expected, progress.received if progress else None,
                                       self.memory)
                hashed = dict((outcome or {}).get("digests") or {})
            finally:
                if progress:
                    progress.stop()
            still_missing = self.repo.missing_files(plan.commit, plan.wanted)
            if still_missing:
                raise _errors.Failure(_errors.OTHER, "the download of %s ended without %s; the ref was not moved"
                                      % (p["repo_id"], ", ".join(still_missing)))
            new_blobs = self.repo.blob_names() - blobs_before
            self.result["downloaded_bytes"] = sum(
                self.repo.blob_size(b) for b in new_blobs) or plan.missing_bytes
        if p["verify_checksums"]:
            self.check_content(plan.commit, plan.wanted if p["offline"] else plan.absent, plan.tree, hashed)
        self.repo.clear_pending()
        # Only now is the snapshot complete and checked: make it the one applications load.
        if plan.old_ref != plan.commit:
            self.repo.write_ref(self.ref, plan.commit)
        _ownership.apply_ownership(_ownership.plan_ownership(self.repo.owned_paths(), self.uid, self.gid, self.mode),
                                   self.uid, self.gid, self.mode, self.cache_dir, self.repo.copy_rule)
        snapshot = self.repo.snapshot_path(plan.commit)
        if p["link"] and plan.old_link != snapshot:
            _ownership.swap_link(p["link"], snapshot, self.uid, self.gid)

    def guard_store(self, plan):
        """Keep the download out of a shared store that leads elsewhere: the library would follow it. In a sound
        store, the locks and manifests of the entries the download may use are left with no hard link for the
        library to chmod or append to (it runs as root here)."""
        if hf_constants is None or hf_constants.HF_HUB_DISABLE_SHARED_BLOBS:
            return
        unsound = _store.unsound_paths(self.cache_dir)
        if unsound:
            self.module.warn("the shared blob store of %s is not sound (%s is a symlink or not what huggingface_hub"
                             " makes): this download keeps its files in the repository's own blobs folder; remove"
                             " %s so that downloads share files again"
                             % (self.cache_dir, unsound[0], ", ".join(unsound)))
            os.environ["HF_HUB_DISABLE_SHARED_BLOBS"] = "1"
            hf_constants.HF_HUB_DISABLE_SHARED_BLOBS = True
            return
        _store.detach_links(self.cache_dir, [plan.tree[f]["xet_hash"] for f in plan.missing
                                             if plan.tree.get(f, {}).get("xet_hash")])

    def import_blobs(self, plan):
        """Copy the missing files in from blobs_from, each checked against its id on the way; return bytes."""
        copied = 0
        checked = self.p.get("blobs_checked") or {}  # hf_receive's: checked as unpacked, only root's (import_blob)
        for blob in plan.missing_blobs:
            try:
                copied += self.repo.import_blob(os.path.join(self.p["blobs_from"], blob["name"]), blob["name"],
                                                move=blob["name"] in checked)
            except FileNotFoundError:
                raise _errors.Failure(_errors.INCOMPLETE,
                                      "%s has no file %s (needed for %s): copy every file of missing_blobs there"
                                      % (self.p["blobs_from"], blob["name"], ", ".join(blob["files"])))
            except _cache.BlobMismatch as exc:
                raise _errors.Failure(_errors.INTEGRITY,
                                      "%s; nothing was linked and the ref was not moved: copy the file again from a"
                                      " verified cache" % exc, corrupt_files=blob["files"])
            except _cache.LockTimeout as exc:
                raise _errors.Failure(_errors.LOCKED,
                                      "%s (the cache's owner may hold it): nothing was linked and the ref was not moved;"
                                      " run again when it is released" % exc)
        for path in plan.missing:
            self.repo.link_existing_blob(plan.commit, path, _names.blob_name(plan.tree[path]))
        if hf_constants is not None and not hf_constants.HF_HUB_DISABLE_SHARED_BLOBS:
            self.share_imported(plan)
        return copied

    def share_imported(self, plan):
        """Blobs that are Xet files on the Hub join the shared store, as a download would leave them, so that a
        later download of the same content by any repository on the host reuses them."""
        for blob in plan.missing_blobs:
            entry = plan.tree[blob["files"][0]]
            if not entry.get("xet_hash"):
                continue
            why = _store.publish(self.cache_dir, self.repo.blob_path(blob["name"]), entry["xet_hash"],
                                 entry.get("size"), source=os.path.join(self.p["blobs_from"], blob["name"]),
                                 computed=(self.p.get("blobs_checked") or {}).get(blob["name"]))
            if why is not None:
                self.module.warn("%s stays a file of the repository, outside the shared blob store: %s"
                                 % (", ".join(blob["files"]), why))

    def roll_back(self, plan):
        """A failed run leaves no trace of the new commit: no listing, no partial snapshot, no unchecked blob."""
        self.result["changed"] = False
        self.result.pop("diff", None)
        try:
            self.repo.settle_pending(self.repo.read_pending())
            self.repo.clear_pending()
            self.repo.remove_incomplete(self.repo.orphaned_incomplete())
            if plan.old_ref != plan.commit:
                keep = set(plan.wanted) - set(plan.absent) if plan.snapshot_existed else set()
                self.repo.remove_snapshot_entries(plan.commit, keep)
                if plan.tree_fetched:
                    self.repo.remove_tree(plan.commit)
        except (OSError, _names.UnsafeName) as exc:
            self.module.warn("could not undo every change of the failed run: %s" % exc)

    def file_identity(self, commit, path):
        """(device, inode, size) of the file a snapshot entry leads to, opened as the content checks open it;
        None when it cannot be."""
        blob = self.repo.linked_blob(commit, path)
        if not blob:
            return None
        try:
            fd = _store.open_blob(self.cache_dir, blob)
        except (OSError, _store.StoreRefused):
            return None
        try:
            st = os.fstat(fd)
            return st.st_dev, st.st_ino, st.st_size
        finally:
            os.close(fd)

    def check_content(self, commit, paths, tree, hashed=None):
        """Every file of `paths` against the listing's checksum. A file whose blob is in `hashed` (blob name ->
        [digest, device, inode, size] computed while its bytes arrived, in the download process) and that is
        still that very file passes on that digest, without being read again; every other file, and one whose
        digest does not match (confirmed by the read), is read back. RV(verified_while_downloading) counts the
        first kind."""
        passed = []
        for path in paths if hashed else ():
            expected = _names.blob_name(tree.get(path) or {})
            seen = hashed.get(expected)
            if seen and seen[0] == expected and self.file_identity(commit, path) == tuple(seen[1:]):
                passed.append(path)
        if hashed:
            self.result["verified_while_downloading"] = len(passed)
        bad = self.repo.verify(commit, [f for f in paths if f not in passed], tree)
        if not bad:
            return
        if not self.check:
            for path, _expected, _actual in bad:
                self.repo.discard(commit, path)
        raise _errors.Failure(_errors.INTEGRITY,
                              "checksum mismatch for %s of %s at %s (expected %s, got %s): the corrupt file%s removed and"
                              " the ref was not moved; run again to fetch %s anew, and check the endpoint or proxy if it"
                              " repeats" % (", ".join(b[0] for b in bad), self.p["repo_id"], commit, bad[0][1], bad[0][2],
                                            " was not" if self.check else " was", "it" if len(bad) == 1 else "them"),
                              corrupt_files=[b[0] for b in bad])


class ProgressFile:
    """Where a download stands, written every EVERY seconds from a thread to the file `name` in the job's async
    folder (ANSIBLE_ASYNC_DIR, expanded as async_wrapper expands it) for the action plugin that watches the job:
    {"done", "total", "elapsed"} in bytes and seconds. Bytes done are the larger of what the
    library counts as received and what the repository's blobs folder holds of the missing blobs (the complete
    ones at their listed size, plus the growing `<blob>.<id>.incomplete` files; hf_xet writes a file's bytes there
    as its terms arrive, in steps). The file's folder must be a real folder of the module's user that nobody else
    can write (the job's async folder); it is written through the no-follow helpers and removed at the end."""

    EVERY = 2.0

    def __init__(self, name, blobs_dir, blobs, warn):
        self.folder = os.path.expanduser(os.environ.get("ANSIBLE_ASYNC_DIR") or "~/.ansible_async")
        self.name = name
        self.blobs_dir = blobs_dir
        self.sizes = {b["name"]: int(b["size"]) for b in blobs}
        self.total = sum(self.sizes.values())
        self.warn = warn
        self.received = _hub.Received()
        self.started = time.monotonic()
        self.fd = None
        self._stop = threading.Event()
        self._thread = None

    @classmethod
    def start(cls, path, blobs_dir, blobs, warn):
        if not path:
            return None
        progress = cls(path, blobs_dir, blobs, warn)
        try:
            progress.open()
        except (OSError, ValueError) as exc:
            warn("no download progress is reported: %s" % exc)
            return None
        progress.write()
        progress._thread = threading.Thread(target=progress._run, name="hf_snapshot-progress", daemon=True)
        progress._thread.start()
        return progress

    def open(self):
        if not os.path.isabs(self.folder) or not re.match(r"^[\w-][\w.-]*$", self.name):
            raise ValueError("progress_file must be a file name in the async folder %s, got %r"
                             % (self.folder, self.name))
        fd = _fs.open_dir_path(self.folder)[0]
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            os.close(fd)
            raise ValueError("%s is not a folder of uid %d that only it can write" % (self.folder, os.geteuid()))
        self.fd = fd

    def done(self):
        found = 0
        try:
            with os.scandir(self.blobs_dir) as entries:
                for entry in entries:
                    base = entry.name.split(".", 1)[0]
                    if base not in self.sizes:
                        continue
                    if entry.name == base:
                        found += self.sizes[base]
                    elif entry.name.endswith(".incomplete"):
                        found += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
        return min(max(found, self.received.bytes), self.total)

    def write(self):
        data = {"done": self.done(), "total": self.total, "elapsed": round(time.monotonic() - self.started, 3)}
        try:
            _fs.replace_at(self.fd, self.name, json.dumps(data).encode(), 0o600)
        except OSError:
            pass  # progress is a courtesy: the download goes on

    def _run(self):
        while not self._stop.wait(self.EVERY):
            self.write()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            _fs.discard_at(self.fd, self.name)
        except OSError:
            pass
        finally:
            os.close(self.fd)


ARGUMENT_SPEC = dict(
    repo_id=dict(type="str", required=True),
    repo_type=dict(type="str", default="model", choices=["model", "dataset", "space"]),
    revision=dict(type="str", default="main"),
    ref=dict(type="str"),
    cache_dir=dict(type="path"),
    endpoint=dict(type="str"),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["HF_TOKEN"])),
    allow_patterns=dict(type="list", elements="str"),
    ignore_patterns=dict(type="list", elements="str"),
    state=dict(type="str", default="present", choices=["present", "latest", "absent"]),
    offline=dict(type="bool", default=False),
    verify_checksums=dict(type="bool", default=True),
    retries=dict(type="int", default=5),
    timeout=dict(type="int", default=1800),
    read_timeout=dict(type="int"),
    owner=dict(type="str"),
    group=dict(type="str"),
    mode=dict(type="raw", default="0644"),
    link=dict(type="path"),
    listing=dict(type="dict"),
    blobs_from=dict(type="path"),
    free_space_margin=dict(type="raw", default="1G"),
    staging_dir=dict(type="path"),
    shared_blobs=dict(type="bool", default=True),
    xet=dict(type="bool", default=True),
    hf_home=dict(type="path"),
    dir_mode=dict(type="str"),
    download_memory=dict(type="str", default=DEFAULT_DOWNLOAD_MEMORY),
    defer_download=dict(type="bool", default=False),
    progress_file=dict(type="str"),
)
