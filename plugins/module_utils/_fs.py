# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Opening, reading and removing paths below a folder the run owns, without following links it did not make.

The modules run as root on trees another party writes (the cache belongs to the agents' user, a bundle and an
image root come from a pipeline). Every helper here starts from a descriptor of the operator's folder and walks
each component with ``O_NOFOLLOW`` relative to the previous directory's descriptor, so a component swapped for a
symlink fails with ``Refused`` instead of leading outside. Files are opened with ``O_NONBLOCK`` and judged by
``fstat`` before a byte is read: a FIFO or a device is never read, so no read waits on a file the run did not
create. Reads are capped. Owner and mode are changed through ``own_at`` / ``own_fd`` only, which never chown or
chmod an inode another name may share (a hard link, ``st_nlink > 1``).

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


class Refused(OSError):
    """A path that is not what the caller expects (a symlink, a FIFO, a device, too large); `path` names it."""

    def __init__(self, path, reason):
        super().__init__(errno.EPERM, "%s %s" % (path, reason), path)
        self.path = path
        self.reason = reason

    def __str__(self):
        return "%s %s" % (self.path, self.reason)


def describe(mode):
    """What a file of this mode is, for messages that say why it was refused."""
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "not a regular file"


def _parts(rel):
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts or rel.startswith("/"):
        raise Refused(rel, "leads outside its folder")
    return parts


def descend(fd, parts, where, make=None, refuse=None, follow_above=False):
    """Walk from the open folder `fd` (consumed) down `parts`, each component opened from its parent's descriptor
    with O_NOFOLLOW, so that no link swapped in on the way is followed. `where` names `fd` in messages.

    A missing component is made by `make(parent_fd, name, where)`, which returns its descriptor (or None: the
    walk stops and returns None); without `make`, FileNotFoundError. A component that is a symlink or not a
    directory is handed to `refuse(parent_fd, name, where)`, which raises (default: Refused). With
    `follow_above`, the components above the last are the operator's and are followed. Returns (descriptor of the
    last folder, the `where` of each folder made)."""
    made = []
    try:
        for i, part in enumerate(parts):
            where = os.path.join(where, part)
            flags = os.O_RDONLY | os.O_DIRECTORY if follow_above and i < len(parts) - 1 else DIR_FLAGS
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if make is None:
                    raise
                nxt = make(fd, part, where)
                if nxt is None:
                    os.close(fd)
                    return None, made
                made.append(where)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    (refuse or _refuse)(fd, part, where)
                raise
            os.close(fd)
            fd = nxt
        return fd, made
    except BaseException:
        os.close(fd)
        raise


def _refuse(dir_fd, name, where):
    raise Refused(where, "is %s, not a directory" % _kind_at(dir_fd, name))


def open_dir(top, rel="", create=False, mode=0o755):
    """A descriptor of the directory `rel` below `top`, each component a real directory (never followed).

    `top` itself is the operator's and is followed. Raises FileNotFoundError when a component is missing (with
    `create`, it is made), Refused when one is a symlink or not a directory.
    """

    def make(fd, part, _where):
        try:
            os.mkdir(part, mode, dir_fd=fd)
        except FileExistsError:
            pass
        return os.open(part, DIR_FLAGS, dir_fd=fd)

    return descend(os.open(top, os.O_RDONLY | os.O_DIRECTORY), _parts(rel), top, make if create else None)[0]


