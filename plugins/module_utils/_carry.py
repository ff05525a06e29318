# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carrying blobs to a host as one stream: the decisions both sides share (action hf_carry, module hf_receive).

The stream is a plain tar of the missing blobs, each member ``blobs/<object id>``, in the order of their ids,
with fixed metadata: the same blobs always give the same bytes. It is cut into chunks of a fixed size, named
``<stream id>-<index>``; the stream id is derived from the blobs and the chunk size, so a host that kept the
chunks of a dropped run reports them (name, size, SHA-256) and only the others are sent again.

The controller checks each blob against its id before the stream takes a byte of it (Prechecker), so a chunk
that leaves it holds checked bytes only.

On the host the chunks arrive in a folder of their own, ``<staging_dir>/<stream id>``, which the module made with
mkdir for this stream (or re-adopted after checking it): owned by the user whose connection writes the chunks,
mode 0700, inside staging_dir, a folder of root's reached from / through real folders that no other user can
write. The cache's owner can therefore plant nothing where a chunk is written (a connection plugin's put_file
follows links).

The host trusts none of it: each chunk must have the size and SHA-256 the controller computed while it wrote
it, and each member must be a plain regular file named by one of the wanted ids, with their size, whose content
matches the id (SHA-256, or the git blob id for 40-hex names). Links, devices, sparse members, other names and
duplicates are refused; nothing is written outside the folder the blobs go to, and a failed unpack removes
what it wrote there.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import tarfile
import threading

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _members

FORMAT = "justnews.huggingface.carry/1"
DEFAULT_CHUNK = 64 * 1024 * 1024
MIN_CHUNK = 64 * 1024
CHUNK_RE = re.compile(r"^[0-9a-f]{16}-[0-9]{6}$")
STREAM_RE = re.compile(r"^[0-9a-f]{16}$")
# The folder of root's, beside the stream's own, where the host unpacks the blobs before they move into the cache.
BLOBS_SUFFIX = ".blobs"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_READ = 4 * 1024 * 1024
# The most tarfile may read at once on the host: a header, or a PAX header's records (ours are under 2 KiB).
HEADER_MAX = 1024 * 1024


# The failures of this file are _errors.Failure, with in their extra `files`, the (repository, path) pairs they
# concern, and `discard`: bytes that failed their check may already be on the host, so its staging must go.


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
    once, sorted by name; `files` are [repository, path] pairs. Failure when two give one blob two sizes."""
    merged = {}
    for repo_id, blobs in groups:
        for blob in blobs:
            name = blob["name"]
            if not (isinstance(name, str) and _names.BLOB_RE.match(name)):
                raise _errors.Failure(_errors.UNSAFE_LISTING, "%r is not an object id (of %s)" % (name, repo_id))
            size = int(blob["size"])
            item = merged.setdefault(name, {"name": name, "size": size, "files": []})
            if item["size"] != size:
                raise _errors.Failure(_errors.UNSAFE_LISTING, "blob %s is given two sizes (%d and %d), for %s" % (
                    name, item["size"], size, describe(item["files"] + [[repo_id, f] for f in blob["files"]])))
            item["files"].extend([repo_id, f] for f in blob.get("files", []))
    return [merged[n] for n in sorted(merged)]


def plan_stream(blobs, chunk_size=DEFAULT_CHUNK):
    """{id, total, chunk_size, chunks: [{name, size}]} of the stream of `blobs` (sorted by name, each once)."""
    if chunk_size < MIN_CHUNK:
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "chunk_size must be at least %d bytes, got %d" % (MIN_CHUNK, chunk_size))
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

class Source:
    """The bytes of one blob on the controller: from `offset` of the open file `fd`, always read with pread, so
    the check and the stream read the same open file (no path is looked up twice) and neither moves the other's
    place. `kind` and `where` go into the messages; `owned` says whether close() closes `fd`; `wrap`, when
    given, wraps the file-like reader of the check (reader()) in a further check of the source's own.
    `checked` is the file's stamp() taken before its check read a byte."""

    def __init__(self, fd, offset, kind, where, owned=True, wrap=None):
        self.fd, self.offset, self.kind, self.where, self.owned, self.wrap = fd, offset, kind, where, owned, wrap
        self.checked = None

    def pread(self, size, pos):
        return os.pread(self.fd, size, self.offset + pos)

    def stamp(self):
        """What every write to the file moves: its size, modification and change times (and which file it is)."""
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def reader(self):
        """A file-like object that reads the blob from its start (its own place, through pread)."""
        handle = _PreadFile(self)
        return self.wrap(handle) if self.wrap else handle

    def close(self):
        if self.owned and self.fd is not None:
            os.close(self.fd)
        self.fd = None


