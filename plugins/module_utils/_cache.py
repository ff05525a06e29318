# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read and shape the huggingface_hub cache layout without importing huggingface_hub.

Everything here treats the cache's own files (refs, tree listings, snapshot links) and every name that came
from the Hub as untrusted: a path is written, linked or removed only after it was checked to lie _names.inside the
repository's own folders, ``<cache>/<repo folder>`` and ``<cache>/.locks/<repo folder>``.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import posixpath
import stat
import time

from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

TREE_FORMAT_VERSION = 1
TREE_MAX = 64 * 1024 * 1024  # a listing of a few hundred thousand files; a bigger one is not the module's
LOCK_NAME = "hf_snapshot.lock"
PENDING_NAME = "hf_snapshot.pending"
_CHUNK = 4 * 1024 * 1024


class BlobMismatch(ValueError):
    """A file offered as a blob whose content does not hash to its name."""


class LockTimeout(Exception):
    """Another run held the repository's lock for longer than this run may wait."""


# --- content checks ---------------------------------------------------------------------------------------

def blob_digest(path, git, cache_dir=None):
    """SHA-256 or git blob id of a blob's content, read through a descriptor that never follows a link.

    With `cache_dir`, a blob that links into the shared store is read from its store entry (validated by
    _store); any other link, FIFO or device raises _store.StoreRefused.
    """
    if cache_dir is None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _store.StoreRefused("%s is not a regular file" % path, path, "not a regular file")
    else:
        fd = _store.open_blob(cache_dir, path)
    size = os.fstat(fd).st_size
    digest = hashlib.sha1(b"blob %d\0" % size) if git else hashlib.sha256()
    for chunk in _store.read_chunks(fd, _CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def blob_matches_name(path, cache_dir=None):
    """A blob is named after its ETag: SHA-256 for LFS files, git blob id otherwise; check the content."""
    name = os.path.basename(path)
    try:
        actual = blob_digest(path, len(name) != 64, cache_dir)
    except (OSError, _store.StoreRefused) as exc:
        return False, "unreadable (%s)" % exc
    return actual == name, actual


class RepoCache:
    """One repository's folders in a hub cache: models--org--name/{blobs,refs,snapshots,trees} and its locks."""

    def __init__(self, cache_dir, repo_id, repo_type="model"):
        self.cache_dir = cache_dir
        self.folder_name = _names.repo_folder_name(repo_id, repo_type)
        self.root = os.path.join(cache_dir, self.folder_name)
        self.locks = os.path.join(cache_dir, ".locks", self.folder_name)
        self.blobs = os.path.join(self.root, "blobs")

    # --- guarded paths -------------------------------------------------------
    def _real_dir(self, path, top, create):
        """Make sure every component of `path` below `top` is a real directory (never a symlink): walked from a
        descriptor of cache_dir, each folder opened (or made) with O_NOFOLLOW relative to its parent."""
        rel = os.path.relpath(path, top)
        if rel.startswith(".."):
            raise _names.UnsafeName("%s is outside %s" % (path, top), path)
        from_cache = os.path.relpath(path, self.cache_dir)
        if from_cache.startswith(".."):
            raise _names.UnsafeName("%s is outside %s" % (path, self.cache_dir), path)
        try:
            os.close(_fs.open_dir(self.cache_dir, from_cache, create=create))
        except (FileNotFoundError, NotADirectoryError):
            if create:
                raise
            return False
        except _fs.Refused as exc:
            raise _names.UnsafeName("%s in the cache %s; remove it (state=absent) and fetch again"
                                    % (exc.path, exc.reason), exc.path)
        return True

    def root_dir(self, create=True):
        """The repository folder itself, which must be a real directory in cache_dir."""
        if create:
            os.makedirs(self.cache_dir, exist_ok=True)
        return self._real_dir(self.root, self.cache_dir, create)

    def check_layout(self, commit=None, create=False):
        """The repository's folders, where they exist, are real directories _names.inside the cache, never symlinks."""
        subdirs = ["blobs", "refs", "trees", "snapshots"] + ([os.path.join("snapshots", commit)] if commit else [])
        if self.root_dir(create):
            for rel in subdirs:
                self.dir_in_repo(rel, create)
        self.locks_dir(create)

    def dir_in_repo(self, rel, create=True):
        self.root_dir(create)
        path = os.path.join(self.root, rel)
        return path if self._real_dir(path, self.root, create) else None

    def locks_dir(self, create=True):
        if create:
            os.makedirs(os.path.join(self.cache_dir, ".locks"), exist_ok=True)
        if not _names.inside(os.path.join(self.cache_dir, ".locks"), self.cache_dir):
            raise _names.UnsafeName("%s/.locks leads outside the cache" % self.cache_dir, ".locks")
        return self._real_dir(self.locks, os.path.join(self.cache_dir, ".locks"), create)

    # --- reading -------------------------------------------------------------
    def snapshot_path(self, commit):
        return os.path.join(self.root, "snapshots", _names.check_commit(commit, "the cache"))

    def read_ref(self, ref):
        """The commit a ref names, or None: a ref that is a symlink or not a regular file is never read."""
        try:
            data = _fs.read_file(self.cache_dir, posixpath.join(self.folder_name, "refs", _names.check_ref_name(ref)), 256)
        except (_fs.Refused, IsADirectoryError, NotADirectoryError):
            return None
        value = (data or b"").decode("ascii", "replace").strip()
        return value if _names.is_commit(value) else None

    def tree_path(self, commit):
        return os.path.join(self.root, "trees", _names.check_commit(commit, "the cache") + ".json")

    def read_tree(self, commit):
        """The cached listing for a commit: {path: {size, blob_id, lfs_sha256?}}, None, or _names.UnsafeName."""
        path = self.tree_path(commit)
        try:
            raw = _fs.read_file(self.cache_dir, os.path.relpath(path, self.cache_dir), TREE_MAX)
            if raw is None:
                return None
            data = json.loads(raw.decode("utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format_version") != TREE_FORMAT_VERSION:
            return None
        files = data.get("files")
        if not isinstance(files, dict):
            return None
        return _names.check_tree(files, "the cached listing %s" % path)

    def blob_path(self, name):
        if not (isinstance(name, str) and _names.BLOB_RE.match(name)):
            raise _names.UnsafeName("%r is not a blob name" % (name,), name)
        return os.path.join(self.blobs, name)

    def linked_blob(self, commit, path):
        """The blob behind a snapshot entry, when it links to blobs/<name> of this repository and that blob is a
        regular file or a valid link into the shared store (see _store); the path of blobs/<name>, or None.

        The snapshot link's target is read, not followed, so a blob that is itself a link is judged by _store.
        """
        entry = os.path.join(self.snapshot_path(commit), _names.check_file_name(path, "the snapshot"))
        try:
            if not stat.S_ISLNK(os.lstat(entry).st_mode):
                return None
            target = os.readlink(entry)
        except (FileNotFoundError, NotADirectoryError):
            return None
        blob = os.path.normpath(os.path.join(os.path.realpath(os.path.dirname(entry)), target))
        if os.path.dirname(blob) != os.path.realpath(self.blobs) or not _names.BLOB_RE.match(os.path.basename(blob)):
            return None
        return blob if _store.inspect_blob(self.cache_dir, blob).present else None

    def inspect_blob(self, name):
        """What blobs/<name> is: a regular file, a valid store link, missing, or refused (_store.Blob)."""
        return _store.inspect_blob(self.cache_dir, self.blob_path(name))

    def store_links(self):
        """{blob name: store hash} of this repository's blobs that link into the shared store."""
        return _store.repo_links(self.cache_dir, self.root)

    def present_files(self, commit):
        """Files of a snapshot whose link resolves to a blob of this repository."""
        base = self.snapshot_path(commit)
        found = []
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                rel = os.path.relpath(os.path.join(dirpath, name), base)
                try:
                    if self.linked_blob(commit, rel):
                        found.append(rel)
                except _names.UnsafeName:
                    continue
        return sorted(found)

    def missing_files(self, commit, wanted):
        return [path for path in wanted if not self.linked_blob(commit, path)]

    def has_blob(self, name):
        """blobs/<name> is a regular file, or a link to a valid entry of the shared store."""
        try:
            return self.inspect_blob(name).present
        except (OSError, _names.UnsafeName):
            return False

    def blob_size(self, name):
        blob = self.inspect_blob(name)
        return blob.size if blob.present else 0

    def blob_names(self):
        try:
            return {n for n in os.listdir(self.blobs) if _names.BLOB_RE.match(n)}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def incomplete_blobs(self):
        """Partial downloads in blobs/: '<etag>.incomplete' or '<etag>.<id>.incomplete'."""
        try:
            names = os.listdir(self.blobs)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if n.endswith(".incomplete") and _names.BLOB_RE.match(n.split(".")[0]))

    def orphaned_incomplete(self):
        """Partial downloads whose download lock nobody holds: left by a run that died."""
        orphans = []
        for name in self.incomplete_blobs():
            lock = os.path.join(self.locks, name.split(".")[0] + ".lock")
            try:
                fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:
                orphans.append(name)
                continue
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                orphans.append(name)
            except OSError:
                pass  # a live download holds it
            finally:
                os.close(fd)
        return orphans

    def _unlink(self, path):
        """Unlink a path of this repository through descriptors of its real folders (the link, never its target).
        `path` may be spelled from cache_dir or from its real path (linked_blob resolves the cache's own path)."""
        top = self.cache_dir
        rel = os.path.relpath(path, top)
        if rel.startswith(".."):
            top = os.path.realpath(self.cache_dir)
            rel = os.path.relpath(path, top)
        return _fs.unlink_at(top, rel)

    def remove_incomplete(self, names):
        for name in names:
            self._unlink(os.path.join(self.blobs, name))

    # --- checking ------------------------------------------------------------
    def verify(self, commit, paths, tree):
        """Return [(path, expected, actual)] for files whose content does not match the listing."""
        bad = []
        for path in paths:
            entry = tree.get(path) or {}
            blob = self.linked_blob(commit, path)
            if entry.get("lfs_sha256"):
                expected, git = entry["lfs_sha256"], False
            elif entry.get("blob_id"):
                expected, git = entry["blob_id"], True
            else:
                continue
            try:
                actual = blob_digest(blob, git, self.cache_dir) if blob else "no blob"
            except (OSError, _store.StoreRefused) as exc:
                actual = "unreadable (%s)" % exc
            if expected != actual:
                bad.append((path, expected, actual))
        return bad

    def discard(self, commit, path):
        """Remove a file from a snapshot, and its blob when the link leads to one of this repository's.

        A blob that links into the shared store takes its store entry with it: the entry's content is what was
        wrong, and huggingface_hub would link it again by size alone for the next download.
        """
        blob = self.linked_blob(commit, path)
        link = os.path.join(self.snapshot_path(commit), path)
        if not self.dir_in_repo(os.path.dirname(os.path.relpath(link, self.root)), create=False):
            return
        xet_hash = _store.link_hash(blob) if blob else None
        if xet_hash:
            _store.remove_entry(self.cache_dir, xet_hash)
        for victim in (blob, link):
            if victim:
                self._unlink(victim)

    def import_blob(self, source, name, lock_timeout=300, move=False):
        """Copy a regular file into blobs/<name>, hashing it on the way; only a matching copy is moved in.

        With `move`, `source` is a file that only root can reach and change, whose content was checked against
        `name` as it was written there (hf_receive's unpacked stream): it is renamed in, with no second read,
        when it is on the cache's filesystem (else copied and checked as above).

        Holds the blob's download lock while copying, as huggingface_hub does, so the partial file is never
        taken for an orphan; the lock is waited for at most `lock_timeout` seconds (its holder may be the cache's
        owner). The partial file is made and renamed _names.inside the real blobs folder, reached without following
        links. Returns the bytes copied.
        """
        self.blob_path(name)
        self.locks_dir()
        self.dir_in_repo("blobs")
        locks = _fs.open_dir(self.cache_dir, os.path.relpath(self.locks, self.cache_dir))
        try:
            lock = os.open(name + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o664,
                           dir_fd=locks)
        finally:
            os.close(locks)
        blobs = None
        tmp = "%s.import%d.incomplete" % (name, os.getpid())
        try:
            if not stat.S_ISREG(os.fstat(lock).st_mode):
                raise _names.UnsafeName("%s in the cache is not a lock file" % os.path.join(self.locks, name + ".lock"))
            deadline = time.monotonic() + lock_timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise LockTimeout("another process held the lock of blob %s for the whole %ds"
                                          % (name, lock_timeout))
                    time.sleep(0.2)
            blobs = _fs.open_dir(self.cache_dir, os.path.relpath(self.blobs, self.cache_dir))
            if move:
                try:
                    os.rename(source, tmp, dst_dir_fd=blobs)
                    moved = True
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    moved = False
                if moved:
                    st = os.stat(tmp, dir_fd=blobs, follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        raise BlobMismatch("%s is not a regular file" % source)
                    os.replace(tmp, name, src_dir_fd=blobs, dst_dir_fd=blobs)
                    return st.st_size
            src = self._open_source(source)
            try:
                st = os.fstat(src)
                if not stat.S_ISREG(st.st_mode):
                    raise BlobMismatch("%s is not a regular file" % source)
                os.set_blocking(src, True)
                digest = hashlib.sha256() if len(name) == 64 else hashlib.sha1(b"blob %d\0" % st.st_size)
                copied = 0
                with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                                       dir_fd=blobs), "wb") as out:
                    for chunk in iter(lambda: os.read(src, _CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
                        copied += len(chunk)
            finally:
                os.close(src)
            if digest.hexdigest() != name:
                raise BlobMismatch("%s holds content with id %s, not %s" % (source, digest.hexdigest(), name))
            os.replace(tmp, name, src_dir_fd=blobs, dst_dir_fd=blobs)
            return copied
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BlobMismatch("%s is a symlink, not a file" % source)
            raise
        finally:
            if blobs is not None:
                try:
                    os.unlink(tmp, dir_fd=blobs)
                except FileNotFoundError:
                    pass
                os.close(blobs)
            os.close(lock)

    @staticmethod
    def _open_source(source):
        """A regular file, or a blob of another cache that links into that cache's shared store (its blobs
        folder is <cache>/<repo folder>/blobs); any other symlink is refused (ELOOP)."""
        try:
            return os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            xet_hash = _store.link_hash(source) if exc.errno == errno.ELOOP else None
            if xet_hash is None:
                raise
        other_cache = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(source))))
        try:
            fd = _store.open_entry(other_cache, xet_hash)
        except _store.StoreRefused as exc:
            raise BlobMismatch("%s links into the shared store of %s, which refuses it: %s"
                               % (source, other_cache, exc))
        os.set_blocking(fd, True)
        return fd

    def clear_refused(self, names):
        """Unlink blobs/<name> entries that are neither a regular file nor a valid store link (a link elsewhere,
        a dangling one, a FIFO): huggingface_hub would follow them and take them for the file. Returns them."""
        cleared = []
        for name in names:
            blob = self.inspect_blob(name)
            if blob.kind != _store.REFUSED:
                continue
            if stat.S_ISDIR(os.lstat(blob.path).st_mode):
                raise _names.UnsafeName("%s in the cache is a directory where a blob belongs (%s)"
                                        % (blob.path, blob.reason), blob.path)
            self._unlink(blob.path)
            cleared.append(name)
        return cleared

    def discard_blob(self, name):
        """Remove blobs/<name>; when it links into the shared store, the (unchecked or corrupt) entry too."""
        path = self.blob_path(name)
        xet_hash = _store.link_hash(path)
        if xet_hash:
            _store.remove_entry(self.cache_dir, xet_hash)
        self._unlink(path)

    # --- writing -------------------------------------------------------------
    def write_ref(self, ref, commit):
        _names.check_ref_name(ref)
        path = os.path.join(self.root, "refs", ref)
        self.dir_in_repo(os.path.dirname(os.path.relpath(path, self.root)))
        _fs.write_file_at(self.cache_dir, os.path.relpath(path, self.cache_dir),
                          _names.check_commit(commit, "the run").encode("ascii"))

    def write_tree(self, commit, files):
        """Store the listing in the library's own format, so snapshot_download skips its tree request."""
        self.dir_in_repo("trees")
        payload = {"format_version": TREE_FORMAT_VERSION, "files": files}
        _fs.write_file_at(self.cache_dir, os.path.relpath(self.tree_path(commit), self.cache_dir),
                          json.dumps(payload, indent=2, sort_keys=True).encode("utf-8"))

    def remove_tree(self, commit):
        self._unlink(self.tree_path(commit))

    def link_existing_blob(self, commit, path, name):
        """Add a file to a snapshot from a blob already in the cache, with the library's relative link."""
        _names.check_file_name(path, "the listing")
        blob = self.blob_path(name)
        link = os.path.join(self.snapshot_path(commit), path)
        self.dir_in_repo(os.path.dirname(os.path.relpath(link, self.root)))
        folder = _fs.open_dir(self.cache_dir, os.path.relpath(os.path.dirname(link), self.cache_dir))
        name_in = os.path.basename(link)
        try:
            try:
                st = os.stat(name_in, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                if stat.S_ISDIR(st.st_mode):
                    raise _names.UnsafeName("%s in the cache is a directory where the file %s belongs" % (link, path), path)
                os.unlink(name_in, dir_fd=folder)
            os.symlink(os.path.relpath(blob, os.path.dirname(link)), name_in, dir_fd=folder)
        finally:
            os.close(folder)

    def remove_snapshot_entries(self, commit, keep):
        """Undo a failed run: drop snapshot entries not in `keep`, and the snapshot folder if left empty.

        Walked and unlinked through descriptors of real folders: a folder swapped for a symlink while this
        runs is neither entered nor emptied."""
        rel = os.path.relpath(self.snapshot_path(commit), self.cache_dir)
        try:
            base = _fs.open_dir(self.cache_dir, rel)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            for dirpath, dirs, names, dir_fd in os.fwalk(".", dir_fd=base, topdown=False, follow_symlinks=False):
                for name in names + dirs:
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        sub = os.open(name, _fs.DIR_FLAGS, dir_fd=dir_fd)
                        try:
                            emptied = not os.listdir(sub)
                        finally:
                            os.close(sub)
                        if emptied:
                            os.rmdir(name, dir_fd=dir_fd)
                    elif os.path.normpath(os.path.join(dirpath, name)) not in keep:
                        os.unlink(name, dir_fd=dir_fd)
            empty = not os.listdir(base)
        finally:
            os.close(base)
        if empty:
            parent = _fs.open_dir(self.cache_dir, os.path.dirname(rel))
            try:
                os.rmdir(os.path.basename(rel), dir_fd=parent)
            finally:
                os.close(parent)

    def remove(self):
        """Remove the repository's folders through descriptors; a symlink in their place (or in place of .locks)
        is removed, never followed."""
        existed = _fs.rmtree_at(self.cache_dir, self.folder_name)
        try:
            existed |= _fs.rmtree_at(self.cache_dir, os.path.join(".locks", self.folder_name))
        except _fs.Refused:
            pass  # .locks itself is a symlink: nothing of this repository is reached through it
        return existed

    def owned_paths(self):
        """Everything of this repository: its folder and its locks folder, and of the shared store what its
        readers need (the store folder, the marker, and for each entry this repository links to its prefix
        folder, the entry, its manifest and lock); never the cache root, .locks or CACHEDIR.TAG."""
        for top in (self.root, self.locks):
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            yield top
            for dirpath, dirs, names in os.walk(top):
                for name in dirs + names:
                    yield os.path.join(dirpath, name)
        hashes = [h for name, h in self.store_links().items()
                  if self.inspect_blob(name).kind == _store.STORE]
        yield from _store.owned_paths(self.cache_dir, hashes)

    def copy_rule(self, path):
        """How a hard-linked file of this repository is replaced by a private copy before it gets an owner or a
        mode (_fs.own_at), chosen by where it is; None where no copy makes sense (the run is refused).

        Only a copy whose content is what belongs under the name is made, so that the content of another file
        reached by a hard link (root's secret) is never handed to the new owner: a blob or store entry must hash
        to its id (an entry to the id of a blob of this repository linking to it), a ref must hold a commit, a
        listing must read as one, the store's marker its one line, a manifest keeps its valid lines only; a lock
        file becomes an empty new one."""
        rel = _store.below(self.cache_dir, path)[1]
        if rel.startswith(".."):
            return None
        parts = rel.split(os.sep)
        name = parts[-1]
        if parts[0] == self.folder_name and len(parts) == 3 and parts[1] == "blobs" and _names.BLOB_RE.match(name):
            return _blob_copy(name)
        if parts[0] == self.folder_name and len(parts) >= 3 and parts[1] == "refs":
            return _fs.checked(256, _vouch(lambda data: _names.is_commit(data.decode("ascii", "replace").strip()),
                                           "does not hold a commit"))
        if parts[0] == self.folder_name and len(parts) == 3 and parts[1] == "trees" and name.endswith(".json"):
            return _fs.checked(TREE_MAX, _vouch(_is_listing, "is not a file listing"))
        if parts[:2] == [".locks", self.folder_name] and len(parts) == 3:
            if name.endswith(".lock"):
                return _fs.fresh
            if name == PENDING_NAME:
                return _fs.checked(TREE_MAX, _vouch(_is_pending, "is not a list of blobs"))
            return None
        if parts[0] == _store.STORE_DIR:
            return _store.copy_rule(rel, {h: etag for etag, h in self.store_links().items()}, _blob_copy)
        return None

    def links_to_snapshot(self, link):
        """True when `link` is a symlink that leads into this repository's snapshots."""
        if not os.path.islink(link):
            return False
        target = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))
        return target.startswith(os.path.normpath(os.path.join(self.root, "snapshots")) + os.sep)

    # --- run bookkeeping -------------------------------------------------------
    def pending_path(self):
        return os.path.join(self.locks, PENDING_NAME)

    def write_pending(self, names):
        """Record blobs a download is about to create: a run that dies leaves them unverified."""
        self.locks_dir()
        _fs.write_file_at(self.cache_dir, os.path.relpath(self.pending_path(), self.cache_dir),
                          json.dumps(sorted(names)).encode("utf-8"))

    def read_pending(self):
        try:
            raw = _fs.read_file(self.cache_dir, os.path.relpath(self.pending_path(), self.cache_dir), TREE_MAX)
            names = json.loads(raw.decode("utf-8")) if raw is not None else []
        except (OSError, ValueError):
            return []
        return [n for n in names if isinstance(n, str) and _names.BLOB_RE.match(n)] if isinstance(names, list) else []

    def clear_pending(self):
        self._unlink(self.pending_path())

    def settle_pending(self, names):
        """Check each listed blob against its own name; remove those that do not match. Returns the bad ones."""
        bad = []
        for name in names:
            if not self.has_blob(name):
                continue
            ok, _actual = blob_matches_name(self.blob_path(name), self.cache_dir)
            if not ok:
                self.discard_blob(name)
                bad.append(name)
        return bad


