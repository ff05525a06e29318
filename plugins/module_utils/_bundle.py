# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bundles: one plain tar holding a manifest and the blobs of some hub-cache snapshots, for hosts without the Hub.

Layout: the member ``manifest.json`` first, then one member ``blobs/<object id>`` per blob, each once. The
manifest names, per model, the repository, revision, ref, commit, the listing that hf_snapshot accepts, and per
file its path, blob, size and SHA-256.

Everything read from an archive is untrusted: names are checked against the manifest, only plain regular
members are read (no link, device, sparse member or ``GNU.sparse`` header, whose bytes on disk could be far more
than the bytes stored), sizes are checked against the archive's own size and the staging folder's free space
before a byte is written, and each member's bytes are counted and hashed on their way to the staging folder;
nothing is ever extracted by name, linked or written outside that folder, and a failed run removes only what it
created there.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import secrets
import stat
import tarfile
import tempfile

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _members
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

FORMAT = "justnews.huggingface.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX = 64 * 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REPO_TYPES = ("model", "dataset", "space")
_CHUNK = 4 * 1024 * 1024
# The only member types a bundle has: a plain regular file whose stored data is its content, byte for byte.
PLAIN_TYPES = _members.PLAIN_TYPES
plain_member = _members.plain_member
DEFAULT_MARGIN = 64 * 1024 * 1024
STAGE_PREFIX = ".hf-bundle-stage-"


class BundleError(Exception):
    """The bundle or an argument is wrong; the message names the file and the fix. `files`: [(repo, path)]."""

    def __init__(self, message, kind=_errors.CORRUPT_BUNDLE, files=None):
        super().__init__(message)
        self.kind = kind
        self.files = files or []


def member_name(blob):
    return "blobs/" + blob


def describe(files):
    return ", ".join("%s: %s" % pair for pair in files) or "no file of the manifest"


# --- the manifest ----------------------------------------------------------------------------------------

def model_entry(snapshot):
    """The manifest entry of one hf_snapshot result, without the SHA-256s (filled in while the blobs are read).

    repo_id, repo_type and revision come from the result or else from its `item`, the model a loop fetched.
    """
    item = snapshot.get("item") if isinstance(snapshot.get("item"), dict) else {}
    snapshot = dict(snapshot, **{k: item[k] for k in ("repo_id", "repo_type", "revision")
                                 if item.get(k) and not snapshot.get(k)})
    repo_id = _cache.check_repo_id(snapshot.get("repo_id"))
    repo_type = snapshot.get("repo_type") or "model"
    if repo_type not in REPO_TYPES:
        raise BundleError("repo_type of %s must be one of %s, got %r" % (repo_id, ", ".join(REPO_TYPES), repo_type),
                          _errors.INVALID_ARGUMENT)
    commit = _cache.check_commit(snapshot.get("commit"), "the snapshot of %s" % repo_id)
    ref = _cache.check_ref_name(snapshot.get("ref") or "main")
    revision = snapshot.get("revision") or ("main" if item else commit)
    if not _cache.is_commit(revision):
        _cache.check_ref_name(revision, "revision")
    listing = _cache.check_tree(snapshot.get("listing"), "the listing of %s@%s" % (repo_id, commit))
    names = snapshot.get("files") or sorted(listing)
    files = []
    for path in sorted(names):
        _cache.check_file_name(path, "the snapshot of %s" % repo_id)
        if path not in listing:
            raise BundleError("%s of %s is not in the listing of %s" % (path, repo_id, commit),
                              _errors.INVALID_ARGUMENT, [(repo_id, path)])
        entry = listing[path]
        files.append({"path": path, "blob": _cache.RepoCache.blob_name(entry), "size": int(entry.get("size") or 0)})
    return {"repo_id": repo_id, "repo_type": repo_type, "revision": revision, "ref": ref, "commit": commit,
            "listing": listing, "files": files}


def identity(manifest):
    """What makes two bundles the same: everything but the SHA-256s, which the blob ids already determine."""
    return [{k: (v if k != "files" else [{f: x[f] for f in ("path", "blob", "size")} for x in v])
             for k, v in m.items()} for m in manifest.get("models", [])]


