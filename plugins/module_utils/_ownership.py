# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who owns what the modules write: the ids of the service user, the modes, the ownership of a
repository's files (never chowning a file in place that has another name) and the model links.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat

from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _store


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


def plan_ownership(paths, uid, gid, file_mode, top=None, copies=None):
    """Return the paths whose owner, group or mode differ from what is wanted.

    With `top` (the cache), a hard link among them (a regular file with more than one name) is judged now,
    before anything is written: apply_ownership will replace it by a private copy, so its content is read
    through its copy rule (`copies`, see apply_ownership) and _fs.Refused raised when it has none or the content
    does not belong there."""
    pending, linked = [], []
    for path in paths:
        st = os.lstat(path)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue  # FIFOs and devices are never handed out (apply_ownership skips them too)
        wrong_owner = (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid)
        wrong_mode = False
        if file_mode is not None and not stat.S_ISLNK(st.st_mode):
            want = dir_mode(file_mode) if stat.S_ISDIR(st.st_mode) else file_mode
            wrong_mode = stat.S_IMODE(st.st_mode) != want
        if wrong_owner or wrong_mode:
            pending.append(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                linked.append(path)
    if top is not None and linked:
        apply_ownership(linked, uid, gid, file_mode, top, copies, check=True)
    return pending


def apply_ownership(paths, uid, gid, file_mode, top, copies=None, check=False):
    """Owner, group and mode of paths below `top` (the cache), each reached from a descriptor of `top` through
    real folders and opened without following the last component: an entry or a folder on the way swapped for a
    symlink after it was planned is never chowned or chmodded through; links get an lchown only.

    An entry with more than one name is never changed in place (_fs.own_at): a symlink is made anew, a regular
    file replaced by a private copy made by `copies(path)`, its copy rule (an _fs copy function, None: no copy
    makes sense and _fs.Refused is raised). With `check`, nothing is changed; the copies are only judged."""
    for path in paths:
        base, rel = _store.below(top, path)
        parent, name = os.path.split(rel)
        try:
            dir_fd = _fs.open_dir(base, parent)
        except (_fs.Refused, FileNotFoundError, NotADirectoryError):
            continue
        try:
            # The rule is looked up for a hard link only; one made after this look finds no rule and is refused.
            try:
                linked = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_nlink > 1
            except FileNotFoundError:
                continue
            _fs.own_at(dir_fd, name, uid, gid, file_mode, None if file_mode is None else dir_mode(file_mode),
                       where=path, copy=copies(path) if copies and linked else None, check=check)
        finally:
            os.close(dir_fd)


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
