#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_receive
short_description: The host side of justnews.huggingface.hf_carry - probe several models, take in one stream of blobs
version_added: 0.1.0
description:
  - Runs on the managed host for the action M(justnews.huggingface.hf_carry), which calls it twice at most per
    run; not meant to be called by hand.
  - O(phase=probe) runs the plan of M(justnews.huggingface.hf_snapshot) for every model of O(models) in check
    mode, in one process, and returns each model's result and the blobs the cache lacks, each once. When blobs are
    missing (outside check mode) it makes O(staging_dir) (mode C(0700), owned by O(uploader)) and reports the
    chunks of an earlier, dropped transfer that it already holds there, with their size and SHA-256, so that only
    the others are sent again.
  - O(phase=import) checks the chunks of O(stream) (each of its size and SHA-256, none a link or special file),
    reads them as one tar stream and unpacks every member into C(<staging_dir>/blobs) - only plain regular files
    named C(blobs/<object id>) for one of the blobs sent, once each, of their size, whose content matches the id
    (SHA-256, or the git blob id). Links, devices, sparse members, other names and duplicates are refused. Each
    model is then taken into the cache as M(justnews.huggingface.hf_snapshot) does with
    O(justnews.huggingface.hf_snapshot#module:blobs_from), each blob checked against its id again, and
    O(staging_dir) is removed.
  - A failure leaves the cache as it was for the model that failed (models before it in O(models) stay taken in,
    complete and checked). O(staging_dir) is removed after the import phase, except when chunks are missing or
    short, which the next run sends.
author:
  - JustNews maintainers (@justnews)
requirements:
  - huggingface_hub >= 2.4 on the managed host, for the Python interpreter that runs the module.
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.cache
  - justnews.huggingface.cache.snapshot_options
attributes:
  check_mode:
    support: full
    details:
      - O(phase=probe) writes nothing in check mode. O(phase=import) is not run in check mode by hf_carry.
  diff_mode:
    support: full
    details:
      - Each model's result carries the diff of M(justnews.huggingface.hf_snapshot).
  idempotent:
    support: full
options:
  phase:
    description: V(probe) works out what each model lacks; V(import) unpacks O(stream) and takes the models in.
    type: str
    choices: [probe, import]
    required: true
  models:
    description: The models, each as M(justnews.huggingface.hf_snapshot) takes it with a pinned commit and a listing.
    type: list
    elements: dict
    required: true
    suboptions:
      repo_id:
        description: Repository on the Hub.
        type: str
        required: true
      repo_type:
        description: Kind of repository.
        type: str
        choices: [model, dataset, space]
        default: model
      revision:
        description: The 40-character commit.
        type: str
        required: true
      ref:
        description: Name under C(refs/) that records the commit.
        type: str
      listing:
        description: The file listing of the commit.
        type: dict
        required: true
      allow_patterns:
        description: Only files matching one of these glob patterns.
        type: list
        elements: str
      ignore_patterns:
        description: Files matching one of these glob patterns are left out.
        type: list
        elements: str
      link:
        description: Symlink to the snapshot.
        type: path
  staging_dir:
    description:
      - Where the chunks arrive and the blobs are unpacked before they move into the cache; best on the
        filesystem of O(cache_dir). Removed after the import phase.
    type: path
    required: true
  uploader:
    description:
      - User that writes the chunks into O(staging_dir) (the connection's user when the module runs with become);
        O(staging_dir) is made theirs. Unset leaves it to the module's user.
    type: str
  stream:
    description:
      - With O(phase=import), the stream sent - C(chunks) (each C(name), C(size), C(sha256), in order) and
        C(blobs) (each C(name), C(size), C(files)). Unset or without chunks, the models are taken in without
        blobs (only a ref, a link or ownership changes).
    type: dict
seealso:
  - module: justnews.huggingface.hf_carry
    description: The action that runs this module on the host; use it instead.
  - module: justnews.huggingface.hf_snapshot
    description: Whose code takes each model into the cache here, as with its
      O(justnews.huggingface.hf_snapshot#module:blobs_from).
"""

EXAMPLES = r"""
# hf_carry runs this module; it is not meant to be called by hand.
- name: Carry the models to the host (runs hf_receive on it)
  justnews.huggingface.hf_carry:
    models: "{{ seeds }}"
    source: controller
    cache_dir: /var/cache/hf/hub
    staging_dir: /var/cache/hf/.incoming
"""

RETURN = r"""
models:
  description: Per model, in the order of O(models), the result of M(justnews.huggingface.hf_snapshot).
  returned: always
  type: list
  elements: dict
missing_blobs:
  description: With O(phase=probe), the blobs the cache lacks over every model, each once, sorted by name.
  returned: when O(phase=probe)
  type: list
  elements: dict
  sample: [{"name": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", "size": 90868376,
            "files": [["sentence-transformers/all-MiniLM-L6-v2", "model.safetensors"]]}]
held_chunks:
  description: With O(phase=probe), the chunks already in O(staging_dir) (name, size, sha256).
  returned: when O(phase=probe)
  type: list
  elements: dict
received_bytes:
  description: With O(phase=import), bytes unpacked from the stream.
  returned: when O(phase=import)
  type: int
  sample: 90868376
model:
  description: On failure of one model, that model, as C(<repo_id>@<revision>).
  returned: on failure of a model
  type: str
  sample: sentence-transformers/all-MiniLM-L6-v2@c9745ed1d9f207416be6d2e6f8de32d1f16199bf
model_result:
  description:
    - On failure of one model, its result as M(justnews.huggingface.hf_snapshot) would return it, with the keys of
      its failure (such as C(needed_bytes) and C(free_bytes) for V(no_space), C(corrupt_files) for V(integrity)).
  returned: on failure of a model
  type: dict
  sample: {"commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf", "needed_bytes": 1164610200,
           "free_bytes": 52428800}
corrupt_files:
  description:
    - On failure of the stream, the files (C([repository, path])) of the chunks or members that did not match what
      was sent; empty when the failure concerns no file.
  returned: on failure of the stream
  type: list
  elements: list
  sample: [["sentence-transformers/all-MiniLM-L6-v2", "model.safetensors"]]
error_kind:
  description:
    - On failure, the cause - V(invalid_argument), V(missing_library), V(cache_dir_invalid), V(not_writable),
      V(locked), V(unsafe_listing), V(unsafe_cache), V(integrity) (a chunk or a member does not match what was
      sent), V(incomplete) (a chunk is missing or short; the next run sends it), V(rate_limited), V(server_error),
      V(unreachable), V(transient), V(timeout), V(gated), V(unauthorized), V(repo_not_found),
      V(revision_not_found), V(entry_not_found), V(disk_full), V(no_space), V(internal), V(other), as
      M(justnews.huggingface.hf_snapshot) returns them (the Hub's kinds cannot occur, as no request is made).
  returned: on failure
  type: str
  sample: integrity
fix:
  description: On failure, what to do about RV(error_kind).
  returned: on failure
  type: str
"""

import os
import pwd
import sys

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.justnews.huggingface.plugins.module_utils import _carry
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _library
from ansible_collections.justnews.huggingface.plugins.module_utils import _snapshot

COMMON = ("cache_dir", "hf_home", "dir_mode", "owner", "group", "mode", "free_space_margin", "shared_blobs",
          "verify_checksums", "retries", "timeout")
BLOBS = "blobs"


class ReceiveError(Exception):
    def __init__(self, msg, kind, **extra):
        super().__init__(msg)
        self.msg, self.kind, self.extra = msg, kind, extra


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
        self.staging = self.p["staging_dir"].rstrip("/") or "/"
        self.results = []

    def snapshot_params(self, model, blobs_from):
        params = {name: spec.get("default") for name, spec in _snapshot.ARGUMENT_SPEC.items()}
        params.update({k: self.p[k] for k in COMMON})
        params.update(model, state="present", offline=False, blobs_from=blobs_from, staging_dir=self.staging)
        return params

    def run_model(self, model, check, blobs_from=None):
        where = "%s@%s" % (model["repo_id"], model["revision"])
        snapshot = None
        try:
            snapshot = _snapshot.Snapshot(_Run(self.module, self.snapshot_params(model, blobs_from), check))
            return snapshot.run()
        except _snapshot.Failure as failure:
            extra = dict(failure.extra)
            kind = extra.pop("error_kind")
            partial = snapshot.finish() if snapshot else {}
            raise ReceiveError("%s: %s" % (where, failure.msg), kind, model=where, model_result=dict(partial, **extra))

    # --- probe ------------------------------------------------------------------------------------------
    def probe(self):
        for model in self.p["models"]:
            self.results.append(self.run_model(model, check=True))
        missing = _carry.merge_blobs([(m["repo_id"], r.get("missing_blobs", []))
                                      for m, r in zip(self.p["models"], self.results)])
        held = []
        if missing and not self.module.check_mode:
            self.prepare_staging()
            held = _carry.held_chunks(self.staging)
        return {"models": self.results, "missing_blobs": missing, "held_chunks": held, "changed": False}

    def prepare_staging(self):
        """staging_dir, a real folder (mode 0700) of the uploader; missing parents made root's, 0755."""
        parent, name = os.path.split(self.staging)
        if not name:
            raise ReceiveError("staging_dir must be a folder below /, got %s" % self.staging, _errors.INVALID_ARGUMENT)
        uid = gid = -1
        if self.p["uploader"]:
            try:
                entry = pwd.getpwnam(self.p["uploader"])
            except KeyError:
                raise ReceiveError("uploader %s does not exist on the host" % self.p["uploader"],
                                   _errors.INVALID_ARGUMENT)
            uid, gid = entry.pw_uid, entry.pw_gid
        os.makedirs(parent, 0o755, exist_ok=True)
        try:
            fd = _fs.open_dir(parent, name, create=True, mode=0o700)
        except _fs.Refused as exc:
            raise ReceiveError("%s: remove it (rm removes a link itself) and run again" % exc, _errors.UNSAFE_CACHE)
        try:
            os.fchmod(fd, 0o700)
            if uid != -1 and os.fstat(fd).st_uid != uid:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)

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
                    received = self.unpack(chunks, stream.get("blobs") or [])
                except _carry.CarryError as exc:
                    # A chunk that is missing or short is the transfer's: keep the others for the next run.
                    keep = exc.kind == _errors.INCOMPLETE
                    raise ReceiveError(str(exc), exc.kind, corrupt_files=[list(f) for f in exc.files])
                blobs_from = os.path.join(self.staging, BLOBS)
            for model in self.p["models"]:
                self.results.append(self.run_model(model, check=False, blobs_from=blobs_from))
        finally:
            if not keep:
                self.remove_staging()
        return {"models": self.results, "received_bytes": received,
                "changed": any(r.get("changed") for r in self.results)}

    def unpack(self, chunks, blobs):
        try:
            staging_fd = os.open(self.staging, _fs.DIR_FLAGS)
        except FileNotFoundError:
            raise _carry.CarryError("staging_dir %s does not exist: the transfer did not happen; run again"
                                    % self.staging, _errors.INCOMPLETE)
        except OSError as exc:
            raise _carry.CarryError("staging_dir %s is not a directory (%s): remove it and run again"
                                    % (self.staging, exc), _errors.UNSAFE_CACHE)
        try:
            _fs.rmtree_at(self.staging, BLOBS)
            os.mkdir(BLOBS, 0o700, dir_fd=staging_fd)
            dest_fd = os.open(BLOBS, _fs.DIR_FLAGS, dir_fd=staging_fd)
            try:
                return _carry.unpack(staging_fd, self.staging, chunks, blobs, dest_fd,
                                     os.path.join(self.staging, BLOBS))
            finally:
                os.close(dest_fd)
        finally:
            os.close(staging_fd)

    def remove_staging(self):
        parent, name = os.path.split(self.staging)
        try:
            _fs.rmtree_at(parent or "/", name)
        except OSError as exc:
            self.module.warn("could not remove %s: %s" % (self.staging, exc))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type="str", required=True, choices=["probe", "import"]),
            models=dict(type="list", elements="dict", required=True, options=dict(
                repo_id=dict(type="str", required=True),
                repo_type=dict(type="str", default="model", choices=["model", "dataset", "space"]),
                revision=dict(type="str", required=True),
                ref=dict(type="str"),
                listing=dict(type="dict", required=True),
                allow_patterns=dict(type="list", elements="str"),
                ignore_patterns=dict(type="list", elements="str"),
                link=dict(type="path"),
            )),
            staging_dir=dict(type="path", required=True),
            uploader=dict(type="str"),
            stream=dict(type="dict"),
            cache_dir=dict(type="path"),
            hf_home=dict(type="path"),
            dir_mode=dict(type="str"),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw", default="0644"),
            free_space_margin=dict(type="raw", default="1G"),
            shared_blobs=dict(type="bool", default=True),
            verify_checksums=dict(type="bool", default=True),
            retries=dict(type="int", default=5),
            timeout=dict(type="int", default=1800),
        ),
        supports_check_mode=True,
    )
    if _snapshot.HF_IMPORT_ERROR:
        _errors.fail(module, _errors.MISSING_LIBRARY,
                     missing_required_lib("huggingface_hub", reason="to take Hub snapshots into the cache") +
                     " Install it for %s, or point ansible_python_interpreter at a venv that has it."
                     % sys.executable, exception=_snapshot.HF_IMPORT_ERROR)
    unsupported = _library.check()
    if unsupported:
        _errors.fail(module, _errors.MISSING_LIBRARY, unsupported)
    if not os.path.isabs(module.params["staging_dir"]):
        _errors.fail(module, _errors.INVALID_ARGUMENT, "staging_dir must be an absolute path")
    receiver = Receiver(module)
    try:
        if module.params["phase"] == "probe":
            result = receiver.probe()
        else:
            if module.check_mode:
                _errors.fail(module, _errors.INVALID_ARGUMENT, "phase=import does not run in check mode")
            result = receiver.take_in()
    except ReceiveError as exc:
        _errors.fail(module, exc.kind, exc.msg, models=receiver.results,
                     changed=any(r.get("changed") for r in receiver.results), **exc.extra)
    except _carry.CarryError as exc:
        _errors.fail(module, exc.kind, str(exc), models=receiver.results, corrupt_files=[list(f) for f in exc.files])
    except OSError as exc:
        _errors.fail(module, _errors.DISK_FULL if exc.errno == 28 else _errors.OTHER,
                     "%s: %s" % (receiver.staging, exc), models=receiver.results)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