def blob_table(models):
    """blob -> {size, sha256, files: [(repo, path)]} over every model; one size per blob, or BundleError."""
    blobs = {}
    for model in models:
        for f in model["files"]:
            item = blobs.setdefault(f["blob"], {"size": f["size"], "sha256": f.get("sha256"), "files": []})
            item["files"].append((model["repo_id"], f["path"]))
            if item["size"] != f["size"] or (f.get("sha256") and item["sha256"] not in (None, f["sha256"])):
                raise BundleError("the manifest gives blob %s two sizes or checksums (%s): rebuild the bundle"
                                  % (f["blob"], describe(item["files"])), _errors.CORRUPT_BUNDLE, item["files"])
    return blobs


def check_manifest(data, source):
    """Validate a manifest read from an archive: every name, id, size and checksum, and its agreement with the
    listings. Returns it."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError("%s has no %s manifest: it is not a bundle written by justnews.huggingface.hf_bundle"
                          % (source, FORMAT))
    if data.get("format_version") != FORMAT_VERSION:
        raise BundleError("%s is bundle format version %r; this collection reads version %d: build the bundle with"
                          " this collection's bundle playbook" % (source, data.get("format_version"), FORMAT_VERSION),
                          _errors.INVALID_ARGUMENT)
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise BundleError("the manifest of %s lists no model" % source)
    for model in models:
        if not isinstance(model, dict) or not isinstance(model.get("files"), list):
            raise BundleError("the manifest of %s has a malformed model entry" % source)
        try:
            checked = model_entry(dict(model, files=[f.get("path") if isinstance(f, dict) else None
                                                     for f in model["files"]]))
        except (_cache.UnsafeName, TypeError, AttributeError) as exc:
            raise BundleError("the manifest of %s is unsafe: %s" % (source, exc))
        if checked["ref"] != model.get("ref") or checked["repo_type"] != model.get("repo_type"):
            raise BundleError("the manifest of %s has a malformed entry for %s" % (source, checked["repo_id"]))
        for given, want in zip(sorted(model["files"], key=lambda f: f["path"]), checked["files"]):
            where = [(checked["repo_id"], want["path"])]
            if given.get("blob") != want["blob"] or given.get("size") != want["size"]:
                raise BundleError("the manifest of %s contradicts its own listing for %s (blob or size): the bundle"
                                  " was altered; rebuild it" % (source, describe(where)), _errors.CORRUPT_BUNDLE, where)
            if not (isinstance(given.get("sha256"), str) and SHA256_RE.match(given["sha256"])):
                raise BundleError("the manifest of %s gives %s no valid SHA-256" % (source, describe(where)),
                                  _errors.CORRUPT_BUNDLE, where)
            if len(want["blob"]) == 64 and given["sha256"] != want["blob"]:
                raise BundleError("the manifest of %s gives %s a SHA-256 other than its object id: the bundle was"
                                  " altered; rebuild it" % (source, describe(where)), _errors.CORRUPT_BUNDLE, where)
    blob_table(models)
    return data


def match_models(manifest, wanted, source):
    """For each wanted model (an entry of model_cache_models), the manifest's entry, as hf_snapshot needs it."""
    out = []
    for want in wanted:
        repo_id = want.get("repo_id")
        repo_type = want.get("repo_type") or "model"
        revision = want.get("revision") or "main"
        found = [m for m in manifest["models"] if m["repo_id"] == repo_id and m["repo_type"] == repo_type
                 and revision in (m["revision"], m["commit"])]
        if not found:
            held = ", ".join("%s@%s" % (m["repo_id"], m["revision"]) for m in manifest["models"])
            raise BundleError("the bundle %s holds no %s@%s (it holds %s): build one with this model in"
                              " model_cache_models (playbook justnews.huggingface.bundle)"
                              % (source, repo_id, revision, held), _errors.NOT_IN_BUNDLE)
        model = found[0]
        ref = want.get("ref") or ("main" if _cache.is_commit(revision) else revision)
        out.append({"item": want, "repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                    "commit": model["commit"], "ref": _cache.check_ref_name(ref), "listing": model["listing"],
                    "files": [f["path"] for f in model["files"]], "bytes": sum(f["size"] for f in model["files"])})
    return out


# --- reading an archive ------------------------------------------------------------------------------------

def open_regular(path):
    """A blocking read descriptor of the regular file `path` (see _open_regular)."""
    return _open_regular(path)