class _PreadFile:
    def __init__(self, source):
        self.source, self.pos = source, 0

    def read(self, size=-1):
        data = self.source.pread(size if size is not None and size >= 0 else _READ, self.pos)
        self.pos += len(data)
        return data

    def close(self):
        pass


def _digest(blob):
    """The hash whose hex digest is the blob's id: SHA-256 (LFS), or git's blob SHA-1 for a 40-hex id."""
    if len(blob["name"]) == 40:
        return hashlib.sha1(b"blob %d\0" % blob["size"])
    return hashlib.sha256()


def check_source(source, blob, stopped=lambda: False):
    """Read the whole blob from `source` and check its size and id: Failure of the source's kind, naming the
    files, when it does not match. `stopped()` ends the read early (False is returned then, True once checked)."""
    digest, size, pos = _digest(blob), blob["size"], 0
    source.checked = source.stamp()
    reader = source.reader()
    try:
        while pos < size:
            if stopped():
                return False
            data = reader.read(min(_READ, size - pos))
            if not data:
                break
            digest.update(data)
            pos += len(data)
    finally:
        reader.close()
    if pos != size:
        raise _errors.Failure(source.kind, "%s ended after %d of its %d bytes, for %s: nothing of it was sent" % (
            source.where, pos, size, describe(blob["files"])), files=blob["files"])
    if digest.hexdigest() != blob["name"]:
        raise _errors.Failure(source.kind,
                              "%s does not match its object id %s (its content has id %s, %d bytes), for %s: nothing of"
                              " it was sent, nothing was taken into the cache" % (
                                  source.where, blob["name"], digest.hexdigest(), pos, describe(blob["files"])),
                              files=blob["files"])
    return True


class Prechecker:
    """Checks each blob against its id before the stream takes a byte of it: a thread of its own opens and
    hashes the blobs in stream order, at most `ahead` blobs before the one being written, so that the check of
    the next blob overlaps the writing and sending of this one (hashlib and pread leave the GIL). `open_blob(blob)`
    gives a Source; `take(i)` waits for blob i's verdict and returns its Source or raises its Failure."""

    def __init__(self, blobs, open_blob, ahead=1):
        self.blobs, self.open_blob, self.ahead = blobs, open_blob, ahead
        self.cond = threading.Condition()
        self.results = {}
        self.taken = -1
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="hf-carry-check", daemon=True)
        self.thread.start()

    def _run(self):
        for index, blob in enumerate(self.blobs):
            with self.cond:
                while not self.stopped and index > self.taken + self.ahead:
                    self.cond.wait()
                if self.stopped:
                    return
            source = None
            try:
                source = self.open_blob(blob)
                if not check_source(source, blob, lambda: self.stopped):
                    source.close()
                    return
                result = (source, None)
            except Exception as exc:  # pylint: disable=broad-except  # raised by take(), in the writer's thread
                if source is not None:
                    source.close()
                result = (None, exc)
            with self.cond:
                self.results[index] = result
                self.cond.notify_all()
            if result[1] is not None:
                return

    def take(self, index):
        with self.cond:
            self.taken = index
            self.cond.notify_all()
            while index not in self.results:
                if not self.thread.is_alive():
                    raise _errors.Failure(_errors.INTERNAL,
                                          "the check of blob %s ended without a verdict" % self.blobs[index]["name"])
                self.cond.wait(0.5)
            source, exc = self.results.pop(index)
        if exc is not None:
            raise exc
        return source

    def close(self):
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join()
        for source, _exc in self.results.values():
            if source is not None:
                source.close()
        self.results.clear()