def _kind_at(dir_fd, name):
    try:
        return describe(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return "not there"


def open_file(top, rel, limit=None):
    """A blocking read descriptor of the regular file `rel` below `top`; nothing on the way is followed.

    FileNotFoundError when it (or a folder on the way) is missing; Refused when anything is a symlink, the file
    is not a regular file (FIFO, device, socket, directory) or it is larger than `limit` bytes.
    """
    parent, name = os.path.split(rel)
    if not name or name in (".", ".."):
        raise Refused(os.path.join(top, rel), "is not a file name")
    dir_fd = open_dir(top, parent)
    try:
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(os.path.join(top, rel), "is a symlink; never followed")
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (limit is not None and st.st_size > limit):
            os.close(fd)
            raise Refused(os.path.join(top, rel), "is %s" % describe(st.st_mode) if not stat.S_ISREG(st.st_mode)
                          else "is %d bytes, more than the %d it may have" % (st.st_size, limit))
        os.set_blocking(fd, True)
        return fd
    finally:
        os.close(dir_fd)


def read_file(top, rel, limit):
    """The bytes of the regular file `rel` below `top` (at most `limit`), None when it does not exist.

    Refused for a symlink, a special file or a file over `limit`."""
    try:
        fd = open_file(top, rel, limit)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        data = read_capped(fd, limit)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Refused(os.path.join(top, rel), "grew past %d bytes while it was read" % limit)
    return data


def at_entry(top, rel, act, missing=None, refused=()):
    """act(descriptor of rel's folder, opened through real directories only, rel's name), the folder closed after;
    `missing` when the folder is not there (or is one of `refused`'s errors)."""
    parent, name = os.path.split(rel)
    try:
        dir_fd = open_dir(top, parent)
    except (FileNotFoundError, NotADirectoryError) + tuple(refused):
        return missing
    try:
        return act(dir_fd, name)
    finally:
        os.close(dir_fd)


def lstat_in(dir_fd, name):
    """lstat of `name` in the folder `dir_fd`; None when it is not there."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def lstat_at(top, rel):
    """lstat of `rel` below `top`, reached through real directories only; None when it is not there."""
    return at_entry(top, rel, lstat_in)


def walk(top, rel=""):
    """(relative path, lstat) of everything below `rel` (folders first), never descending through a link.

    Built on os.fwalk, which opens each folder from its parent's descriptor: a folder swapped for a symlink while
    the walk runs is not entered."""
    try:
        base = open_dir(top, rel)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        for dirpath, dirs, files, dir_fd in os.fwalk(".", dir_fd=base, follow_symlinks=False):
            for name in dirs + files:
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                yield os.path.normpath(os.path.join(rel, dirpath, name)), st
    finally:
        os.close(base)


def readlink_at(top, rel):
    """The text of the symlink `rel` below `top` (never followed), None when it is not a symlink."""
    def read(dir_fd, name):
        try:
            return os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return None
    return at_entry(top, rel, read, refused=(Refused,))


def unlink_at(top, rel):
    """Remove the entry `rel` below `top` (a file, link or special file: the link itself, never its target).
    True when it was there; Refused when a folder on the way is a symlink."""
    def unlink(dir_fd, name):
        try:
            os.unlink(name, dir_fd=dir_fd)
            return True
        except FileNotFoundError:
            return False
    return at_entry(top, rel, unlink, missing=False)


def wait_child(pid, deadline, poll=0.05):
    """Wait for a child until `deadline` (time.monotonic); past it the child is killed. Returns its status, or
    None when it was killed for running too long."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return None
        time.sleep(poll)


def clear(dir_fd, path):
    """Remove everything in the directory `dir_fd` (named `path`): names are unlinked, folders entered with
    O_NOFOLLOW; nothing is followed. An OSError names the entry in its `filename`."""
    for name in os.listdir(dir_fd):
        where = os.path.join(path, name)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                try:
                    clear(sub, where)
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=dir_fd)
            else:
                os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if getattr(exc, "filename", None) and os.path.isabs(str(exc.filename)):
                raise
            raise type(exc)(exc.errno, exc.strerror, where)


def rmtree_at(top, rel):
    """Remove the entry `rel` below `top` and, when it is a real directory, everything in it, through
    descriptors: a folder swapped for a symlink while this runs is unlinked as a link, never entered. A symlink
    at `rel` itself is removed as a link. True when something was there."""
    def remove(dir_fd, name):
        st = lstat_in(dir_fd, name)
        if st is None:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return True
        sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            clear(sub, os.path.join(top, rel))
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dir_fd)
        return True
    return at_entry(top, rel, remove, missing=False)


def write_file_at(top, rel, data, mode=0o644):
    """Write `data` to `rel` below `top` atomically, in the real folder reached without following links
    (replace_at)."""
    parent, name = os.path.split(rel)
    dir_fd = open_dir(top, parent)
    try:
        replace_at(dir_fd, name, data, mode)
    finally:
        os.close(dir_fd)


def exists_at(dir_fd, name):
    """Whether the entry `name` (a link itself, never what it points to) is in the directory `dir_fd`."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def discard_at(dir_fd, name):
    """Unlink `name` in the directory `dir_fd` when it is there."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def open_dir_path(path, create=False, mode=0o755, uid=None, gid=None):
    """A descriptor of the absolute directory `path`, its last component never followed (a symlink there is
    Refused); the folders above it are the operator's and are followed. FileNotFoundError when one is missing,
    unless `create`: each missing folder is then made with `mode` (whatever the umask) and, when given, `uid` and
    `gid`, set through its descriptor. Returns (descriptor, list of the folders made)."""

    def make(fd, part, where):
        os.mkdir(part, 0o700, dir_fd=fd)
        nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
        own_fd(nxt, *_ids(uid, gid), mode=mode, where=where, made=True)
        return nxt

    parts = [p for p in os.path.normpath(path).split("/") if p]
    return descend(os.open("/", os.O_RDONLY | os.O_DIRECTORY), parts, "/", make if create else None,
                   follow_above=True)