def _open_regular(path):
    """A blocking read descriptor of `path`, which must be a regular file and not a symlink.

    Opened with O_NONBLOCK and judged by fstat before a byte is read: a FIFO, a device such as /dev/zero or
    /dev/tty, a socket or a directory is refused at once (invalid_argument, naming the path), never waited on."""
    try:
        fd = os.open(path, _fs.FILE_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError("%s is a symlink; give the path of the bundle itself" % path, _errors.INVALID_ARGUMENT)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise BundleError("%s does not exist: build it with the playbook justnews.huggingface.bundle" % path,
                              _errors.INVALID_ARGUMENT)
        if exc.errno in (errno.ENXIO, errno.ENODEV, errno.EISDIR, errno.EWOULDBLOCK):
            raise BundleError("%s is not a regular file (%s): give the path of the bundle file itself"
                              % (path, os.strerror(exc.errno)), _errors.INVALID_ARGUMENT)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BundleError("%s is %s, not a regular file: give the path of the bundle file itself"
                          % (path, _fs.describe(st.st_mode)), _errors.INVALID_ARGUMENT)
    os.set_blocking(fd, True)
    return fd


def _read_member(tar, member, limit, source):
    if member.size > limit:
        raise BundleError("%s: the member %s is %d bytes, more than a manifest can be" % (source, member.name,
                                                                                          member.size))
    handle = tar.extractfile(member)
    data = handle.read(limit + 1)
    if len(data) != member.size:
        raise BundleError("%s is truncated or damaged in %s" % (source, member.name))
    return data


def _check_member(member, source):
    """Only plain regular members under the two names a bundle uses; the name says which."""
    name = member.name
    if name != MANIFEST and not (name.startswith("blobs/") and _cache.BLOB_RE.match(name[6:])):
        raise BundleError("%s holds the member %r, which no bundle has (only %s and blobs/<object id>): refused,"
                          " nothing was staged; rebuild the bundle" % (source, name, MANIFEST), _errors.UNSAFE_BUNDLE)
    why = plain_member(member)
    if why:
        raise BundleError("%s holds %s as %s, not a plain regular file: refused, nothing was staged; rebuild the"
                          " bundle" % (source, name, why), _errors.UNSAFE_BUNDLE)


def read_manifest(path):
    """The checked manifest of the archive at `path` (its first member), or BundleError."""
    manifest, _size = _read_manifest(path)
    return manifest


def _read_manifest(path):
    """(checked manifest, bytes of the archive file)."""
    fd = _open_regular(path)
    size = os.fstat(fd).st_size
    with os.fdopen(fd, "rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|") as tar:
                first = tar.next()
                if first is None:
                    raise BundleError("%s is empty" % path)
                if first.name != MANIFEST:
                    raise BundleError("%s does not start with %s (found %r): not a bundle, or altered"
                                      % (path, MANIFEST, first.name))
                _check_member(first, path)
                data = _read_member(tar, first, MANIFEST_MAX, path)
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError("%s is not a readable tar archive (%s): copy it again or rebuild it" % (path, exc))
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise BundleError("the manifest of %s is not JSON (%s)" % (path, exc))
    return check_manifest(manifest, path), size


def members(path):
    """[(name, size)] of the archive's members, from their headers only; None when it is not a plain tar file."""
    try:
        fd = _open_regular(path)
    except (BundleError, OSError):
        return None
    with os.fdopen(fd, "rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r:") as tar:
                found = tar.getmembers()
        except (OSError, tarfile.TarError, EOFError):
            return None
    return [(m.name, m.size) for m in found]


def check_sizes(table, needed, archive_size, source):
    """Before a byte is written: a manifest may not declare more blob bytes than its archive holds.

    A plain tar stores every member's content once, so the blobs of a real bundle add up to less than the file.
    Returns the bytes of the needed blobs."""
    declared = sum(item["size"] for item in table.values())
    want = sum(table[b]["size"] for b in needed)
    if declared > archive_size:
        files = [f for b in sorted(needed or table) for f in table[b]["files"]]
        raise BundleError("%s is %d bytes but its manifest declares %d bytes of blobs (%d of them for %s): the"
                          " archive is truncated or altered; nothing was staged; copy it again or rebuild it"
                          % (source, archive_size, declared, want, describe(files)), _errors.CORRUPT_BUNDLE, files)
    return want


def check_space(free, want, margin, dest):
    """no_space, before a byte is written, when `want` bytes plus `margin` do not fit in `free`."""
    if want + margin > free:
        raise BundleError("not enough free space in %s: staging needs %d bytes (%d of blobs + %d margin) but its"
                          " filesystem has %d bytes free; nothing was staged. Free space there, stage elsewhere, or"
                          " lower free_space_margin" % (dest, want + margin, want, margin, free), _errors.NO_SPACE)


def _open_dest(dest):
    """A descriptor of the staging folder, which must be a directory itself (a symlink is refused)."""
    try:
        return os.open(dest, _fs.DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BundleError("staging directory %s is not a directory (a symlink is refused)" % dest,
                              _errors.INVALID_ARGUMENT)
        if exc.errno == errno.ENOENT:
            raise BundleError("staging directory %s does not exist: create it first" % dest, _errors.INVALID_ARGUMENT)
        raise


def make_staging(parent):
    """A new folder of this run (mode 0700) in `parent`, made from a descriptor of `parent`: (path, fd)."""
    try:
        parent_fd = os.open(parent, _fs.DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise BundleError("staging_parent %s is not a directory (a symlink is refused): create it first"
                              % parent, _errors.INVALID_ARGUMENT)
        raise
    try:
        for _attempt in range(100):
            name = STAGE_PREFIX + secrets.token_hex(6)
            try:
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            except FileExistsError:
                continue
            fd = os.open(name, _fs.DIR_FLAGS, dir_fd=parent_fd)
            return os.path.join(parent, name), fd
        raise BundleError("could not make a staging folder in %s" % parent, _errors.OTHER)
    finally:
        os.close(parent_fd)


def remove_staging(dest):
    """Remove a folder that stage() made in a staging_parent, and the files in it; False when it was not there.

    Each entry is removed through a descriptor of the folder, never followed; a folder inside it is refused."""
    parent, name = os.path.split(os.path.normpath(dest))
    if not name.startswith(STAGE_PREFIX):
        raise BundleError("%s is not a staging folder made by operation=stage (its name starts with %s): remove it"
                          " yourself" % (dest, STAGE_PREFIX), _errors.INVALID_ARGUMENT)
    try:
        parent_fd = os.open(parent or ".", _fs.DIR_FLAGS)
    except FileNotFoundError:
        return False
    try:
        try:
            fd = os.open(name, _fs.DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise BundleError("%s is %s, not a staging folder: nothing was removed"
                                  % (dest, _fs.describe(os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                                                        .st_mode)), _errors.UNSAFE_BUNDLE)
            raise
        try:
            for entry in os.listdir(fd):
                if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise BundleError("%s holds the folder %s, which no staging run makes: nothing more was"
                                      " removed" % (dest, entry), _errors.UNSAFE_BUNDLE)
                os.unlink(entry, dir_fd=fd)
            left = os.listdir(fd)
        finally:
            os.close(fd)
        if not left:
            os.rmdir(name, dir_fd=parent_fd)
        return True
    finally:
        os.close(parent_fd)


def stage(path, dest, needed, write=True, margin=DEFAULT_MARGIN, dest_fd=None):
    """Copy the blobs named in `needed` out of the archive into the folder `dest`, each counted and hashed on the
    way. With `write` false (check mode) everything is read and checked the same way and nothing is written.

    Before a byte is written: every blob the manifest declares must fit in the archive, and the needed ones plus
    `margin` in the free space of `dest` (no_space). Reads the archive once, front to back. Every member is
    checked, needed or not; a needed blob is first written to a new temporary name and renamed only when its
    size, SHA-256 and object id all match. On any error only what this call created in `dest` is removed: a file
    that was there before the run is never removed. Returns (manifest, {blob: bytes}).
    """
    manifest, archive_size = _read_manifest(path)
    table = blob_table(manifest["models"])
    for name in needed:
        if name not in table:
            raise BundleError("the bundle %s has no blob %s, which the host needs: build the bundle with the same"
                              " revision, allow_patterns and ignore_patterns as model_cache_models"
                              % (path, name), _errors.NOT_IN_BUNDLE)
    want = check_sizes(table, needed, archive_size, path)
    own_fd = dest_fd is None and dest is not None
    fd_dest = _open_dest(dest) if own_fd else dest_fd
    try:
        if fd_dest is not None and needed:
            check_space(_fs.free_bytes(fd_dest), want, margin, dest)
        return manifest, _stage_members(path, archive_size, table, needed, fd_dest if write else None)
    finally:
        if own_fd:
            os.close(fd_dest)


def _stage_members(path, archive_size, table, needed, dest_fd):
    written = {}
    created = []
    seen = set()
    try:
        fd = _open_regular(path)
        with os.fdopen(fd, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            first = True
            while True:
                try:
                    member = tar.next()
                except (tarfile.TarError, EOFError) as exc:
                    raise BundleError("%s is damaged after %s (%s): copy it again or rebuild it; nothing was"
                                      " staged" % (path, ", ".join(sorted(seen)[-1:]) or MANIFEST, exc))
                if member is None:
                    break
                if first:
                    first = False
                    continue  # the manifest, read above
                _check_member(member, path)
                blob = member.name[6:]
                if member.name == MANIFEST or blob in seen or blob not in table:
                    raise BundleError("%s holds %s %s: refused, nothing was staged; rebuild the bundle"
                                      % (path, member.name, "twice" if blob in seen or member.name == MANIFEST
                                         else "which its manifest does not name"), _errors.UNSAFE_BUNDLE)
                seen.add(blob)
                info = table[blob]
                if member.size != info["size"]:
                    raise BundleError("%s: the member %s has %d bytes but the manifest says %d, for %s: the bundle"
                                      " was altered; rebuild it" % (path, member.name, member.size, info["size"],
                                                                    describe(info["files"])),
                                      _errors.CORRUPT_BUNDLE, info["files"])
                if member.offset_data + member.size > archive_size:
                    raise BundleError("%s is truncated in %s: the member needs %d bytes past the end of the file,"
                                      " for %s: copy it again or rebuild it"
                                      % (path, member.name, member.offset_data + member.size - archive_size,
                                         describe(info["files"])), _errors.CORRUPT_BUNDLE, info["files"])
                if blob in needed:
                    written[blob] = _copy_checked(tar, member, dest_fd, blob, info, path, created)
        missing = [b for b in needed if b not in written]
        if missing:
            files = [f for b in missing for f in table[b]["files"]]
            raise BundleError("%s lacks the member blobs/%s for %s: the archive is truncated or incomplete; copy it"
                              " again or rebuild it" % (path, missing[0], describe(files)), _errors.CORRUPT_BUNDLE,
                              files)
    except BaseException:
        for name in created:
            _fs.discard_at(dest_fd, name)
        raise
    return written


def _copy_checked(tar, member, dest_fd, blob, info, source, created):
    """Copy one member to `blob` in the folder `dest_fd` (None: read and check only). Names this call makes are
    appended to `created` before they exist, so that a failure removes them and nothing else."""
    tmp = None
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % info["size"]) if len(blob) == 40 else None
    count = 0
    try:
        if dest_fd is not None:
            out_fd = None
            while out_fd is None:
                tmp = ".%s.%s.part" % (blob, secrets.token_hex(4))
                try:
                    out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                                     dir_fd=dest_fd)
                except FileExistsError:
                    continue
        else:
            out_fd = os.open(os.devnull, os.O_WRONLY)
        handle = tar.extractfile(member)
        with os.fdopen(out_fd, "wb") as out:
            while True:
                try:
                    chunk = handle.read(min(_CHUNK, info["size"] - count + 1))
                except (tarfile.TarError, EOFError, OSError) as exc:
                    raise BundleError("%s is truncated in %s, for %s (%s): copy it again or rebuild it"
                                      % (source, member.name, describe(info["files"]), exc), _errors.CORRUPT_BUNDLE,
                                      info["files"])
                if not chunk:
                    break
                count += len(chunk)
                if count > info["size"]:
                    raise BundleError("%s: the member %s yields more than its %d bytes, for %s: refused; rebuild"
                                      " the bundle" % (source, member.name, info["size"], describe(info["files"])),
                                      _errors.UNSAFE_BUNDLE, info["files"])
                sha256.update(chunk)
                if git:
                    git.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise BundleError("the filesystem of the staging folder is full (%s) while %s was"
                                          " staged; nothing was staged: free space there" % (exc, member.name),
                                          _errors.DISK_FULL, info["files"])
                    raise
        actual = sha256.hexdigest()
        if count != info["size"]:
            raise BundleError("%s is truncated in %s: %d of %d bytes, for %s: copy it again or rebuild it"
                              % (source, member.name, count, info["size"], describe(info["files"])),
                              _errors.CORRUPT_BUNDLE, info["files"])
        if actual != info["sha256"] or (git and git.hexdigest() != blob) or (not git and actual != blob):
            raise BundleError("%s: the content of %s does not match its checksum (SHA-256 %s, expected %s), for %s:"
                              " the bundle is corrupt; copy it again or rebuild it"
                              % (source, member.name, actual, info["sha256"], describe(info["files"])),
                              _errors.CORRUPT_BUNDLE, info["files"])
        if dest_fd is not None:
            existed = _fs.exists_at(dest_fd, blob)
            if not existed:
                created.append(blob)
            os.replace(tmp, blob, src_dir_fd=dest_fd, dst_dir_fd=dest_fd)
            tmp = None
    finally:
        if tmp is not None:
            _fs.discard_at(dest_fd, tmp)
    return count


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- writing an archive ------------------------------------------------------------------------------------

def open_cached_blob(cache_dir, path, where):
    """A descriptor of a build-cache blob's content: the regular file, or the shared-store entry it links to
    (validated by _store, never followed by path); BundleError naming the files otherwise."""
    try:
        fd = _store.open_blob(cache_dir, path)
    except FileNotFoundError:
        raise BundleError("the build cache has no file %s for %s: fetch the model into it first (the bundle"
                          " playbook does)" % (path, describe(where)), _errors.INCOMPLETE, where)
    except (_store.StoreRefused, OSError) as exc:
        raise BundleError("the build cache's %s for %s is refused (%s): remove the repository from the build"
                          " cache (hf_snapshot state=absent) and fetch it again" % (path, describe(where), exc),
                          _errors.INTEGRITY, where)
    os.set_blocking(fd, True)
    return fd


def hash_blob(path, blob, where, cache_dir=None):
    """SHA-256 of a cached blob, checked against its object id; BundleError naming the files when it differs.

    With `cache_dir`, a blob that links into the cache's shared store is read from its entry."""
    if cache_dir is None:
        try:
            fd = _open_regular(path)
        except BundleError:
            raise BundleError("the build cache has no file %s for %s: fetch the model into it first (the bundle"
                              " playbook does)" % (path, describe(where)), _errors.INCOMPLETE, where)
    else:
        fd = open_cached_blob(cache_dir, path, where)
    sha256 = hashlib.sha256()
    size = os.fstat(fd).st_size
    git = hashlib.sha1(b"blob %d\0" % size) if len(blob) == 40 else None
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            sha256.update(chunk)
            if git:
                git.update(chunk)
    if (git.hexdigest() if git else sha256.hexdigest()) != blob:
        raise BundleError("%s in the build cache does not match its object id, for %s: remove the repository from"
                          " the build cache and fetch it again" % (path, describe(where)), _errors.INTEGRITY, where)
    return sha256.hexdigest(), size


def _tarinfo(name, size):
    # Fixed metadata: the same models always give the same bytes.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingReader:
    """Hands a file's bytes to tarfile and hashes them on the way, so what is written is what was checked."""

    def __init__(self, handle):
        self.handle = handle
        self.sha256 = hashlib.sha256()

    def read(self, size=-1):
        data = self.handle.read(size)
        self.sha256.update(data)
        return data


def write_archive(path, manifest, blob_paths, mode, cache_dir=None):
    """Write the archive to a temporary file next to `path` and rename it into place.

    Each blob is hashed again while it is written and must match the manifest's SHA-256: the cache belongs to
    another user, who could change a file between the check and the copy. With `cache_dir`, blobs that link
    into the shared store are read from their entries."""
    sums = {f["blob"]: f.get("sha256") for m in manifest.get("models", []) for f in m.get("files", [])}
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")
                tar.addfile(_tarinfo(MANIFEST, len(data)), io.BytesIO(data))
                for blob in sorted(blob_paths):
                    src = (_open_regular(blob_paths[blob]) if cache_dir is None
                           else open_cached_blob(cache_dir, blob_paths[blob], [("build cache", blob)]))
                    with os.fdopen(src, "rb") as handle:
                        reader = _HashingReader(handle)
                        tar.addfile(_tarinfo(member_name(blob), os.fstat(src).st_size), reader)
                    if sums.get(blob) and reader.sha256.hexdigest() != sums[blob]:
                        raise BundleError("%s changed in the build cache while the bundle was written: fetch it"
                                          " again and rebuild" % blob_paths[blob], _errors.INTEGRITY)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