def _stream_pieces(blobs, checker):
    """The stream's bytes in order, in pieces of at most _READ: each blob's header, its data (read with pread
    from the Source its check passed on) and padding, then the end of the archive as tarfile writes it (two
    zero blocks, then zeros to a whole record). A blob that failed its check raises its Failure before its
    header is given. Each blob is read once more, not hashed again: one whose file changed since its check (its
    size, or the times every write moves) raises Failure with `discard` after its last byte, and the host
    checks every blob against its id as it arrives."""
    total = 0
    for index, blob in enumerate(blobs):
        source = checker.take(index)
        try:
            header = tarinfo(blob["name"], blob["size"]).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
            yield header
            size, pos = blob["size"], 0
            while pos < size:
                data = source.pread(min(_READ, size - pos), pos)
                if not data:
                    raise _errors.Failure(source.kind,
                                          "%s ended after %d of its %d bytes after its check, for %s: it changed while it"
                                          " was sent; nothing was taken into the cache" % (
                                              source.where, pos, size, describe(blob["files"])),
                                          files=blob["files"], discard=True)
                pos += len(data)
                yield data
            if source.stamp() != source.checked:
                raise _errors.Failure(source.kind,
                                      "%s changed after its check (its size or times moved while it was sent), for %s:"
                                      " what was sent of it is removed from the host, nothing was taken into the cache"
                                      % (source.where, describe(blob["files"])), files=blob["files"],
                                      discard=True)
            pad = -size % BLOCK
            if pad:
                yield bytes(pad)
            total += len(header) + size + pad
        finally:
            source.close()
    total += 2 * BLOCK
    yield bytes(2 * BLOCK + -total % RECORD)


def write_chunks(plan, blobs, checker, folder):
    """Write the stream of `blobs` (each taken from `checker`, a Prechecker) as chunk files of `plan`'s sizes in
    `folder`, each hashed as it is written, and yield ({name, size, sha256}, path) for each as soon as it is
    whole: the caller sends it (and removes it) while the next one is written. No chunk that holds a byte of a
    blob that failed its check is yielded."""
    chunks = plan["chunks"]
    index, out, digest, left = 0, None, None, 0
    try:
        for piece in _stream_pieces(blobs, checker):
            view = memoryview(piece)
            while view:
                if out is None:
                    if index >= len(chunks):
                        raise _errors.Failure(_errors.INTERNAL,
                                              "the stream grew past the %d bytes planned for it" % plan["total"])
                    path = os.path.join(folder, chunks[index]["name"])
                    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    digest, left = hashlib.sha256(), chunks[index]["size"]
                part, view = view[:left], view[left:]
                digest.update(part)
                left -= len(part)
                while part:
                    part = part[os.write(out, part):]
                if not left:
                    os.close(out)
                    out = None
                    chunk = chunks[index]
                    index += 1
                    yield {"name": chunk["name"], "size": chunk["size"], "sha256": digest.hexdigest()}, path
    finally:
        if out is not None:
            os.close(out)
    if index != len(chunks):
        raise _errors.Failure(_errors.INTERNAL,
                              "the stream ended after %d of its %d planned chunks" % (index, len(chunks)))


# --- the host: the staging folder ---------------------------------------------------------------------------

