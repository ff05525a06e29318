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

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
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
            _names.check_repo_id(repo_id)
        except _names.UnsafeName:
            continue
        if _names.repo_folder_name(repo_id, match.group(1)) == name:
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


# --- reading the cache without following what its owner planted -------------------------------------------------

def _entries_at(fd, rel):
    """(path relative to the cache, lstat, link text or None) of everything below the directory `fd` (named
    `rel`), folders before their content; closes `fd`. Sub-folders are opened with O_NOFOLLOW from their
    parent's descriptor: one swapped for a symlink while the walk runs raises _fs.Refused."""
    try:
        with os.scandir(fd) as listing:
            names = sorted(entry.name for entry in listing)
        for name in names:
            path = rel + "/" + name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            target = None
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(name, dir_fd=fd)
                except OSError:
                    continue
            yield path, st, target
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(name, _fs.DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _fs.Refused(path, "changed into %s while it was read" % _fs.describe(
                            _lstat_mode(fd, name)))
                    raise
                yield from _entries_at(sub, path)
    finally:
        os.close(fd)


def _lstat_mode(dir_fd, name):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return 0


def walk(cache_dir, rel):
    """Everything below the folder `rel` of the cache, as _entries_at gives it; nothing when the folder is not
    there, _fs.Refused when it (or a folder on the way) is not a real directory."""
    try:
        fd = _fs.open_dir(cache_dir, rel)
    except (FileNotFoundError, NotADirectoryError):
        return
    yield from _entries_at(fd, rel)


def _listdir(cache_dir, rel):
    """Names in the folder `rel` of the cache, opened through real directories only; [] when it is missing."""
    try:
        fd = _fs.open_dir(cache_dir, rel)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def _lstat(cache_dir, rel):
    """lstat of `rel`, reached through real directories only; None when it is missing or not reachable."""
    try:
        return _fs.lstat_at(cache_dir, rel)
    except _fs.Refused:
        return None


def _readlink(cache_dir, rel):
    return _fs.readlink_at(cache_dir, rel)


def _unsafe(exc, cache_dir):
    """UnsafeName for a folder of the repository that is not a real directory (the module's unsafe_cache)."""
    path = exc.path if os.path.isabs(exc.path) else os.path.join(cache_dir, exc.path)
    return _names.UnsafeName("%s in the cache %s; remove it (state=absent) and fetch again"
                             % (path, exc.reason), path)


class Revision:
    def __init__(self, commit, path, mtime, blobs, size=0):
        self.commit = commit
        self.path = path
        self.mtime = mtime
        self.blobs = blobs
        self.size = size         # bytes of the regular files in the snapshot folder itself
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


UNSAFE_REFS = "refs not safely readable"


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
        self.refused = []        # [Refused]: what the prune leaves alone (planted links, special files)
        self.trash = False       # a trash folder left by a run that stopped part-way is there
        self.freed = 0

    def removed_links(self):
        """Paths of the links into the shared store that applying this plan removes (a blob that is a store
        link, and every snapshot entry of a removed revision)."""
        return {os.path.join(self.repo.blobs, name) for name, _size in self.blobs}, [r.path for r in self.remove]


def _blob_named(cache_dir, folder, rel, target):
    """The name of this repository's blob that a link (at `rel`, relative to the cache, with text `target`)
    names, worked out from the text alone; None when it names anything else."""
    if os.path.isabs(target):
        named = os.path.normpath(target)
        tops = (os.path.abspath(cache_dir), os.path.realpath(cache_dir))
        bases = {os.path.join(top, folder, "blobs") for top in tops}
        ok = os.path.dirname(named) in bases
    else:
        named = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        ok = os.path.dirname(named) == folder + "/blobs"
    name = os.path.basename(named)
    return name if ok and _names.BLOB_RE.match(name) else None


def _snapshot_blobs(cache_dir, folder, rel):
    """(names of this repository's blobs that the links under a snapshot folder name, bytes of the regular files
    in it). Links are read, never followed, and the walk never enters a linked folder."""
    names, size = set(), 0
    for path, st, target in walk(cache_dir, rel):
        if target is not None:
            name = _blob_named(cache_dir, folder, path, target)
            if name:
                names.add(name)
        elif stat.S_ISREG(st.st_mode):
            size += st.st_size
    return names, size


def _store_entry_real(cache_dir, xet_hash):
    """The path /proc shows for an open store entry (the cache's real path, then blobs/<2 hex>/<hash>)."""
    return os.path.join(os.path.realpath(cache_dir), _store.STORE_DIR, xet_hash[:2], xet_hash)


def _blob_hash(cache_dir, folder, name):
    """The store hash that blobs/<name> links to, by its text alone; None for anything else."""
    target = _readlink(cache_dir, "%s/blobs/%s" % (folder, name))
    return _store.parse_target(target) if target is not None else None


def _file_size(cache_dir, rel):
    st = _lstat(cache_dir, rel)
    return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0


def _refs(cache_dir, repo):
    """({ref name: commit} for every file under refs/ (branches, tags, refs/pr/N), [Refused]).

    Each ref is read through real folders with O_NOFOLLOW and O_NONBLOCK; a ref that is a symlink, a FIFO, a
    device or too large, and a folder under refs/ that is a symlink, is never followed or read but returned as
    refused: the caller then keeps every revision, since any of them may be the one it would name.
    """
    top = repo.folder_name + "/refs"
    found, refused = {}, []
    fix = ("remove %s by hand (rm removes the link itself, never its target); hf_snapshot writes the ref again on"
           " its next run. Until then every revision of the repository is kept")
    try:
        for path, st, _target in walk(cache_dir, top):
            where = os.path.join(cache_dir, path)
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                refused.append(Refused(where, "ref is %s, not a regular file; never followed or read"
                                       % _fs.describe(st.st_mode), fix % where))
                continue
            ref = os.path.relpath(path, top)
            if not _valid_ref(ref):
                continue
            try:
                data = _fs.read_file(cache_dir, path, 256)
            except _fs.Refused as exc:
                refused.append(Refused(where, "ref %s; never read" % exc.reason, fix % where))
                continue
            value = (data or b"").decode("ascii", "replace").strip()
            if _names.is_commit(value):
                found[ref] = value
    except _fs.Refused as exc:
        where = os.path.join(cache_dir, exc.path) if not os.path.isabs(exc.path) else exc.path
        refused.append(Refused(where, "%s; never followed" % exc.reason, fix % where))
    return found, refused


def _incomplete(cache_dir, repo):
    """(every partial download in blobs/, those whose download lock nobody holds: [(name, lstat)]).

    The lock file is opened read-only, without following a link or blocking, from a descriptor of the
    repository's real locks folder, and taken only for a moment to see whether a download holds it.
    """
    folder = repo.folder_name
    try:
        blobs = _fs.open_dir(cache_dir, folder + "/blobs")
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    try:
        partial = sorted(n for n in os.listdir(blobs)
                         if n.endswith(".incomplete") and _names.BLOB_RE.match(n.split(".")[0]))
        try:
            locks = _fs.open_dir(cache_dir, ".locks/" + folder)
        except (FileNotFoundError, NotADirectoryError):
            locks = None
        orphans = []
        try:
            for name in partial:
                try:
                    st = os.stat(name, dir_fd=blobs, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if locks is None or _lock_free(locks, name.split(".")[0] + ".lock"):
                    orphans.append((name, st))
        finally:
            if locks is not None:
                os.close(locks)
        return partial, orphans
    finally:
        os.close(blobs)


def _lock_free(locks_fd, name):
    try:
        fd = os.open(name, _fs.FILE_FLAGS, dir_fd=locks_fd)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # a link or something unreadable: not judged free
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False  # a live download holds it
    finally:
        os.close(fd)


def plan_repo(cache_dir, repo_id, repo_type, keep, pinned, links, busy, incomplete_age, now=None):
    """Decide what to remove from one repository; raises UnsafeName when its folders are not plain folders.

    `links` maps each link to the paths it resolves to (link_targets); `busy` holds the paths running
    processes have open (open_paths).
    """
    repo = _cache.RepoCache(cache_dir, repo_id, repo_type)
    plan = RepoPlan(repo, repo_id, repo_type)
    repo.check_layout(create=False)  # a symlink in place of one of the repository's folders is refused
    folder = repo.folder_name
    try:
        return _plan_repo(plan, cache_dir, folder, keep, pinned, links, busy, incomplete_age, now)
    except _fs.Refused as exc:  # a folder swapped for a symlink since check_layout
        raise _unsafe(exc, cache_dir)


def _plan_repo(plan, cache_dir, folder, keep, pinned, links, busy, incomplete_age, now):
    repo = plan.repo
    plan.trash = _lstat(cache_dir, "%s/%s" % (folder, TRASH)) is not None
    others = set()  # blobs linked from snapshot entries that are not commits: left alone, and so are theirs
    snapshots = folder + "/snapshots"
    for name in _listdir(cache_dir, snapshots):
        rel = "%s/%s" % (snapshots, name)
        st = _fs.lstat_at(cache_dir, rel)  # snapshots/ swapped for a link since it was listed: refused
        if st is None:
            continue
        if not _names.is_commit(name):
            if stat.S_ISDIR(st.st_mode):
                others |= _snapshot_blobs(cache_dir, folder, rel)[0]
            elif stat.S_ISLNK(st.st_mode):
                where = os.path.join(cache_dir, rel)
                plan.refused.append(Refused(where, "is a symlink among the snapshots, not a revision; never followed",
                                            "remove %s by hand (rm removes the link itself); huggingface_hub"
                                            " never makes it" % where))
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise _names.UnsafeName("%s in the cache is %s, not a directory; remove it (state=absent) and fetch"
                                    " again" % (os.path.join(cache_dir, rel), _fs.describe(st.st_mode)),
                                    os.path.join(cache_dir, rel))
        blobs, size = _snapshot_blobs(cache_dir, folder, rel)
        plan.revisions.append(Revision(name, os.path.join(repo.root, "snapshots", name), st.st_mtime, blobs, size))

    refs, unsafe_refs = _refs(cache_dir, repo)
    plan.refused += unsafe_refs
    pinned_commits = {p for p in pinned if _names.is_commit(p)}
    pinned_commits |= {repo.read_ref(p) for p in pinned if not _names.is_commit(p) and _valid_ref(p)} - {None}
    real_root = os.path.join(os.path.realpath(cache_dir), folder)
    blobs_real = os.path.join(real_root, "blobs")
    by_age = sorted(plan.revisions, key=lambda r: (r.mtime, r.commit), reverse=True)
    for rank, rev in enumerate(by_age):
        real = os.path.join(real_root, "snapshots", rev.commit)
        if unsafe_refs:
            rev.reasons.append(UNSAFE_REFS)
        if rev.commit in pinned_commits:
            rev.reasons.append("pinned")
        rev.reasons.extend("ref %s" % ref for ref, commit in sorted(refs.items()) if commit == rev.commit)
        rev.reasons.extend("link %s" % link for link, targets in sorted(links.items())
                           if any(_under(t, real) for t in targets))
        blob_paths = {os.path.join(blobs_real, b) for b in rev.blobs}
        for name in rev.blobs:  # a process reading a store-linked file has the store entry open
            xet_hash = _blob_hash(cache_dir, folder, name)
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
            rel = "%s/blobs/%s" % (folder, name)
            st = _lstat(cache_dir, rel)
            if st is None:
                continue
            if stat.S_ISREG(st.st_mode):
                plan.blobs.append((name, st.st_size))
                continue
            target = _readlink(cache_dir, rel) if stat.S_ISLNK(st.st_mode) else None
            if target is not None and _store.parse_target(target):
                # the link alone goes (its bytes belong to the store entry, freed once nothing links to it)
                plan.blobs.append((name, 0))
                continue
            reason = ("link to %r, not ../../blobs/<2 hex>/<64 hex>" % target if target is not None
                      else "%s, not a regular file or a link" % _fs.describe(st.st_mode))
            plan.refused.append(Refused(os.path.join(cache_dir, rel), reason,
                                        "not removed and not followed: find out what made it, remove it by hand"
                                        " (rm removes the link itself, never its target) and fetch the model"
                                        " again"))
        plan.freed += sum(size for _name, size in plan.blobs)
        plan.freed += sum(rev.size + _file_size(cache_dir, "%s/trees/%s.json" % (folder, rev.commit))
                          for rev in plan.remove)

    now = time.time() if now is None else now
    plan.partial, orphans = _incomplete(cache_dir, repo)
    for name, st in orphans:
        if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= incomplete_age:
            plan.incomplete.append((name, st.st_size))
            plan.freed += st.st_size
    return plan


def link_targets(link):
    """Where an operator's link leads: its real path, and for a symlink the entry it names (a link to a file in a
    snapshot resolves to a blob, but names the snapshot). Worked out with lstat and readlink only (what
    os.path.realpath does): nothing is opened or read."""
    if not os.path.lexists(link):
        return set()
    targets = {os.path.realpath(link)}
    if os.path.islink(link):
        named = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))
        targets.add(os.path.join(os.path.realpath(os.path.dirname(named)), os.path.basename(named)))
    return targets


