# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bundles: one plain tar holding a manifest and the blobs of some hub-cache snapshots, for hosts without the Hub.

Layout: the member ``manifest.json`` first, then one member ``blobs/<object id>`` per blob, each once. The
manifest names, per model, the repository, revision, ref, commit, the listing that hf_snapshot accepts, and per
file its path, blob, size and SHA-256.

Everything read from an archive is untrusted: the manifest is checked (names, ids, sizes, checksums, its
agreement with the listings) and only plain regular members are read (no link, device, sparse member or
``GNU.sparse`` header, whose bytes on disk could be far more than the bytes stored); nothing is ever extracted by
name. A manifest is checked whole against the members it describes, here and only here, for hf_bundle_info (every
member) and hf_carry's bundle source (plugins/action/hf_carry.py, BundleSource: each member it takes out): each
member's header (check_header: name, type, size, within the file, once) before a byte is read, then its bytes
(MemberCheck: their count, their object id - SHA-256 or git blob id - and their SHA-256 against the manifest's).

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
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


# The failures of this file are _errors.Failure with `files` in their extra: the [(repo, path)] they concern.


def run(module, work, result, os_failure):
    """Call `work` for hf_bundle or hf_bundle_info, and end the module as failed on what it raises: a Failure
    with `bad_files` from its files, a name refused as invalid_argument, an OSError as `os_failure` (a format of
    the path and the error). The result keeps no diff of a run that failed."""
    try:
        work()
    except (_errors.Failure, _names.UnsafeName, OSError) as exc:
        result.update(changed=False)
        if isinstance(exc, _names.UnsafeName):
            _errors.fail(module, _errors.INVALID_ARGUMENT, "%s: fix the argument" % exc, **result)
        result.pop("diff", None)
        if isinstance(exc, OSError):
            _errors.fail(module, _errors.OTHER, os_failure % (exc.filename or result["path"], exc), **result)
        files = exc.extra.get("files")
        if files:
            result["bad_files"] = [{"repo_id": r, "path": f} for r, f in files]
        _errors.fail(module, exc.kind, exc.msg, **result)


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
    repo_id = _names.check_repo_id(snapshot.get("repo_id"))
    repo_type = snapshot.get("repo_type") or "model"
    if repo_type not in REPO_TYPES:
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "repo_type of %s must be one of %s, got %r" % (repo_id, ", ".join(REPO_TYPES), repo_type))
    commit = _names.check_commit(snapshot.get("commit"), "the snapshot of %s" % repo_id)
    ref = _names.check_ref_name(snapshot.get("ref") or "main")
    revision = snapshot.get("revision") or ("main" if item else commit)
    if not _names.is_commit(revision):
        _names.check_ref_name(revision, "revision")
    listing = _names.check_tree(snapshot.get("listing"), "the listing of %s@%s" % (repo_id, commit))
    names = snapshot.get("files") or sorted(listing)
    files = []
    for path in sorted(names):
        _names.check_file_name(path, "the snapshot of %s" % repo_id)
        if path not in listing:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "%s of %s is not in the listing of %s" % (path, repo_id, commit),
                                  files=[(repo_id, path)])
        entry = listing[path]
        files.append({"path": path, "blob": _names.blob_name(entry), "size": int(entry.get("size") or 0)})
    return {"repo_id": repo_id, "repo_type": repo_type, "revision": revision, "ref": ref, "commit": commit,
            "listing": listing, "files": files}


def identity(manifest):
    """What makes two bundles the same: everything but the SHA-256s, which the blob ids already determine."""
    return [{k: (v if k != "files" else [{f: x[f] for f in ("path", "blob", "size")} for x in v])
             for k, v in m.items()} for m in manifest.get("models", [])]


def blob_table(models):
    """blob -> {size, sha256, files: [(repo, path)]} over every model; one size per blob, or Failure."""
    blobs = {}
    for model in models:
        for f in model["files"]:
            item = blobs.setdefault(f["blob"], {"size": f["size"], "sha256": f.get("sha256"), "files": []})
            item["files"].append((model["repo_id"], f["path"]))
            if item["size"] != f["size"] or (f.get("sha256") and item["sha256"] not in (None, f["sha256"])):
                raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                      "the manifest gives blob %s two sizes or checksums (%s): rebuild the bundle"
                                      % (f["blob"], describe(item["files"])), files=item["files"])
    return blobs


