# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide which revisions of a hub cache may go, and remove them through RepoCache's guarded paths.

A revision (snapshots/<commit>) stays when it is pinned, named by a ref, reached by a given link, open in a
running process, or among the `keep` most recent of its repository; a blob stays while any remaining snapshot
links to it. Only names that RepoCache validates are ever removed, and only inside the repository's folders.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import os
import re
import stat
import time

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache

FOLDER_RE = re.compile(r"^(model|dataset|space)s--(.+)$")


def repos_in(cache_dir):
    """(repo_id, repo_type) of every repository folder in cache_dir; other entries are not ours to judge."""
    try:
        names = sorted(os.listdir(cache_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        match = FOLDER_RE.match(name)
        if not match:
            continue
        repo_id = match.group(2).replace("--", "/")
        try:
            _cache.check_repo_id(repo_id)
        except _cache.UnsafeName:
            continue
        if _cache.repo_folder_name(repo_id, match.group(1)) == name:
            found.append((repo_id, match.group(1)))
    return found


def open_paths(proc="/proc"):
    """Paths that running processes have open (fds, mappings, working directory); unreadable entries skipped."""
    paths = set()
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return paths
    for pid in pids:
        base = os.path.join(proc, pid)
        try:
            fds = os.listdir(os.path.join(base, "fd"))
        except OSError:
            fds = []
        for fd in fds:
            try:
                paths.add(os.readlink(os.path.join(base, "fd", fd)))
            except OSError:
                continue
        try:
            paths.add(os.readlink(os.path.join(base, "cwd")))
        except OSError:
            pass
        try:
            with open(os.path.join(base, "maps"), encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    fields = line.split(None, 5)
                    if len(fields) == 6 and fields[5].startswith("/"):
                        paths.add(fields[5].rstrip("\n"))
        except OSError:
            continue
    return paths


def _under(path, top):
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


class Revision:
    def __init__(self, commit, path, mtime, blobs):
        self.commit = commit
        self.path = path
        self.mtime = mtime
        self.blobs = blobs
        self.reasons = []


class RepoPlan:
    """What pruning one repository removes, decided from the cache and the given protections."""

    def __init__(self, repo, repo_id, repo_type):
        self.repo = repo
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.revisions = []
        self.remove = []
        self.keep = []
        self.blobs = []          # [(name, bytes)]: blobs of removed revisions no remaining snapshot links to
        self.partial = []        # every *.incomplete, orphaned or not
        self.incomplete = []     # [(name, bytes)]
        self.freed = 0


def _snapshot_blobs(repo, path):
    """Names of this repository's blobs that the links under a snapshot folder lead to (never followed out)."""
    blobs_real = os.path.realpath(repo.blobs)
    names = set()
    for dirpath, _dirs, files in os.walk(path):
        for name in files + _dirs:
            entry = os.path.join(dirpath, name)
            if not os.path.islink(entry):
                continue
            real = os.path.realpath(entry)
            if os.path.dirname(real) == blobs_real and _cache.BLOB_RE.match(os.path.basename(real)):
                names.add(os.path.basename(real))
    return names


def _size(path):
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _file_bytes(top):
    """Bytes of the regular files under a folder (snapshot entries that are files, not links)."""
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        total += sum(_size(os.path.join(dirpath, f)) for f in files)
    return total


def plan_repo(cache_dir, repo_id, repo_type, keep, pinned, links, busy, incomplete_age, now=None):
    """Decide what to remove from one repository; raises UnsafeName when its folders are not plain folders.

    `links` maps each link to the paths it resolves to (link_targets); `busy` holds the paths running
    processes have open (open_paths).
    """
    repo = _cache.RepoCache(cache_dir, repo_id, repo_type)
    plan = RepoPlan(repo, repo_id, repo_type)
    repo.check_layout(create=False)  # a symlink in place of one of the repository's folders is refused
    snapshots = os.path.join(repo.root, "snapshots")
    others = set()  # blobs linked from snapshot entries that are not commits: left alone, and so are theirs
    try:
        names = sorted(os.listdir(snapshots))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for name in names:
        path = os.path.join(snapshots, name)
        if not _cache.is_commit(name):
            if os.path.isdir(path) and not os.path.islink(path):
                others |= _snapshot_blobs(repo, path)
            continue
        repo.dir_in_repo(os.path.join("snapshots", name), create=False)  # refuses a symlink or a file
        plan.revisions.append(Revision(name, path, os.lstat(path).st_mtime, _snapshot_blobs(repo, path)))

    refs = _refs(repo)
    pinned_commits = {p for p in pinned if _cache.is_commit(p)}
    pinned_commits |= {repo.read_ref(p) for p in pinned if not _cache.is_commit(p) and _valid_ref(p)} - {None}
    blobs_real = os.path.realpath(repo.blobs)
    by_age = sorted(plan.revisions, key=lambda r: (r.mtime, r.commit), reverse=True)
    for rank, rev in enumerate(by_age):
        real = os.path.realpath(rev.path)
        if rev.commit in pinned_commits:
            rev.reasons.append("pinned")
        rev.reasons.extend("ref %s" % ref for ref, commit in sorted(refs.items()) if commit == rev.commit)
        rev.reasons.extend("link %s" % link for link, targets in sorted(links.items())
                           if any(_under(t, real) for t in targets))
        blob_paths = {os.path.join(blobs_real, b) for b in rev.blobs}
        if any(_under(p, real) or p in blob_paths for p in busy):
            rev.reasons.append("open by a running process")
        if rank < keep:
            rev.reasons.append("recent")
        (plan.keep if rev.reasons else plan.remove).append(rev)

    if plan.remove:
        kept_blobs = set(others)
        for rev in plan.keep:
            kept_blobs |= rev.blobs
        busy_blobs = {os.path.basename(p) for p in busy if os.path.dirname(p) == blobs_real}
        gone = set()
        for rev in plan.remove:
            gone |= rev.blobs
        plan.blobs = [(b, _size(repo.blob_path(b))) for b in sorted(gone - kept_blobs - busy_blobs)]
        plan.freed += sum(size for _name, size in plan.blobs)
        plan.freed += sum(_file_bytes(rev.path) + _size(repo.tree_path(rev.commit)) for rev in plan.remove)

    now = time.time() if now is None else now
    plan.partial = repo.incomplete_blobs()
    for name in repo.orphaned_incomplete():
        path = os.path.join(repo.blobs, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= incomplete_age:
            plan.incomplete.append((name, st.st_size))
            plan.freed += st.st_size
    return plan


def link_targets(link):
    """Where a link leads: its real path, and for a symlink the entry it names (a link to a file in a snapshot
    resolves to a blob, but names the snapshot)."""
    if not os.path.lexists(link):
        return set()
    targets = {os.path.realpath(link)}
    if os.path.islink(link):
        named = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))
        targets.add(os.path.join(os.path.realpath(os.path.dirname(named)), os.path.basename(named)))
    return targets


def _valid_ref(name):
    try:
        _cache.check_ref_name(name)
        return True
    except _cache.UnsafeName:
        return False


def _refs(repo):
    """{ref name: commit} for every file under refs/ (branches, tags, refs/pr/N)."""
    top = os.path.join(repo.root, "refs")
    found = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            ref = os.path.relpath(os.path.join(dirpath, name), top)
            if _valid_ref(ref):
                commit = repo.read_ref(ref)
                if commit:
                    found[ref] = commit
    return found


def apply(plan):
    """Remove what the plan names; every path goes through RepoCache's validated names and folder checks."""
    repo = plan.repo
    for rev in plan.remove:
        repo.remove_snapshot_entries(rev.commit, keep=set())
        repo.remove_tree(rev.commit)
    for name, _size in plan.blobs:
        repo.discard_blob(name)
    # A download that started since the plan holds its lock again: its partial file stays.
    still = set(repo.orphaned_incomplete())
    repo.remove_incomplete([name for name, _size in plan.incomplete if name in still])
