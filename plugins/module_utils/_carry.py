# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carrying blobs to a host as one stream: the decisions both sides share (action hf_carry, module hf_receive).

The stream is a plain tar of the missing blobs, each member ``blobs/<object id>``, in the order of their ids,
with fixed metadata: the same blobs always give the same bytes. It is cut into chunks of a fixed size, named
``<stream id>-<index>``; the stream id is derived from the blobs and the chunk size, so a host that kept the
chunks of a dropped run reports them (name, size, SHA-256) and only the others are sent again.

The host trusts none of it: each chunk must have the size and SHA-256 the controller computed while it wrote
it, and each member must be a plain regular file named by one of the wanted ids, with their size, whose content
matches the id (SHA-256, or the git blob id for 40-hex names). Links, devices, sparse members, other names and
duplicates are refused; nothing is written outside the folder the blobs go to, and a failed unpack removes
what it wrote there.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import stat
import tarfile

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _members

FORMAT = "justnews.huggingface.carry/1"
DEFAULT_CHUNK = 64 * 1024 * 1024
MIN_CHUNK = 64 * 1024
CHUNK_RE = re.compile(r"^[0-9a-f]{16}-[0-9]{6}$")
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_READ = 4 * 1024 * 1024


class CarryError(Exception):
    """A failure with its error_kind; `files` are the (repository, path) pairs it concerns."""

    def __init__(self, message, kind=_errors.INTEGRITY, files=None):
        super().__init__(message)
        self.kind = kind
        self.files = files or []


def describe(files):
    return ", ".join("%s: %s" % tuple(pair) for pair in files) or "no file"


# --- the plan -----------------------------------------------------------------------------------------------

def tarinfo(name, size):
    """The header of one member: fixed metadata, so the same blobs always give the same bytes."""
    info = tarfile.TarInfo("blobs/" + name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def header_size(name, size):
    return len(tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))


def merge_blobs(groups):
    """One list of blobs [{name, size, files}] from several lists (a probe's missing_blobs per model), each blob
    once, sorted by name; `files` are [repository, path] pairs. CarryError when two give one blob two sizes."""
    merged = {}
    for repo_id, blobs in groups:
        for blob in blobs:
            name = blob["name"]
            if not (isinstance(name, str) and _cache.BLOB_RE.match(name)):
                raise CarryError("%r is not an object id (of %s)" % (name, repo_id), _errors.UNSAFE_LISTING)
            size = int(blob["size"])
            item = merged.setdefault(name, {"name": name, "size": size, "files": []})
            if item["size"] != size:
                raise CarryError("blob %s is given two sizes (%d and %d), for %s" % (
                    name, item["size"], size, describe(item["files"] + [[repo_id, f] for f in blob["files"]])),
                    _errors.UNSAFE_LISTING)
            item["files"].extend([repo_id, f] for f in blob.get("files", []))
    return [merged[n] for n in sorted(merged)]


