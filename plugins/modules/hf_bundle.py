#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_bundle
short_description: Write, read and unpack bundles of Hugging Face snapshots for hosts without the Hub
version_added: 0.1.0
description:
  - A bundle is one plain tar file (safetensors do not compress) holding a manifest and the blobs of one or more
    snapshots of a C(huggingface_hub) cache. The manifest gives its format version and, per model, the
    repository, revision, ref, commit, the file listing that M(justnews.huggingface.hf_snapshot) accepts in its
    O(justnews.huggingface.hf_snapshot#module:listing) option, and per file its path, blob, size and SHA-256.
  - O(operation=build) writes a bundle from snapshots already in a cache (fetch them with
    M(justnews.huggingface.hf_snapshot) first). Each blob is checked against its object id while it is read,
    and hashed again while it is written.
  - A blob that Xet downloads left as a link into the cache-wide shared store (C(<cache>/blobs/<2 hex>/<xet
    hash>)) is read from its store entry, only when the link has exactly the library's form and nothing on the
    way is a symlink, and bundled as its content; staged and taken in by M(justnews.huggingface.hf_snapshot), it
    joins the host's shared store again under the Xet hash computed from it.
    The same models give the same bytes; a bundle that already holds them is left untouched. A new bundle is
    written next to O(path) and renamed into place.
  - O(operation=inspect) reads and checks the manifest and, with O(models), returns for each model the entry
    that M(justnews.huggingface.hf_snapshot) needs (commit, ref, listing).
  - O(operation=stage) copies blobs out of a bundle into a staging directory, for
    M(justnews.huggingface.hf_snapshot) to take in with O(justnews.huggingface.hf_snapshot#module:blobs_from).
    The archive is untrusted - every member must be a plain regular file named by the manifest (no link, device,
    sparse member or C(GNU.sparse) header, absolute or C(..) name), and before a byte is written the blobs the
    manifest declares must fit in the archive file itself and the needed ones, plus O(free_space_margin), in the
    free space of the staging folder. Each needed member is counted and hashed (size, SHA-256 and object id)
    before it is renamed into the staging folder, and any mismatch removes what this run created there (never a
    file that was there before) and fails naming the repository and file. The archive is never extracted by name.
  - O(path) is opened without following a symlink and without blocking, and must be a regular file - a FIFO, a
    device, a directory or a symlink fails at once with RV(error_kind=invalid_argument).
  - O(operation=unstage) removes a staging folder that O(operation=stage) made in O(staging_parent).
author:
  - JustNews maintainers (@justnews)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - With O(operation=build), tells whether the bundle would be written; blobs not yet in the cache count as a
        change unless the bundle already holds them.
      - With O(operation=stage), reads and checks every needed member and the free space, and writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - With O(operation=build), shows the models (repository and commit) of the bundle, before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
    details:
      - A bundle that already holds the same models is not written again. O(operation=stage) reports a change
        whenever it staged a blob.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
options:
  operation:
    description:
      - V(build) writes the bundle at O(path) from O(snapshots) in O(cache_dir).
      - V(inspect) reads the manifest of O(path); with O(models) it matches each model to its entry.
      - V(stage) copies the blobs in O(blobs) (all of the bundle when unset) out of O(path) into O(dest), or into
        a new folder in O(staging_parent).
      - V(unstage) removes the folder O(dest) that V(stage) made in O(staging_parent), with the files in it.
    type: str
    choices: [build, inspect, stage, unstage]
    required: true
  path:
    description:
      - The bundle file. Needed by V(build), V(inspect) and V(stage).
    type: path
  cache_dir:
    description:
      - With O(operation=build), the hub cache that holds the snapshots of O(snapshots).
    type: path
  snapshots:
    description:
      - With O(operation=build), the snapshots to put in the bundle, each a dict as a
        M(justnews.huggingface.hf_snapshot) run returns it, with C(repo_id) and the revision asked for added - the
        keys C(repo_id) (required), C(repo_type) (default C(model)), C(revision) (what deployments match against),
        C(ref), C(commit) (required), C(listing) (required) and C(files) (the files to include, default all of
        the listing) are read; other keys are ignored.
      - The results registered by a loop of M(justnews.huggingface.hf_snapshot) over C(model_cache_models) can be
        passed as they are; C(repo_id), C(repo_type) and C(revision) then come from each result's C(item).
    type: list
    elements: dict
  models:
    description:
      - With O(operation=inspect), entries of C(model_cache_models) (C(repo_id), C(repo_type), C(revision),
        C(ref)); each must be in the bundle, matched by repository and by revision or commit.
    type: list
    elements: dict
  blobs:
    description:
      - With O(operation=stage), the blobs to copy out, as object ids or as the dicts of
        RV(justnews.huggingface.hf_snapshot#module:missing_blobs) (their C(name) is used). Unset stages every
        blob of the bundle.
    type: list
    elements: raw
  dest:
    description:
      - With O(operation=stage), the staging directory, which must exist (not as a symlink) and should be
        readable only by root. Blobs are written there under their object id, nothing else and nowhere else. A
        file already there is never removed; one with a needed blob's name is replaced by the checked copy.
      - With O(operation=unstage), the folder to remove, RV(dest) of the O(operation=stage) run that made it.
    type: path
  staging_parent:
    description:
      - With O(operation=stage), instead of O(dest) - a folder in which the run makes a new staging folder of its
        own (mode 0700, returned in RV(dest)), on the filesystem where the blobs go next so that the free-space
        check counts the right disk. A failed run removes it; remove it with O(operation=unstage) once the blobs
        are taken in.
    type: path
  free_space_margin:
    description:
      - With O(operation=stage), free space that must remain in the staging folder's filesystem after the needed
        blobs (their sizes as the manifest declares them). Checked before a byte is written; the run fails with
        RV(error_kind=no_space) otherwise.
      - Bytes as an integer, or a size such as V(512M) or V(1G) (K, M, G and T are powers of 1024). V(0) leaves
        only the blobs' own size to check.
    type: raw
    default: 64M
  mode:
    description: With O(operation=build), permissions of the bundle file, in octal.
    type: raw
    default: '0644'
notes:
  - The bundle is a plain tar (PAX format) with fixed member metadata (owner 0, mode 0644, time 0), so it can be
    checked with C(tar -tvf) and copied with any tool; its checksum changes only when the models do.
  - Staging needs room for the needed blobs in O(dest); M(justnews.huggingface.hf_snapshot) then copies each into
    the cache, checking it against its id once more.
seealso:
  - module: justnews.huggingface.hf_snapshot
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
    operation: build
    path: /srv/bundles/models.tar
    cache_dir: /srv/build-cache/hub
    snapshots:
      - "{{ minilm | combine({'repo_id': 'sentence-transformers/all-MiniLM-L6-v2', 'revision': 'main'}) }}"

- name: What the bundle holds for one model
  justnews.huggingface.hf_bundle:
    operation: inspect
    path: /srv/bundles/models.tar
    models:
      - repo_id: sentence-transformers/all-MiniLM-L6-v2
        revision: main
  register: bundle

- name: Stage every blob of the bundle on the host, checked
  justnews.huggingface.hf_bundle:
    operation: stage
    path: /var/cache/hf/.incoming/bundle.tar
    dest: /var/cache/hf/.incoming

- name: Move them into the cache
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    revision: "{{ bundle.models[0].commit }}"
    ref: "{{ bundle.models[0].ref }}"
    listing: "{{ bundle.models[0].listing }}"
    blobs_from: /var/cache/hf/.incoming
    cache_dir: /var/cache/hf/hub
"""

RETURN = r"""
path:
  description: The bundle file.
  returned: when O(path) is given
  type: str
  sample: /srv/bundles/models.tar
format_version:
  description: Format version of the bundle's manifest.
  returned: when a manifest was read or written
  type: int
  sample: 1
models:
  description:
    - With O(operation=inspect) and O(models), per model in that order - C(item) (the model as given), C(repo_id),
      C(repo_type), C(revision), C(commit), C(ref), C(listing), C(files) and C(bytes); without O(models), the
      manifest's entries. With O(operation=build), the repositories and commits written.
  returned: with O(operation=inspect) and O(operation=build)
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
            "ref": "main"}]
size:
  description: Bytes of the bundle file (with O(operation=build) in check mode, of the file that would be written).
  returned: with O(operation=build) and O(operation=inspect)
  type: int
  sample: 91017216
staged:
  description: Object ids of the blobs staged into O(dest) (in check mode, checked only).
  returned: with O(operation=stage)
  type: list
  elements: str
  sample: ["53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"]
staged_bytes:
  description: Bytes of the blobs in RV(staged).
  returned: with O(operation=stage)
  type: int
  sample: 90868376
dest:
  description: The staging folder that the run made in O(staging_parent).
  returned: with O(operation=stage) and O(staging_parent), when the folder was made
  type: str
  sample: /srv/images/agent/rootfs/var/cache/hf/.hf-bundle-stage-0f3a9c2b4d1e
bad_files:
  description: On failure, the files (C(repo_id) and C(path)) whose member was missing, altered or corrupt.
  returned: on failure, when the error concerns files
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "path": "model.safetensors"}]
error_kind:
  description:
    - On failure, the cause - V(invalid_argument) (also O(path) that is not a regular file), V(incomplete) (the
      build cache lacks a blob), V(integrity) (a blob of the build cache does not match its id), V(not_in_bundle),
      V(corrupt_bundle) (the archive is truncated, declares more blob bytes than it holds, or a member's size or
      checksum or the manifest does not match), V(unsafe_bundle) (a link, special file, sparse member or a name the
      manifest does not give), V(no_space) (the needed blobs plus O(free_space_margin) do not fit in the staging
      folder; checked before anything is written), V(disk_full) (the staging folder's filesystem filled up while
      staging), V(other).
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
  sample: "nothing was taken from it: copy the bundle 'path' (model_cache_bundle) again from where it was built, or
    build it again"
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _bundle
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs


