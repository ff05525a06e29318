# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide which revisions of a hub cache may go, and remove them through RepoCache's guarded paths.

A revision (snapshots/<commit>) stays when it is pinned, named by a ref, reached by a given link, open in a
running process, or among the `keep` most recent of its repository; a blob stays while any remaining snapshot
links to it. Only names that RepoCache validates are ever removed, and only inside the repository's folders.

With huggingface_hub's shared store (<cache>/blobs/<2 hex>/<xet hash>, see _store), a repository blob may be a
link into the store. Removing a revision removes that link; the store entry itself goes only once no link in
any repository folder leads to it any more, which is decided from the links themselves (read with readlink,
never followed), not from the `.refs` manifests, which anyone who can write the cache can fill with anything.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

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


class Refused:
    """Something in the cache that the prune leaves alone because it is not what huggingface_hub makes."""

    def __init__(self, path, reason, fix):
        self.path = path
        self.reason = reason
        self.fix = fix

    def as_dict(self):
        return {"path": self.path, "reason": self.reason, "fix": self.fix}

    def __repr__(self):
        return "Refused(%r, %r)" % (self.path, self.reason)


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
        self.refused = []        # [Refused]: blobs of removed revisions that are neither files nor store links
        self.freed = 0

    def removed_links(self):
        """Paths of the links into the shared store that applying this plan removes (a blob that is a store
        link, and every snapshot entry of a removed revision)."""
        return {os.path.join(self.repo.blobs, name) for name, _size in self.blobs}, [r.path for r in self.remove]


