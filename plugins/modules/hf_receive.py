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
    missing (outside check mode) it prepares the folder the chunks of their stream are written to,
    C(<staging_dir>/<stream id>), and reports the chunks of an earlier, dropped transfer that it already holds
    there, with their size and SHA-256, so that only the others are sent again.
  - O(staging_dir) must be reached from C(/) through real folders (no link), each owned by root and writable by no
    other user (a sticky folder such as C(/tmp) may be on the way), and lie outside O(cache_dir) and O(hf_home),
    which the agents' user owns; otherwise the module fails with V(unsafe_cache) before anything is written. It is
    made when missing (root's, mode C(0700), or C(0711) so that O(uploader) can pass through).
  - The stream's folder C(<staging_dir>/<stream id>) is made with C(mkdir) for the stream, owned by O(uploader),
    mode C(0700). An existing one is kept (a resumed transfer) only when it is a real folder of O(uploader), mode
    C(0700), holding only chunk files of the stream, each a regular file with one link; anything else there is
    removed (never followed, chowned or chmodded) and the folder made anew.
  - O(phase=import) checks the chunks of O(stream) (each of its size, none a link, a hard link or a special file,
    before a byte is read; each of its SHA-256, in a thread of its own while the stream is unpacked), reads them as
    one tar stream and unpacks every member into C(<staging_dir>/<stream id>.blobs) - only plain regular files
    named C(blobs/<object id>) for one of the blobs sent, once each, of their size, whose content matches the id
    (SHA-256, or the git blob id, computed as the member is written). Links, devices, sparse members, other names
    and duplicates are refused. Each model is then taken into the cache as M(justnews.huggingface.hf_snapshot) does
    with O(justnews.huggingface.hf_snapshot#module:blobs_from); a blob that only one model lists moves in by a
    rename when O(staging_dir) is on the cache's filesystem (it was checked as it was written into that root-only
    folder, and its Xet hash is computed there), any other is copied and checked against its id again. Then
    O(staging_dir) is removed.
  - O(phase=discard) removes what the host holds of the stream O(stream_id), and O(staging_dir) when that leaves
    it empty.
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
      - O(phase=probe) writes nothing in check mode. O(phase=import) and O(phase=discard) are not run in check mode
        by hf_carry.
  diff_mode:
    support: full
    details:
      - Each model's result carries the diff of M(justnews.huggingface.hf_snapshot).
  idempotent:
    support: full
options:
  phase:
    description:
      - V(probe) works out what each model lacks; V(import) unpacks O(stream) and takes the models in; V(discard)
        removes what the host holds of the stream O(stream_id).
    type: str
    choices: [probe, import, discard]
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
      - Folder of root's in which each stream of chunks gets a folder of its own, C(<stream id>), and the blobs are
        unpacked before they move into the cache; best on the filesystem of O(cache_dir). Removed after the import
        phase.
      - Every folder from C(/) to it must be a real folder (not a link) of root's that no other user can write, and
        it must lie outside O(cache_dir) and O(hf_home) - such as C(/var/lib/justnews-huggingface/incoming).
    type: path
    required: true
  uploader:
    description:
      - User that writes the chunks (the connection's user when the module runs with become); the stream's
        folder is made theirs. Unset leaves it to the module's user.
    type: str
  chunk_size:
    description: With O(phase=probe), the size in bytes of the chunks the stream will be cut into (it names the stream).
    type: int
    default: 67108864
    version_added: 0.1.1
  stream_id:
    description: With O(phase=discard), the stream (16 hex characters) whose folders are removed.
    type: str
    version_added: 0.1.1
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
    hf_home: /var/cache/hf
    staging_dir: /var/lib/justnews-huggingface/incoming
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
  description: With O(phase=probe), the chunks of the stream already in its folder (name, size, sha256).
  returned: when O(phase=probe)
  type: list
  elements: dict
stream_id:
  description:
    - With O(phase=probe) when blobs are missing, the stream's id; its chunks go to C(<staging_dir>/<stream_id>).
  returned: when O(phase=probe) and blobs are missing
  type: str
  sample: 3f0c2b9a7d1e4c55
  version_added: 0.1.1
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _carry
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _receive
from ansible_collections.justnews.huggingface.plugins.module_utils import _snapshot


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type="str", required=True, choices=["probe", "import", "discard"]),
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
            chunk_size=dict(type="int", default=_carry.DEFAULT_CHUNK),
            stream_id=dict(type="str"),
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
    _snapshot.require_library(module, "to take Hub snapshots into the cache")
    if not os.path.isabs(module.params["staging_dir"]):
        _errors.fail(module, _errors.INVALID_ARGUMENT, "staging_dir must be an absolute path")
    receiver = None
    try:
        receiver = _receive.Receiver(module)
        phase = module.params["phase"]
        if phase != "probe" and module.check_mode:
            _errors.fail(module, _errors.INVALID_ARGUMENT, "phase=%s does not run in check mode" % phase)
        if phase == "probe":
            result = receiver.probe()
        elif phase == "import":
            result = receiver.take_in()
        else:
            result = receiver.discard()
    except _errors.Failure as exc:
        results = receiver.results if receiver else []
        extra = {}
        if "model" not in exc.extra:  # a failure of the stream, not of a model's snapshot
            extra = dict(corrupt_files=[list(f) for f in exc.extra.pop("files", [])])
            exc.extra.pop("discard", None)
        _errors.fail_with(module, exc, models=results, changed=any(r.get("changed") for r in results), **extra)
    except OSError as exc:
        _errors.fail(module, _errors.DISK_FULL if exc.errno == 28 else _errors.OTHER,
                     "%s: %s" % (module.params["staging_dir"], exc), models=receiver.results if receiver else [])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