def check_manifest(data, source):
    """Validate a manifest read from an archive: every name, id, size and checksum, and its agreement with the
    listings. Returns it."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                              "%s has no %s manifest: it is not a bundle written by justnews.huggingface.hf_bundle"
                              % (source, FORMAT))
    if data.get("format_version") != FORMAT_VERSION:
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "%s is bundle format version %r; this collection reads version %d: build the bundle with"
                              " this collection's bundle playbook" % (source, data.get("format_version"), FORMAT_VERSION))
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise _errors.Failure(_errors.CORRUPT_BUNDLE, "the manifest of %s lists no model" % source)
    for model in models:
        if not isinstance(model, dict) or not isinstance(model.get("files"), list):
            raise _errors.Failure(_errors.CORRUPT_BUNDLE, "the manifest of %s has a malformed model entry" % source)
        try:
            checked = model_entry(dict(model, files=[f.get("path") if isinstance(f, dict) else None
                                                     for f in model["files"]]))
        except (_names.UnsafeName, TypeError, AttributeError) as exc:
            raise _errors.Failure(_errors.CORRUPT_BUNDLE, "the manifest of %s is unsafe: %s" % (source, exc))
        if checked["ref"] != model.get("ref") or checked["repo_type"] != model.get("repo_type"):
            raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                  "the manifest of %s has a malformed entry for %s" % (source, checked["repo_id"]))
        for given, want in zip(sorted(model["files"], key=lambda f: f["path"]), checked["files"]):
            where = [(checked["repo_id"], want["path"])]
            if given.get("blob") != want["blob"] or given.get("size") != want["size"]:
                raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                      "the manifest of %s contradicts its own listing for %s (blob or size): the bundle"
                                      " was altered; rebuild it" % (source, describe(where)), files=where)
            if not (isinstance(given.get("sha256"), str) and SHA256_RE.match(given["sha256"])):
                raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                      "the manifest of %s gives %s no valid SHA-256" % (source, describe(where)),
                                      files=where)
            if len(want["blob"]) == 64 and given["sha256"] != want["blob"]:
                raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                      "the manifest of %s gives %s a SHA-256 other than its object id: the bundle was"
                                      " altered; rebuild it" % (source, describe(where)), files=where)
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
            raise _errors.Failure(_errors.NOT_IN_BUNDLE,
                                  "the bundle %s holds no %s@%s (it holds %s): build one with this model in"
                                  " model_cache_models (playbook justnews.huggingface.bundle)"
                                  % (source, repo_id, revision, held))
        model = found[0]
        ref = want.get("ref") or ("main" if _names.is_commit(revision) else revision)
        out.append({"item": want, "repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                    "commit": model["commit"], "ref": _names.check_ref_name(ref), "listing": model["listing"],
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
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "%s is a symlink; give the path of the bundle itself" % path)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "%s does not exist: build it with the playbook justnews.huggingface.bundle" % path)
        if exc.errno in (errno.ENXIO, errno.ENODEV, errno.EISDIR, errno.EWOULDBLOCK):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "%s is not a regular file (%s): give the path of the bundle file itself"
                                  % (path, os.strerror(exc.errno)))
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "%s is %s, not a regular file: give the path of the bundle file itself"
                              % (path, _fs.describe(st.st_mode)))
    os.set_blocking(fd, True)
    return fd


def _read_member(tar, member, limit, source):
    if member.size > limit:
        raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                              "%s: the member %s is %d bytes, more than a manifest can be" % (source, member.name,
                                                                                              member.size))
    handle = tar.extractfile(member)
    data = handle.read(limit + 1)
    if len(data) != member.size:
        raise _errors.Failure(_errors.CORRUPT_BUNDLE, "%s is truncated or damaged in %s" % (source, member.name))
    return data


def _check_member(member, source):
    """Only plain regular members under the two names a bundle uses; the name says which."""
    name = member.name
    if name != MANIFEST and not (name.startswith("blobs/") and _names.BLOB_RE.match(name[6:])):
        raise _errors.Failure(_errors.UNSAFE_BUNDLE,
                              "%s holds the member %r, which no bundle has (only %s and blobs/<object id>): refused;"
                              " rebuild the bundle" % (source, name, MANIFEST))
    why = plain_member(member)
    if why:
        raise _errors.Failure(_errors.UNSAFE_BUNDLE, "%s holds %s as %s, not a plain regular file: refused; rebuild the"
                              " bundle" % (source, name, why))


def read_manifest(path, whole=False):
    """The checked manifest of the archive at `path` (its first member), or Failure.

    With `whole`, every other member is read too and must be a blob of the manifest whose bytes agree with it
    (check_header, MemberCheck), and every blob of the manifest must be there."""
    manifest, _size = _read_manifest(path, whole)
    return manifest


def _read_manifest(path, whole=False):
    """(checked manifest, bytes of the archive file)."""
    fd = _open_regular(path)
    size = os.fstat(fd).st_size
    with os.fdopen(fd, "rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|") as tar:
                first = tar.next()
                if first is None:
                    raise _errors.Failure(_errors.CORRUPT_BUNDLE, "%s is empty" % path)
                if first.name != MANIFEST:
                    raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                          "%s does not start with %s (found %r): not a bundle, or altered"
                                          % (path, MANIFEST, first.name))
                _check_member(first, path)
                data = _read_member(tar, first, MANIFEST_MAX, path)
                try:
                    manifest = json.loads(data.decode("utf-8"))
                except ValueError as exc:
                    raise _errors.Failure(_errors.CORRUPT_BUNDLE, "the manifest of %s is not JSON (%s)" % (path, exc))
                check_manifest(manifest, path)
                if whole:
                    _check_members(tar, blob_table(manifest["models"]), size, path)
        except (tarfile.TarError, EOFError) as exc:
            raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                  "%s is not a readable tar archive (%s): copy it again or rebuild it" % (path, exc))
    return manifest, size


def _check_members(tar, table, archive_size, source):
    """Every member after the manifest, in the stream `tar`, checked whole against the manifest's `table`."""
    seen = {}
    member = tar.next()
    while member is not None:
        info = check_header(member, table, seen, archive_size, source)
        seen[member.name] = member
        with MemberCheck(tar.extractfile(member), member.name[6:], info, source) as reader:
            while reader.read(_CHUNK):
                pass
        member = tar.next()
    missing = sorted(blob for blob in table if member_name(blob) not in seen)
    if missing:
        files = table[missing[0]]["files"]
        raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                              "%s has no member %s, which its manifest lists for %s: the bundle is truncated or altered;"
                              " rebuild it" % (source, member_name(missing[0]), describe(files)), files=files)


