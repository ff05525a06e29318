#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_prune
short_description: Remove old revisions and abandoned partial downloads from a Hugging Face hub cache
version_added: 0.1.0
description:
  - Prunes one repository of a C(huggingface_hub) cache (O(repo_id)), or every repository in O(cache_dir), so
    that the cache stays bounded as models move to new commits.
  - A revision (a folder C(snapshots/<commit>)) is kept when it is in O(pinned), when a name under C(refs/)
    points to it, when one of O(links) leads into it, when a running process has one of its files open (found
    in C(/proc/*/fd), C(/proc/*/maps) and C(/proc/*/cwd); entries that cannot be read are skipped), or when it
    is among the O(keep) most recent revisions of its repository. Every other revision is removed - its snapshot
    folder, its file listing under C(trees/), and the blobs that no remaining snapshot links to. Blobs shared
    with a kept revision stay.
  - A revision is more recent than another when its snapshot folder changed later (its modification time, set
    when its last file was linked in).
  - Also removes partial downloads (C(blobs/*.incomplete)) older than O(incomplete_age) whose download lock
    (C(<cache>/.locks/<repo folder>/<blob>.lock)) no process holds.
  - With C(huggingface_hub)'s shared blob store (files downloaded through Xet are kept once per cache in
    C(<cache>/blobs/<2 hex>/<xet hash>), and a repository's C(blobs/<etag>) is a link to that entry), removing a
    revision removes the repository's links; after every repository is pruned, the store entries that no link in
    any repository folder leads to any more are freed, with their C(.refs) manifest. Which entries are still used
    is decided from the links themselves (read, never followed), not from the C(.refs) manifests; each entry is
    freed under the library's own entry lock, and kept when a running process has it open. With O(repo_id),
    only the entries that this repository's removed links led to are freed.
  - Nothing outside the repository folders (C(<cache>/models--owner--name)) and the shared store
    (C(<cache>/blobs)) is ever removed. A repository whose folders (C(blobs), C(refs), C(snapshots), C(trees), a
    snapshot, or its C(.locks) folder) are symlinks or files is refused before anything is removed. A blob that is
    a link leading anywhere but into the store, a store entry or manifest that is not a regular file (a FIFO, a
    device, a symlink) is never opened or followed; it is left in place and reported in RV(refused) with a fix.
  - The cache belongs to the agents' user, who can plant links and special files in it at any moment. The module
    reaches every path below O(cache_dir) from a descriptor of a real folder, opening each component with
    C(O_NOFOLLOW); files are opened with C(O_NONBLOCK) and read only when C(fstat) says regular file. A ref that is
    a symlink, a FIFO, a device or larger than a ref can be, and a folder under C(refs/) that is a symlink, is never
    followed or read; it is reported in RV(refused), and every revision of that repository is kept (with the reason
    V(refs not safely readable)), since the prune cannot tell which one the ref names. A revision folder that is a
    symlink fails the run with V(unsafe_cache) before anything is removed; any other link among the snapshots is
    reported and left alone. Links inside a removed revision (and a listing that is a link) are removed as links,
    never their targets.
  - Removal is planned, then applied so that it can be undone - each removed revision's snapshot folder, its
    listing and the blobs that go are first renamed into C(<repo folder>/.hf_prune.trash) (the same filesystem, so
    each rename is atomic), then every entry in it is checked to be removable (renamed in place and back); on
    any failure so far everything is put back and the run fails with the cause's RV(error_kind) (V(not_writable)
    for an immutable file, a read-only mount or a permission, V(unsafe_cache) for a planted link), naming the path.
    Only then is the trash marked as committed and deleted. A trash left by a run that was killed is settled by
    the next run, under the repository's lock, before it plans - put back when it was not committed, deleted when
    it was - and reported in RV(recovered).
author:
  - JustNews maintainers (@justnews)
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.attributes.actiongroup_cache
  - justnews.huggingface.cache
  - justnews.huggingface.model_cache
attributes:
  check_mode:
    support: full
    details:
      - Lists the revisions, blobs, shared store entries and partial downloads that would be removed and the
        bytes that would be freed, and removes nothing.
  diff_mode:
    support: full
    details:
      - Shows the revisions and partial downloads of each repository, and the shared store entries that are
        freed, before and after.
  idempotent:
    support: full
  platform:
    details:
      - Files that running processes hold open are found in C(/proc) (Linux); where it cannot be read, no
        revision is kept for being open.
options:
  repo_id:
    description:
      - Repository to prune, as C(owner/name). Omit it to prune every repository in O(cache_dir).
    type: str
  repo_type:
    description: Kind of repository, with O(repo_id).
    type: str
    choices: [model, dataset, space]
    default: model
  keep:
    description:
      - How many of the most recent revisions to keep per repository, whatever protects them or not.
      - V(0) keeps only the protected revisions.
    type: int
    default: 1
  pinned:
    description:
      - Revisions never to remove - 40-character commits, or branch or tag names looked up under C(refs/) of
        each repository, for example the revisions the hosts are configured with.
    type: list
    elements: str
    default: []
  links:
    description:
      - Paths (usually the O(justnews.huggingface.hf_snapshot#module:link) of each model) whose target is
        kept - a link that resolves into a snapshot, or to a file in it, protects that revision. Paths that
        do not exist are ignored.
    type: list
    elements: path
    default: []
  incomplete_age:
    description:
      - Seconds since its last write after which a C(*.incomplete) file whose download lock is free counts as
        abandoned and is removed.
    type: int
    default: 3600
  timeout:
    description:
      - Seconds to wait for a running M(justnews.huggingface.hf_snapshot) on the same repository to finish
        before removing anything from it.
    type: int
    default: 600
notes:
  - Runs on a repository are serialised with M(justnews.huggingface.hf_snapshot) by the same lock; the plan is
    made again under the lock, and running processes are looked up again, before anything is removed.
  - A name under C(refs/) protects its revision; pin commits in the model's C(revision) so that the ref moves
    and the old revision can be pruned.
  - Processes in other mount namespaces (containers) see other paths; their open files are not recognised.
seealso:
  - module: justnews.huggingface.hf_snapshot
    description: Fetches the revisions; its O(justnews.huggingface.hf_snapshot#module:link) is what O(links)
      protects.
  - module: justnews.huggingface.hf_doctor
    description: Checks that the models the agents load are still complete after a prune.
"""

EXAMPLES = r"""
- name: Keep the configured revisions and the one before, in every repository of the cache
  justnews.huggingface.hf_prune:
    cache_dir: /var/cache/hf/hub
    keep: 2
    pinned:
      - c9745ed1d9f207416be6d2e6f8de32d1f16199bf
    links:
      - /opt/justnews/models/memory/all-MiniLM-L6-v2

- name: Show what pruning one repository would free
  justnews.huggingface.hf_prune:
    cache_dir: /var/cache/hf/hub
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    keep: 0
  check_mode: true
  register: prune

- name: Report it
  ansible.builtin.debug:
    msg: "{{ prune.freed_bytes }} bytes would be freed"
"""

RETURN = r"""
cache_dir:
  description: Hub cache directory pruned.
  returned: always
  type: str
  sample: /var/cache/hf/hub
removed_revisions:
  description: Revisions removed (in check mode, that would be).
  returned: always
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "repo_type": "model",
            "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"}]
kept:
  description: Revisions kept, each with the reasons (V(pinned), V(ref main), V(link /path),
    V(open by a running process), V(recent), V(refs not safely readable) - a ref of the repository is a link or a
    special file, see RV(refused)).
  returned: always
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "repo_type": "model",
            "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf", "reasons": ["ref main", "recent"]}]
removed_blobs:
  description: Blobs removed because no remaining snapshot links to them.
  returned: always
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "name": "58d4a9a45664eb9e12de9549c548c09b6134c17f",
            "size": 10659}]
removed_incomplete:
  description: Abandoned partial downloads removed.
  returned: always
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "file": "53aa5117.incomplete", "size": 4194304}]
removed_store_entries:
  description: Entries of the shared blob store freed because no link leads to them any more (in check mode,
    that would be), with their bytes.
  returned: always
  type: list
  elements: dict
  sample: [{"xet_hash": "53aa511730a1a9dbd2d3bd2ec36ec5a4b3a4e3ae7df93c3b0d5c7e4c2a0b9f11", "size": 90868376,
            "path": "/var/cache/hf/hub/blobs/53/53aa511730a1a9dbd2d3bd2ec36ec5a4b3a4e3ae7df93c3b0d5c7e4c2a0b9f11"}]
refused:
  description: What the prune left alone because it is not what C(huggingface_hub) makes - a ref or a folder under
    C(refs/) that is a link or a special file, a link among the snapshots, a revision folder that is a link (the run
    then fails), a blob linking outside the store, a store entry or manifest that is not a regular file, a manifest
    line naming something outside the repositories' blobs, a trash that was a link - each with the reason and the
    fix. Also given as warnings.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/var/cache/hf/hub/blobs/ab/ab12...", "reason": "store entry is a FIFO, not a regular file;
            never opened", "fix": "remove /var/cache/hf/hub/blobs/ab/ab12... by hand after finding out what made it"}]
freed_bytes:
  description: Bytes of the files removed (in check mode, that would be) - blobs, shared store entries, listings and
    partial downloads.
  returned: always
  type: int
  sample: 90878931
recovered:
  description: Trash folders that a run which stopped part-way left, settled before this run planned -
    V(restored) (put back; it had not reached the point of no return), V(finished) (deleted; it had), or
    V(removed) (it was not a folder but a link or a file, removed itself and never followed).
  returned: always
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "repo_type": "model", "action": "restored",
            "path": "/var/cache/hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/.hf_prune.trash"}]
error_kind:
  description:
    - On failure, the cause; the message names the path and the fix.
    - V(invalid_argument) - an option is wrong.
    - V(cache_dir_invalid) - O(cache_dir) is not a directory.
    - V(unsafe_cache) - a folder of a repository (C(blobs), C(refs), C(snapshots), C(trees), a revision, its
      C(.locks) folder or lock file) is a symlink or not a directory; nothing was removed from it. Also named in
      RV(refused).
    - V(locked) - a M(justnews.huggingface.hf_snapshot) run held the repository for the whole O(timeout).
    - V(not_writable) - a file or folder of a revision cannot be removed (immutable, append-only, on a read-only
      mount, a mount point, permissions); everything moved was put back, the revision is whole.
    - V(disk_full) - the filesystem had no room for the trash's bookkeeping; everything was put back.
    - V(partial_failure) - a removal failed and the trash could not be put back, or it failed past the point of no
      return; the message names the path and C(<repo folder>/.hf_prune.trash), which the next run settles.
    - V(other) - an error whose cause is not known.
  returned: on failure
  type: str
  sample: not_writable
fix:
  description:
    - On failure, what to do about RV(error_kind), the same text for every failure of that kind (C(msg) names the
      path). It names the options to change, each followed by the variable of the role
      justnews.huggingface.model_cache that sets it.
  returned: on failure
  type: str
  sample: "run with become: true, or make the path that the message names writable: its owner, a read-write mount,
    no immutable flag (chattr -i)"
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _prune


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cache_dir=dict(type="path"),
            repo_id=dict(type="str"),
            repo_type=dict(type="str", default="model", choices=["model", "dataset", "space"]),
            keep=dict(type="int", default=1),
            pinned=dict(type="list", elements="str", default=[]),
            links=dict(type="list", elements="path", default=[]),
            incomplete_age=dict(type="int", default=3600),
            timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    prune = None
    try:
        prune = _prune.Prune(module)
        result = prune.run()
    except _errors.Failure as failure:
        result = dict(prune.result if prune else {}, changed=prune.result["changed"] if prune else False)
        _errors.fail_with(module, failure, **result)
    except OSError as exc:
        kind = _prune.error_kind(exc)
        result = dict(prune.result if prune else {}, changed=bool(prune and prune.result["changed"]))
        where = module.params["cache_dir"] or "the hub cache"
        _errors.fail(module, kind, "cannot prune %s: %s. Fix: %s" % (where, exc, _errors.fix(kind)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