def _valid_ref(name):
    try:
        _names.check_ref_name(name)
        return True
    except _names.UnsafeName:
        return False


# hf_snapshot's lock of a repository: the same file and flock, taken from a descriptor of the real folder.
RepoLock = _cache.RepoLock


# --- removing: moved into a trash folder first, so that a failure can be undone ---------------------------------

TRASH = ".hf_prune.trash"
COMMITTED = "committed"
PROBE = ".hf_prune.probe"
PARTS = ("snapshots", "trees", "blobs")


def error_kind(exc):
    """The error_kind for an OSError whose cause is known; 'other' when it is not."""
    if isinstance(exc, _fs.Refused) or getattr(exc, "errno", None) in (errno.ELOOP, errno.ENOTDIR):
        return _errors.UNSAFE_CACHE
    if getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EBUSY, errno.EXDEV,
                                       errno.ETXTBSY):
        return _errors.NOT_WRITABLE
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return _errors.DISK_FULL
    return _errors.OTHER


def _where(dir_path, exc):
    """The path an OSError raised with a dir_fd names: its file name below the folder it was reached from."""
    name = getattr(exc, "path", None) or getattr(exc, "filename", None)
    if isinstance(name, str):
        return name if os.path.isabs(name) else os.path.join(dir_path, name)
    return dir_path


