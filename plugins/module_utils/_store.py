# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cache-wide shared blob store of huggingface_hub, read without trusting anything in it.

After a Xet download huggingface_hub moves the file to ``<cache>/blobs/<2 hex>/<xet hash>`` and makes the
repository's ``blobs/<etag>`` a relative symlink to it, ``../../blobs/<2 hex>/<xet hash>``;
``<xet hash>.refs`` lists the repository blobs that link there and ``<cache>/blobs/.huggingface-shared-blobs``
marks the store. The cache belongs to an unprivileged user, so any of these may be a symlink, a FIFO or a device
by the time a root process looks.

The rules kept here:

- A repository blob that is a symlink counts only when its target, read with ``os.readlink`` and never followed,
  is exactly ``../../blobs/<h[:2]>/<h>`` for a 64-hex ``h``.
- A store entry is reached by opening ``blobs``, then the prefix folder, then the entry, each relative to the
  previous directory's descriptor with ``O_NOFOLLOW`` (the entry also ``O_NONBLOCK``, so a FIFO cannot block);
  it counts only when ``fstat`` says regular file. Nothing in the store is ever followed by path.
- ``.refs`` manifests are hints, read the same way with a size cap; every line is validated.

What the collection uses: ``inspect_blob`` (FILE, STORE, MISSING or REFUSED for a repository blob),
``open_blob`` / ``open_entry`` + ``read_chunks`` (content without following links), ``link_hash`` /
``parse_target`` (the hash a link names), ``entries`` and ``all_links`` (the store and what links to it now),
``read_manifest`` / ``referrers`` (the manifest's view), ``owned_paths`` (what ownership may reach),
``copy_rule`` (how a hard-linked file of the store is replaced before it gets an owner), ``detach_links`` (no
hard-linked lock or manifest left for the library to chmod or append to as root), ``unsound_paths`` (what would
lead the library out of the cache), ``remove_entry`` and ``publish`` (a blob the module brought in and checked,
into the store under the Xet hash the module computed itself).

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time

from ansible_collections.justnews.huggingface.plugins.module_utils import _fs

STORE_DIR = "blobs"
MARKER = ".huggingface-shared-blobs"
MARKER_CONTENT = b"1\n"
MANIFEST_SUFFIX = ".refs"
LOCK_SUFFIX = ".lock"
MANIFEST_MAX = 1024 * 1024
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
PREFIX_RE = re.compile(r"^[0-9a-f]{2}$")
# ../../blobs/<2 hex>/<64 hex>, nothing else: the form huggingface_hub writes from blobs/<etag>.
TARGET_RE = re.compile(r"^\.\./\.\./blobs/([0-9a-f]{2})/([0-9a-f]{64})$")
REPO_BLOB_RE = re.compile(r"^(?:models|datasets|spaces)--[A-Za-z0-9][A-Za-z0-9._-]*(?:--[A-Za-z0-9][A-Za-z0-9._-]*)?"
                          r"/blobs/(?:[0-9a-f]{40}|[0-9a-f]{64})$")
REPO_FOLDER_RE = re.compile(r"^(?:models|datasets|spaces)--[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHUNK = 4 * 1024 * 1024

FILE = "file"          # a regular file in the repository's blobs folder: the plain layout
STORE = "store"        # a valid link to a regular store entry
MISSING = "missing"    # nothing there
REFUSED = "refused"    # anything else: never followed, never counted as present


class StoreRefused(ValueError):
    """A store link or entry that is not what huggingface_hub writes; `path` names it, `reason` says why."""

    def __init__(self, message, path=None, reason=None):
        super().__init__(message)
        self.path = path
        self.reason = reason


class Blob:
    """What one repository blob is: `kind` (FILE, STORE, MISSING, REFUSED), its store hash, size and why."""

    def __init__(self, path, kind, xet_hash=None, size=None, reason=None):
        self.path = path
        self.kind = kind
        self.xet_hash = xet_hash
        self.size = size
        self.reason = reason

    @property
    def present(self):
        return self.kind in (FILE, STORE)

    def __repr__(self):
        return "Blob(%r, %s, %s)" % (self.path, self.kind, self.xet_hash or self.reason)


# --- names -------------------------------------------------------------------------------------------------

def store_dir(cache_dir):
    return os.path.join(cache_dir, STORE_DIR)


def check_hash(xet_hash):
    if not (isinstance(xet_hash, str) and HASH_RE.match(xet_hash)):
        raise StoreRefused("%r is not a 64-hex store hash" % (xet_hash,), reason="bad hash")
    return xet_hash


def entry_path(cache_dir, xet_hash):
    """<cache>/blobs/<h[:2]>/<h>: where the entry is, as a name (never open it by this path)."""
    return os.path.join(cache_dir, STORE_DIR, check_hash(xet_hash)[:2], xet_hash)


def manifest_path(cache_dir, xet_hash):
    return entry_path(cache_dir, xet_hash) + MANIFEST_SUFFIX


def lock_path(cache_dir, xet_hash):
    return entry_path(cache_dir, xet_hash) + LOCK_SUFFIX


def link_target(xet_hash):
    """The target huggingface_hub gives a repository's blobs/<etag> link to this entry."""
    return "../../%s/%s/%s" % (STORE_DIR, check_hash(xet_hash)[:2], xet_hash)


def parse_target(target):
    """The store hash a link target names, when it has exactly the library's form; None otherwise."""
    match = TARGET_RE.match(target) if isinstance(target, str) else None
    if not match or match.group(2)[:2] != match.group(1):
        return None
    return match.group(2)


def link_hash(blob_path):
    """The store hash a repository blob links to (by its target alone, nothing followed), or None."""
    try:
        if not stat.S_ISLNK(os.lstat(blob_path).st_mode):
            return None
        return parse_target(os.readlink(blob_path))
    except OSError:
        return None


# --- opening through the store -------------------------------------------------------------------------------

def _open_dir(name, dir_fd, what):
    try:
        return os.open(name, _fs.DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StoreRefused("%s is a symlink or not a directory" % what, what, "not a directory")
        raise


def open_entry(cache_dir, xet_hash):
    """A read-only descriptor of the store entry, reached from cache_dir without following any link below it.

    Raises FileNotFoundError when the entry (or its folders) is absent, StoreRefused when anything on the way
    is a symlink or the entry is not a regular file (FIFO, device, directory).
    """
    check_hash(xet_hash)
    where = entry_path(cache_dir, xet_hash)
    top = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)  # cache_dir is the operator's, not the cache's
    fds = [top]
    try:
        fds.append(_open_dir(STORE_DIR, top, store_dir(cache_dir)))
        fds.append(_open_dir(xet_hash[:2], fds[-1], os.path.dirname(where)))
        try:
            fd = os.open(xet_hash, _fs.FILE_FLAGS, dir_fd=fds[-1])
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreRefused("store entry %s is a symlink" % where, where, "symlink")
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise StoreRefused("store entry %s is not a regular file" % where, where, "not a regular file")
        return fd
    finally:
        for fd in fds:
            os.close(fd)


def entry_size(cache_dir, xet_hash):
    """Size of a valid store entry; FileNotFoundError or StoreRefused otherwise."""
    fd = open_entry(cache_dir, xet_hash)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def below(cache_dir, path):
    """(top, rel): `path` as a path below cache_dir, or below its real path (some callers resolve the cache's own
    path); rel starts with '..' when it is below neither, which _fs refuses."""
    rel = os.path.relpath(path, cache_dir)
    if rel.startswith(".."):
        real = os.path.realpath(cache_dir)
        if not os.path.relpath(path, real).startswith(".."):
            return real, os.path.relpath(path, real)
    return cache_dir, rel


def inspect_blob(cache_dir, blob_path):
    """Classify a repository blob path (`<cache>/<repo folder>/blobs/<name>`), following nothing: the folders on
    the way are reached from a descriptor of cache_dir, each with O_NOFOLLOW."""
    top, rel = below(cache_dir, blob_path)
    try:
        st = _fs.lstat_at(top, rel)
    except _fs.Refused as exc:
        return Blob(blob_path, REFUSED, reason=str(exc))
    if st is None:
        return Blob(blob_path, MISSING)
    if stat.S_ISREG(st.st_mode):
        return Blob(blob_path, FILE, size=st.st_size)
    if not stat.S_ISLNK(st.st_mode):
        return Blob(blob_path, REFUSED, reason="not a regular file or link")
    target = _fs.readlink_at(top, rel)
    if target is None:
        return Blob(blob_path, REFUSED, reason="unreadable link")
    xet_hash = parse_target(target)
    if xet_hash is None:
        return Blob(blob_path, REFUSED, reason="link to %r, not ../../blobs/<2 hex>/<64 hex>" % target)
    try:
        size = entry_size(cache_dir, xet_hash)
    except FileNotFoundError:
        return Blob(blob_path, REFUSED, xet_hash, reason="dangling link to the store")
    except StoreRefused as exc:
        return Blob(blob_path, REFUSED, xet_hash, reason=str(exc))
    return Blob(blob_path, STORE, xet_hash, size=size)


def open_blob(cache_dir, blob_path):
    """A read-only descriptor of a repository blob's content: the regular file itself or its store entry, the
    folders on the way reached from a descriptor of cache_dir without following links.

    Raises FileNotFoundError when absent, StoreRefused for anything that is neither.
    """
    top, rel = below(cache_dir, blob_path)
    parent, name = os.path.split(rel)
    try:
        dir_fd = _fs.open_dir(top, parent)
    except _fs.Refused as exc:
        raise StoreRefused(str(exc), blob_path, "folder on the way is not a real directory")
    try:
        fd = os.open(name, _fs.FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        target = _fs.readlink_at(top, rel)
        xet_hash = parse_target(target) if target is not None else None
        if xet_hash is None:
            raise StoreRefused("%s is a symlink that does not lead into the shared store as huggingface_hub"
                               " links it" % blob_path, blob_path, "foreign link")
        return open_entry(cache_dir, xet_hash)
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreRefused("%s is not a regular file" % blob_path, blob_path, "not a regular file")
    return fd


def read_chunks(fd, chunk=_CHUNK):
    """Yield the content behind a descriptor from open_blob/open_entry, then close it."""
    try:
        os.set_blocking(fd, True)
        while True:
            data = os.read(fd, chunk)
            if not data:
                return
            yield data
    finally:
        os.close(fd)


# --- listing the store -------------------------------------------------------------------------------------

def _lstat(path):
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def unsound_paths(cache_dir):
    """Paths that would lead huggingface_hub's own store code out of the cache: a `blobs` store folder, marker
    or prefix folder that is a symlink (or a prefix that is not a directory). The library follows them for its
    locks, manifests and entries, so a download must not use the store while any exists."""
    top = store_dir(cache_dir)
    st = _lstat(top)
    if st is None:
        return []
    if not stat.S_ISDIR(st.st_mode):
        return [top] if stat.S_ISLNK(st.st_mode) else []
    bad = []
    for name in sorted(os.listdir(top)):
        path = os.path.join(top, name)
        st = _lstat(path)
        if st is None:
            continue
        if name == MARKER and not stat.S_ISREG(st.st_mode):
            bad.append(path)
        elif PREFIX_RE.match(name) and not stat.S_ISDIR(st.st_mode):
            bad.append(path)
    return bad


def entries(cache_dir):
    """{xet hash: size} of every valid entry: a regular file named by its hash in its own prefix folder."""
    found = {}
    top = store_dir(cache_dir)
    st = _lstat(top)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return found
    for prefix in sorted(os.listdir(top)):
        folder = os.path.join(top, prefix)
        st = _lstat(folder)
        if not PREFIX_RE.match(prefix) or st is None or not stat.S_ISDIR(st.st_mode):
            continue
        for name in sorted(os.listdir(folder)):
            if HASH_RE.match(name) and name.startswith(prefix):
                st = _lstat(os.path.join(folder, name))
                if st is not None and stat.S_ISREG(st.st_mode):
                    found[name] = st.st_size
    return found


def read_manifest(cache_dir, xet_hash, limit=MANIFEST_MAX):
    """The repository blobs a `.refs` manifest names, as paths relative to cache_dir; malformed lines dropped.

    A manifest that is not a regular file, or larger than `limit`, reads as empty: it is a hint only.
    """
    path = manifest_path(cache_dir, xet_hash)
    try:
        fd = os.open(path, _fs.FILE_FLAGS)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return []
        data = os.read(fd, limit + 1)[:limit]
    finally:
        os.close(fd)
    lines = data.decode("utf-8", "replace").splitlines()
    return sorted({line for line in lines if REPO_BLOB_RE.match(line)})


def referrers(cache_dir, xet_hash):
    """Repository blobs (absolute paths) that link to this entry now, as the manifest names them."""
    out = []
    for rel in read_manifest(cache_dir, xet_hash):
        path = os.path.join(cache_dir, rel)
        if link_hash(path) == xet_hash:
            out.append(path)
    return out


def repo_links(cache_dir, repo_root):
    """{blob name: xet hash} of the blobs of one repository folder that are links into the store."""
    blobs = os.path.join(repo_root, "blobs")
    st = _lstat(blobs)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return {}
    out = {}
    for name in os.listdir(blobs):
        xet_hash = link_hash(os.path.join(blobs, name))
        if xet_hash is not None:
            out[name] = xet_hash
    return out


def all_links(cache_dir):
    """{xet hash: [repository blob paths]} over every repository folder of the cache, found by listing them (the
    manifests are hints; this is what links now). Links are judged by their target only, nothing followed."""
    out = {}
    try:
        names = sorted(os.listdir(cache_dir))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for name in names:
        if not REPO_FOLDER_RE.match(name):
            continue
        root = os.path.join(cache_dir, name)
        st = _lstat(root)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        for blob, xet_hash in repo_links(cache_dir, root).items():
            out.setdefault(xet_hash, []).append(os.path.join(root, "blobs", blob))
    return {h: sorted(paths) for h, paths in out.items()}


def owned_paths(cache_dir, hashes):
    """What the readers of these entries need to own or read: the store folder, the marker, and per entry its
    prefix folder, the entry, its manifest and its lock file, where they are what they should be.

    Symlinks, FIFOs and devices are left out: changing their owner or mode would reach outside the cache.
    """
    top = store_dir(cache_dir)
    st = _lstat(top)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return []
    paths = [top]
    marker = os.path.join(top, MARKER)
    st = _lstat(marker)
    if st is not None and stat.S_ISREG(st.st_mode):
        paths.append(marker)
    prefixes = set()
    for xet_hash in sorted(set(hashes)):
        folder = os.path.dirname(entry_path(cache_dir, xet_hash))
        st = _lstat(folder)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        if folder not in prefixes:
            prefixes.add(folder)
            paths.append(folder)
        for path in (entry_path(cache_dir, xet_hash), manifest_path(cache_dir, xet_hash),
                     lock_path(cache_dir, xet_hash)):
            st = _lstat(path)
            if st is not None and stat.S_ISREG(st.st_mode):
                paths.append(path)
    return paths


def _manifest_lines(data):
    """A manifest's valid lines, as the library writes them: what a private copy of a manifest keeps."""
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if REPO_BLOB_RE.match(line)]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _manifest_copy():
    return _fs.checked(MANIFEST_MAX, _manifest_lines)


def copy_rule(rel, entry_ids, blob_copy):
    """The copy rule (_fs.own_at) of a hard-linked file of the store, `rel` its path from the cache, None where
    no copy makes sense: the marker keeps its one line, an entry must hash to the id of a repository blob linking
    to it (`entry_ids`: {xet hash: blob id}; `blob_copy(id)` makes the rule), a manifest keeps its valid lines,
    a lock becomes an empty file."""
    parts = rel.split(os.sep)
    if parts == [STORE_DIR, MARKER]:
        def marker(data):
            if data != MARKER_CONTENT:
                raise _fs.NotVouched("is not the store's marker")
            return data
        return _fs.checked(len(MARKER_CONTENT), marker)
    if len(parts) != 3 or parts[0] != STORE_DIR or not PREFIX_RE.match(parts[1]):
        return None
    name = parts[2]
    xet_hash = name.split(".")[0]
    if not HASH_RE.match(xet_hash) or xet_hash[:2] != parts[1]:
        return None
    if name == xet_hash:
        return blob_copy(entry_ids[xet_hash]) if xet_hash in entry_ids else None
    if name == xet_hash + MANIFEST_SUFFIX:
        return _manifest_copy()
    if name == xet_hash + LOCK_SUFFIX:
        return _fs.fresh
    return None


def detach_links(cache_dir, hashes):
    """Before huggingface_hub works on these entries as root: a lock or manifest of one of them that has more
    than one name is replaced by a private copy (an empty lock; the manifest's valid lines), owned as its folder,
    mode 0666 as the library leaves them. The library opens `<hash>.lock` and fchmods it 0666, and appends to
    `<hash>.refs` and fchmods it, with O_NOFOLLOW but through any hard link: a planted hard link would make a
    file elsewhere (root's /etc/shadow) world-writable, or append to it. Returns the paths replaced."""
    replaced = []
    try:
        top = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return replaced
    fds = [top]
    try:
        try:
            fds.append(_open_dir(STORE_DIR, top, store_dir(cache_dir)))
        except (FileNotFoundError, StoreRefused):
            return replaced  # no store, or one the download keeps away from (unsound_paths)
        for xet_hash in sorted(set(hashes)):
            try:
                prefix = _open_dir(check_hash(xet_hash)[:2], fds[1], os.path.dirname(entry_path(cache_dir, xet_hash)))
            except (FileNotFoundError, StoreRefused):
                continue
            try:
                owner = os.fstat(prefix)
                for name, copy in ((xet_hash + LOCK_SUFFIX, _fs.fresh), (xet_hash + MANIFEST_SUFFIX, _manifest_copy())):
                    try:
                        st = os.stat(name, dir_fd=prefix, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if not stat.S_ISREG(st.st_mode) or st.st_nlink == 1:
                        continue
                    where = os.path.join(os.path.dirname(entry_path(cache_dir, xet_hash)), name)
                    if _fs.own_at(prefix, name, owner.st_uid, owner.st_gid, 0o666, where=where, copy=copy,
                                  kinds=(stat.S_IFREG,)) == _fs.COPIED:
                        replaced.append(where)
            finally:
                os.close(prefix)
    finally:
        for fd in fds:
            os.close(fd)
    return replaced


def _lock_entry(prefix_fd, xet_hash, wait):
    """huggingface_hub's own flock on <hash>.lock, taken for at most `wait` seconds: an owner of the cache who
    holds it forever must not stall a root run. Returns the descriptor, or None when it was not taken."""
    try:
        fd = os.open(xet_hash + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666,
                     dir_fd=prefix_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.1)


def remove_entry(cache_dir, xet_hash, wait=10.0):
    """Unlink a store entry (a corrupt one) by name inside its real prefix folder; True when it was there.

    The prefix folder is opened with O_NOFOLLOW, so a symlinked folder cannot lead the unlink elsewhere; the
    library's lock of the entry is held while it goes, so a download publishing it at that moment is not cut.
    """
    check_hash(xet_hash)
    top = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    fds = [top]
    try:
        fds.append(_open_dir(STORE_DIR, top, store_dir(cache_dir)))
        fds.append(_open_dir(xet_hash[:2], fds[-1], os.path.dirname(entry_path(cache_dir, xet_hash))))
        lock = _lock_entry(fds[-1], xet_hash, wait)
        if lock is not None:
            fds.append(lock)
        os.unlink(xet_hash, dir_fd=fds[2])
        return True
    except (FileNotFoundError, StoreRefused):
        return False
    finally:
        for fd in fds:
            os.close(fd)


def xet_hash_of(path):
    """The Xet hash of a file, computed here by hf_xet's own chunking and hashing; None without hf_xet."""
    try:
        import hf_xet  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return hf_xet.hash_files([path])[0].hash


def publish(cache_dir, blob_path, listed_hash, size, source=None, deadline=120, computed=None):
    """Move a checked repository blob into the shared store, as huggingface_hub does after a Xet download.

    The entry is named after the Xet hash computed from the content itself (from `source`, the root-only copy the
    blob was imported from, when given: the cache's own path is the owner's to swap), and only when it equals the
    listing's: an entry named on trust would let the library link another repository's file to this content by
    size (`computed`: that hash, computed by the caller from such a root-only copy before it moved into the cache).
    Any entry already there is replaced by this checked copy. The library waits on the entry's lock without
    a limit, and the cache's owner can hold it: its publishing runs in a child killed after `deadline` seconds.
    Returns None when published, else the reason.
    """
    if not (isinstance(listed_hash, str) and HASH_RE.match(listed_hash)):
        return "the listing gives no Xet hash"
    if unsound_paths(cache_dir):
        return "the shared store is not sound"
    computed = computed or xet_hash_of(source or blob_path)
    if computed is None:
        return "hf_xet is not installed"
    if computed != listed_hash:
        return "its Xet hash is %s, not the listing's %s" % (computed, listed_hash)
    detach_links(cache_dir, [computed])  # the library chmods and appends to them as root
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store  # pylint: disable=import-outside-toplevel

            code = 0 if publish_blob_to_shared_store(blob_path=blob_path, xet_hash=computed, cache_dir=cache_dir,
                                                     expected_size=size, replace_existing=True) else 1
        finally:
            os._exit(code)  # pylint: disable=protected-access
    status = _fs.wait_child(pid, time.monotonic() + deadline)
    if status is None:
        return "the store entry's lock was held for more than %d s" % deadline
    if status != 0:
        return "huggingface_hub could not publish it"
    return None