def plan_stream(blobs, chunk_size=DEFAULT_CHUNK):
    """{id, total, chunk_size, chunks: [{name, size}]} of the stream of `blobs` (sorted by name, each once)."""
    if chunk_size < MIN_CHUNK:
        raise CarryError("chunk_size must be at least %d bytes, got %d" % (MIN_CHUNK, chunk_size),
                         _errors.INVALID_ARGUMENT)
    total = 0
    for blob in blobs:
        total += header_size(blob["name"], blob["size"]) + -(-blob["size"] // BLOCK) * BLOCK
    total += 2 * BLOCK
    total = -(-total // RECORD) * RECORD
    key = json.dumps([FORMAT, chunk_size, [[b["name"], b["size"]] for b in blobs]], separators=(",", ":"))
    stream_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    chunks = []
    for index, offset in enumerate(range(0, total, chunk_size)):
        chunks.append({"name": "%s-%06d" % (stream_id, index), "size": min(chunk_size, total - offset)})
    return {"id": stream_id, "total": total, "chunk_size": chunk_size, "chunks": chunks}


def held_matches(chunk, held):
    """Whether the host already holds `chunk` ({name, size, sha256}) as it is: `held` maps names to what the
    host reported ({size, sha256})."""
    have = held.get(chunk["name"])
    return bool(have) and have.get("size") == chunk["size"] and have.get("sha256") == chunk["sha256"]


# --- the controller: writing the stream ---------------------------------------------------------------------

class ChunkWriter:
    """A write-only file for tarfile that cuts what it is given into chunk files of `plan`'s sizes in `folder`,
    hashing each; `on_chunk(chunk, path)` gets each finished chunk ({name, size, sha256}) and its file (which it
    may remove)."""

    def __init__(self, folder, plan, on_chunk):
        self.folder, self.plan, self.on_chunk = folder, plan, on_chunk
        self.index = 0
        self.written = 0
        self.out = None
        self.sha256 = None
        self.done = []

    def _open(self):
        chunk = self.plan["chunks"][self.index]
        path = os.path.join(self.folder, chunk["name"])
        self.out = open(path, "wb")  # pylint: disable=consider-using-with
        self.sha256 = hashlib.sha256()
        self.written = 0
        return chunk

    def write(self, data):
        view = memoryview(data)
        while view:
            if self.index >= len(self.plan["chunks"]):
                raise CarryError("the stream grew past the %d bytes planned for it" % self.plan["total"],
                                 _errors.INTERNAL)
            if self.out is None:
                self._open()
            chunk = self.plan["chunks"][self.index]
            part = view[:chunk["size"] - self.written]
            self.out.write(part)
            self.sha256.update(part)
            self.written += len(part)
            view = view[len(part):]
            if self.written == chunk["size"]:
                self._finish(chunk)
        return len(data)

    def _finish(self, chunk):
        self.out.close()
        self.out = None
        done = {"name": chunk["name"], "size": chunk["size"], "sha256": self.sha256.hexdigest()}
        self.done.append(done)
        self.index += 1
        self.on_chunk(done, os.path.join(self.folder, chunk["name"]))

    def close(self):
        if self.out is not None:
            self.out.close()
            self.out = None
        if self.index != len(self.plan["chunks"]):
            raise CarryError("the stream ended after %d of its %d planned chunks" % (self.index,
                                                                                     len(self.plan["chunks"])),
                             _errors.INTERNAL)


class CheckedReader:
    """Hands a blob's bytes to tarfile, counting and hashing them, so what is sent is what was checked."""

    def __init__(self, handle, blob):
        self.handle = handle
        self.name = blob["name"]
        self.size = blob["size"]
        self.count = 0
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(b"blob %d\0" % self.size) if len(self.name) == 40 else None

    def read(self, size=-1):
        data = self.handle.read(size)
        self.count += len(data)
        self.sha256.update(data)
        if self.git:
            self.git.update(data)
        return data

    def matches(self):
        digest = self.git.hexdigest() if self.git else self.sha256.hexdigest()
        return self.count == self.size and digest == self.name


def write_stream(tar_out, blobs, open_blob):
    """Write `blobs` as the members of `tar_out` (a tarfile in write mode), each read from the binary file that
    `open_blob(blob)` returns as (file, error kind, description of the source), and checked against its id and
    size: CarryError of that kind, naming the files, when one does not match."""
    for blob in blobs:
        handle, kind, where = open_blob(blob)
        with handle:
            reader = CheckedReader(handle, blob)
            try:
                tar_out.addfile(tarinfo(blob["name"], blob["size"]), reader)
            except OSError as exc:
                raise CarryError("%s ended before its %d bytes (%s), for %s: nothing was taken into the cache"
                                 % (where, blob["size"], exc, describe(blob["files"])), kind, blob["files"])
            if not reader.matches():
                raise CarryError("%s does not match its object id %s (SHA-256 %s, %d bytes), for %s: nothing was"
                                 " taken into the cache" % (where, blob["name"], reader.sha256.hexdigest(),
                                                            reader.count, describe(blob["files"])),
                                 kind, blob["files"])


# --- the host: the staging folder ---------------------------------------------------------------------------

def held_chunks(staging_dir):
    """[{name, size, sha256}] of the chunk files in `staging_dir` (regular files only, nothing followed)."""
    try:
        fd = os.open(staging_dir, _fs.DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT,):
            return []
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CarryError("staging_dir %s is not a directory (a symlink is refused): remove it"
                             % staging_dir, _errors.UNSAFE_CACHE)
        raise
    found = []
    try:
        for name in sorted(os.listdir(fd)):
            if not CHUNK_RE.match(name):
                continue
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            found.append({"name": name, "size": st.st_size, "sha256": _hash_at(fd, name)})
    finally:
        os.close(fd)
    return found


def _hash_at(dir_fd, name):
    sha = hashlib.sha256()
    chunk_fd = os.open(name, _fs.FILE_FLAGS, dir_fd=dir_fd)
    os.set_blocking(chunk_fd, True)
    with os.fdopen(chunk_fd, "rb") as handle:
        for data in iter(lambda: handle.read(_READ), b""):
            sha.update(data)
    return sha.hexdigest()


class ChunkReader:
    """Reads the chunks in `staging_fd` one after another as one stream, each opened without following links,
    checked for its size and SHA-256 when it ends, and removed once checked (`consume`)."""

    def __init__(self, staging_fd, staging_dir, chunks, consume=True):
        self.fd, self.where, self.chunks, self.consume = staging_fd, staging_dir, chunks, consume
        self.index = -1
        self.handle = None
        self.sha256 = None
        self.count = 0
        self.total = 0

    def check_present(self):
        """Before a byte is read: every chunk is there as a regular file of its size."""
        for chunk in self.chunks:
            if not CHUNK_RE.match(chunk["name"]):
                raise CarryError("%r is not a chunk name" % chunk["name"], _errors.INVALID_ARGUMENT)
            try:
                st = os.stat(chunk["name"], dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                raise CarryError("the chunk %s is not in %s: the transfer did not finish; run again to send what is"
                                 " missing" % (chunk["name"], self.where), _errors.INCOMPLETE)
            if not stat.S_ISREG(st.st_mode):
                raise CarryError("the chunk %s in %s is %s, not a regular file: refused" % (
                    chunk["name"], self.where, _fs.describe(st.st_mode)), _errors.UNSAFE_CACHE)
            if st.st_size != chunk["size"]:
                raise CarryError("the chunk %s in %s has %d bytes, not the %d sent: the transfer did not finish;"
                                 " run again to send it anew" % (chunk["name"], self.where, st.st_size,
                                                                 chunk["size"]), _errors.INCOMPLETE)

    def _next(self):
        if self.handle is not None:
            self._close_current()
        self.index += 1
        if self.index >= len(self.chunks):
            return False
        name = self.chunks[self.index]["name"]
        try:
            chunk_fd = os.open(name, _fs.FILE_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CarryError("the chunk %s in %s is a symlink: refused" % (name, self.where),
                                 _errors.UNSAFE_CACHE)
            raise
        if not stat.S_ISREG(os.fstat(chunk_fd).st_mode):
            os.close(chunk_fd)
            raise CarryError("the chunk %s in %s is not a regular file: refused" % (name, self.where),
                             _errors.UNSAFE_CACHE)
        os.set_blocking(chunk_fd, True)
        self.handle = os.fdopen(chunk_fd, "rb")
        self.sha256 = hashlib.sha256()
        self.count = 0
        return True

    def _close_current(self):
        chunk = self.chunks[self.index]
        rest = self.handle.read(1)
        self.handle.close()
        self.handle = None
        if rest or self.count != chunk["size"] or self.sha256.hexdigest() != chunk["sha256"]:
            raise CarryError("the chunk %s in %s does not match what was sent (%d bytes, SHA-256 %s; sent %d"
                             " bytes, SHA-256 %s): it was damaged on the way or on the host; nothing was taken into"
                             " the cache; run again to send it anew" % (
                                 chunk["name"], self.where, self.count + len(rest), self.sha256.hexdigest(),
                                 chunk["size"], chunk["sha256"]), _errors.INTEGRITY)
        if self.consume:
            os.unlink(chunk["name"], dir_fd=self.fd)

    def read(self, size=-1):
        out = []
        want = size if size is not None and size >= 0 else None
        while want is None or want > 0:
            if self.handle is None and not self._next():
                break
            left = self.chunks[self.index]["size"] - self.count
            data = self.handle.read(min(left, want if want is not None else _READ)) if left > 0 else b""
            if not data:
                self._close_current()
                continue
            self.count += len(data)
            self.total += len(data)
            self.sha256.update(data)
            out.append(data)
            if want is not None:
                want -= len(data)
        return b"".join(out)

    def drain(self):
        """Read to the end (the tar's padding), so that every chunk is checked."""
        while self.read(_READ):
            pass


def unpack(staging_fd, staging_dir, chunks, blobs, dest_fd, dest):
    """Unpack the stream of `chunks` into the folder `dest_fd`: each member a plain regular file named
    blobs/<id> for one of `blobs` ({name, size, files}), once, of its size, whose content matches its id.
    Returns bytes written. On any failure, what this call wrote in `dest` is removed."""
    wanted = {b["name"]: b for b in blobs}
    reader = ChunkReader(staging_fd, staging_dir, chunks)
    reader.check_present()
    created = []
    seen = set()
    written = 0
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    blob = _check_member(member, wanted, seen, staging_dir)
                    seen.add(blob["name"])
                    written += _copy_member(tar, member, blob, dest_fd, dest, created)
        except (tarfile.TarError, EOFError, ValueError) as exc:  # a malformed PAX or sparse header: ValueError
            raise CarryError("the stream in %s is not a readable tar archive (%s): nothing was taken into the"
                             " cache; run again" % (staging_dir, exc), _errors.INTEGRITY)
        reader.drain()
        missing = [b for b in blobs if b["name"] not in seen]
        if missing:
            raise CarryError("the stream in %s lacks blob %s, for %s: nothing was taken into the cache; run again"
                             % (staging_dir, missing[0]["name"], describe(missing[0]["files"])), _errors.INTEGRITY,
                             missing[0]["files"])
    except BaseException:
        for name in created:
            _fs.discard_at(dest_fd, name)
        raise
    return written


def _check_member(member, wanted, seen, where):
    name = member.name
    blob = name[6:] if name.startswith("blobs/") else None
    if blob is None or not _cache.BLOB_RE.match(blob) or blob not in wanted:
        raise CarryError("the stream in %s holds the member %r, which is none of the blobs sent: refused, nothing"
                         " was taken into the cache" % (where, name), _errors.INTEGRITY)
    info = wanted[blob]
    if blob in seen:
        raise CarryError("the stream in %s holds %s twice: refused, nothing was taken into the cache"
                         % (where, name), _errors.INTEGRITY, info["files"])
    why = _members.plain_member(member)
    if why:
        raise CarryError("the stream in %s holds %s as %s, not a plain regular file: refused, nothing was taken"
                         " into the cache" % (where, name, why), _errors.INTEGRITY, info["files"])
    if member.size != info["size"]:
        raise CarryError("the stream in %s: the member %s has %d bytes but %d were wanted, for %s: refused"
                         % (where, name, member.size, info["size"], describe(info["files"])), _errors.INTEGRITY,
                         info["files"])
    return info


def _copy_member(tar, member, blob, dest_fd, dest, created):
    """Copy one member to a new name in `dest_fd`, check it, rename it to its id; bytes written."""
    name, size = blob["name"], blob["size"]
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % size) if len(name) == 40 else None
    tmp = None
    count = 0
    try:
        while True:
            tmp = ".%s.%s.part" % (name, secrets.token_hex(4))
            try:
                out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dest_fd)
                break
            except FileExistsError:
                continue
        handle = tar.extractfile(member)
        with os.fdopen(out_fd, "wb") as out:
            while True:
                data = handle.read(min(_READ, size - count + 1))
                if not data:
                    break
                count += len(data)
                if count > size:
                    break
                sha256.update(data)
                if git:
                    git.update(data)
                try:
                    out.write(data)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise CarryError("the filesystem of %s is full (%s) while %s was unpacked, for %s: nothing"
                                         " was taken into the cache" % (dest, exc, name, describe(blob["files"])),
                                         _errors.DISK_FULL, blob["files"])
                    raise
        digest = git.hexdigest() if git else sha256.hexdigest()
        if count != size or digest != name:
            files = describe(blob["files"])
            raise CarryError("the blob %s arrived with %d bytes and id %s, not %d bytes and its id, for %s: refused,"
                             " nothing was taken into the cache; run again" % (name, count, digest, size, files),
                             _errors.INTEGRITY, blob["files"])
        if not _fs.exists_at(dest_fd, name):
            created.append(name)
        os.replace(tmp, name, src_dir_fd=dest_fd, dst_dir_fd=dest_fd)
        tmp = None
    finally:
        if tmp is not None:
            _fs.discard_at(dest_fd, tmp)
    return count