def _blob_copy(name):
    """The copy rule of a blob named after its id: the copy must hash to it."""
    if len(name) == 64:
        return _fs.hashed(lambda _size: hashlib.sha256(), name)
    return _fs.hashed(lambda size: hashlib.sha1(b"blob %d\0" % size), name)


def _vouch(accept, why):
    """A copy rule's judge for _fs.checked: the bytes as they are when `accept` takes them."""
    def judge(data):
        try:
            ok = accept(data)
        except ValueError:
            ok = False
        if not ok:
            raise _fs.NotVouched(why)
        return data
    return judge


def _is_listing(data):
    payload = json.loads(data.decode("utf-8"))
    if not isinstance(payload, dict) or payload.get("format_version") != TREE_FORMAT_VERSION:
        return False
    _names.check_tree(payload.get("files"), "a listing")
    return True


def _is_pending(data):
    names = json.loads(data.decode("utf-8"))
    return isinstance(names, list) and all(isinstance(n, str) and _names.BLOB_RE.match(n) for n in names)


class RepoLock:
    """An exclusive lock per repository folder, shared by every hf_snapshot and hf_prune run on this cache.

    The lock file is opened from a descriptor of the real folder <cache>/.locks/<repo folder>: a locks folder
    swapped for a symlink fails with _fs.Refused instead of leading the file's creation out of the cache, and a
    lock file that is a FIFO or a device is refused before it is written to."""

    def __init__(self, repo, timeout, clock=time.monotonic, sleep=time.sleep):
        self.repo = repo
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.fd = None
        self.waited = 0.0
        self.path = os.path.join(repo.locks, LOCK_NAME)

    def _holder(self):
        try:
            data = _fs.read_file(self.repo.cache_dir, os.path.relpath(self.path, self.repo.cache_dir), 4096)
        except OSError:
            return "unknown"
        return (data or b"")[:32].decode("ascii", "replace").strip() or "unknown"

    def acquire(self):
        os.makedirs(self.repo.cache_dir, exist_ok=True)  # the operator's folder: made as a first run needs it
        folder = _fs.open_dir(self.repo.cache_dir, ".locks/" + self.repo.folder_name, create=True)
        try:
            started = self.clock()
            while True:
                try:
                    fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o664,
                                 dir_fd=folder)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise _fs.Refused(self.path, "is a symlink; never followed")
                    raise
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    os.close(fd)
                    raise _fs.Refused(self.path, "is %s, not a lock file" % _fs.describe(st.st_mode))
                if st.st_nlink > 1:
                    # A hard link, perhaps to a file elsewhere: never truncated, written or locked; an empty
                    # file of this run's takes its name, and is what every run locks from now on.
                    os.close(fd)
                    if self.clock() - started >= self.timeout:
                        raise _fs.Refused(self.path, "is a hard link again each time it is replaced")
                    _fs.own_at(folder, LOCK_NAME, os.geteuid(), os.getegid(), 0o664, where=self.path,
                               copy=_fs.fresh, kinds=(stat.S_IFREG,))
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if self.clock() - started >= self.timeout:
                        self.waited = self.clock() - started
                        raise LockTimeout("another hf_snapshot run (pid %s) held %s for the whole %ds timeout"
                                          % (self._holder(), self.path, self.timeout))
                    self.sleep(0.2)
                    continue
                # A run that removed the repository (state=absent) may have unlinked the file we locked.
                try:
                    same = os.stat(LOCK_NAME, dir_fd=folder, follow_symlinks=False).st_ino == st.st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                os.set_blocking(fd, True)
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self.fd = fd
                self.waited = self.clock() - started
                return self
        finally:
            os.close(folder)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