def build(module, p, result):
    if not p["cache_dir"] or not p["snapshots"]:
        raise _bundle.BundleError("operation=build needs cache_dir and snapshots", _errors.INVALID_ARGUMENT)
    try:
        mode = int(p["mode"], 8) if isinstance(p["mode"], str) else int(p["mode"])
    except ValueError:
        raise _bundle.BundleError("mode must be octal, such as '0644', got %r" % (p["mode"],), _errors.INVALID_ARGUMENT)
    if mode & ~0o777:
        raise _bundle.BundleError("mode must be plain permission bits, got %r" % (p["mode"],), _errors.INVALID_ARGUMENT)
    try:
        models = [_bundle.model_entry(s) for s in p["snapshots"]]
    except _cache.UnsafeName as exc:
        raise _bundle.BundleError("%s: pass the results of justnews.huggingface.hf_snapshot" % exc,
                                  _errors.INVALID_ARGUMENT)
    table = _bundle.blob_table(models)
    path = p["path"]
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise _bundle.BundleError("the directory of %s does not exist: create it first" % path,
                                  _errors.INVALID_ARGUMENT)
    old = None
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise _bundle.BundleError("%s is %s, not a regular file: give the path of the bundle file itself (it is"
                                  " replaced only when it is a bundle)" % (path, _fs.describe(os.lstat(path).st_mode)),
                                  _errors.INVALID_ARGUMENT)
    if os.path.lexists(path):
        try:
            old = _bundle.read_manifest(path)
        except _bundle.BundleError as exc:
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