def check_location(staging, cache_dir, hf_home=None):
    """Failure when staging_dir lies in the cache or HF_HOME, whose owner (the agents' user) could plant a
    link where a chunk is written, or holds one of them (its removal after the import would take the cache)."""
    tops = [(option, top) for option, top in (("cache_dir", cache_dir), ("hf_home", hf_home)) if top]
    for option, top in tops:
        if _names.location_inside(staging, top):
            raise _errors.Failure(_errors.UNSAFE_CACHE,
                                  "staging_dir %s lies inside %s %s, which the cache's owner can write: a link planted"
                                  " there would lead the chunks elsewhere. Nothing was sent. Set staging_dir to a folder"
                                  " of root's outside the cache, such as /var/lib/justnews-huggingface/incoming (the"
                                  " role's)" % (staging, option, top))
    for option, top in tops:
        if _names.location_inside(top, staging):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "staging_dir %s holds %s %s, and is removed once the models are in: set staging_dir to"
                                  " a folder of its own outside the cache, such as /var/lib/justnews-huggingface/incoming"
                                  % (staging, option, top))


def unsafe_folder(st, euid, last):
    """Why a folder on the way to staging_dir (`last`: staging_dir itself) could be changed by a user other
    than root and the module's own user `euid`, or None. A sticky folder of root's such as /tmp may be on the way
    (no other user can rename or remove root's entries in it), never staging_dir itself."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (0, euid) or (last and st.st_uid != euid):
        return "is owned by uid %d" % st.st_uid
    writers = mode & 0o002 or (mode & 0o020 and st.st_gid != 0)
    if writers and (last or not mode & stat.S_ISVTX or st.st_uid != 0):
        return "can be written by %s (mode %04o)" % ("every user" if mode & 0o002 else "group %d" % st.st_gid, mode)
    return None


def _refuse_staging(staging, where, why):
    fix = ("give staging_dir a path whose every folder, from /, is a real folder (not a link) of root's that only root"
           " can write, outside the cache, such as /var/lib/justnews-huggingface/incoming")
    if os.path.normpath(staging) == where:
        fix = "remove it (rm removes a link itself, never its target) and run again: the run makes it anew, or " + fix
    return _errors.Failure(_errors.UNSAFE_CACHE,
                           "staging_dir %s: %s %s, so another user could swap it for a link or plant one in it; nothing"
                           " was sent. %s%s" % (staging, where, why, fix[0].upper(), fix[1:]))


def _open_folder(dir_fd, name, staging, where):
    try:
        return os.open(name, _fs.DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = _fs.describe(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            raise _refuse_staging(staging, where, "is %s, not a folder" % kind)
        raise


def open_staging(staging, euid, create, mode=0o700):
    """A descriptor of staging_dir, reached from / one folder at a time, never through a link (the connection
    would follow one), each folder on the way checked with unsafe_folder. Missing folders are made when
    `create` (root's, 0755, staging_dir itself `mode`), else None is returned. Failure unsafe_cache naming
    the folder that is not safe."""
    parts = [p for p in os.path.normpath(staging).split("/") if p]
    fd = os.open("/", _fs.DIR_FLAGS)
    where = "/"
    try:
        why = unsafe_folder(os.fstat(fd), euid, not parts)
        if why:
            raise _refuse_staging(staging, where, why)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            where = os.path.join(where, part)
            try:
                nxt = _open_folder(fd, part, staging, where)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                    made = True
                except FileExistsError:
                    made = False
                nxt = _open_folder(fd, part, staging, where)
                if made:
                    os.fchmod(nxt, mode if last else 0o755)
            os.close(fd)
            fd = nxt
            why = unsafe_folder(os.fstat(fd), euid, last)
            if why:
                raise _refuse_staging(staging, where, why)
        return fd
    except BaseException:
        os.close(fd)
        raise


def reachable_by(staging_fd, uid):
    """Let the user `uid` (the connection's, who writes the chunks) pass through staging_dir to the stream's
    folder: search permission only, never listing or writing."""
    st = os.fstat(staging_fd)
    if uid not in (st.st_uid, 0) and not st.st_mode & 0o001:
        os.fchmod(staging_fd, stat.S_IMODE(st.st_mode) | 0o011)


def _sound_entry(st, stream_id, name):
    """A chunk of this stream as the connection left it: a regular file with no other link to it."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and bool(CHUNK_RE.match(name)) and \
        name.startswith(stream_id + "-")


def adopt_stream(staging_fd, staging, stream_id, uid, gid):
    """The folder of the stream in staging_dir, `<stream id>`: a real folder of `uid`:`gid` (the user whose
    connection writes the chunks), mode 0700, holding chunk files of this stream only, each a regular file with
    one link. A folder that is all that is kept with its chunks (a resumed transfer); anything else under the
    name (a link, a file, a folder of another owner or mode, or holding anything else such as a hard link) is
    removed, never followed, chowned or chmodded, and a new folder made with mkdir. Returns (descriptor, whether
    something was removed)."""
    if not STREAM_RE.match(stream_id):
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "%r is not a stream id" % (stream_id,))
    removed = False
    try:
        st = os.stat(stream_id, dir_fd=staging_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None:
        fd = os.open(stream_id, _fs.DIR_FLAGS, dir_fd=staging_fd) if stat.S_ISDIR(st.st_mode) else None
        if fd is not None:
            own = os.fstat(fd)
            sound = (own.st_uid, stat.S_IMODE(own.st_mode)) == (uid, 0o700) and all(
                _sound_entry(os.stat(name, dir_fd=fd, follow_symlinks=False), stream_id, name)
                for name in os.listdir(fd))
            if sound:
                return fd, False
            os.close(fd)
        _fs.rmtree_at(staging, stream_id)
        removed = True
    os.mkdir(stream_id, 0o700, dir_fd=staging_fd)  # exclusive: a name that appeared meanwhile fails here
    fd = os.open(stream_id, _fs.DIR_FLAGS, dir_fd=staging_fd)
    try:
        if uid != os.geteuid() or gid != os.getegid():
            os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd, removed


def held_chunks(stream_fd, stream_id):
    """[{name, size, sha256}] of the chunks of the stream in its folder (regular files with one link only,
    nothing followed, nothing special read)."""
    found = []
    for name in sorted(os.listdir(stream_fd)):
        if not CHUNK_RE.match(name) or not name.startswith(stream_id + "-"):
            continue
        digest = _hash_at(stream_fd, name)
        if digest:
            found.append(dict(digest, name=name))
    return found


def _hash_at(dir_fd, name):
    try:
        chunk_fd = os.open(name, _fs.FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(chunk_fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return None
        os.set_blocking(chunk_fd, True)
        sha = hashlib.sha256()
        size = 0
        for data in iter(lambda: os.read(chunk_fd, _READ), b""):
            sha.update(data)
            size += len(data)
        return {"size": size, "sha256": sha.hexdigest()}
    finally:
        os.close(chunk_fd)


def stream_of(chunks):
    """The stream id that every chunk name of `chunks` starts with; Failure when they disagree."""
    ids = {c["name"][:16] for c in chunks if isinstance(c.get("name"), str) and CHUNK_RE.match(c["name"])}
    if len(ids) != 1 or any(not CHUNK_RE.match(str(c.get("name"))) for c in chunks):
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "the chunks of a stream must all be named <stream id>-<index>, got %s"
                              % ", ".join(str(c.get("name")) for c in chunks[:3]))
    return ids.pop()


def open_stream(staging, stream_id, uid, euid):
    """(staging_dir's descriptor, the stream folder's) for the import: both as the probe left them (the chain to
    staging_dir safe, the stream's folder a real folder of `uid`, mode 0700); Failure otherwise: incomplete
    when they are missing, unsafe_cache when they are not what the probe made."""
    staging_fd = open_staging(staging, euid, create=False)
    if staging_fd is None:
        raise _errors.Failure(_errors.INCOMPLETE,
                              "staging_dir %s does not exist: the transfer did not happen; run again" % staging)
    try:
        try:
            fd = os.open(stream_id, _fs.DIR_FLAGS, dir_fd=staging_fd)
        except FileNotFoundError:
            raise _errors.Failure(_errors.INCOMPLETE,
                                  "the stream's folder %s/%s does not exist: the transfer did not happen; run again"
                                  % (staging, stream_id))
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _errors.Failure(_errors.UNSAFE_CACHE,
                                      "the stream's folder %s/%s is not a folder (a link is never followed): nothing was"
                                      " read; run again, the probe makes it anew" % (staging, stream_id))
            raise
        st = os.fstat(fd)
        if (st.st_uid, stat.S_IMODE(st.st_mode)) != (uid, 0o700):
            os.close(fd)
            raise _errors.Failure(_errors.UNSAFE_CACHE,
                                  "the stream's folder %s/%s is owned by uid %d with mode %04o, not the uid %d and mode"
                                  " 0700 the probe gave it: nothing was read; run again, the probe makes it anew"
                                  % (staging, stream_id, st.st_uid, stat.S_IMODE(st.st_mode), uid))
        return staging_fd, fd
    except BaseException:
        os.close(staging_fd)
        raise


class ChunkStream:
    """The chunks of a stream in `staging_fd`, read as one file: each checked (a regular file with one link, of
    its size) and opened without following links before a byte is read, then read with pread only. tarfile
    reads the headers through read() and seek(), at most HEADER_MAX bytes a read (a header that claims more is
    refused); the members' data is read with pread(). A thread of its own hashes every chunk against the SHA-256
    the controller computed (`start`), alongside the unpacking; `verdict()` waits for it. `release(offset)`
    removes the chunks that are checked and wholly before `offset`; `close()` the others."""

    def __init__(self, staging_fd, staging_dir, chunks):
        self.fd, self.where, self.chunks = staging_fd, staging_dir, chunks
        self.fds = []
        self.ends = []
        self.pos = 0
        self.verified = -1
        self.released = 0
        self.error = None
        self.stopped = False
        self.thread = None

    def open(self):
        """Before a byte is read: every chunk is there as a regular file of its size, with one link."""
        for chunk in self.chunks:
            if not CHUNK_RE.match(chunk["name"]):
                raise _errors.Failure(_errors.INVALID_ARGUMENT, "%r is not a chunk name" % chunk["name"])
            try:
                st = os.stat(chunk["name"], dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                raise _errors.Failure(_errors.INCOMPLETE,
                                      "the chunk %s is not in %s: the transfer did not finish; run again to send what is"
                                      " missing" % (chunk["name"], self.where))
            self._refuse(chunk, st)
        end = 0
        for chunk in self.chunks:
            try:
                chunk_fd = os.open(chunk["name"], _fs.FILE_FLAGS, dir_fd=self.fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _errors.Failure(_errors.UNSAFE_CACHE,
                                          "the chunk %s in %s is a symlink: refused" % (chunk["name"], self.where))
                raise
            self.fds.append(chunk_fd)
            self._refuse(chunk, os.fstat(chunk_fd))
            os.set_blocking(chunk_fd, True)
            end += chunk["size"]
            self.ends.append(end)

    def _refuse(self, chunk, st):
        if not stat.S_ISREG(st.st_mode):
            raise _errors.Failure(_errors.UNSAFE_CACHE, "the chunk %s in %s is %s, not a regular file: refused" % (
                chunk["name"], self.where, _fs.describe(st.st_mode)))
        if st.st_nlink != 1:
            raise _errors.Failure(_errors.UNSAFE_CACHE,
                                  "the chunk %s in %s has %d links (a hard link to a file elsewhere): refused, never"
                                  " read; run again, the probe removes it" % (chunk["name"], self.where, st.st_nlink))
        if st.st_size != chunk["size"]:
            raise _errors.Failure(_errors.INCOMPLETE,
                                  "the chunk %s in %s has %d bytes, not the %d sent: the transfer did not finish; run"
                                  " again to send it anew" % (chunk["name"], self.where, st.st_size, chunk["size"]))

    # --- the check of every chunk, in a thread of its own ---
    def start(self):
        self.thread = threading.Thread(target=self._verify, name="hf-receive-chunks", daemon=True)
        self.thread.start()

    def _verify(self):
        try:
            for index, chunk in enumerate(self.chunks):
                sha256, pos = hashlib.sha256(), 0
                while pos < chunk["size"] and not self.stopped:
                    data = os.pread(self.fds[index], min(_READ, chunk["size"] - pos), pos)
                    if not data:
                        break
                    sha256.update(data)
                    pos += len(data)
                if self.stopped:
                    return
                if pos != chunk["size"] or sha256.hexdigest() != chunk["sha256"]:
                    self.error = _errors.Failure(
                        _errors.INTEGRITY,
                        "the chunk %s in %s does not match what was sent (%d bytes, SHA-256 %s; sent %d bytes,"
                        " SHA-256 %s): it was damaged on the way or on the host; nothing was taken into the cache;"
                        " run again to send it anew" % (chunk["name"], self.where, pos, sha256.hexdigest(),
                                                        chunk["size"], chunk["sha256"]))
                    return
                self.verified = index
        except Exception as exc:  # pylint: disable=broad-except  # raised by verdict(), in the unpacking thread
            self.error = exc

    def verdict(self):
        """Wait for the check of every chunk; raise its failure."""
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error

    # --- the stream as one file ---
    def pread(self, size, pos):
        out = []
        index = bisect.bisect_right(self.ends, pos)
        while size > 0 and index < len(self.chunks):
            start = self.ends[index] - self.chunks[index]["size"]
            if self.fds[index] is None:
                raise _errors.Failure(_errors.INTERNAL,
                                      "the stream in %s was read again before %d, where its chunks were already"
                                      " removed" % (self.where, self.ends[index]))
            data = os.pread(self.fds[index], min(size, self.ends[index] - pos), pos - start)
            if not data:
                break
            out.append(data)
            pos += len(data)
            size -= len(data)
            if pos >= self.ends[index]:
                index += 1
        return out[0] if len(out) == 1 else b"".join(out)

    def read(self, size=-1):
        if size is None or size < 0 or size > HEADER_MAX:
            raise _errors.Failure(_errors.INTEGRITY,
                                  "the stream in %s holds a header of more than %d bytes: refused, nothing was taken"
                                  " into the cache" % (self.where, HEADER_MAX))
        data = self.pread(size, self.pos)
        self.pos += len(data)
        return data

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else (self.ends[-1] if self.ends else 0) + pos
        return self.pos

    def tell(self):
        return self.pos

    def release(self, offset):
        """Remove the chunks that are checked and end before `offset` (their bytes are in the blobs now)."""
        while self.released < len(self.chunks) and self.released <= self.verified and \
                self.ends[self.released] < offset:
            self._drop(self.released)
            self.released += 1

    def _drop(self, index):
        os.close(self.fds[index])
        self.fds[index] = None
        _fs.discard_at(self.fd, self.chunks[index]["name"])

    def close(self, consume=False):
        self.stopped = True
        if self.thread is not None:
            self.thread.join()
        for index, chunk_fd in enumerate(self.fds):
            if chunk_fd is not None:
                if consume:
                    self._drop(index)
                else:
                    os.close(chunk_fd)
                    self.fds[index] = None


def unpack(staging_fd, staging_dir, chunks, blobs, dest_fd, dest):
    """Unpack the stream of `chunks` into the folder `dest_fd`: each member a plain regular file named
    blobs/<id> for one of `blobs` ({name, size, files}), once, of its size, whose content matches its id; every
    chunk of its size and SHA-256 (checked alongside, in a thread of its own). Returns bytes written. On any
    failure, what this call wrote in `dest` is removed; on success the chunks are removed."""
    wanted = {b["name"]: b for b in blobs}
    stream = ChunkStream(staging_fd, staging_dir, chunks)
    created = []
    seen = set()
    written = 0
    try:
        stream.open()
        stream.start()
        try:
            try:
                with tarfile.open(fileobj=stream, mode="r:") as tar:
                    for member in tar:
                        blob = _check_member(member, wanted, seen, staging_dir)
                        seen.add(blob["name"])
                        written += _copy_member(stream, member, blob, dest_fd, dest, created)
                        stream.release(member.offset_data + member.size)
            except (tarfile.TarError, EOFError, ValueError) as exc:  # a malformed PAX or sparse header: ValueError
                raise _errors.Failure(_errors.INTEGRITY,
                                      "the stream in %s is not a readable tar archive (%s): nothing was taken into the"
                                      " cache; run again" % (staging_dir, exc))
            missing = [b for b in blobs if b["name"] not in seen]
            if missing:
                raise _errors.Failure(_errors.INTEGRITY,
                                      "the stream in %s lacks blob %s, for %s: nothing was taken into the cache; run"
                                      " again" % (staging_dir, missing[0]["name"], describe(missing[0]["files"])),
                                      files=missing[0]["files"])
        except _errors.Failure as exc:
            # A damaged chunk explains what followed from it: its failure is the one told.
            if exc.kind == _errors.INTEGRITY:
                stream.verdict()
            raise
        stream.verdict()
        stream.close(consume=True)
    except BaseException:
        stream.close()
        for name in created:
            _fs.discard_at(dest_fd, name)
        raise
    return written


def _check_member(member, wanted, seen, where):
    name = member.name
    blob = name[6:] if name.startswith("blobs/") else None
    if blob is None or not _names.BLOB_RE.match(blob) or blob not in wanted:
        raise _errors.Failure(_errors.INTEGRITY,
                              "the stream in %s holds the member %r, which is none of the blobs sent: refused, nothing"
                              " was taken into the cache" % (where, name))
    info = wanted[blob]
    if blob in seen:
        raise _errors.Failure(_errors.INTEGRITY,
                              "the stream in %s holds %s twice: refused, nothing was taken into the cache"
                              % (where, name), files=info["files"])
    why = _members.plain_member(member)
    if why:
        raise _errors.Failure(_errors.INTEGRITY,
                              "the stream in %s holds %s as %s, not a plain regular file: refused, nothing was taken"
                              " into the cache" % (where, name, why), files=info["files"])
    if member.size != info["size"]:
        raise _errors.Failure(_errors.INTEGRITY,
                              "the stream in %s: the member %s has %d bytes but %d were wanted, for %s: refused"
                              % (where, name, member.size, info["size"], describe(info["files"])),
                              files=info["files"])
    return info


def _copy_member(stream, member, blob, dest_fd, dest, created):
    """Copy one member's data from the stream to a new name in `dest_fd`, hashing it on the way (one read of
    each byte), check it, rename it to its id; bytes written."""
    name, size = blob["name"], blob["size"]
    digest = _digest(blob)
    tmp = None
    count = 0
    try:
        while True:
            tmp = ".%s.%s.part" % (name, secrets.token_hex(4))
            try:
                out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dest_fd)
                break
            except FileExistsError:
                continue
        try:
            while count < size:
                data = stream.pread(min(_READ, size - count), member.offset_data + count)
                if not data:
                    break
                count += len(data)
                digest.update(data)
                view = memoryview(data)
                try:
                    while view:
                        view = view[os.write(out_fd, view):]
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise _errors.Failure(_errors.DISK_FULL,
                                              "the filesystem of %s is full (%s) while %s was unpacked, for %s: nothing"
                                              " was taken into the cache" % (dest, exc, name, describe(blob["files"])),
                                              files=blob["files"])
                    raise
        finally:
            os.close(out_fd)
        if count != size or digest.hexdigest() != name:
            raise _errors.Failure(_errors.INTEGRITY,
                                  "the blob %s arrived with %d bytes and id %s, not %d bytes and its id, for %s: refused,"
                                  " nothing was taken into the cache; run again" % (
                                      name, count, digest.hexdigest(), size, describe(blob["files"])),
                                  files=blob["files"])
        if not _fs.exists_at(dest_fd, name):
            created.append(name)
        os.replace(tmp, name, src_dir_fd=dest_fd, dst_dir_fd=dest_fd)
        tmp = None
    finally:
        if tmp is not None:
            _fs.discard_at(dest_fd, tmp)
    return count
