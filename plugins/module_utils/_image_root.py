# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image roots: a directory being built into a container or VM image, checked and written into on the machine
that builds it.

The image root comes from an image pipeline and is untrusted. The service user's ids come from the image's own
``/etc/passwd`` and ``/etc/group``, read from a descriptor of the root without following a symlink (regular files
only, capped); an id of 0 is refused unless asked for. Every folder, file and link is written through a
descriptor of the root: every component is opened with ``O_NOFOLLOW`` at the moment of the write, so a component
swapped for a symlink after the check is refused and nothing is written outside the root.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import os
import re
import secrets
import stat

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs

ETC_MAX = 4 * 1024 * 1024


def check_image_root(root):
    """The real path of an image root: an existing directory that is not the controller's own '/'."""
    if not root or not os.path.isabs(root):
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "image_root must be an absolute path, got %r" % (root,))
    real = os.path.realpath(root)
    if real == "/":
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "image_root %s is the controller's own root directory: give the directory that is built"
                              " into the image" % root)
    if not os.path.isdir(real):
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "image_root %s does not exist or is not a directory: create the image tree first" % root)
    return real


def image_parts(path):
    """The components of `path`, absolute as the image sees it; '..' and NUL refused."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "%r must be an absolute path as the image sees it" % (path,))
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s must not contain '..'" % path)
    return parts


def path_in_root(root, path):
    """`path` (absolute, as the image sees it) under `root`, refusing '..' and any existing symlink on the way,
    whose target the controller would resolve against its own root."""
    parts = image_parts(path)
    current = root
    for part in parts:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode):
            raise _errors.Failure(_errors.UNSAFE_IMAGE_ROOT,
                                  "%s in the image root is a symlink (to %s); the controller would follow it outside"
                                  " the image: make it a directory in the image, or choose another path"
                                  % (current, os.readlink(current)))
    return os.path.join(root, *parts) if parts else root


def parse_id_table(data, want_fields):
    """Rows of an /etc/passwd or /etc/group text: {name: (line number, fields)}; the first row of a name wins,
    as the C library reads it. Comments, blank lines and NIS lines (+/-) are skipped."""
    rows = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        fields = line.split(":")
        if len(fields) < want_fields:
            continue
        rows.setdefault(fields[0], (number, fields))
    return rows


def parse_id(value, where, number, what):
    """An id of /etc/passwd or /etc/group: decimal digits only, else invalid_argument naming the file and line."""
    if not re.match(r"^[0-9]{1,10}$", value or "") or int(value) > 0xFFFFFFFE:
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "%s line %d gives %s the id %r, which is not a number: fix that line of the image's"
                              " file" % (where, number, what, value))
    return int(value)


def _read_etc(root, name):
    """The image's /etc/<name>, read from a descriptor of the root: no symlink on the way, a regular file, capped."""
    where = os.path.join(root, "etc", name)
    try:
        data = _fs.read_file(root, "etc/" + name, ETC_MAX)
    except _fs.Refused as exc:
        raise _errors.Failure(_errors.UNSAFE_IMAGE_ROOT,
                              "%s is refused (%s): the image root needs its /etc/%s as a regular file, with no"
                              " symlink on the way" % (where, exc, name))
    if data is None:
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "%s is missing or not a regular file: the image root needs its /etc/%s to give the"
                              " service user's ids" % (where, name))
    return data, where


def _entry(root, table, name):
    """(line number, fields, file) of `name` in the image's /etc/passwd or /etc/group (`table`)."""
    data, where = _read_etc(root, table)
    entries = parse_id_table(data, 4 if table == "passwd" else 3)
    if name not in entries:
        what, variable = ("user", "model_cache_owner") if table == "passwd" else ("group", "model_cache_group")
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s %s is not in %s: create it in the image first, or fix %s"
                              % (what, name, where, variable))
    number, fields = entries[name]
    return number, fields, where


