# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bundles: one plain tar holding a manifest and the blobs of some hub-cache snapshots, for hosts without the Hub.

Layout: the member ``manifest.json`` first, then one member ``blobs/<object id>`` per blob, each once. The
manifest names, per model, the repository, revision, ref, commit, the listing that hf_snapshot accepts, and per
file its path, blob, size and SHA-256.

Everything read from an archive is untrusted: names are checked against the manifest, only regular members are
read, and each member's bytes are counted and hashed on their way to the staging directory; nothing is ever
extracted by name, linked or written outside that directory.

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

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

FORMAT = "justnews.huggingface.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX = 64 * 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REPO_TYPES = ("model", "dataset", "space")
_CHUNK = 4 * 1024 * 1024


class BundleError(Exception):
    """The bundle or an argument is wrong; the message names the file and the fix. `files`: [(repo, path)]."""

    def __init__(self, message, kind="corrupt_bundle", files=None):
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
                          "invalid_argument")
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
            raise BundleError("%s of %s is not in the listing of %s" % (path, repo_id, commit), "invalid_argument",
                              [(repo_id, path)])
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
                                  % (f["blob"], describe(item["files"])), "corrupt_bundle", item["files"])
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
                          "invalid_argument")
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
                                  " was altered; rebuild it" % (source, describe(where)), "corrupt_bundle", where)
            if not (isinstance(given.get("sha256"), str) and SHA256_RE.match(given["sha256"])):
                raise BundleError("the manifest of %s gives %s no valid SHA-256" % (source, describe(where)),
                                  "corrupt_bundle", where)
            if len(want["blob"]) == 64 and given["sha256"] != want["blob"]:
                raise BundleError("the manifest of %s gives %s a SHA-256 other than its object id: the bundle was"
                                  " altered; rebuild it" % (source, describe(where)), "corrupt_bundle", where)
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
                              % (source, repo_id, revision, held), "not_in_bundle")
        model = found[0]
        ref = want.get("ref") or ("main" if _cache.is_commit(revision) else revision)
        out.append({"item": want, "repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                    "commit": model["commit"], "ref": _cache.check_ref_name(ref), "listing": model["listing"],
                    "files": [f["path"] for f in model["files"]], "bytes": sum(f["size"] for f in model["files"])})
    return out


# --- reading an archive ------------------------------------------------------------------------------------

def _open_regular(path):
    """A file descriptor of `path`, which must be a regular file and not a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError("%s is a symlink; give the path of the bundle itself" % path, "invalid_argument")
        if exc.errno == errno.ENOENT:
            raise BundleError("%s does not exist: build it with the playbook justnews.huggingface.bundle" % path,
                              "invalid_argument")
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError("%s is not a regular file" % path, "invalid_argument")
    return fd


def _read_member(tar, member, limit, source):
    handle = tar.extractfile(member)
    if member.size > limit:
        raise BundleError("%s: the member %s is %d bytes, more than a manifest can be" % (source, member.name,
                                                                                          member.size))
    data = handle.read(limit + 1)
    if len(data) != member.size:
        raise BundleError("%s is truncated or damaged in %s" % (source, member.name))
    return data


def _check_member(member, source):
    """Only plain regular members under the two names a bundle uses; the name says which."""
    name = member.name
    if name != MANIFEST and not (name.startswith("blobs/") and _cache.BLOB_RE.match(name[6:])):
        raise BundleError("%s holds the member %r, which no bundle has (only %s and blobs/<object id>): refused,"
                          " nothing was staged; rebuild the bundle" % (source, name, MANIFEST), "unsafe_bundle")
    if not member.isreg():
        raise BundleError("%s holds %s as a %s, not a regular file: refused, nothing was staged; rebuild the bundle"
                          % (source, name, "link" if member.issym() or member.islnk() else "special file"),
                          "unsafe_bundle")


def read_manifest(path):
    """The checked manifest of the archive at `path` (its first member), or BundleError."""
    fd = _open_regular(path)
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
    return check_manifest(manifest, path)


def members(path):
    """[(name, size)] of the archive's members, from their headers only; None when it is not a tar."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            return [(m.name, m.size) for m in tar.getmembers()]
    except (OSError, tarfile.TarError, EOFError):
        return None


def stage(path, dest, needed):
    """Copy the blobs named in `needed` out of the archive into `dest`, each counted and hashed on the way.
    With `dest` None (check mode) everything is read and checked the same way and nothing is written.

    Reads the archive once, front to back. Every member is checked, needed or not; a needed blob is first
    written to a temporary name and renamed only when its size, SHA-256 and object id all match. On any error
    everything this call put into `dest` is removed. Returns (manifest, {blob: bytes}).
    """
    manifest = read_manifest(path)
    table = blob_table(manifest["models"])
    for name in needed:
        if name not in table:
            raise BundleError("the bundle %s has no blob %s, which the host needs: build the bundle with the same"
                              " revision, allow_patterns and ignore_patterns as model_cache_models"
                              % (path, name), "not_in_bundle")
    if dest is not None and not stat.S_ISDIR(os.lstat(dest).st_mode):
        raise BundleError("staging directory %s is not a directory (a symlink is refused)" % dest,
                          "invalid_argument")
    written = {}
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
                                         else "which its manifest does not name"), "unsafe_bundle")
                seen.add(blob)
                info = table[blob]
                if member.size != info["size"]:
                    raise BundleError("%s: the member %s has %d bytes but the manifest says %d, for %s: the bundle"
                                      " was altered; rebuild it" % (path, member.name, member.size, info["size"],
                                                                    describe(info["files"])),
                                      "corrupt_bundle", info["files"])
                if blob in needed:
                    written[blob] = _copy_checked(tar, member, dest, blob, info, path)
        missing = [b for b in needed if b not in written]
        if missing:
            files = [f for b in missing for f in table[b]["files"]]
            raise BundleError("%s lacks the member blobs/%s for %s: the archive is truncated or incomplete; copy it"
                              " again or rebuild it" % (path, missing[0], describe(files)), "corrupt_bundle", files)
    except BaseException:
        for blob in written if dest is not None else ():
            _unlink(os.path.join(dest, blob))
        raise
    return manifest, written