def _open_sub(parent_fd, name, create=False):
    try:
        return os.open(name, _fs.DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
        os.mkdir(name, 0o755, dir_fd=parent_fd)
        return os.open(name, _fs.DIR_FLAGS, dir_fd=parent_fd)


def _probe(dir_fd, path):
    """Check that every entry below the folder `dir_fd` can be removed, by renaming each in place and back: a
    file or folder that is immutable, append-only, on a read-only mount or a mount point fails here, before
    anything is deleted."""
    times = os.fstat(dir_fd)
    try:
        for name in os.listdir(dir_fd):
            where = os.path.join(path, name)
            try:
                os.rename(name, PROBE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                raise type(exc)(exc.errno, exc.strerror, where)
            os.rename(PROBE, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, _fs.DIR_FLAGS, dir_fd=dir_fd)
                try:
                    _probe(sub, where)
                finally:
                    os.close(sub)
    finally:
        # a folder put back keeps its modification time, which decides which revisions are recent
        os.utime(dir_fd, ns=(times.st_atime_ns, times.st_mtime_ns))


def _restorable(part, name, st):
    if part == "snapshots":
        return _names.is_commit(name) and stat.S_ISDIR(st.st_mode)
    if part == "trees":
        return name.endswith(".json") and _names.is_commit(name[:-5]) and stat.S_ISREG(st.st_mode)
    return bool(_names.BLOB_RE.match(name)) and (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode))


def _put_back(root_fd, trash_fd):
    """Move every entry of the trash back where it was, unless the repository has that name again; return
    what was put back, as (part, name)."""
    back = []
    for part in PARTS:
        try:
            src = os.open(part, _fs.DIR_FLAGS, dir_fd=trash_fd)
        except FileNotFoundError:
            continue
        try:
            names = os.listdir(src)
            if not names:
                continue
            dst = _open_sub(root_fd, part, create=True)
            try:
                for name in names:
                    st = os.stat(name, dir_fd=src, follow_symlinks=False)
                    if not _restorable(part, name, st):
                        continue
                    try:
                        os.stat(name, dir_fd=dst, follow_symlinks=False)
                        continue  # made again since: the trashed copy goes
                    except FileNotFoundError:
                        pass
                    os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
                    back.append((part, name))
            finally:
                os.close(dst)
        finally:
            os.close(src)
    return back


def recover(repo):
    """Settle a trash folder that a run which stopped part-way left in the repository: before the point of no
    return (no `committed` mark) everything in it is put back, after it the removal is finished.

    Returns None when there was none, else (what was done, the trash's path, [Refused]).
    """
    path = os.path.join(repo.root, TRASH)

    def settle(root_fd, _name):
        st = _fs.lstat_in(root_fd, TRASH)
        if st is None:
            return None
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(TRASH, dir_fd=root_fd)
            return ("removed", path, [Refused(path, "was %s, not the prune's own folder; the entry itself was removed,"
                                              " nothing it leads to" % _fs.describe(st.st_mode),
                                              "none needed; find out what made it")])
        trash_fd = os.open(TRASH, _fs.DIR_FLAGS, dir_fd=root_fd)
        try:
            try:
                mark = os.stat(COMMITTED, dir_fd=trash_fd, follow_symlinks=False)
                committed = stat.S_ISREG(mark.st_mode) and mark.st_uid == os.fstat(trash_fd).st_uid
            except FileNotFoundError:
                committed = False
            done = "finished" if committed else "restored"
            if not committed:
                _put_back(root_fd, trash_fd)
            _fs.clear(trash_fd, path)
        finally:
            os.close(trash_fd)
        os.rmdir(TRASH, dir_fd=root_fd)
        return (done, path, [])
    return _fs.at_entry(repo.cache_dir, os.path.join(repo.folder_name, TRASH), settle)


def apply(plan):
    """Remove what the plan names, so that a failure leaves each revision entirely there or entirely gone.

    1. Move each removed revision's snapshot folder, its listing and the blobs that go into a fresh trash folder
       in the repository folder (`.hf_prune.trash`, same filesystem: each rename is atomic), from descriptors of
       real folders only.
    2. Check that everything in the trash can be removed (_probe).
    3. On any failure so far, put everything back and raise Failure with the cause's kind (`path` in its extra:
       what could not be removed); only when that fails too, `partial_failure` naming the trash, which the next run settles (recover).
    4. Mark the trash `committed` - the point of no return - and delete it; a failure now is
       `partial_failure`: the revisions are gone from snapshots/, the next run finishes the trash.

    Partial downloads go last, one by one, each only while its download lock is still free.
    """
    repo = plan.repo
    cache_dir, folder = repo.cache_dir, repo.folder_name
    trash = os.path.join(repo.root, TRASH)
    moves = [("snapshots", rev.commit) for rev in plan.remove] + \
        [("trees", rev.commit + ".json") for rev in plan.remove] + [("blobs", name) for name, _size in plan.blobs]
    if moves:
        try:
            root_fd = _fs.open_dir(cache_dir, folder)
        except _fs.Refused as exc:
            raise _errors.Failure(_errors.UNSAFE_CACHE, "%s; nothing was removed" % exc, path=exc.path)
        try:
            _move_out(root_fd, repo.root, trash, moves)
        finally:
            os.close(root_fd)
    _remove_incomplete(plan)


def _move_out(root_fd, root, trash, moves):
    try:
        os.mkdir(TRASH, 0o700, dir_fd=root_fd)
    except FileExistsError:
        raise _errors.Failure(_errors.UNSAFE_CACHE, "%s appeared while the run held the repository's lock; nothing was"
                              " removed. Find out what made it; the next run settles it" % trash, path=trash)
    except OSError as exc:
        raise _errors.Failure(error_kind(exc),
                              "cannot make %s: %s; nothing was removed" % (trash, exc.strerror), path=trash)
    trash_fd = os.open(TRASH, _fs.DIR_FLAGS, dir_fd=root_fd)
    fds = {}
    try:
        try:
            for part in PARTS:
                os.mkdir(part, 0o700, dir_fd=trash_fd)
                fds[part] = [os.open(part, _fs.DIR_FLAGS, dir_fd=trash_fd)]
                try:
                    fds[part].append(_open_sub(root_fd, part))
                except FileNotFoundError:
                    pass  # no such folder (a cache without listings): nothing of it to move
                except OSError as exc:
                    raise type(exc)(exc.errno, exc.strerror, os.path.join(root, part))
            for part, name in moves:
                if len(fds[part]) < 2:
                    continue
                dst, src = fds[part]
                try:
                    os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
                except FileNotFoundError:
                    continue  # a listing that was never written, a blob already gone
                except OSError as exc:
                    raise type(exc)(exc.errno, exc.strerror, os.path.join(root, part, name))
            _probe(fds["snapshots"][0], os.path.join(trash, "snapshots"))
        except OSError as exc:
            cause, where = exc, _where(root, exc)
            if _under(where, trash) and where != trash:  # name it where it was: the trash mirrors the folder
                where = os.path.join(root, os.path.relpath(where, trash))
            try:
                _put_back(root_fd, trash_fd)
                _fs.clear(trash_fd, trash)
                os.rmdir(TRASH, dir_fd=root_fd)
            except OSError as again:
                raise _errors.Failure(_errors.PARTIAL_FAILURE,
                                      "%s cannot be removed (%s), and putting back what was moved to %s failed too"
                                      " (%s: %s). The revisions are whole in %s; the next run puts them back."
                                      " Fix: make %s removable (chattr -i, a writable mount), then run again"
                                      % (where, cause.strerror, trash, _where(trash, again), again.strerror, trash, where),
                                      path=where)
            kind = error_kind(cause)
            raise _errors.Failure(kind,
                                  "%s cannot be removed (%s); nothing was removed, everything was put back. Fix: %s"
                                  % (where, cause.strerror,
                                     "remove the link or special file by hand (rm removes the entry itself)"
                                     if kind == _errors.UNSAFE_CACHE else
                                     "make %s removable (chattr -i, a writable mount, the folder's permissions), then run"
                                     " again" % where), path=where)
        fd = os.open(COMMITTED, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=trash_fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.fsync(trash_fd)
        # the point of no return: from here the next run finishes, never puts back
        try:
            _fs.clear(trash_fd, trash)
            os.rmdir(TRASH, dir_fd=root_fd)
        except OSError as exc:
            where = _where(trash, exc)
            raise _errors.Failure(_errors.PARTIAL_FAILURE,
                                  "the revisions are gone from snapshots/, but %s cannot be deleted"
                                  " (%s); the next run finishes %s. Fix: make %s removable, then run again"
                                  % (where, exc.strerror, trash, where), path=where)
    finally:
        for pair in fds.values():
            for fd in pair:
                os.close(fd)
        os.close(trash_fd)


def _remove_incomplete(plan):
    """Unlink the planned partial downloads from a descriptor of the real blobs folder, each only while its
    download lock is still free (a download that started since the plan holds it again)."""
    if not plan.incomplete:
        return
    repo = plan.repo
    _partial, orphans = _incomplete(repo.cache_dir, repo)
    still = {name for name, _st in orphans}
    try:
        blobs = _fs.open_dir(repo.cache_dir, repo.folder_name + "/blobs")
    except FileNotFoundError:
        return
    try:
        for name, _size in plan.incomplete:
            if name not in still:
                continue
            try:
                os.unlink(name, dir_fd=blobs)
            except FileNotFoundError:
                continue
            except OSError as exc:
                path = os.path.join(repo.blobs, name)
                raise _errors.Failure(error_kind(exc), "cannot remove the partial download %s (%s). Fix: make it"
                                      " removable, then run again" % (path, exc.strerror), path=path)
    finally:
        os.close(blobs)


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
    and snapshots, read with readlink (never followed), walking real folders only.

    Any link whose text leads to <cache>/blobs/<2 hex>/<hash>, relative or absolute, counts: an entry that
    something might still read through a link in the cache is kept, whoever made the link.
    """
    bases = {os.path.normpath(os.path.join(top, _store.STORE_DIR))
             for top in (os.path.abspath(cache_dir), os.path.realpath(cache_dir))}
    users = {}
    for folder in _link_folders(cache_dir):
        name = os.path.basename(folder)
        for sub in ("blobs", "snapshots"):
            try:
                for rel, _st, target in walk(cache_dir, name + "/" + sub):
                    if target is None:
                        continue
                    path = os.path.join(cache_dir, rel)
                    named = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), target))
                    if os.path.dirname(os.path.dirname(named)) not in bases:
                        continue
                    prefix, xet_hash = named.split(os.sep)[-2:]
                    if _store.HASH_RE.match(xet_hash) and xet_hash[:2] == prefix:
                        users.setdefault(xet_hash, set()).add(path)
            except _fs.Refused:
                continue  # not a real folder (the repository's own plan refuses it): nothing read through it
    return users


def _still_used(path, removed_blobs, removed_snapshots):
    return path not in removed_blobs and not any(_under(path, top) for top in removed_snapshots)


def _raw_manifest(cache_dir, xet_hash):
    """The lines of a `.refs` manifest, read through real folders without following or blocking; [] when it is
    not a regular file (or is larger than the library writes)."""
    try:
        data = _fs.read_file(cache_dir, "%s/%s/%s%s" % (_store.STORE_DIR, xet_hash[:2], xet_hash,
                                                        _store.MANIFEST_SUFFIX), _store.MANIFEST_MAX)
    except OSError:
        return []
    return [line for line in (data or b"").decode("utf-8", "replace").splitlines() if line]


def _referrers(cache_dir, xet_hash):
    """Repository blobs (paths) that link to this entry now, as its manifest names them; each link read by
    readlink through real folders."""
    out = []
    for line in _raw_manifest(cache_dir, xet_hash):
        if _store.REPO_BLOB_RE.match(line):
            target = _readlink(cache_dir, line)
            if target is not None and _store.parse_target(target) == xet_hash:
                out.append(os.path.join(cache_dir, line))
    return out


def _store_entries(cache_dir):
    """{xet hash: size} of every regular file named by its hash in its own prefix folder, listed through
    descriptors of real folders."""
    found = {}
    for prefix in _safe_listdir(cache_dir, _store.STORE_DIR):
        if not _store.PREFIX_RE.match(prefix):
            continue
        for name in _safe_listdir(cache_dir, _store.STORE_DIR + "/" + prefix):
            if _store.HASH_RE.match(name) and name.startswith(prefix):
                st = _lstat(cache_dir, "%s/%s/%s" % (_store.STORE_DIR, prefix, name))
                if st is not None and stat.S_ISREG(st.st_mode):
                    found[name] = st.st_size
    return found


def _safe_listdir(cache_dir, rel):
    try:
        return _listdir(cache_dir, rel)
    except _fs.Refused:
        return []


def store_anomalies(cache_dir, hashes=None):
    """Refused store entries (anything but a regular file under an entry's name) and manifest lines that name
    something other than a repository blob, for every entry or those in `hashes`. Nothing is opened but the
    store's folders (listed) and regular manifests (read with O_NOFOLLOW)."""
    top = _store.store_dir(cache_dir)
    found = []
    try:
        if not stat.S_ISDIR(os.lstat(top).st_mode):
            return [Refused(top, "the shared store is %s, not a directory" % _fs.describe(os.lstat(top).st_mode),
                            "remove %s (it is not huggingface_hub's store); downloads make it again" % top)]
        prefixes = _listdir(cache_dir, _store.STORE_DIR)
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
            found.append(Refused(folder, "store folder is %s" % _fs.describe(st.st_mode),
                                 "remove %s by hand (rm removes the link itself); downloads make it again" % folder))
            continue
        for name in _safe_listdir(cache_dir, "%s/%s" % (_store.STORE_DIR, prefix)):
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
                found.append(Refused(path, "%s is %s, not a regular file; never opened" % (what, _fs.describe(st.st_mode)),
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
    candidates = _store_entries(cache_dir)
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
        folder = _fs.open_dir(self.cache_dir, "%s/%s" % (_store.STORE_DIR, self.xet_hash[:2]))
        name = self.xet_hash + _store.LOCK_SUFFIX
        try:
            try:
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
            except FileNotFoundError:
                # made as the library makes it: 0666, and owned as its folder, so that the cache's own user
                # can still take it
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=folder)
                st = os.fstat(folder)
                _fs.own_fd(fd, st.st_uid, st.st_gid, 0o666, made=True)
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _names.UnsafeName("%s is not a regular file" % _store.lock_path(self.cache_dir, self.xet_hash))
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
        except (OSError, _names.UnsafeName):
            continue  # a download holds it, or the lock is not a file: the entry stays for a later run
        try:
            if _referrers(store.cache_dir, xet_hash):
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


# A repository the prune refuses is reported in `refused` with the fix of the run's own failure.
UNSAFE_FIX = _errors.fix(_errors.UNSAFE_CACHE)


class Prune:
    """hf_prune's run: every repository planned before anything is removed, re-planned under its lock, then
    applied through a trash; the result and its diff come from the plans."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.cache_dir = self.p["cache_dir"] or _names.default_cache_dir(os.environ)
        self.result = {"changed": False, "cache_dir": self.cache_dir, "removed_revisions": [], "kept": [],
                       "removed_blobs": [], "removed_incomplete": [], "removed_store_entries": [], "refused": [],
                       "recovered": [], "freed_bytes": 0}
        self.validate()
        self.links = {link: link_targets(link) for link in self.p["links"]}

    def validate(self):
        p = self.p
        if p["keep"] < 0 or p["incomplete_age"] < 0 or p["timeout"] < 0:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "keep, incomplete_age and timeout must be >= 0")
        try:
            if p["repo_id"] is not None:
                _names.check_repo_id(p["repo_id"])
            for rev in p["pinned"]:
                if not _names.is_commit(rev):
                    _names.check_ref_name(rev, "pinned revision")
        except _names.UnsafeName as exc:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s: fix the argument" % exc)
        if os.path.lexists(self.cache_dir) and not os.path.isdir(self.cache_dir):
            raise _errors.Failure(_errors.CACHE_DIR_INVALID,
                                  "cache_dir %s is not a directory: point cache_dir at the hub cache" % self.cache_dir)

    def repos(self):
        if self.p["repo_id"] is not None:
            return [(self.p["repo_id"], self.p["repo_type"])]
        return repos_in(self.cache_dir)

    def plan(self, repo_id, repo_type, busy):
        try:
            return plan_repo(self.cache_dir, repo_id, repo_type, self.p["keep"], self.p["pinned"],
                             self.links, busy, self.p["incomplete_age"])
        except _names.UnsafeName as exc:
            self.result["refused"].append({"path": exc.name or repo_id, "reason": str(exc), "fix": UNSAFE_FIX})
            raise _errors.Failure(_errors.UNSAFE_CACHE, "%s. Refusing to prune %s; nothing %s removed from it. Fix: %s"
                                  % (exc, repo_id, "would be" if self.module.check_mode else "was", UNSAFE_FIX))

    def run(self):
        if not os.path.isdir(self.cache_dir):
            return self.result
        busy = open_paths()
        # Every repository is checked before anything is removed from any of them.
        plans = [self.plan(repo_id, repo_type, busy) for repo_id, repo_type in self.repos()]
        whole = self.p["repo_id"] is None
        store = plan_store(self.cache_dir, plans, busy, scope=None if whole else set())
        done = []
        for plan in plans:
            if plan.trash and self.module.check_mode:
                self.module.warn("%s/%s was left by a prune that stopped part-way; the next run settles it (puts"
                                 " it back, or finishes it once it was past the point of no return)"
                                 % (plan.repo.root, TRASH))
            if not self.module.check_mode and (plan.remove or plan.incomplete or plan.trash):
                plan = self.apply(plan)
            done.append(plan)
        freed = store.entries
        if not self.module.check_mode:
            # The store is planned again from the links left on disk once the revisions are gone.
            busy = open_paths()
            store = plan_store(self.cache_dir, [], busy, scope=None if whole else store.released)
            freed = apply_store(store, busy, self.p["timeout"])
            self.result["changed"] |= bool(freed)
        self.report(done, store, freed)
        return self.result

    def apply(self, plan):
        """Plan again under the repository's lock, with a fresh look at running processes, then remove."""
        lock = RepoLock(plan.repo, self.p["timeout"])
        try:
            lock.acquire()
        except _cache.LockTimeout as exc:
            raise _errors.Failure(_errors.LOCKED, "%s: let it finish, or raise 'timeout'" % exc)
        except _fs.Refused as exc:
            self.result["refused"].append({"path": exc.path, "reason": exc.reason, "fix": UNSAFE_FIX})
            raise _errors.Failure(_errors.UNSAFE_CACHE, "%s. Refusing to prune %s; nothing was removed from it. Fix: %s"
                                  % (exc, plan.repo_id, UNSAFE_FIX))
        try:
            try:
                settled = recover(plan.repo)
            except OSError as exc:
                where = getattr(exc, "filename", None) or os.path.join(plan.repo.root, TRASH)
                raise _errors.Failure(error_kind(exc) if error_kind(exc) != _errors.OTHER else _errors.PARTIAL_FAILURE,
                                      "cannot settle %s, left by a prune that stopped part-way: %s. Fix: make %s"
                                      " removable, then run again" % (os.path.join(plan.repo.root, TRASH), exc, where))
            if settled:
                action, path, refused = settled
                self.result["recovered"].append({"repo_id": plan.repo_id, "repo_type": plan.repo_type,
                                                 "path": path, "action": action})
                self.result["refused"] += [item.as_dict() for item in refused]
                self.result["changed"] = True
            plan = self.plan(plan.repo_id, plan.repo_type, open_paths())
            try:
                apply(plan)
            except _errors.Failure as exc:  # its `path` is in the message; the result has no key for it
                raise _errors.Failure(exc.kind, exc.msg)
        finally:
            lock.release()
        if plan.remove or plan.incomplete:
            self.result["changed"] = True
        return plan

    def report(self, plans, store, freed):
        r = self.result
        for plan in plans:
            who = {"repo_id": plan.repo_id, "repo_type": plan.repo_type}
            r["removed_revisions"] += [dict(who, commit=rev.commit) for rev in plan.remove]
            r["kept"] += [dict(who, commit=rev.commit, reasons=rev.reasons) for rev in plan.keep]
            r["removed_blobs"] += [dict(who, name=name, size=size) for name, size in plan.blobs]
            r["removed_incomplete"] += [dict(who, file=name, size=size) for name, size in plan.incomplete]
            r["refused"] += [item.as_dict() for item in plan.refused]
            r["freed_bytes"] += plan.freed
        r["removed_store_entries"] = [
            {"xet_hash": h, "size": size, "path": _store.entry_path(self.cache_dir, h)} for h, size in freed]
        r["freed_bytes"] += sum(size for _h, size in freed)
        r["refused"] += [item.as_dict() for item in store.refused]
        for item in r["refused"]:
            self.module.warn("hf_prune left %s alone: %s. Fix: %s" % (item["path"], item["reason"], item["fix"]))
        if self.module.check_mode:
            r["changed"] = bool(r["removed_revisions"] or r["removed_incomplete"] or freed)
        r["diff"] = {"before": self.state(plans, removed=False), "after": self.state(plans, removed=True)}
        if store.entries or freed:
            r["diff"]["before"]["blobs"] = {"entries": sorted({h for h, _size in store.entries + list(freed)})}
            r["diff"]["after"]["blobs"] = {"entries": sorted(
                {h for h, _size in store.entries} - {h for h, _size in freed})}

    @staticmethod
    def state(plans, removed):
        """{repo folder: {revisions, incomplete}} as planned, or as left after the removals."""
        out = {}
        for plan in plans:
            gone = {rev.commit for rev in plan.remove} | {name for name, _size in plan.incomplete} if removed \
                else set()
            out[plan.repo.folder_name] = {
                "revisions": sorted(rev.commit for rev in plan.revisions if rev.commit not in gone),
                "incomplete": sorted(name for name in plan.partial if name not in gone)}
        return out