def inspect(p, result):
    manifest = _bundle.read_manifest(p["path"])
    result.update(format_version=manifest["format_version"], size=os.path.getsize(p["path"]))
    if p["models"] is not None:
        result["models"] = _bundle.match_models(manifest, p["models"], p["path"])
    else:
        result["models"] = [{k: m[k] for k in ("repo_id", "repo_type", "revision", "ref", "commit", "listing")}
                            for m in manifest["models"]]


def stage(module, p, result):
    if bool(p["dest"]) == bool(p["staging_parent"]):
        raise _bundle.BundleError("operation=stage needs dest (the staging directory) or staging_parent (where a new"
                                  " staging folder is made), one of them", _errors.INVALID_ARGUMENT)
    try:
        margin = _cache.parse_size(p["free_space_margin"])
    except ValueError:
        raise _bundle.BundleError("free_space_margin must be bytes (an integer >= 0) or a size such as '512M' or"
                                  " '1G', got %r" % (p["free_space_margin"],), _errors.INVALID_ARGUMENT)
    needed = None
    if p["blobs"] is not None:
        needed = []
        for blob in p["blobs"]:
            name = blob.get("name") if isinstance(blob, dict) else blob
            if not (isinstance(name, str) and _cache.BLOB_RE.match(name)):
                raise _bundle.BundleError("blobs must be object ids (or dicts with name), got %r" % (blob,),
                                          _errors.INVALID_ARGUMENT)
            needed.append(name)
    if needed is None:
        needed = sorted(_bundle.blob_table(_bundle.read_manifest(p["path"])["models"]))
    dest, dest_fd = p["dest"], None
    if p["staging_parent"]:
        if module.check_mode:
            dest = p["staging_parent"]
        else:
            # a folder of this run: removed whole when staging fails, by operation=unstage once taken in
            dest, dest_fd = _bundle.make_staging(p["staging_parent"])
            result["dest"] = dest
    try:
        manifest, written = _bundle.stage(p["path"], dest, set(needed), write=not module.check_mode, margin=margin,
                                          dest_fd=dest_fd)
    except BaseException:
        if dest_fd is not None:
            os.close(dest_fd)
            dest_fd = None
            _bundle.remove_staging(dest)
            result.pop("dest", None)
        raise
    finally:
        if dest_fd is not None:
            os.close(dest_fd)
    result.update(format_version=manifest["format_version"], staged=sorted(written),
                  staged_bytes=sum(written.values()), changed=bool(written) or "dest" in result)


