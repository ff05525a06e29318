#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_carry
short_description: Carry Hugging Face snapshots from the controller to a host as one resumable stream
version_added: 0.1.0
description:
  - An action plugin. For every model of O(models) it works out on the host, in one call of
    M(justnews.huggingface.hf_receive), what the host's cache lacks, and when it lacks nothing and nothing else
    would change it returns at once - one round trip for a warm host.
  - Otherwise it writes the missing blobs, each once, as one tar stream on the controller, read from the
    controller's cache (O(source=controller)) or from the bundle O(bundle) (O(source=bundle)); every blob is
    checked against its object id (and, from a bundle, every member's name, type and size, and its SHA-256
    against the manifest's) before a byte of it is written, the check of the next blob running while this one is
    sent. A blob that fails sends nothing of it; one whose file changed after its check (its size, or the times
    every write moves) fails the run and what was sent of the stream is removed from the host, which checks every
    blob against its id again as it arrives.
  - The stream is cut into chunks of O(chunk_size) that are put over the task's connection into the stream's
    own folder C(<staging_dir>/<stream id>), which the host made for this stream and only the connection's user
    can write (a connection follows a link where it writes). Each chunk is put while the next is written; the
    chunk files are written in memory (C(/dev/shm)) when it has room, else in Ansible's local temporary folder,
    three at most at once.
  - A transfer that was cut short resumes - the host reports the chunks it already holds (name, size and
    SHA-256) and only the others are sent.
  - The host checks every chunk and every member (a plain regular file named by one of the blobs sent, of its
    size, whose content matches its id; links, devices and other names are refused), takes each model into the
    cache as M(justnews.huggingface.hf_snapshot) does with
    O(justnews.huggingface.hf_snapshot#module:blobs_from), and removes O(staging_dir).
  - Past 30 seconds of sending or waiting, a line with the bytes done, the total and the rate is printed every
    15 seconds.
author:
  - JustNews maintainers (@justnews)
requirements:
  - huggingface_hub >= 2.4 on the managed host, for the Python interpreter that runs hf_receive.
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.attributes.actiongroup_fetch
  - justnews.huggingface.attributes.flow
  - justnews.huggingface.cache
  - justnews.huggingface.cache.snapshot_options
  - justnews.huggingface.model_cache
attributes:
  async:
    support: none
    details:
      - The action runs on the controller and calls the host itself; it shows its progress while it sends.
  check_mode:
    support: full
    details:
      - Probes only; RV(missing_blobs), RV(missing_bytes) and RV(bytes_total) tell what would be sent, each
        model's result what would change. Nothing is sent or written.
  diff_mode:
    support: full
    details:
      - The diffs of M(justnews.huggingface.hf_snapshot), one per changed model.
  idempotent:
    support: full
    details:
      - A second run sends nothing and reports no change.
options:
  models:
    description:
      - The models, each as the controller's M(justnews.huggingface.hf_snapshot) result of a loop over
        C(model_cache_models) (O(source=controller), with C(snapshot_path)), or as an entry of the C(models) that
        M(justnews.huggingface.hf_bundle_info) returns
        (O(source=bundle)).
      - Each gives C(item) (the model - C(repo_id), C(repo_type), C(allow_patterns), C(ignore_patterns),
        C(link)), C(commit), C(ref) and C(listing).
    type: list
    elements: dict
    required: true
  source:
    description: Where the blobs come from - the controller's cache or a bundle file on the controller.
    type: str
    choices: [controller, bundle]
    default: controller
  bundle:
    description: The bundle file on the controller, with O(source=bundle).
    type: path
  staging_dir:
    description:
      - Folder of root's on the host in which each stream of chunks gets a folder of its own,
        C(<staging_dir>/<stream id>) (mode C(0700), owned by the connection's user), and the blobs are unpacked,
        best on the filesystem of O(cache_dir). Made (root's, mode C(0700), or C(0711) when the task uses become)
        when blobs are missing, removed once they are in the cache; kept with the chunks already sent when a
        transfer was cut short.
      - Every folder from C(/) to it must be a real folder (not a link) of root's that no other user can write (a
        sticky folder such as C(/tmp) may be on the way), and it must lie outside O(cache_dir) and O(hf_home), which
        the agents' user owns - such as C(/var/lib/justnews-huggingface/incoming), the role's. Otherwise the task
        fails with V(unsafe_cache) before anything is sent.
    type: path
    required: true
  links:
    description:
      - Make each model's C(link) (an entry of C(item)), as M(justnews.huggingface.hf_snapshot) does with
        O(justnews.huggingface.hf_snapshot#module:link).
      - V(false) leaves the links out, for a cache whose links are made by another task - a bake links the models
        with M(justnews.huggingface.hf_image_root), to the snapshot's path as the image sees it.
    type: bool
    default: true
  chunk_size:
    description: Size of the chunks the stream is sent in, bytes or a size such as V(64M) (at least 64 KiB).
    type: raw
    default: 64M
notes:
  - Set C(ansible_python_interpreter) of the task to a Python with huggingface_hub on the host.
  - Over SSH, Ansible's default C(ssh_args) turn on compression (C(-C)), which model weights do not repay - every
    chunk then travels at the speed of zlib on the connection's one core, well below a local network's. For hosts
    that receive models, set C(ansible_ssh_args) without it, such as C(-o ControlMaster=auto -o ControlPersist=60s).
seealso:
  - module: justnews.huggingface.hf_snapshot
    description: Fetches the models into the controller's cache; its results are what O(models) takes with
      O(source=controller).
  - module: justnews.huggingface.hf_bundle_info
    description: Returns the bundle's entries that O(models) takes with O(source=bundle).
  - module: justnews.huggingface.hf_bundle
    description: Writes the bundle.
  - module: justnews.huggingface.hf_receive
    description: The module this action runs on the host.
"""

EXAMPLES = r"""
- name: Fetch the models once, into the controller's cache
  justnews.huggingface.hf_snapshot:
    repo_id: "{{ item.repo_id }}"
    revision: "{{ item.revision | default('main') }}"
    cache_dir: /srv/hf-controller-cache
  delegate_to: localhost
  run_once: true
  loop: "{{ models }}"
  register: fetched

- name: Carry them to every host, only the blobs each lacks
  justnews.huggingface.hf_carry:
    models: "{{ fetched.results }}"
    source: controller
    cache_dir: /var/cache/hf/hub
    hf_home: /var/cache/hf
    dir_mode: "0750"
    owner: justnews
    group: justnews
    # root's and outside the cache: the agents' user owns /var/cache/hf
    staging_dir: /var/lib/justnews-huggingface/incoming
  vars:
    ansible_python_interpreter: /opt/justnews/hf-venv/bin/python
  become: true
"""

RETURN = r"""
results:
  description:
    - Per model, in the order of O(models), the result of M(justnews.huggingface.hf_snapshot) (C(commit), C(ref),
      C(changed), C(downloaded_files), C(downloaded_bytes), C(files), C(listing), C(diff), C(snapshot_path)), with
      C(item) the model it is for (the C(item) of its entry of O(models)) and C(record) the model's record, the
      same keys as M(justnews.huggingface.hf_snapshot)'s RV(justnews.huggingface.hf_snapshot#module:record), with
      C(source) V(controller) or V(bundle) and C(received_from) the same when blobs arrived.
    - On failure, the models taken in before it, then the model that failed (its C(record) with C(failed),
      C(msg), C(error_kind) and C(fix)); a failure of the whole stream fails every model it concerns.
  returned: always, but on a failure before the models were read
  type: list
  elements: dict
  sample: [{"item": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main"},
            "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf", "changed": true,
            "record": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "repo_type": "model",
                       "revision": "main", "ref": "main", "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
                       "previous_commit": null, "previous_link": null,
                       "snapshot_path": "/var/cache/hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
                       "link": null, "files": 3, "bytes": 91517224, "downloaded_files": ["model.safetensors"],
                       "downloaded_bytes": 90868376, "received_from": "controller", "source": "controller",
                       "changed": true, "skipped": false, "failed": false, "msg": null, "error_kind": null,
                       "fix": null, "rollback_to": null}}]
missing_blobs:
  description: The blobs the host lacked, each once (name, size, files as [repository, path]).
  returned: success
  type: list
  elements: dict
missing_bytes:
  description: Bytes of RV(missing_blobs).
  returned: success
  type: int
  sample: 90868376
cachedir_tag:
  description:
    - The C(CACHEDIR.TAG) text that C(huggingface_hub) writes into a cache it downloads into, for the task that
      tags O(cache_dir) after blobs arrived another way (the role model_cache writes it), so that every source
      leaves the same tree.
  returned: success
  type: str
  sample: "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by huggingface_hub.\n"
  version_added: 0.1.1
stream_dir:
  description: The folder on the host that holds the chunks of the stream until the models are in.
  returned: success, when blobs are missing
  type: str
  sample: /var/lib/justnews-huggingface/incoming/3f0c2b9a7d1e4c55
  version_added: 0.1.1
bytes_total:
  description: Bytes of the stream (the blobs in tar form).
  returned: always
  type: int
bytes_sent:
  description: Bytes sent by this run.
  returned: always
  type: int
bytes_held:
  description: Bytes of the stream that the host already held from an earlier, cut-short run, not sent again.
  returned: always
  type: int
chunks_sent:
  description: Chunks sent by this run.
  returned: always
  type: int
chunks_total:
  description: Chunks of the stream.
  returned: always
  type: int
blobs_sent:
  description: Blobs in the stream.
  returned: always
  type: int
host_calls:
  description: Module runs on the host (1 for a host that lacks nothing, 2 otherwise).
  returned: always
  type: int
elapsed:
  description: Seconds the task took.
  returned: always
  type: float
mean_rate:
  description: Bytes sent per second, over RV(elapsed).
  returned: always
  type: int
model:
  description: On failure of one model on the host, that model, as C(<repo_id>@<commit>).
  returned: on failure of a model on the host
  type: str
  sample: sentence-transformers/all-MiniLM-L6-v2@c9745ed1d9f207416be6d2e6f8de32d1f16199bf
model_result:
  description:
    - On failure of one model on the host, its result as M(justnews.huggingface.hf_snapshot) would return it
      (what it planned, with the keys of its failure such as C(needed_bytes) and C(free_bytes) for V(no_space),
      C(corrupt_files) for V(integrity), C(unsafe_name)); RV(results) holds the models taken in before it.
  returned: on failure of a model on the host
  type: dict
  sample: {"commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf", "needed_bytes": 1164610200,
           "free_bytes": 52428800}
corrupt_files:
  description:
    - On failure of the stream, the files (C([repository, path])) whose blob was refused - missing or altered in the
      controller's cache or the bundle, or a chunk or member that did not match on the host. Empty when the failure
      concerns no file.
  returned: on failure of the stream
  type: list
  elements: list
  sample: [["sentence-transformers/all-MiniLM-L6-v2", "model.safetensors"]]
error_kind:
  description:
    - On failure, the cause - V(invalid_argument), V(missing_library), V(cache_dir_invalid), V(not_writable),
      V(locked), V(unsafe_listing), V(unsafe_cache) (also O(staging_dir) inside the cache, or a folder on its way
      that another user can write or that is a link), V(integrity) (a blob of the controller's cache, a chunk or a
      member does not match its id, or a bundle's manifest gives a member another SHA-256 than its bytes have),
      V(incomplete), V(corrupt_bundle), V(not_in_bundle), V(unsafe_bundle),
      V(transient) (the connection failed while a chunk was sent; the next run sends only what is missing),
      V(disk_full), V(no_space), V(internal), V(other); and, from the modules it shares code with, never in
      practice as no request is made, V(rate_limited), V(server_error), V(unreachable), V(timeout), V(gated),
      V(unauthorized), V(repo_not_found), V(revision_not_found), V(entry_not_found).
  returned: on failure
  type: str
  sample: integrity
fix:
  description: On failure, what to do about RV(error_kind).
  returned: on failure
  type: str
  sample: "run again, or raise 'retries' (model_cache_retries): the connection kept dropping"
msg:
  description: On failure, what happened, led by the models that failed (C(<repo_id>@<commit>)) unless it names them.
  returned: on failure
  type: str
  sample: "sentence-transformers/all-MiniLM-L6-v2@c9745ed1d9f207416be6d2e6f8de32d1f16199bf: no space left"
"""
