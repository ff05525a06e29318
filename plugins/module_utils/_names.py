# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names that come from the Hub, the cache or an argument, checked before any path is built from them:
repository ids, refs, commits, file names of a listing, and where a path lies.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import os
import posixpath
import re

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
BLOB_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# Characters git forbids in ref names, plus controls and space.
REF_BAD_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


class UnsafeName(ValueError):
    """A name from the Hub, the cache or an argument that would lead outside the repository's folder."""

    def __init__(self, message, name=None):
        super().__init__(message)
        self.name = name


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


# --- validation of untrusted names ---------------------------------------------------------------------

def check_repo_id(repo_id):
    """'owner/name' or 'name' as the Hub allows them; '--' and '..' would be ambiguous in the folder name."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if not 1 <= len(parts) <= 2 or not all(REPO_PART_RE.match(p) for p in parts) or "--" in repo_id \
            or ".." in repo_id:
        raise UnsafeName("repo_id must look like 'owner/name' (letters, digits, '-', '_', '.'; no '--' or '..'),"
                         " got %r" % (repo_id,), repo_id)
    return repo_id


def check_ref_name(name, what="ref"):
    """Git's ref-name rules (git check-ref-format), which also keep a ref inside refs/."""
    bad = (not isinstance(name, str) or not name or len(name) > 255 or REF_BAD_RE.search(name)
           or ".." in name or "@{" in name or name == "@" or name.endswith((".", "/")) or name.startswith("/"))
    if not bad:
        for part in name.split("/"):
            if not part or part.startswith(".") or part.endswith(".lock"):
                bad = True
    if bad:
        raise UnsafeName("%s %r is not a valid branch or tag name (git ref-name rules: no '..', no leading '/'"
                         " or '.', no empty component, no spaces or ~^:?*[\\)" % (what, name), name)
    return name


def check_commit(value, source):
    if not is_commit(value):
        raise UnsafeName("%s gave %r as a commit, which is not 40 hexadecimal characters" % (source, value), value)
    return value


def check_file_name(name, source):
    """A repository file name: relative, normalised, no '..', no empty or '.' component."""
    ok = (isinstance(name, str) and 0 < len(name) <= 4096 and "\x00" not in name and "\\" not in name
          and not name.startswith("/") and posixpath.normpath(name) == name
          and all(part not in ("", ".", "..") for part in name.split("/")))
    if not ok:
        raise UnsafeName("%s lists the file name %r, which is not a plain relative path inside the repository"
                         % (source, name), name)
    return name


def blob_name(entry):
    """The library names a blob after its ETag: the SHA-256 for LFS files, the git blob id otherwise."""
    return entry.get("lfs_sha256") or entry.get("blob_id")


def check_tree(files, source):
    """Validate a listing {path: {size, blob_id, lfs_sha256?}}; return it."""
    if not isinstance(files, dict):
        raise UnsafeName("%s is not a file listing" % source)
    for name, entry in files.items():
        check_file_name(name, source)
        if not isinstance(entry, dict):
            raise UnsafeName("%s has no metadata for %r" % (source, name), name)
        blob = blob_name(entry)
        if not (isinstance(blob, str) and BLOB_RE.match(blob)):
            raise UnsafeName("%s gives %r the object id %r, which is not a SHA-1 or SHA-256 in hexadecimal"
                             % (source, name, blob), name)
        size = entry.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise UnsafeName("%s gives %r the size %r" % (source, name, size), name)
        xet_hash = entry.get("xet_hash")
        if xet_hash is not None and not (isinstance(xet_hash, str) and re.match(r"^[0-9a-f]{64}$", xet_hash)):
            raise UnsafeName("%s gives %r the Xet hash %r, which is not 64 hexadecimal digits"
                             % (source, name, xet_hash), name)
    return files


def inside(path, top):
    """True when the real path of `path` lies under the real path of `top`."""
    real, base = os.path.realpath(path), os.path.realpath(top)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def location_inside(path, top):
    """True when the entry `path` itself (not what a symlink there points to) lies in or at `top`."""
    real = os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))
    base = os.path.realpath(top)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)