def _named_by(link):
    """Where a symlink points, worked out from its text alone: nothing is followed, not even the link."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(link), target))


def _snapshot_blobs(repo, path):
    """Names of this repository's blobs that the links under a snapshot folder name.

    Read from the link text, so a blob that is itself a link (into the shared store, or anywhere) is never
    followed; os.walk does not descend into linked folders.
    """
    blobs_real = os.path.realpath(repo.blobs)
    names = set()
    for dirpath, _dirs, files in os.walk(path):
        for name in files + _dirs:
            entry = os.path.join(dirpath, name)
            if not os.path.islink(entry):
                continue
            named = _named_by(entry)
            if named is None or not _cache.BLOB_RE.match(os.path.basename(named)):
                continue
            if os.path.realpath(os.path.dirname(named)) == blobs_real:
                names.add(os.path.basename(named))
    return names


def _store_entry_real(cache_dir, xet_hash):
    """The path /proc shows for an open store entry (the cache's real path, then blobs/<2 hex>/<hash>)."""
    return os.path.join(os.path.realpath(cache_dir), _store.STORE_DIR, xet_hash[:2], xet_hash)


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
        for name in rev.blobs:  # a process reading a store-linked file has the store entry open
            xet_hash = _store.link_hash(os.path.join(repo.blobs, name))
            if xet_hash:
                blob_paths.add(_store_entry_real(cache_dir, xet_hash))
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
        for name in sorted(gone - kept_blobs - busy_blobs):
            blob = _store.inspect_blob(cache_dir, repo.blob_path(name))
            if blob.kind == _store.FILE:
                plan.blobs.append((name, blob.size))
            elif blob.kind == _store.STORE or _store.link_hash(blob.path):
                # the link alone goes (its bytes belong to the store entry, freed once nothing links to it)
                plan.blobs.append((name, 0))
            elif blob.kind == _store.REFUSED:
                plan.refused.append(Refused(blob.path, blob.reason, "not removed and not followed: find out what"
                                            " made it, remove it by hand (rm removes the link itself, never its"
                                            " target) and fetch the model again"))
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
        # The blob alone (a file, or a link into the store, unlinked without following it): a store entry
        # goes only through apply_store, once no repository links to it.
        try:
            os.unlink(repo.blob_path(name))
        except FileNotFoundError:
            pass
    # A download that started since the plan holds its lock again: its partial file stays.
    still = set(repo.orphaned_incomplete())
    repo.remove_incomplete([name for name, _size in plan.incomplete if name in still])


# --- the shared blob store -----------------------------------------------------------------------------------

class StorePlan:
    """Entries of the shared store that no link leads to once the repository plans are applied."""

    def __init__(self, cache_dir):
        self.cache_dir = cache_dir
        self.entries = []    # [(xet hash, bytes)] to free
        self.released = set()  # entries that links removed by the repository plans named
        self.refused = []    # [Refused]: store entries and manifests that are not what the library makes
        self.freed = 0


def _link_folders(cache_dir):
    """Every real directory at the top of the cache that may hold links into the store (repository folders,
    whatever their name), never the store itself or the locks."""
    try:
        names = sorted(os.listdir(cache_dir))
    except OSError:
        return []
    out = []
    for name in names:
        if name in (_store.STORE_DIR, ".locks"):
            continue
        path = os.path.join(cache_dir, name)
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                out.append(path)
        except OSError:
            continue
    return out


def store_links(cache_dir):
    """{xet hash: {paths of the links that name it}}, from every symlink in every repository folder's blobs
    and snapshots, read with readlink (never followed).

    Any link whose text leads to <cache>/blobs/<2 hex>/<hash>, relative or absolute, counts: an entry that
    something might still read through a link in the cache is kept, whoever made the link.
    """
    bases = {os.path.normpath(os.path.join(top, _store.STORE_DIR))
             for top in (os.path.abspath(cache_dir), os.path.realpath(cache_dir))}
    users = {}
    for folder in _link_folders(cache_dir):
        for sub in ("blobs", "snapshots"):
            top = os.path.join(folder, sub)
            try:
                if not stat.S_ISDIR(os.lstat(top).st_mode):
                    continue
            except OSError:
                continue
            for dirpath, dirs, files in os.walk(top):
                for name in files + dirs:
                    path = os.path.join(dirpath, name)
                    named = _named_by(os.path.abspath(path)) if os.path.islink(path) else None
                    if named is None or os.path.dirname(os.path.dirname(named)) not in bases:
                        continue
                    prefix, xet_hash = named.split(os.sep)[-2:]
                    if _store.HASH_RE.match(xet_hash) and xet_hash[:2] == prefix:
                        users.setdefault(xet_hash, set()).add(path)
    return users


def _still_used(path, removed_blobs, removed_snapshots):
    return path not in removed_blobs and not any(_under(path, top) for top in removed_snapshots)


def _raw_manifest(cache_dir, xet_hash):
    """The lines of a `.refs` manifest, read without following or blocking; [] when it is not a regular file."""
    try:
        fd = os.open(_store.manifest_path(cache_dir, xet_hash), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return []
        data = os.read(fd, _store.MANIFEST_MAX + 1)[:_store.MANIFEST_MAX]
    finally:
        os.close(fd)
    return [line for line in data.decode("utf-8", "replace").splitlines() if line]


def store_anomalies(cache_dir, hashes=None):
    """Refused store entries (anything but a regular file under an entry's name) and manifest lines that name
    something other than a repository blob, for every entry or those in `hashes`. Nothing is opened but the
    store's folders (listed) and regular manifests (read with O_NOFOLLOW)."""
    top = _store.store_dir(cache_dir)
    found = []
    try:
        if not stat.S_ISDIR(os.lstat(top).st_mode):
            return [Refused(top, "the shared store is %s, not a directory" % _store.describe(os.lstat(top).st_mode),
                            "remove %s (it is not huggingface_hub's store); downloads make it again" % top)]
        prefixes = sorted(os.listdir(top))
    except OSError:
        return found
    for prefix in prefixes:
        folder = os.path.join(top, prefix)
        try:
            st = os.lstat(folder)
        except OSError:
            continue
        if not _store.PREFIX_RE.match(prefix):
            continue
        if not stat.S_ISDIR(st.st_mode):
            found.append(Refused(folder, "store folder is %s" % _store.describe(st.st_mode),
                                 "remove %s by hand (rm removes the link itself); downloads make it again" % folder))
            continue
        for name in sorted(os.listdir(folder)):
            xet_hash = name[:-len(_store.MANIFEST_SUFFIX)] if name.endswith(_store.MANIFEST_SUFFIX) else name
            if not (_store.HASH_RE.match(xet_hash) and xet_hash.startswith(prefix)):
                continue
            if hashes is not None and xet_hash not in hashes:
                continue
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                what = "store entry" if name == xet_hash else "manifest"
                found.append(Refused(path, "%s is %s, not a regular file; never opened" % (what, _store.describe(st.st_mode)),
                                     "remove %s by hand after finding out what made it (rm removes it without"
                                     " following it); a download of the file makes the entry again" % path))
            elif name != xet_hash:
                bad = [line for line in _raw_manifest(cache_dir, xet_hash) if not _store.REPO_BLOB_RE.match(line)]
                if bad:
                    found.append(Refused(path, "manifest names %s, not a repository blob of this cache; ignored"
                                         % ", ".join(repr(b) for b in bad[:3]),
                                         "nothing to do for the prune (it decides from the links themselves);"
                                         " rewrite or remove %s to silence this" % path))
    return found


def plan_store(cache_dir, plans, busy, scope=None):
    """Store entries that nothing links to once `plans` are applied, and what in the store was refused.

    `scope` limits the entries freed to a set of hashes plus those the plans' removed links named (a prune of
    one repository frees only what it made unused); None frees every unused entry.
    """
    store = StorePlan(cache_dir)
    if not os.path.lexists(_store.store_dir(cache_dir)):
        return store
    removed_blobs, removed_snapshots = set(), []
    for plan in plans:
        blobs, snapshots = plan.removed_links()
        removed_blobs |= blobs
        removed_snapshots += snapshots
    users = store_links(cache_dir)
    remaining = {h for h, paths in users.items()
                 if any(_still_used(p, removed_blobs, removed_snapshots) for p in paths)}
    candidates = _store.entries(cache_dir)
    store.released = {h for h, paths in users.items()
                      if any(not _still_used(p, removed_blobs, removed_snapshots) for p in paths)}
    if scope is not None:
        candidates = {h: size for h, size in candidates.items() if h in store.released | set(scope)}
    for xet_hash, size in sorted(candidates.items()):
        if xet_hash in remaining or _store_entry_real(cache_dir, xet_hash) in busy:
            continue
        store.entries.append((xet_hash, size))
        store.freed += size
    store.refused = store_anomalies(cache_dir)
    return store


class EntryLock:
    """huggingface_hub's lock of one store entry (<hash>.lock, flock), which it holds while it publishes an entry
    or links to one; the lock file is opened without following links, and its folder only as a real folder."""

    def __init__(self, cache_dir, xet_hash, timeout, clock=time.monotonic, sleep=time.sleep):
        self.cache_dir, self.xet_hash, self.timeout = cache_dir, xet_hash, timeout
        self.clock, self.sleep = clock, sleep
        self.fd = None

    def acquire(self):
        folder = os.open(os.path.dirname(_store.entry_path(self.cache_dir, self.xet_hash)),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        name = self.xet_hash + _store.LOCK_SUFFIX
        try:
            try:
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
            except FileNotFoundError:
                # made as the library makes it: 0666, and owned as its folder, so that the cache's own user
                # can still take it
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=folder)
                st = os.fstat(folder)
                os.fchmod(fd, 0o666)
                os.fchown(fd, st.st_uid, st.st_gid)
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _cache.UnsafeName("%s is not a regular file" % _store.lock_path(self.cache_dir, self.xet_hash))
        started = self.clock()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or self.clock() - started >= self.timeout:
                    os.close(fd)
                    raise
                self.sleep(0.2)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _unlink_in_prefix(cache_dir, xet_hash, name):
    """Unlink <cache>/blobs/<2 hex>/<name> through descriptors of real folders (O_NOFOLLOW): a folder swapped
    for a symlink fails instead of leading the unlink out of the cache."""
    top = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    fds = [top]
    try:
        fds.append(os.open(_store.STORE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top))
        fds.append(os.open(xet_hash[:2], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        os.unlink(name, dir_fd=fds[-1])
        return True
    except FileNotFoundError:
        return False
    finally:
        for fd in fds:
            os.close(fd)


def apply_store(store, busy, timeout=60):
    """Free the planned entries, each under the library's entry lock and only when, under that lock, no link
    leads to it: a download that linked to the entry since the plan wrote its manifest line first, so the
    manifest's referrers (each checked by readlink) are looked at again besides the links.

    Returns the entries freed, [(xet hash, bytes)].
    """
    freed = []
    if not store.entries:
        return freed
    users = store_links(store.cache_dir)
    for xet_hash, _size in store.entries:
        if xet_hash in users or _store_entry_real(store.cache_dir, xet_hash) in busy:
            continue
        lock = EntryLock(store.cache_dir, xet_hash, timeout)
        try:
            lock.acquire()
        except (OSError, _cache.UnsafeName):
            continue  # a download holds it, or the lock is not a file: the entry stays for a later run
        try:
            if _store.referrers(store.cache_dir, xet_hash):
                continue
            try:
                size = _store.entry_size(store.cache_dir, xet_hash)
            except (OSError, _store.StoreRefused):
                continue
            if _unlink_in_prefix(store.cache_dir, xet_hash, xet_hash):  # under the lock already held
                freed.append((xet_hash, size))
                _unlink_in_prefix(store.cache_dir, xet_hash, xet_hash + _store.MANIFEST_SUFFIX)
        finally:
            lock.release()
    return freed
