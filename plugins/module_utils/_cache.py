# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read and shape the huggingface_hub cache layout without importing huggingface_hub.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import tempfile

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
TREE_FORMAT_VERSION = 1
_CHUNK = 4 * 1024 * 1024


def default_cache_dir(environ):
    """Where huggingface_hub itself looks: HF_HUB_CACHE, then HUGGINGFACE_HUB_CACHE, then $HF_HOME/hub."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if environ.get(key):
            return os.path.expanduser(environ[key])
    home = environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def repo_folder_name(repo_id, repo_type):
    return "--".join([repo_type + "s"] + repo_id.split("/"))


def is_commit(revision):
    return bool(COMMIT_RE.match(revision or ""))


def git_blob_sha1(path):
    size = os.path.getsize(path)
    digest = hashlib.sha1(b"blob %d\0" % size)
    return _hash_file(path, digest)


def sha256_file(path):
    return _hash_file(path, hashlib.sha256())


def _hash_file(path, digest):
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RepoCache:
    """One repository's folder in a hub cache: models--org--name/{blobs,refs,snapshots,trees}."""

    def __init__(self, cache_dir, repo_id, repo_type="model"):
        self.cache_dir = cache_dir
        self.folder_name = repo_folder_name(repo_id, repo_type)
        self.root = os.path.join(cache_dir, self.folder_name)
        self.locks = os.path.join(cache_dir, ".locks", self.folder_name)

    # --- reading -----------------------------------------------------------
    def snapshot_path(self, commit):
        return os.path.join(self.root, "snapshots", commit)

    def read_ref(self, ref):
        try:
            with open(os.path.join(self.root, "refs", ref)) as handle:
                value = handle.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return value if is_commit(value) else None

    def tree_path(self, commit):
        return os.path.join(self.root, "trees", commit + ".json")

    def read_tree(self, commit):
        """The library's cached listing for a commit: {path: {size, blob_id, lfs_sha256?}} or None."""
        try:
            with open(self.tree_path(commit), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format_version") != TREE_FORMAT_VERSION:
            return None
        files = data.get("files")
        return files if isinstance(files, dict) else None

    def write_tree(self, commit, files):
        """Store the listing in the library's own format, so snapshot_download skips its tree request."""
        payload = {"format_version": TREE_FORMAT_VERSION, "files": files}
        atomic_write(self.tree_path(commit), json.dumps(payload, indent=2, sort_keys=True))

    def present_files(self, commit):
        """Files of a snapshot whose link resolves to an existing blob."""
        base = self.snapshot_path(commit)
        found = []
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                full = os.path.join(dirpath, name)
                if os.path.exists(full):
                    found.append(os.path.relpath(full, base))
        return sorted(found)

    def missing_files(self, commit, wanted):
        base = self.snapshot_path(commit)
        return [path for path in wanted if not os.path.exists(os.path.join(base, path))]

    @staticmethod
    def blob_name(entry):
        """The library names a blob after its ETag: the SHA-256 for LFS files, the git blob id otherwise."""
        return entry.get("lfs_sha256") or entry.get("blob_id")

    def has_blob(self, name):
        return bool(name) and os.path.isfile(os.path.join(self.root, "blobs", name))

    def link_existing_blob(self, commit, path, name):
        """Add a file to a snapshot from a blob already in the cache, with the library's relative link."""
        link = os.path.join(self.snapshot_path(commit), path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        target = os.path.relpath(os.path.join(self.root, "blobs", name), os.path.dirname(link))
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)

    def incomplete_blobs(self):
        blobs = os.path.join(self.root, "blobs")
        try:
            names = os.listdir(blobs)
        except FileNotFoundError:
            return []
        return sorted(os.path.join(blobs, n) for n in names if n.endswith(".incomplete"))

    def blob_of(self, commit, path):
        return os.path.realpath(os.path.join(self.snapshot_path(commit), path))

    def blob_names(self):
        try:
            return set(os.listdir(os.path.join(self.root, "blobs")))
        except FileNotFoundError:
            return set()

    # --- checking ----------------------------------------------------------
    def verify(self, commit, paths, tree):
        """Return [(path, expected, actual)] for files whose content does not match the listing."""
        bad = []
        for path in paths:
            entry = tree.get(path) or {}
            blob = self.blob_of(commit, path)
            if entry.get("lfs_sha256"):
                expected, actual = entry["lfs_sha256"], sha256_file(blob)
            elif entry.get("blob_id"):
                expected, actual = entry["blob_id"], git_blob_sha1(blob)
            else:
                continue
            if expected != actual:
                bad.append((path, expected, actual))
        return bad

    def discard(self, commit, path):
        """Remove a file from a snapshot together with its blob."""
        link = os.path.join(self.snapshot_path(commit), path)
        blob = os.path.realpath(link)
        for victim in (blob, link):
            try:
                os.unlink(victim)
            except FileNotFoundError:
                pass

    # --- writing -----------------------------------------------------------
    def write_ref(self, ref, commit):
        atomic_write(os.path.join(self.root, "refs", ref), commit)

    def remove(self):
        existed = False
        for path in (self.root, self.locks):
            if os.path.lexists(path):
                shutil.rmtree(path)
                existed = True
        return existed

    def owned_paths(self):
        """Everything of this repository that the library creates, plus the shared cache entries."""
        for top in (self.root, self.locks):
            if not os.path.isdir(top):
                continue
            yield top
            for dirpath, dirs, names in os.walk(top):
                for name in dirs + names:
                    yield os.path.join(dirpath, name)
        for shared in (self.cache_dir, os.path.join(self.cache_dir, ".locks"),
                       os.path.join(self.cache_dir, "CACHEDIR.TAG")):
            if os.path.lexists(shared):
                yield shared


def atomic_write(path, text):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve_ids(owner, group):
    """Map owner/group names (or numbers) to ids; -1 keeps the current one."""
    uid = gid = -1
    if owner is not None:
        uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
    if group is not None:
        gid = int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    return uid, gid


def dir_mode(file_mode):
    """Directories get an x bit wherever the file mode grants r, so the same readers can traverse."""
    return file_mode | ((file_mode & 0o444) >> 2) | 0o700


def plan_ownership(paths, uid, gid, file_mode):
    """Return the paths whose owner, group or mode differ from what is wanted."""
    pending = []
    for path in paths:
        st = os.lstat(path)
        wrong_owner = (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid)
        wrong_mode = False
        if file_mode is not None and not stat.S_ISLNK(st.st_mode):
            want = dir_mode(file_mode) if stat.S_ISDIR(st.st_mode) else file_mode
            wrong_mode = stat.S_IMODE(st.st_mode) != want
        if wrong_owner or wrong_mode:
            pending.append(path)
    return pending


def apply_ownership(paths, uid, gid, file_mode):
    for path in paths:
        st = os.lstat(path)
        if uid != -1 or gid != -1:
            os.lchown(path, uid, gid)
        if file_mode is not None and not stat.S_ISLNK(st.st_mode):
            os.chmod(path, dir_mode(file_mode) if stat.S_ISDIR(st.st_mode) else file_mode)


def link_target(link):
    try:
        return os.readlink(link)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):
            return None
        raise


def swap_link(link, target, uid=-1, gid=-1):
    """Point link at target atomically: readers see the old or the new snapshot, never neither."""
    if os.path.lexists(link) and not os.path.islink(link):
        raise IsADirectoryError(
            "%s exists and is not a symlink; move it away or choose another 'link' path" % link)
    directory = os.path.dirname(link) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".%s.tmp-%d" % (os.path.basename(link), os.getpid()))
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    if uid != -1 or gid != -1:
        os.lchown(tmp, uid, gid)
    os.replace(tmp, link)
