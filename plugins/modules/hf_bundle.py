#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_bundle
short_description: Write a bundle of Hugging Face snapshots for hosts without the Hub
version_added: 0.1.0
description:
  - A bundle is one plain tar file (safetensors do not compress) holding a manifest and the blobs of one or more
    snapshots of a C(huggingface_hub) cache. The manifest gives its format version and, per model, the
    repository, revision, ref, commit, the file listing that M(justnews.huggingface.hf_snapshot) accepts in its
    O(justnews.huggingface.hf_snapshot#module:listing) option, and per file its path, blob, size and SHA-256.
  - This module writes a bundle from snapshots already in a cache (fetch them with
    M(justnews.huggingface.hf_snapshot) first). Each blob is checked against its object id while it is read,
    and hashed again while it is written.
  - A blob that Xet downloads left as a link into the cache-wide shared store (C(<cache>/blobs/<2 hex>/<xet
    hash>)) is read from its store entry, only when the link has exactly the library's form and nothing on the
    way is a symlink, and bundled as its content; carried to a host by M(justnews.huggingface.hf_carry), it
    joins the host's shared store again under the Xet hash computed from it.
  - The same models give the same bytes; a bundle that already holds them is left untouched, once it is read
    whole and its manifest agrees with every member (as M(justnews.huggingface.hf_bundle_info) checks it);
    otherwise it is written again, with a warning. A new bundle is written next to O(path) and renamed into
    place.
  - O(path), when it exists, is opened without following a symlink and without blocking, and must be a regular
    file - a FIFO, a device, a directory or a symlink fails at once with RV(error_kind=invalid_argument).
  - M(justnews.huggingface.hf_bundle_info) reads a bundle's manifest; M(justnews.huggingface.hf_carry) takes the
    blobs a host lacks out of it.
author:
  - JustNews maintainers (@justnews)
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.attributes.actiongroup_cache
  - justnews.huggingface.model_cache
attributes:
  check_mode:
    support: full
    details:
      - Tells whether the bundle would be written; blobs not yet in the cache count as a change unless the bundle
        already holds them.
  diff_mode:
    support: full
    details:
      - Shows the models (repository and commit) of the bundle, before and after.
  idempotent:
    support: full
    details:
      - A bundle that already holds the same models is not written again.
options:
  path:
    description: The bundle file to write.
    type: path
    required: true
  cache_dir:
    description: The hub cache that holds the snapshots of O(snapshots).
    type: path
    required: true
  snapshots:
    description:
      - The snapshots to put in the bundle, each a dict as a M(justnews.huggingface.hf_snapshot) run returns it,
        with C(repo_id) and the revision asked for added - the keys C(repo_id) (required), C(repo_type) (default
        C(model)), C(revision) (what deployments match against), C(ref), C(commit) (required), C(listing)
        (required) and C(files) (the files to include, default all of the listing) are read; other keys are
        ignored.
      - The results registered by a loop of M(justnews.huggingface.hf_snapshot) over C(model_cache_models) can be
        passed as they are; C(repo_id), C(repo_type) and C(revision) then come from each result's C(item).
    type: list
    elements: dict
    required: true
  mode:
    description: Permissions of the bundle file, in octal.
    type: raw
    default: '0644'
notes:
  - The bundle is a plain tar (PAX format) with fixed member metadata (owner 0, mode 0644, time 0), so it can be
    checked with C(tar -tvf) and copied with any tool; its checksum changes only when the models do.
seealso:
  - module: justnews.huggingface.hf_bundle_info
    description: Reads and checks a bundle's manifest, and returns the entries of the models the hosts need.
  - module: justnews.huggingface.hf_carry
    description: Carries the blobs each host lacks out of a bundle, as one resumable stream.
  - module: justnews.huggingface.hf_snapshot
    description: Fetches the snapshots into the build cache first; its results are what O(snapshots) takes.
"""

EXAMPLES = r"""
- name: Fetch the model into a build cache
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    revision: main
    cache_dir: /srv/build-cache/hub
  register: minilm

- name: Write the bundle
  justnews.huggingface.hf_bundle:
    path: /srv/bundles/models.tar
    cache_dir: /srv/build-cache/hub
    snapshots:
      - "{{ minilm | combine({'repo_id': 'sentence-transformers/all-MiniLM-L6-v2', 'revision': 'main'}) }}"
"""

RETURN = r"""
path:
  description: The bundle file.
  returned: always
  type: str
  sample: /srv/bundles/models.tar
format_version:
  description: Format version of the bundle's manifest.
  returned: success
  type: int
  sample: 1
models:
  description: The repositories and commits written (C(repo_id), C(repo_type), C(revision), C(ref), C(commit)).
  returned: success
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "repo_type": "model", "revision": "main",
            "ref": "main", "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"}]
