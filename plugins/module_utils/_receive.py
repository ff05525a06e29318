# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hf_receive's run on the host: the probe (what the host lacks of the models, what it holds of a stream), the
import of a stream's blobs into the cache through _snapshot, and the discard of a stream.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import os
import pwd

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _carry
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _snapshot

COMMON = ("cache_dir", "hf_home", "dir_mode", "owner", "group", "mode", "free_space_margin", "shared_blobs",
          "verify_checksums", "retries", "timeout")
BLOBS = "blobs"


class _Run:
    """What Snapshot needs of a module: the parameters of one model, check mode, warnings."""

    def __init__(self, module, params, check):
        self.params, self.check_mode, self._module = params, check, module

    def warn(self, msg):
        self._module.warn(msg)


class Receiver:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.staging = os.path.normpath(self.p["staging_dir"])
        self.results = []
        self.euid = os.geteuid()
        hf_home = self.p["hf_home"]
        cache_dir = self.p["cache_dir"] or (os.path.join(hf_home, "hub") if hf_home else None) or \
            _names.default_cache_dir(os.environ)
        _carry.check_location(self.staging, cache_dir, hf_home or os.environ.get("HF_HOME"))

    def snapshot_params(self, model, blobs_from, checked=None):
        params = {name: spec.get("default") for name, spec in _snapshot.ARGUMENT_SPEC.items()}
        params.update({k: self.p[k] for k in COMMON})
        params.update(model, state="present", offline=False, blobs_from=blobs_from, staging_dir=self.staging,
                      blobs_checked=checked)
        return params

    def run_model(self, model, check, blobs_from=None, checked=None):
        where = "%s@%s" % (model["repo_id"], model["revision"])
        snapshot = None
        try:
            snapshot = _snapshot.Snapshot(_Run(self.module, self.snapshot_params(model, blobs_from, checked),
                                               check))
            return snapshot.run()
        except _errors.Failure as failure:
            partial = snapshot.finish() if snapshot else {}
            raise _errors.Failure(failure.kind, "%s: %s" % (where, failure.msg), model=where,
                                  model_result=dict(partial, error_kind=failure.kind, **failure.extra))

    def uploader_ids(self):
        """(uid, gid) of the user whose connection writes the chunks: uploader, else the module's own."""
        if not self.p["uploader"]:
            return self.euid, os.getegid()
        try:
            entry = pwd.getpwnam(self.p["uploader"])
        except KeyError:
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "uploader %s does not exist on the host" % self.p["uploader"])
        return entry.pw_uid, entry.pw_gid

    # --- probe ------------------------------------------------------------------------------------------
    def probe(self):
        for model in self.p["models"]:
            self.results.append(self.run_model(model, check=True))
        missing = _carry.merge_blobs([(m["repo_id"], r.get("missing_blobs", []))
                                      for m, r in zip(self.p["models"], self.results)])
        out = {"models": self.results, "missing_blobs": missing, "held_chunks": [], "changed": False}
        if missing:
            stream_id = _carry.plan_stream(missing, self.p["chunk_size"])["id"]
            out.update(stream_id=stream_id, held_chunks=self.prepare_staging(stream_id))
        return out

    def prepare_staging(self, stream_id):
        """staging_dir checked (made when missing: root's, 0700, or 0711 for another uploader), and in it the
        stream's own folder, made or re-adopted for the uploader; the chunks it already holds. In check mode only
        the existing part of the way to staging_dir is checked, nothing is made."""
        uid, gid = self.uploader_ids()
        fd = _carry.open_staging(self.staging, self.euid, create=not self.module.check_mode,
                                 mode=0o700 if uid == self.euid else 0o711)
        if fd is None:
            return []
        try:
            if self.module.check_mode:
                return []
            _carry.reachable_by(fd, uid)
            stream_fd, removed = _carry.adopt_stream(fd, self.staging, stream_id, uid, gid)
        finally:
            os.close(fd)
        try:
            if removed:
                self.module.warn("%s/%s held something other than this stream's chunks (a link, a hard link, a"
                                 " folder of another owner or mode): removed, never followed; the stream is sent"
                                 " whole" % (self.staging, stream_id))
            return _carry.held_chunks(stream_fd, stream_id)
        finally:
            os.close(stream_fd)

    # --- import -----------------------------------------------------------------------------------------
    def take_in(self):
        stream = self.p["stream"] or {}
        chunks = stream.get("chunks") or []
        blobs_from = None
        received = 0
        keep = False
        try:
            if chunks:
                try:
                    stream_id = _carry.stream_of(chunks)
                    received = self.unpack(stream_id, chunks, stream.get("blobs") or [])
                except _errors.Failure as exc:
                    # A chunk that is missing or short is the transfer's: keep the others for the next run.
                    keep = exc.kind == _errors.INCOMPLETE
                    raise
                blobs_from = os.path.join(self.staging, stream_id + _carry.BLOBS_SUFFIX)
            checked = self.checked_blobs(stream.get("blobs") or [], blobs_from) if blobs_from else None
            for model in self.p["models"]:
                self.results.append(self.run_model(model, check=False, blobs_from=blobs_from, checked=checked))
        finally:
            if not keep:
                self.remove_staging()
        return {"models": self.results, "received_bytes": received,
                "changed": any(r.get("changed") for r in self.results)}

    def checked_blobs(self, blobs, folder):
        """{blob: its Xet hash or None} of the unpacked blobs that move into the cache rather than being copied
        and read again: each was checked against its id as it was written into `folder` (root's, 0700), and only
        one model's listing has it (the next would find it gone). The Xet hash, for a blob that a listing gives
        one, is computed here from that root-only copy: the shared store's entry is named after it."""
        users = {}
        xet = set()
        for model in self.p["models"]:
            entries = [e for e in (model.get("listing") or {}).values() if isinstance(e, dict)]
            for name in {_names.blob_name(e) for e in entries}:
                users[name] = users.get(name, 0) + 1
            xet.update(_names.blob_name(e) for e in entries if e.get("xet_hash"))
        checked = {b["name"]: None for b in blobs if users.get(b["name"]) == 1}
        hashed = sorted(n for n in checked if n in xet)
        if hashed:
            try:
                import hf_xet  # pylint: disable=import-outside-toplevel
            except ImportError:  # the import says so: the blob stays outside the shared store
                return checked
            for name, found in zip(hashed, hf_xet.hash_files([os.path.join(folder, n) for n in hashed])):
                checked[name] = found.hash
        return checked

    def unpack(self, stream_id, chunks, blobs):
        """Unpack the chunks in the stream's folder into `<stream id>.blobs`, a folder of root's made anew in
        staging_dir (beside the uploader's folder, not in it); bytes unpacked."""
        staging_fd, stream_fd = _carry.open_stream(self.staging, stream_id, self.uploader_ids()[0], self.euid)
        try:
            name = stream_id + _carry.BLOBS_SUFFIX
            _fs.rmtree_at(self.staging, name)
            os.mkdir(name, 0o700, dir_fd=staging_fd)
            dest_fd = os.open(name, _fs.DIR_FLAGS, dir_fd=staging_fd)
            try:
                return _carry.unpack(stream_fd, os.path.join(self.staging, stream_id), chunks, blobs, dest_fd,
                                     os.path.join(self.staging, name))
            finally:
                os.close(dest_fd)
        finally:
            os.close(stream_fd)
            os.close(staging_fd)

    def remove_staging(self):
        """staging_dir and all in it, once the way to it is checked again (never removed through a folder that
        another user could have swapped for a link)."""
        parent, name = os.path.split(self.staging)
        try:
            fd = _carry.open_staging(self.staging, self.euid, create=False)
            if fd is None:
                return
            os.close(fd)
            _fs.rmtree_at(parent or "/", name)
        except (OSError, _errors.Failure) as exc:
            self.module.warn("could not remove %s: %s" % (self.staging, exc))

    # --- discard ----------------------------------------------------------------------------------------
    def discard(self):
        """Remove what the host holds of one stream (its folder and unpacked blobs), and staging_dir when that
        leaves it empty: after a failure on the controller that left nothing worth resuming, or bytes that no
        longer matched their check."""
        stream_id = self.p["stream_id"] or ""
        if not _carry.STREAM_RE.match(stream_id):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "stream_id must be the 16 hex characters of a stream, got %r" % stream_id)
        fd = _carry.open_staging(self.staging, self.euid, create=False)
        if fd is None:
            return {"changed": False, "models": []}
        try:
            changed = False
            for name in (stream_id, stream_id + _carry.BLOBS_SUFFIX):
                changed = _fs.rmtree_at(self.staging, name) or changed
            empty = not os.listdir(fd)
        finally:
            os.close(fd)
        if empty:
            try:
                os.rmdir(self.staging)
            except OSError:  # refilled meanwhile by another run: it stays
                pass
        return {"changed": changed, "models": []}