def check_header(member, table, seen, archive_size, source):
    """Judge a member after the manifest by its header, before a byte of it is read: a plain regular file named
    blobs/<id> of a blob of the manifest's `table`, not in `seen` (the names met so far), with the manifest's
    size and its bytes within the archive's `archive_size`. Returns the blob's entry of `table`; raises Failure
    naming the member and its files."""
    name = member.name
    blob = name[6:] if name.startswith("blobs/") else ""
    if not _names.BLOB_RE.match(blob) or name in seen or blob not in table:
        raise _errors.Failure(_errors.UNSAFE_BUNDLE,
                              "%s holds the member %r, which is not a blob of its manifest, or is there twice: refused;"
                              " nothing was taken from it" % (source, name), files=[])
    why = plain_member(member)
    if why:
        raise _errors.Failure(_errors.UNSAFE_BUNDLE,
                              "%s holds %s as %s, not a plain regular file: refused; nothing was taken from it"
                              % (source, name, why), files=[])
    info = table[blob]
    if member.size != info["size"] or member.offset_data + member.size > archive_size:
        raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                              "%s: the member %s has %d bytes (ending at %d of %d) but the manifest says %d, for %s: the bundle"
                              " is truncated or altered; rebuild it" % (source, name, member.size,
                                                                        member.offset_data + member.size, archive_size,
                                                                        info["size"], describe(info["files"])),
                              files=info["files"])
    return info