size:
  description: Bytes of the bundle file (in check mode, of the file that would be written, when it is known).
  returned: success
  type: int
  sample: 91017216
bad_files:
  description: On failure, the files (C(repo_id) and C(path)) whose blob was missing or altered in the cache.
  returned: on failure, when the error concerns files
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "path": "model.safetensors"}]
error_kind:
  description:
    - On failure, the cause - V(invalid_argument) (also O(path) that is not a regular file), V(incomplete) (the
      build cache lacks a blob), V(integrity) (a blob of the build cache does not match its id), V(not_in_bundle),
      V(corrupt_bundle), V(unsafe_bundle), V(other).
  returned: on failure
  type: str
  sample: integrity
fix:
  description:
    - On failure, what to do about RV(error_kind), the same text for every failure of that kind (C(msg) names the
      file or path). It names the options to change, each followed by the variable of the role
      justnews.huggingface.model_cache that sets it.
  returned: on failure
  type: str
  sample: "correct the option that the message names (through the role: the model's entry in model_cache_models, or
    the model_cache_ variable that sets the option)"
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _bundle
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs


def build(module, p, result):
    if not p["cache_dir"] or not p["snapshots"]:
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "cache_dir and snapshots are needed")
    try:
        mode = int(p["mode"], 8) if isinstance(p["mode"], str) else int(p["mode"])
    except ValueError:
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "mode must be octal, such as '0644', got %r" % (p["mode"],))
    if mode & ~0o777:
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "mode must be plain permission bits, got %r" % (p["mode"],))
    try:
        models = [_bundle.model_entry(s) for s in p["snapshots"]]
    except _names.UnsafeName as exc:
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "%s: pass the results of justnews.huggingface.hf_snapshot" % exc)
    table = _bundle.blob_table(models)
    path = p["path"]
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise _errors.Failure(_errors.INVALID_ARGUMENT, "the directory of %s does not exist: create it first" % path)
    old = None
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "%s is %s, not a regular file: give the path of the bundle file itself (it is"
                              " replaced only when it is a bundle)" % (path, _fs.describe(os.lstat(path).st_mode)))
    if os.path.lexists(path):
        try:
            old = _bundle.read_manifest(path, whole=True)  # a manifest that lies about a member is rebuilt
        except _errors.Failure as exc:
            module.warn("%s will be replaced: %s" % (path, exc))
    before = [m["repo_id"] + "@" + m["commit"] for m in (old or {}).get("models", [])]
    after = [m["repo_id"] + "@" + m["commit"] for m in models]
    result.update(models=[{"repo_id": m["repo_id"], "repo_type": m["repo_type"], "revision": m["revision"],
                           "ref": m["ref"], "commit": m["commit"]} for m in models],
                  format_version=_bundle.FORMAT_VERSION, diff={"before": {"models": before}, "after": {"models": after}})
    want_members = [(_bundle.MANIFEST, None)] + [(_bundle.member_name(b), table[b]["size"]) for b in sorted(table)]
    if old is not None and _bundle.identity(old) == _bundle.identity({"models": models}):
        have = _bundle.members(path)
        if have is not None and [(n, s if n != _bundle.MANIFEST else None) for n, s in have] == want_members:
            fd = _bundle.open_regular(path)
            try:
                st = os.fstat(fd)
                result["size"] = st.st_size
                if (st.st_mode & 0o777) != mode:
                    result["changed"] = True
                    if not module.check_mode:
                        os.fchmod(fd, mode)
            finally:
                os.close(fd)
            return
    result["changed"] = True
    repos = {m["repo_id"]: _cache.RepoCache(p["cache_dir"], m["repo_id"], m["repo_type"]) for m in models}
    blob_paths = {}
    for blob, info in sorted(table.items()):
        repo_id = info["files"][0][0]
        blob_paths[blob] = repos[repo_id].blob_path(blob)
        if module.check_mode and not repos[repo_id].has_blob(blob):
            continue
        info["sha256"], _size = _bundle.hash_blob(blob_paths[blob], blob, info["files"], p["cache_dir"])
    if module.check_mode:
        return
    for model in models:
        for f in model["files"]:
            f["sha256"] = table[f["blob"]]["sha256"]
    manifest = {"format": _bundle.FORMAT, "format_version": _bundle.FORMAT_VERSION, "models": models}
    _bundle.write_archive(path, manifest, blob_paths, mode, p["cache_dir"])
    result["size"] = os.path.getsize(path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            cache_dir=dict(type="path", required=True),
            snapshots=dict(type="list", elements="dict", required=True),
            mode=dict(type="raw", default="0644"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "path": p["path"]}
    _bundle.run(module, lambda: build(module, p, result), result, "writing the bundle failed on %s: %s")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