def read_at(dir_fd, name, limit, where=None):
    """(bytes or None, fstat) of the regular file `name` in the directory `dir_fd`, None when it is not there.

    Opened without following a link and without blocking, judged by fstat before a byte is read: Refused for a
    symlink, a FIFO, a device, a socket or a directory (`where` names it). The bytes are None when the file has
    more than `limit`; it is then not read."""
    where = where or name
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(where, "is %s; never followed or read" % describe(st.st_mode))
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
            raise Refused(where, "is %s; never followed or read" % _kind_at(dir_fd, name))
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(where, "is %s; never read" % describe(st.st_mode))
        if st.st_size > limit:
            return None, st
        data = read_capped(fd, limit)
        return (data if len(data) <= limit else None), st
    finally:
        os.close(fd)


def replace_at(dir_fd, name, data, mode, uid=None, gid=None):
    """Write `data` as `name` in the directory `dir_fd` atomically: a temporary file made there with O_EXCL and
    O_NOFOLLOW (a name no drop-in reader takes: it does not end like `name`), its owner and mode set through its
    descriptor, written, fsync'ed, then renamed over `name`, which is replaced and never followed; the directory
    is fsync'ed last."""
    tmp = ".tmp-%s-%s" % (name, os.urandom(6).hex())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            own_fd(fd, *_ids(uid, gid), mode=mode, where=tmp, made=True)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dir_fd)