def _copy_checked(tar, member, dest, blob, info, source):
    target = os.path.join(dest, blob) if dest is not None else None
    tmp = os.path.join(dest, ".%s.part" % blob) if dest is not None else os.devnull
    if target:
        _unlink(tmp)
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % info["size"]) if len(blob) == 40 else None
    count = 0
    try:
        handle = tar.extractfile(member)
        flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW if target else 0)
        with os.fdopen(os.open(tmp, flags, 0o600), "wb") as out:
            while True:
                try:
                    chunk = handle.read(_CHUNK)
                except (tarfile.TarError, EOFError, OSError) as exc:
                    raise BundleError("%s is truncated in %s, for %s (%s): copy it again or rebuild it"
                                      % (source, member.name, describe(info["files"]), exc), "corrupt_bundle",
                                      info["files"])
                if not chunk:
                    break
                count += len(chunk)
                sha256.update(chunk)
                if git:
                    git.update(chunk)
                out.write(chunk)
        actual = sha256.hexdigest()
        if count != info["size"]:
            raise BundleError("%s is truncated in %s: %d of %d bytes, for %s: copy it again or rebuild it"
                              % (source, member.name, count, info["size"], describe(info["files"])), "corrupt_bundle",
                              info["files"])
        if actual != info["sha256"] or (git and git.hexdigest() != blob) or (not git and actual != blob):
            raise BundleError("%s: the content of %s does not match its checksum (SHA-256 %s, expected %s), for %s:"
                              " the bundle is corrupt; copy it again or rebuild it"
                              % (source, member.name, actual, info["sha256"], describe(info["files"])),
                              "corrupt_bundle", info["files"])
        if target:
            os.replace(tmp, target)
    finally:
        if target:
            _unlink(tmp)
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
                          " playbook does)" % (path, describe(where)), "incomplete", where)
    except (_store.StoreRefused, OSError) as exc:
        raise BundleError("the build cache's %s for %s is refused (%s): remove the repository from the build"
                          " cache (hf_snapshot state=absent) and fetch it again" % (path, describe(where), exc),
                          "integrity", where)
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
                              " playbook does)" % (path, describe(where)), "incomplete", where)
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
                          " the build cache and fetch it again" % (path, describe(where)), "integrity", where)
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
                                          " again and rebuild" % blob_paths[blob], "integrity")
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


# --- image roots ---------------------------------------------------------------------------------------

def check_image_root(root):
    """The real path of an image root: an existing directory that is not the controller's own '/'."""
    if not root or not os.path.isabs(root):
        raise BundleError("image_root must be an absolute path, got %r" % (root,), "invalid_argument")
    real = os.path.realpath(root)
    if real == "/":
        raise BundleError("image_root %s is the controller's own root directory: give the directory that is built"
                          " into the image" % root, "invalid_argument")
    if not os.path.isdir(real):
        raise BundleError("image_root %s does not exist or is not a directory: create the image tree first" % root,
                          "invalid_argument")
    return real


def path_in_root(root, path):
    """`path` (absolute, as the image sees it) under `root`, refusing '..' and any existing symlink on the way,
    whose target the controller would resolve against its own root."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise BundleError("%r must be an absolute path as the image sees it" % (path,), "invalid_argument")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BundleError("%s must not contain '..'" % path, "invalid_argument")
    current = root
    for part in parts:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode):
            raise BundleError("%s in the image root is a symlink (to %s); the controller would follow it outside"
                              " the image: make it a directory in the image, or choose another path"
                              % (current, os.readlink(current)), "unsafe_image_root")
    return os.path.join(root, *parts) if parts else root


def image_ids(root, owner, group):
    """(uid, gid) of `owner`/`group` as the image's own /etc/passwd and /etc/group give them."""
    def table(name):
        path = path_in_root(root, "/etc/" + name)
        try:
            fd = _open_regular(path)
        except BundleError:
            raise BundleError("%s is missing or not a regular file: the image root needs its /etc/%s to give the"
                              " service user's ids" % (path, name), "invalid_argument")
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n").split(":") for line in handle if line.count(":") >= 3]

    users = {f[0]: f for f in table("passwd") if len(f) >= 4}
    if owner not in users:
        raise BundleError("user %s is not in %s/etc/passwd: create it in the image first, or fix model_cache_owner"
                          % (owner, root), "invalid_argument")
    uid, gid = int(users[owner][2]), int(users[owner][3])
    if group:
        groups = {f[0]: f for f in table("group")}
        if group not in groups:
            raise BundleError("group %s is not in %s/etc/group: create it in the image first, or fix"
                              " model_cache_group" % (group, root), "invalid_argument")
        gid = int(groups[group][2])
    return uid, gid