class MemberCheck:
    """A member's bytes, handed on as they are read and checked whole against the manifest once the last one is
    read (or, for an empty member, when it is closed): their count against the manifest's size, their SHA-256 or
    git blob id against the object id (corrupt_bundle: the member is damaged), and their SHA-256 against the
    manifest's sha256 (integrity: the manifest contradicts the content). Failure raised naming the member, the field
    and the files."""

    def __init__(self, handle, blob, info, source):
        self.handle, self.blob, self.info, self.source = handle, blob, info, source
        self.count = 0
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(b"blob %d\0" % info["size"]) if len(blob) == 40 else None
        self.checked = False

    def __enter__(self):
        return self

    def __exit__(self, kind, _value, _traceback):
        try:
            if kind is None and not self.checked:
                self.check()
        finally:
            self.handle.close()

    def close(self):
        self.handle.close()

    def read(self, size=-1):
        data = self.handle.read(size)
        self.count += len(data)
        self.sha256.update(data)
        if self.git:
            self.git.update(data)
        if not self.checked and (not data or self.count >= self.info["size"]):
            self.check()  # before the last bytes are handed on
        return data

    def check(self):
        self.checked = True
        name, files, want = member_name(self.blob), self.info["files"], self.info["size"]
        if self.count != want:
            raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                  "%s: the member %s ends after %d of the %d bytes its manifest gives (size), for %s:"
                                  " the bundle is truncated or altered; rebuild it; nothing was taken from it"
                                  % (self.source, name, self.count, want, describe(files)), files=files)
        digest = self.git.hexdigest() if self.git else self.sha256.hexdigest()
        if digest != self.blob:
            raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                  "%s: the member %s does not match its object id (blob): its bytes have %s %s, for %s:"
                                  " the bundle is damaged; nothing was taken from it"
                                  % (self.source, name, "the git blob id" if self.git else "the SHA-256", digest,
                                     describe(files)), files=files)
        if self.sha256.hexdigest() != self.info.get("sha256"):
            raise _errors.Failure(_errors.INTEGRITY,
                                  "%s: the manifest gives the member %s the SHA-256 %s (sha256) but its bytes have %s, for"
                                  " %s: the manifest contradicts the content; nothing was taken from it"
                                  % (self.source, name, self.info.get("sha256"), self.sha256.hexdigest(),
                                     describe(files)), files=files)


def members(path):
    """[(name, size)] of the archive's members, from their headers only; None when it is not a plain tar file."""
    try:
        fd = _open_regular(path)
    except (_errors.Failure, OSError):
        return None
    with os.fdopen(fd, "rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r:") as tar:
                found = tar.getmembers()
        except (OSError, tarfile.TarError, EOFError):
            return None
    return [(m.name, m.size) for m in found]


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- writing an archive ------------------------------------------------------------------------------------

def open_cached_blob(cache_dir, path, where):
    """A descriptor of a build-cache blob's content: the regular file, or the shared-store entry it links to
    (validated by _store, never followed by path); Failure naming the files otherwise."""
    try:
        fd = _store.open_blob(cache_dir, path)
    except FileNotFoundError:
        raise _errors.Failure(_errors.INCOMPLETE,
                              "the build cache has no file %s for %s: fetch the model into it first (the bundle"
                              " playbook does)" % (path, describe(where)), files=where)
    except (_store.StoreRefused, OSError) as exc:
        raise _errors.Failure(_errors.INTEGRITY,
                              "the build cache's %s for %s is refused (%s): remove the repository from the build"
                              " cache (hf_snapshot state=absent) and fetch it again" % (path, describe(where), exc),
                              files=where)
    os.set_blocking(fd, True)
    return fd


def hash_blob(path, blob, where, cache_dir=None):
    """SHA-256 of a cached blob, checked against its object id; Failure naming the files when it differs.

    With `cache_dir`, a blob that links into the cache's shared store is read from its entry."""
    if cache_dir is None:
        try:
            fd = _open_regular(path)
        except _errors.Failure:
            raise _errors.Failure(_errors.INCOMPLETE,
                                  "the build cache has no file %s for %s: fetch the model into it first (the bundle"
                                  " playbook does)" % (path, describe(where)), files=where)
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
        raise _errors.Failure(_errors.INTEGRITY,
                              "%s in the build cache does not match its object id, for %s: remove the repository from"
                              " the build cache and fetch it again" % (path, describe(where)), files=where)
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
                        raise _errors.Failure(_errors.INTEGRITY,
                                              "%s changed in the build cache while the bundle was written: fetch it"
                                              " again and rebuild" % blob_paths[blob])
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