def image_ids(root, owner, group, allow_root=False):
    """(uid, gid) of `owner`/`group` as the image's own /etc/passwd and /etc/group give them.

    An id of 0 (root, or the root group) is refused with unsafe_image_root unless `allow_root`: the cache and
    every link would belong to root in the image, and a passwd line that makes the service user root is
    more likely an altered image than a choice."""
    number, fields, where = _entry(root, "passwd", owner)
    uid = parse_id(fields[2], where, number, "user %s" % owner)
    gid = parse_id(fields[3], where, number, "the primary group of %s" % owner)
    gid_from = "%s line %d (the primary group of %s)" % (where, number, owner)
    if group:
        gnumber, gfields, gwhere = _entry(root, "group", group)
        gid = parse_id(gfields[2], gwhere, gnumber, "group %s" % group)
        gid_from = "%s line %d" % (gwhere, gnumber)
    if not allow_root:
        if uid == 0:
            raise _errors.Failure(_errors.UNSAFE_IMAGE_ROOT,
                                  "%s line %d gives the service user %s uid 0 (root): refused, nothing was written; give"
                                  " the image an unprivileged user, or set allow_root (model_cache_bake_allow_root)"
                                  " if the cache must belong to root" % (where, number, owner))
        if gid == 0:
            raise _errors.Failure(_errors.UNSAFE_IMAGE_ROOT,
                                  "%s gives the service user %s gid 0 (the root group): refused, nothing was written;"
                                  " give the image an unprivileged group, or set allow_root"
                                  " (model_cache_bake_allow_root) if the cache must belong to it" % (gid_from, owner))
    return uid, gid


def parse_mode(value, what):
    """Permission bits from an octal string or an int; setuid, setgid and sticky bits refused."""
    try:
        mode = int(value, 8) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s must be octal, such as '0644', got %r" % (what, value))
    if mode & ~0o777 or mode < 0:
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s must be plain permission bits, got %r" % (what, value))
    return mode


