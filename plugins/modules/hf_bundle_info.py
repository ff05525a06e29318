#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_bundle_info
short_description: Read and check the manifest of a bundle of Hugging Face snapshots
version_added: 0.1.0
description:
  - Reads the manifest of a bundle written by M(justnews.huggingface.hf_bundle) and checks it - its format
    version, every repository, commit, ref, file name, blob id, size and SHA-256, and its agreement with each
    model's listing. A bundle comes from a build host and is untrusted.
  - With O(members) (the default), then reads the whole bundle once and checks the manifest against the members
    it describes - each member a
    plain regular file named after a blob of the manifest, there once, and each blob of the manifest there; each
    member's size, object id (its SHA-256, or its git blob id) and SHA-256 those of the manifest. A member of
    another size or whose bytes do not match its object id fails with RV(error_kind=corrupt_bundle) (the bundle
    is truncated or damaged); one whose bytes match its id but not the manifest's SHA-256 with
    RV(error_kind=integrity) (the manifest contradicts the content); each naming the member, the field and the
    files. This reads every byte of the bundle.
  - With O(models), returns for each model the entry that M(justnews.huggingface.hf_carry) and
    M(justnews.huggingface.hf_snapshot) need (commit, ref, listing); a model the bundle does not hold fails with
    RV(error_kind=not_in_bundle), naming it and what the bundle holds.
  - O(path) is opened without following a symlink and without blocking, and must be a regular file - a FIFO, a
    device, a directory or a symlink fails at once with RV(error_kind=invalid_argument).
  - M(justnews.huggingface.hf_carry) checks each member it takes out in the same way again.
author:
  - JustNews maintainers (@justnews)
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.info_module
  - justnews.huggingface.attributes.idempotent_not_modify_state
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.model_cache
options:
  path:
    description: The bundle file.
    type: path
    required: true
  models:
    description:
      - Entries of C(model_cache_models) (C(repo_id), C(repo_type), C(revision), C(ref)); each must be in the
        bundle, matched by repository and by revision or commit. Unset returns the manifest's entries.
    type: list
    elements: dict
  members:
    description:
      - Check every member's bytes against the manifest (see above). V(false) reads the manifest alone; the role
        sets it, since M(justnews.huggingface.hf_carry) checks each member it takes out the same way, so a warm run
        does not read the bundle whole.
    type: bool
    default: true
seealso:
  - module: justnews.huggingface.hf_bundle
    description: Writes the bundle this module reads.
  - module: justnews.huggingface.hf_carry
    description: Takes the blobs each host lacks out of the bundle, with the entries RV(models) returns.
  - module: justnews.huggingface.hf_snapshot
    description: Takes a model in with an entry's commit and listing, and its blobs in
      O(justnews.huggingface.hf_snapshot#module:blobs_from).
"""

EXAMPLES = r"""
- name: What the bundle holds for the models
  justnews.huggingface.hf_bundle_info:
    path: /srv/bundles/models.tar
    models:
      - repo_id: sentence-transformers/all-MiniLM-L6-v2
        revision: main
  delegate_to: localhost
  run_once: true
  register: bundle

- name: Carry them to every host, only the blobs each lacks
  justnews.huggingface.hf_carry:
    models: "{{ bundle.models }}"
    source: bundle
    bundle: /srv/bundles/models.tar
    cache_dir: /var/cache/hf/hub
    staging_dir: /var/lib/justnews-huggingface/incoming
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
size:
  description: Bytes of the bundle file.
  returned: success
  type: int
  sample: 91017216
models:
  description:
    - With O(models), per model in that order - C(item) (the model as given), C(repo_id), C(repo_type),
      C(revision), C(commit), C(ref), C(listing), C(files) and C(bytes).
    - Without O(models), the manifest's entries (C(repo_id), C(repo_type), C(revision), C(ref), C(commit),
      C(listing)).
  returned: success
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
            "ref": "main"}]
bad_files:
  description: On failure, the files (C(repo_id) and C(path)) that the manifest gets wrong.
  returned: on failure, when the error concerns files
  type: list
  elements: dict
  sample: [{"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "path": "config.json"}]
error_kind:
  description:
    - On failure, the cause - V(invalid_argument) (also O(path) that is not a regular file, or a bundle of another
      format version), V(not_in_bundle) (a model of O(models) is not in it), V(corrupt_bundle) (the archive or its
      manifest is damaged or altered), V(unsafe_bundle) (the manifest member is a link, a special file or a
      sparse member, or a member is not a blob of the manifest), V(integrity) (the manifest gives a member another
      SHA-256 than its bytes have), V(incomplete), V(other).
  returned: on failure
  type: str
  sample: not_in_bundle
fix:
  description:
    - On failure, what to do about RV(error_kind), the same text for every failure of that kind (C(msg) names the
      file or path).
  returned: on failure
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _bundle


def inspect(p):
    manifest = _bundle.read_manifest(p["path"], whole=p["members"])
    result = {"format_version": manifest["format_version"], "size": os.path.getsize(p["path"])}
    if p["models"] is not None:
        result["models"] = _bundle.match_models(manifest, p["models"], p["path"])
    else:
        result["models"] = [{k: m[k] for k in ("repo_id", "repo_type", "revision", "ref", "commit", "listing")}
                            for m in manifest["models"]]
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            models=dict(type="list", elements="dict"),
            members=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "path": p["path"]}
    _bundle.run(module, lambda: result.update(inspect(p)), result, "reading %s failed: %s")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