def unstage(module, p, result):
    if module.check_mode:
        result["changed"] = os.path.lexists(p["dest"])
    else:
        result["changed"] = _bundle.remove_staging(p["dest"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            operation=dict(type="str", required=True,
                           choices=["build", "inspect", "stage", "unstage"]),
            path=dict(type="path"),
            cache_dir=dict(type="path"),
            snapshots=dict(type="list", elements="dict"),
            models=dict(type="list", elements="dict"),
            blobs=dict(type="list", elements="raw"),
            dest=dict(type="path"),
            mode=dict(type="raw", default="0644"),
            staging_parent=dict(type="path"),
            free_space_margin=dict(type="raw", default="64M"),
        ),
        required_if=[("operation", "build", ["path"]), ("operation", "inspect", ["path"]),
                     ("operation", "stage", ["path"]),
                     ("operation", "unstage", ["dest"])],
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    if p["path"]:
        result["path"] = p["path"]
    try:
        if p["operation"] == "build":
            build(module, p, result)
        elif p["operation"] == "inspect":
            inspect(p, result)
        elif p["operation"] == "stage":
            stage(module, p, result)
        else:
            unstage(module, p, result)
    except _bundle.BundleError as exc:
        result.update(changed=False)
        result.pop("diff", None)
        if exc.files:
            result["bad_files"] = [{"repo_id": r, "path": f} for r, f in exc.files]
        _errors.fail(module, exc.kind, str(exc), **result)
    except _cache.UnsafeName as exc:
        result.update(changed=False)
        _errors.fail(module, _errors.INVALID_ARGUMENT, "%s: fix the argument" % exc, **result)
    except OSError as exc:
        result.update(changed=False)
        _errors.fail(module, _errors.OTHER, "%s failed on %s: %s" % (p["operation"], exc.filename or p["path"], exc),
                     **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