def set_attrs_at(dir_fd, name, mode, uid=None, gid=None, where=None):
    """Give the regular file `name` in `dir_fd` its owner and mode through a descriptor (never through a link);
    Refused when it is no longer a regular file, or when it is a hard link (own_fd)."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise Refused(where or name, "is %s; never followed" % _kind_at(dir_fd, name))
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(where or name, "is %s" % describe(st.st_mode))
        own_fd(fd, *_ids(uid, gid), mode=mode, where=where or name)
    finally:
        os.close(fd)


def _ids(uid, gid):
    """(uid, gid) for own_fd from the optional pair the writers take: no uid, no change of owner or group."""
    return (-1, -1) if uid is None else (uid, -1 if gid is None else gid)


# --- owner and mode, never through a hard link -------------------------------------------------------------
#
# chown and chmod act on an inode, not on a name. Whoever can write a folder can give a file of it a second name
# elsewhere on the filesystem, or give a file from elsewhere a name in it (a hard link: root's /etc/shadow as
# blobs/x, where fs.protected_hardlinks is off, and that sysctl is not the run's to set). So an inode with more
# than one name is never chowned or chmodded: it is replaced under the name the run owns by a private copy,
# or refused.

OWNED = "owned"
COPIED = "copied"


class NotVouched(ValueError):
    """Raised by a copy rule: what the hard-linked file holds is not what belongs under the name."""


def own_fd(fd, uid=-1, gid=-1, mode=None, where=None, made=False):
    """Owner, group (-1 keeps them) and mode (None keeps it) of the open file `fd`.

    Refused for a regular file or symlink with more than one link, unless `made`: this run created the inode
    itself (O_EXCL, mkdir), so another name can only lead to the run's own file, never from someone else's."""
    st = os.fstat(fd)
    if not made and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        raise Refused(where or "descriptor %d" % fd, _linked(st))
    if uid != -1 or gid != -1:
        os.fchown(fd, uid, gid)
    if mode is not None:
        os.fchmod(fd, mode)
    return st


def _linked(st):
    return ("is a hard link (%d names share this file; another may be outside what the run owns): its owner and"
            " mode are never changed through it" % st.st_nlink)


def own_at(dir_fd, name, uid=-1, gid=-1, mode=None, dir_mode=None, where=None, copy=None, check=False,
           kinds=(stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)):
    """Give the entry `name` of the directory `dir_fd` an owner and group (-1 keeps them) and a mode (None keeps
    it; a directory takes `dir_mode`), through its own descriptor, never by a path.

    An entry with one name is changed in place. A regular file or symlink with more than one name is never
    changed in place (see above):
    - a symlink is replaced by a new one with the same text, read with readlink and never followed;
    - a regular file, given `copy`, is replaced by a private copy: a new file made with O_EXCL and O_NOFOLLOW in
      `dir_fd` (the real folder, reached by descriptors), filled with what `copy(fd, st)` yields from the
      descriptor already open on the entry, given its owner and mode through its own descriptor, fsync'ed and
      renamed over `name`. The other names keep their inode: its owner, mode and content. `copy` raises
      NotVouched when what it read does not belong there: Refused, and nothing is changed;
    - a regular file without `copy`: Refused.
    Kinds not in `kinds` (FIFOs, devices, sockets always) are left alone. With `check`, nothing is changed:
    a copy is read through and judged only.

    Returns None when nothing was done (not there, a kind left alone, swapped since), OWNED or COPIED (or what
    would be done, with `check`).
    """
    where = where or name
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_IFMT(st.st_mode) not in kinds:
        return None
    if stat.S_ISLNK(st.st_mode):
        if st.st_nlink > 1:
            if not check:
                _relink(dir_fd, name, st, uid, gid)
            return COPIED
        if (uid != -1 or gid != -1) and not check:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        return OWNED
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0), dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
            return None  # swapped for a link (or removed) since the stat: nothing is reached through it
        raise
    try:
        now = os.fstat(fd)
        if stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode):
            return None
        if stat.S_ISREG(now.st_mode) and now.st_nlink > 1:
            if copy is None:
                raise Refused(where, _linked(now) + ", nor copied: remove this name (rm removes it alone)")
            return _private_copy(dir_fd, name, fd, now, copy, uid, gid, mode, where, check)
        if not check:
            own_fd(fd, uid, gid, dir_mode if stat.S_ISDIR(now.st_mode) else mode, where)
        return OWNED
    finally:
        os.close(fd)


def _same_entry(dir_fd, name, st):
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _new_name(name):
    return ".tmp-%s-%s" % (name, os.urandom(6).hex())


def _private_copy(dir_fd, name, fd, st, copy, uid, gid, mode, where, check):
    os.set_blocking(fd, True)
    try:
        if check:
            for _chunk in copy(fd, st):
                pass
            return COPIED
        tmp = _new_name(name)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            try:
                for chunk in copy(fd, st):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
                # uid/gid -1 and mode None keep what the name had, as a change in place would
                own_fd(out, st.st_uid if uid == -1 else uid, st.st_gid if gid == -1 else gid,
                       stat.S_IMODE(st.st_mode) if mode is None else mode, where, made=True)
                os.fsync(out)
            finally:
                os.close(out)
            if not _same_entry(dir_fd, name, st):
                discard_at(dir_fd, tmp)
                return None  # swapped since it was opened: the new entry is not the one copied
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            discard_at(dir_fd, tmp)
            raise
        os.fsync(dir_fd)
        return COPIED
    except NotVouched as exc:
        raise Refused(where, "%s, nor copied: it %s. Remove this name (rm removes it alone)" % (_linked(st), exc))


def _relink(dir_fd, name, st, uid, gid):
    """A hard-linked symlink replaced by a new symlink with the same text (never followed)."""
    target = os.readlink(name, dir_fd=dir_fd)
    tmp = _new_name(name)
    os.symlink(target, tmp, dir_fd=dir_fd)
    try:
        os.chown(tmp, st.st_uid if uid == -1 else uid, st.st_gid if gid == -1 else gid, dir_fd=dir_fd,
                 follow_symlinks=False)
        if not _same_entry(dir_fd, name, st):
            discard_at(dir_fd, tmp)
            return
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        discard_at(dir_fd, tmp)
        raise


# Copy rules for own_at: what a private copy of a hard-linked file gets. Each reads from the descriptor open on
# the entry and raises NotVouched when the content is not what belongs there, so that another file's content
# (root's secret, reached by a planted hard link) is never handed to the new owner.

def fresh(_fd, _st):
    """An empty new file, nothing read: for lock files, whose content means nothing."""
    return iter(())


def hashed(new_digest, expected, chunk=4 * 1024 * 1024):
    """A copy of the content, which must hash to `expected` (hex) with `new_digest(size)` and keep the size
    fstat gave: a blob named after its hash."""
    def copy(fd, st):
        digest, size = new_digest(st.st_size), 0
        while True:
            data = os.read(fd, chunk)
            if not data:
                break
            digest.update(data)
            size += len(data)
            yield data
        if size != st.st_size or digest.hexdigest() != expected:
            raise NotVouched("holds %d bytes with id %s, not the %s its name says"
                             % (size, digest.hexdigest(), expected))
    return copy


def read_capped(fd, limit):
    """At most `limit` + 1 bytes from `fd`: more than `limit` tells the caller the file is too large."""
    chunks, left = [], limit + 1
    while left > 0:
        data = os.read(fd, min(left, 1 << 20))
        if not data:
            break
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def checked(limit, accept):
    """A copy of a small file (at most `limit` bytes): `accept(data)` gives the bytes the copy gets, or raises
    NotVouched."""
    def copy(fd, _st):
        data = read_capped(fd, limit)
        if len(data) > limit:
            raise NotVouched("has more than the %d bytes such a file may have" % limit)
        yield accept(data)
    return copy