class ImageWriter:
    """Writes into an image root through a descriptor of it: each component of each path is opened with
    O_NOFOLLOW from its parent's descriptor at the moment of the write. A component that is a symlink (swapped in
    after the check, or there from the start) or not a directory fails with unsafe_image_root, naming it; nothing
    is written through it. Folders that are missing on the way are made root's, mode 0755. With `check`, nothing
    is written and `changed` tells what would be."""

    def __init__(self, root, uid, gid, check=False):
        self.root, self.uid, self.gid, self.check = root, uid, gid, check
        self.changed = []
        self.made = False

    def _refuse(self, dir_fd, name, where):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=dir_fd)
            raise _errors.Failure(_errors.UNSAFE_IMAGE_ROOT,
                                  "%s in the image root is a symlink (to %s): refused, nothing was written through it;"
                                  " make it a directory in the image, or choose another path" % (where, target))
        raise _errors.Failure(_errors.UNSAFE_IMAGE_ROOT,
                              "%s in the image root is %s, not a directory: refused, nothing was written through it"
                              % (where, _fs.describe(st.st_mode) if st else "not there"))

    def open_dir(self, parts):
        """A descriptor of the folder `parts` below the root, made (root's, 0755) where missing; None in check
        mode when it does not exist yet. `made`: the last folder was made by this call."""
        def make(fd, part, where):
            self._did("/" + os.path.relpath(where, self.root))
            if self.check:
                return None
            os.mkdir(part, 0o700, dir_fd=fd)
            nxt = os.open(part, _fs.DIR_FLAGS, dir_fd=fd)
            _fs.own_fd(nxt, 0, 0, 0o755, made=True)
            return nxt

        fd, made = _fs.descend(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY), parts, self.root, make,
                               self._refuse)
        self.made = bool(parts) and made[-1:] == [os.path.join(self.root, *parts)]
        return fd

    def ids(self, owner):
        if owner in (None, "root"):
            return 0, 0
        if owner == "service":
            return self.uid, self.gid
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "owner of an image entry must be root or service, got %r" % (owner,))

    def directory(self, path, owner=None, mode=None):
        """The folder `path` (as the image sees it); owner and mode set when given, else a new one is root's
        0755 and an existing one is left as the image has it."""
        parts = image_parts(path)
        want_mode = parse_mode(mode, "mode of %s" % path) if mode is not None else None
        fd = self.open_dir(parts)
        if fd is None:
            return
        existed = not self.made
        try:
            st = os.fstat(fd)
            uid, gid = self.ids(owner)
            if (owner is not None or not existed) and (st.st_uid, st.st_gid) != (uid, gid):
                self._did(path)
                if not self.check:
                    _fs.own_fd(fd, uid, gid, where=path)
            mode_now = stat.S_IMODE(os.fstat(fd).st_mode)
            if want_mode is not None and mode_now != want_mode:
                self._did(path)
                if not self.check:
                    _fs.own_fd(fd, mode=want_mode, where=path)
        finally:
            os.close(fd)

    def _did(self, path):
        if path not in self.changed:
            self.changed.append(path)

    def _parent(self, path):
        parts = image_parts(path)
        if not parts:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "%s is the image root itself, not a file in it" % path)
        return self.open_dir(parts[:-1]), parts[-1]

    def file(self, path, content, mode="0644", force=True):
        """A file of root's with `content`: written to a new name in its folder and renamed into place, so a
        symlink at `path` is replaced, never written through. With `force` false an existing entry is kept."""
        want_mode = parse_mode(mode, "mode of %s" % path)
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        dir_fd, name = self._parent(path)
        if dir_fd is None:
            return
        try:
            st = self._entry(dir_fd, name, path, "a file")
            if st is not None and (not force or self._same_file(dir_fd, name, st, data, want_mode)):
                return
            self._did(path)
            if self.check:
                return
            tmp = self._new_name(dir_fd, name, lambda tmp: os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd))

            def write():
                with os.fdopen(tmp[1], "wb") as out:
                    out.write(data)
                    out.flush()
                    _fs.own_fd(out.fileno(), 0, 0, want_mode, made=True)
                    os.fsync(out.fileno())
            self._replace(dir_fd, tmp[0], name, write)
        finally:
            os.close(dir_fd)

    def link(self, path, src):
        """A symlink at `path` to `src` (a path as the image sees it, never followed here), owned by the service
        user; an existing link or file there is replaced, a directory refused."""
        image_parts(src)
        dir_fd, name = self._parent(path)
        if dir_fd is None:
            return
        try:
            st = self._entry(dir_fd, name, path, "a link", "; remove it or choose another link")
            if st is not None and stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=dir_fd) == src:
                if (st.st_uid, st.st_gid) != (self.uid, self.gid):
                    self._did(path)
                    if not self.check:
                        # a link with another name (a hard link) is made anew, never chowned in place
                        _fs.own_at(dir_fd, name, self.uid, self.gid, where=os.path.join(self.root, path.lstrip("/")),
                                   kinds=(stat.S_IFLNK,))
                return
            self._did(path)
            if self.check:
                return

            def make(tmp):
                os.symlink(src, tmp, dir_fd=dir_fd)
                return None
            tmp = self._new_name(dir_fd, name, make)
            # the run's new link
            self._replace(dir_fd, tmp[0], name,
                          lambda: os.chown(tmp[0], self.uid, self.gid, dir_fd=dir_fd, follow_symlinks=False))
        finally:
            os.close(dir_fd)

    @staticmethod
    def _replace(dir_fd, tmp, name, prepare):
        """prepare() the new entry `tmp`, then rename it over `name`; on any failure the new entry is removed."""
        try:
            prepare()
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _fs.discard_at(dir_fd, tmp)
            raise

    def _entry(self, dir_fd, name, path, wanted, then=""):
        """lstat of the entry that a file or link replaces (None when there is none); a directory is refused."""
        st = _fs.lstat_in(dir_fd, name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise _errors.Failure(_errors.UNSAFE_IMAGE_ROOT, "%s in the image root is a directory, not %s: refused%s"
                                  % (os.path.join(self.root, path.lstrip("/")), wanted, then))
        return st

    @staticmethod
    def _new_name(dir_fd, name, make):
        while True:
            tmp = ".%s.%s.tmp" % (name, secrets.token_hex(4))
            try:
                return tmp, make(tmp)
            except FileExistsError:
                continue

    @staticmethod
    def _same_file(dir_fd, name, st, data, mode):
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data) or (st.st_uid, st.st_gid) != (0, 0) \
                or stat.S_IMODE(st.st_mode) != mode:
            return False
        try:
            fd = os.open(name, _fs.FILE_FLAGS, dir_fd=dir_fd)
        except OSError:
            return False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            os.set_blocking(fd, True)
            return os.read(fd, len(data) + 1) == data
        finally:
            os.close(fd)


def paths_in_root(root, paths):
    """{name: path under `root`} for {name: path as the image sees it}, each checked as path_in_root does."""
    if not isinstance(paths, dict):
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "paths must be a dict of names and paths as the image sees them, got %r" % (paths,))
    out = {}
    for name, path in paths.items():
        if not isinstance(name, str) or not name:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "the names of paths must be non-empty strings, got %r" % (name,))
        out[name] = path_in_root(root, path)
    return out
