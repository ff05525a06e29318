#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_snapshot
short_description: Pre-fetch a Hugging Face Hub repository snapshot into the local cache
version_added: 0.1.0
description:
  - Downloads one revision of a Hugging Face Hub repository into a C(huggingface_hub) cache with
    C(huggingface_hub.snapshot_download), so that applications later load it with C(HF_HUB_OFFLINE=1).
  - Decides what to change before changing anything, from the cache and at most two metadata requests,
    so C(changed), check mode and diff mode are exact. With a pinned commit and a complete cache it makes no
    request at all.
  - Records the commit under O(ref) (C(main) by default), where C(SentenceTransformer('name')) and
    C(from_pretrained('name')) look it up offline, and moves the ref only after every file arrived and passed
    the checksum checks.
  - Retries rate limits (HTTP 429, honouring C(Retry-After) in seconds or as an HTTP date, file downloads
    included), server errors and dropped connections with exponential backoff, and stops within O(timeout) even
    when the Hub never answers. These are the only retries; those of C(huggingface_hub) itself are turned off.
  - Trusts nothing it is handed. File names, commits and object ids from the Hub, the cache's own listings, refs
    and links, and the arguments are checked before use; nothing outside the repository's folders in the cache
    (C(<cache>/models--owner--name) and C(<cache>/.locks/models--owner--name)) is ever written, linked or
    removed, apart from O(link).
  - A failed run reports no change and leaves no trace of the new commit (no listing, no partial snapshot, no
    unchecked file); complete files that passed their checksum stay in the cache for the next run.
author:
  - JustNews maintainers (@justnews)
requirements:
  - huggingface_hub >= 2.4 on the managed host, for the Python interpreter that runs the module.
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.attributes.actiongroup_fetch
  - justnews.huggingface.attributes.flow
  - justnews.huggingface.cache
  - justnews.huggingface.model_cache
attributes:
  check_mode:
    support: full
    details:
      - Lists the files that would be downloaded in RV(downloaded_files) and writes nothing. When the revision
        is a branch or tag that the cache does not hold yet, one metadata request resolves it.
  diff_mode:
    support: full
    details:
      - Shows the commit recorded under O(ref), the link target and the files of the snapshot, before and after.
  idempotent:
    support: full
    details:
      - A second run with the same arguments reports no change. With O(state=latest) the branch is resolved
        on the Hub every run, and a moved branch is a change.
  async:
    support: full
    details:
      - With the task's own C(async), the module runs once as that async job, planning and download together,
        and shows no progress lines; set C(async) above O(timeout), which stops the run first. Poll it with
        M(ansible.builtin.async_status) when C(poll) is V(0).
      - Without it, a download still runs as an async job that the action plugin starts and watches itself (see
        the notes).
options:
  repo_id:
    description:
      - Repository on the Hub, as C(owner/name), for example C(sentence-transformers/all-MiniLM-L6-v2).
    type: str
    required: true
  repo_type:
    description: Kind of repository.
    type: str
    choices: [model, dataset, space]
    default: model
  revision:
    description:
      - Branch, tag or full 40-character commit to fetch.
      - Pin a commit for reproducible fleets; a pinned commit also needs no metadata request.
      - A branch or tag must follow git's ref-name rules.
    type: str
    default: main
  ref:
    description:
      - Name under C(refs/) in the cache where the fetched commit is recorded, which is what an application
        asking for that revision resolves offline.
      - Defaults to O(revision) for a branch or tag, and to C(main) for a commit, so that an application that
        loads the default revision gets the pinned commit.
      - Must follow git's ref-name rules (no C(..), no leading C(/) or C(.), no empty component).
    type: str
  hf_home:
    description:
      - The C(HF_HOME) folder that holds O(cache_dir), which then defaults to C(<hf_home>/hub) as it does for
        C(huggingface_hub). Only used to create and own the folders with O(dir_mode).
    type: path
  dir_mode:
    description:
      - Mode of O(hf_home) and O(cache_dir), as an octal string such as V(0750). When set, with O(state=present),
        each is created when missing (missing parents above them as root, C(0755)) and given O(owner), O(group)
        and this mode, so that the agents' user owns the cache; a change counts in C(changed).
      - Unset leaves both folders as they are (the library creates a missing O(cache_dir) as the module's user).
    type: str
  endpoint:
    description:
      - Base URL of the Hub or of a Hub-compatible mirror.
      - Defaults to C($HF_ENDPOINT) on the host, else U(https://huggingface.co).
    type: str
  token:
    description:
      - Hugging Face access token, for gated or private repositories.
      - Never logged and never placed on a command line.
      - If not set, the environment variable E(HF_TOKEN) is used, then the token file of C(huggingface_hub).
    type: str
  allow_patterns:
    description: Only files matching one of these glob patterns are fetched.
    type: list
    elements: str
  ignore_patterns:
    description: Files matching one of these glob patterns are not fetched.
    type: list
    elements: str
  state:
    description:
      - V(present) makes sure the revision is complete in the cache. A branch or tag already recorded under
        O(ref) with a complete snapshot is not looked up again.
      - V(latest) resolves a branch or tag on the Hub on every run and fetches it when it moved.
      - V(absent) removes the repository from the cache (every snapshot, blob and ref) and the O(link).
    type: str
    choices: [present, latest, absent]
    default: present
  offline:
    description:
      - Verify the cache without any network access. Fails, naming the missing files, when the revision is not
        complete in the cache. With O(verify_checksums) every file is checked.
    type: bool
    default: false
  verify_checksums:
    description:
      - Check each downloaded file against the Hub's metadata (SHA-256 for LFS files, the git blob id for the
        others). A mismatch removes the bad file and fails. C(huggingface_hub) itself checks no content.
    type: bool
    default: true
  retries:
    description:
      - How many times a failed network step is tried again (HTTP 408, 429, 5xx, dropped or reset connections).
    type: int
    default: 5
  timeout:
    description:
      - Total time in seconds for the whole run, waits between retries included. The run is stopped at this
        limit even when the Hub accepts the connection and never answers.
    type: int
    default: 1800
  read_timeout:
    description:
      - Seconds one request for a file (its HEAD or its download) may receive no byte before it counts as a
        dropped connection, which O(retries) then retries. Unset, C(huggingface_hub)'s own 10 seconds.
      - Raise it behind a caching mirror that fetches each file once for all its callers, such as the
        C(justnews.huggingface.hub_mirror) role's Olah, which sends the callers waiting on a file no byte until
        its own fetch of a 64 MiB block is done; C(60) covers an upstream rate of about 1 MiB/s.
    type: int
  owner:
    description:
      - User that owns everything of this repository in the cache (blobs, snapshots, refs, trees, locks).
      - The cache directory itself, its C(.locks) folder and C(CACHEDIR.TAG) are shared by every repository and
        are left to whoever made them.
      - A file with a second name (a hard link, which could be to a file outside the cache) never gets its owner
        or mode changed. It is replaced by a copy that gets them - a blob or store entry only when its content
        matches its checksum, a ref when it holds a commit, a lock as a new empty file - and anything else fails
        with RV(error_kind=unsafe_cache) naming it, before the run writes anything. This also applies to O(group)
        and O(mode).
    type: str
  group:
    description: Group of everything of this repository in the cache.
    type: str
  mode:
    description:
      - Permissions of the files of this repository in the cache, in octal, for example V('0640').
      - Plain permission bits only; setuid, setgid and sticky bits are refused.
      - Directories get an execute bit wherever the mode grants read, so the same users can enter them.
      - C(huggingface_hub) writes tree listings as 0600 and lock files as 0664; this evens them out.
    type: raw
    default: '0644'
  link:
    description:
      - Path of a symlink to the snapshot directory, for applications that load a model from a folder.
      - Swapped atomically when the commit changes; an existing non-link at this path is an error.
      - Must lie outside O(cache_dir). With O(state=absent) it is removed only when it leads into this
        repository's snapshots.
    type: path
  listing:
    description:
      - The file listing of O(revision), as RV(listing) of a run elsewhere returns it (for example on the
        controller). With it the module sends no listing request; it is checked like a listing from the Hub.
      - Needs O(revision) to be a 40-character commit.
    type: dict
  blobs_from:
    description:
      - A directory of files named by their object id (SHA-256 for LFS files, git blob id for the others), such
        as the C(blobs) folder of another cache or the files of RV(missing_blobs) copied to the host.
      - Files missing from the cache are taken from there instead of the Hub. Each is checked against its id
        while it is copied in, before anything links it; a symlink, a missing file or a mismatch fails the run.
      - With O(listing) and a pinned O(revision) the run makes no request at all.
    type: path
  free_space_margin:
    description:
      - Free space that must remain on the filesystem of O(cache_dir) after the files still missing arrived.
        Before any file is downloaded or copied in (and in check mode too), the run fails with
        RV(error_kind=no_space) when the free space (for unprivileged users, as C(df) shows it) is less than
        the bytes still to download (RV(missing_blobs)) plus this margin. Nothing is checked when nothing is
        missing.
      - Bytes as an integer, or a size such as V(512M) or V(1G) (K, M, G and T are powers of 1024).
      - V(0) turns the check off.
    type: raw
    default: 1G
  staging_dir:
    description:
      - Where the files of RV(missing_blobs) will be copied on this host before a later run takes them in with
        O(blobs_from). When it is (or will be) on the same filesystem as O(cache_dir), the disk-space check counts
        the missing bytes twice, once for the staged copy and once for the cache, so a check-mode run with
        O(listing) can refuse before anything is sent.
      - Only used for that check; nothing is written there.
    type: path
  shared_blobs:
    description:
      - Whether the download may use the cache-wide shared blob store of C(huggingface_hub), where a file
        fetched through Xet lives once in C(<cache>/blobs/<2 hex>/<xet hash>) and each repository's
        C(blobs/<etag>) is a relative symlink to it.
      - V(false) runs the download with E(HF_HUB_DISABLE_SHARED_BLOBS=1), so every blob is a regular file of its
        repository; use it for caches on filesystems without symlinks. Blobs already in the store stay valid.
      - Either way a blob that links into the store counts as present only when the link has exactly the
        library's form (C(../../blobs/<2 hex>/<64 hex>)) and leads, without any other symlink on the way, to a
        regular file inside O(cache_dir); its content is checked like any other file.
    type: bool
    default: true
  xet:
    description:
      - Whether the download may take files that the Hub stores with Xet from its Xet storage (CAS), whose address
        the Hub or mirror hands out, as C(huggingface_hub) does by default.
      - V(false) runs the download with E(HF_HUB_DISABLE_XET=1), so every file comes over plain HTTP from
        O(endpoint)'s resolve route. Set it when O(endpoint) is a caching mirror that passes the Hub's Xet
        information through (Olah does), or the hosts would take the bytes from the Hub's CAS past the mirror
        and the mirror's cache would serve nobody. Without Xet the library keeps no shared blob store, so
        every blob is a regular file of its repository (as with O(shared_blobs=false)).
    type: bool
    default: true
  download_memory:
    description:
      - Memory the download may take for its buffers, so that the agents beside it on the host are not pushed
        out. Stock C(hf_xet) sizes its download buffers from the machine's memory (a quarter of it as their
        limit) and has been seen to take gigabytes for one file.
      - A size such as V(512M) or V(1G) (K, M, G and T are powers of 1024), at least V(64M). Half of it is the
        hard limit of C(hf_xet)'s reconstruction buffers, set through C(hf_xet)'s own settings
        (E(HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT), E(HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE),
        E(HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE), E(HF_XET_RECONSTRUCTION_MIN_PREFETCH_BUFFER)) in
        the download's own process only, never for the agents; E(HF_XET_HIGH_PERFORMANCE), which would override
        them, is dropped there. The rest is left for the interpreter and the pieces in flight.
      - V(0) sets no cap and leaves C(hf_xet) its own sizing (and E(HF_XET_HIGH_PERFORMANCE), if the host sets
        it).
      - The trade-off is throughput on a fast link; a smaller buffer keeps fewer ranges in flight. Plain HTTP
        downloads stream each file through a small fixed buffer either way.
    type: str
    default: 512M
  defer_download:
    description:
      - Set by the action plugin of this module, not by playbooks. When files are to be downloaded from the Hub,
        return at once, before changing anything, with C(deferred=true), the commit, the listing and the bytes
        to fetch; the action plugin then runs the download as an async job it watches.
    type: bool
    default: false
  progress_file:
    description:
      - Set by the action plugin of this module, not by playbooks. Name of a file in the folder of the async job
        that runs the module (C(ANSIBLE_ASYNC_DIR), which must be a folder of the module's user that nobody else
        can write), where the download writes every few seconds the bytes done, the total and the seconds
        elapsed; removed when the download ends.
    type: str
notes:
  - "A download from the Hub that runs longer than 30 seconds shows its progress in the play's output every
    15 seconds - C(hf_snapshot <host> <repo_id>: <done> of <total> (<pct>%) at <rate>/s). The action plugin
    first runs the module to plan (with nothing to download, this is the whole task: one module run, no more
    requests); when there are files to fetch, it runs the module again as an async job, with the commit and the
    listing found (so no metadata request is repeated), and watches it with one shell command at a time that
    waits on the host for the job's result (up to 5 seconds each, seeing its end within a fifth of a second;
    the host needs a POSIX C(sh), C(sleep) and C(cat)). The result is the module's, with RV(elapsed) and
    RV(mean_rate) over the whole task. Check mode, and a task made async by its own C(async) keyword, run the
    module once, as any module."
  - Runs the network steps in a child process that is killed at O(timeout), because C(huggingface_hub) sets no
    timeout on some requests. The child dies with the module process, however that ends.
  - Runs on one repository of one cache are serialised by a lock in C(<cache>/.locks/<repo folder>/); a second
    run waits for the first, within its own O(timeout), and then finds the work done (RV(lock_wait)).
  - Leftover C(*.incomplete) files from interrupted downloads are removed when no process holds their download
    lock; C(huggingface_hub) does not resume them across runs. Files that a killed run completed are checked
    against their checksum by the next run before anything uses them.
  - With Xet downloads C(huggingface_hub) keeps file contents in a shared store (see O(shared_blobs)). The
    module then also owns and sets the modes of what this repository's links lead to - C(<cache>/blobs), its
    marker, and per used entry the prefix folder, the entry, its C(.refs) manifest and its lock - and nothing
    else of the store. A store entry whose content fails its checksum is removed with the link, since the
    library would link it again by size alone.
  - Blobs taken in with O(blobs_from) are checked against their ids; one that the listing gives a Xet hash then
    joins the shared store (as a download leaves it) when the Xet hash the module computes from it with hf_xet
    equals the listing's; otherwise it stays a regular file of the repository, which C(huggingface_hub) reads
    as well.
    A O(blobs_from) folder may be the C(blobs) folder of another cache whose blobs link into that cache's store.
  - "Keep the token off the controller's process list and out of verbose output: pass it as O(token) from a
    vaulted variable (or in C(module_defaults)), not with C(-a token=...) on the command line nor as a task
    C(environment) (printed at C(-vvvv))."
seealso:
  - module: justnews.huggingface.hf_prune
    description: Removes the revisions that the hosts no longer use, and abandoned partial downloads.
  - module: justnews.huggingface.hf_doctor
    description: Tells why an agent still downloads or hits 429, from the cache, the units and the Hub.
  - module: justnews.huggingface.hf_bundle
    description: Writes the snapshots fetched into a build cache as one file, for hosts without the Hub.
  - module: justnews.huggingface.hf_carry
    description: Carries snapshots from the controller's cache or a bundle to the hosts, only the blobs each lacks.
  - name: huggingface_hub cache layout
    description: How the cache directory is organised.
    link: https://huggingface.co/docs/huggingface_hub/guides/manage-cache
"""

EXAMPLES = r"""
- name: Pre-fetch the Memory agent's model, pinned, owned by the agent user
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
    cache_dir: /var/cache/hf/hub
    owner: justnews
    group: justnews

- name: Fetch only the safetensors weights and configs from a mirror, and expose a stable folder
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-mpnet-base-v2
    endpoint: https://hf-mirror.internal.example
    allow_patterns: ["*.json", "*.safetensors", "*.txt", "1_Pooling/*"]
    cache_dir: /var/cache/hf/hub
    link: /opt/justnews/models/fact_checker/all-mpnet-base-v2

- name: A gated model, with the token from the vault
  justnews.huggingface.hf_snapshot:
    repo_id: unitary/toxic-bert
    token: "{{ vault_hf_token }}"
    cache_dir: /var/cache/hf/hub

- name: Check that the cache can serve the model offline, without touching the network
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    cache_dir: /var/cache/hf/hub
    offline: true

- name: Refuse to start a download that would leave less than 5 GiB free
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-mpnet-base-v2
    cache_dir: /var/cache/hf/hub
    free_space_margin: 5G

- name: Drop a model from the cache
  justnews.huggingface.hf_snapshot:
    repo_id: roberta-base
    cache_dir: /var/cache/hf/hub
    state: absent

- name: Follow the main branch - resolve it on the Hub every run and fetch it when it moved
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    revision: main
    state: latest
    cache_dir: /var/cache/hf/hub

- name: See what following main would download, changing nothing
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    revision: main
    state: latest
    cache_dir: /var/cache/hf/hub
  check_mode: true
  diff: true
  register: preview

- name: Report it (the diff gives the commit under the ref before and after)
  ansible.builtin.debug:
    msg: >-
      {{ preview.diff.before.commit }} -> {{ preview.diff.after.commit }}:
      {{ preview.downloaded_files | length }} file(s), {{ preview.downloaded_bytes }} bytes to download
  when: preview.changed

# With the task's own async, the module runs once as that job (planning and download together, no progress
# lines). Give async more seconds than the module's timeout, which ends the run first.
- name: Start a large download in the background
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-mpnet-base-v2
    cache_dir: /var/cache/hf/hub
    timeout: 3000
  async: 3600
  poll: 0
  register: fetch_job

- name: Wait for it; the finished job's result is the module's (commit, downloaded_bytes, ...)
  ansible.builtin.async_status:
    jid: "{{ fetch_job.ansible_job_id }}"
  register: fetched
  until: fetched.finished
  retries: 120
  delay: 30

# One cache_dir for every module of the group (hf_snapshot, hf_prune, hf_doctor, hf_carry, hf_bundle).
- name: Fetch the agents' models and prune the cache, with the cache set once
  module_defaults:
    group/justnews.huggingface.cache:
      cache_dir: /var/cache/hf/hub
  block:
    - name: Fetch the Memory agent's model
      justnews.huggingface.hf_snapshot:
        repo_id: sentence-transformers/all-MiniLM-L6-v2
        revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf

    - name: Keep only the revisions in use
      justnews.huggingface.hf_prune:
        keep: 1
"""

RETURN = r"""
commit:
  description: Commit of the snapshot.
  returned: when state is not absent
  type: str
  sample: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
ref:
  description: Name under C(refs/) that records the commit.
  returned: when state is not absent
  type: str
  sample: main
snapshot_path:
  description: Directory of the snapshot in the cache.
  returned: when state is not absent
  type: str
  sample: /var/cache/hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/c9745ed1d9f207416be6d2e6f8de32d1f16199bf
cache_dir:
  description: Hub cache directory used.
  returned: always
  type: str
  sample: /var/cache/hf/hub
changed_dirs:
  description: The folders of O(hf_home) and O(cache_dir) created or given O(owner), O(group) and O(dir_mode).
  returned: when O(dir_mode) changed one
  type: list
  elements: str
  sample: [/var/cache/hf, /var/cache/hf/hub]
files:
  description: Files of the snapshot, after O(allow_patterns) and O(ignore_patterns).
  returned: when state is not absent
  type: list
  elements: str
  sample: [config.json, model.safetensors, tokenizer.json]
downloaded_files:
  description: Files downloaded (or taken from O(blobs_from)) by this run; in check mode, the files that would be.
  returned: when state is not absent
  type: list
  elements: str
  sample: [model.safetensors]
downloaded_bytes:
  description: Bytes of the files in RV(downloaded_files).
  returned: when state is not absent
  type: int
  sample: 90868376
elapsed:
  description: Seconds the run took (the whole task, planning and download job together).
  returned: always
  type: float
  sample: 3.2
mean_rate:
  description: Bytes per second of the files this run downloaded or copied in, over RV(elapsed); 0 when it moved none.
  returned: always
  type: int
  sample: 48213450
retries_used:
  description: Network steps that were tried again; there are no other retries.
  returned: always
  type: int
  sample: 0
listing:
  description: The file listing of the commit, to hand to O(listing) on other hosts.
  returned: when state is not absent
  type: dict
  sample: {"config.json": {"size": 612, "blob_id": "72b987fd805cfa2b58c4c8c952b274a11bfd5a00"}}
missing_blobs:
  description: Object ids (and sizes) of the files the cache lacks before this run, what O(blobs_from) must hold.
  returned: when state is not absent
  type: list
  elements: dict
  sample: [{"name": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", "size": 90868376}]
download_memory:
  description: The cap in bytes that O(download_memory) set on the download's buffers; V(0) when uncapped.
  returned: when files were downloaded from the Hub
  type: int
  sample: 536870912
verified_while_downloading:
  description:
    - How many of the downloaded files were checked against the listing's checksum from the digest computed
      while their bytes arrived (SHA-256 for LFS files, the git blob id for the others; on plain HTTP in the
      write path, on Xet by following the file as C(hf_xet) writes it in order), so they were not read again
      after the download. The other files of RV(downloaded_files) were read back and checked after it (one an
      earlier attempt of the same run completed, one the library linked from the shared store, or one whose
      digest did not match, to confirm the mismatch).
  returned: when files were downloaded from the Hub and O(verify_checksums) is true
  type: int
  sample: 3
lock_wait:
  description: Seconds this run waited for another run on the same repository to finish.
  returned: when the run changed or checked the cache
  type: float
  sample: 0.0
error_kind:
  description:
    - On failure, the cause, for programs to branch on - V(invalid_argument), V(missing_library) (the
      interpreter running the module lacks C(huggingface_hub)), V(cache_dir_invalid), V(not_writable),
      V(locked), V(unsafe_listing) (the Hub named a path outside the cache or contradicted its listing),
      V(unsafe_cache) (the cache's own files do), V(integrity) (size or checksum mismatch), V(incomplete)
      (offline and files missing, or O(blobs_from) lacks one), V(rate_limited), V(server_error), V(unreachable),
      V(transient), V(timeout) (the Hub did not answer in time), V(gated), V(unauthorized), V(repo_not_found),
      V(revision_not_found), V(entry_not_found), V(disk_full), V(no_space) (the disk-space check of
      O(free_space_margin) refused before anything was downloaded), V(other).
  returned: on failure
  type: str
  sample: rate_limited
fix:
  description:
    - On failure, what to do about RV(error_kind), the same text for every failure of that kind (C(msg) says what
      happened and where). It names the options to change, each followed by the variable of the role
      justnews.huggingface.model_cache that sets it.
  returned: on failure
  type: str
  sample: "run again later, pin 'revision' (model_cache_models) to a commit, pass a token in 'token'
    (model_cache_token) for an account's higher limits, or raise 'retries' (model_cache_retries) and 'timeout'
    (model_cache_timeout); through the role, let fewer hosts fetch at once (model_cache_hub_concurrency)"
needed_bytes:
  description:
    - Free space the run needs on the filesystem of O(cache_dir) - the bytes still to download or copy in, twice
      when O(staging_dir) shares that filesystem, plus O(free_space_margin).
  returned: when files are missing and O(free_space_margin) is not 0
  type: int
  sample: 1164610200
free_bytes:
  description: Free space on the filesystem of O(cache_dir) when the run checked it.
  returned: when files are missing and O(free_space_margin) is not 0
  type: int
  sample: 52613349376
retry_after:
  description: With V(rate_limited), the last wait in seconds that the Hub asked for (C(Retry-After)).
  returned: on failure, when the Hub asked for a wait
  type: int
  sample: 600
status_code:
  description:
    - The HTTP status of the last answer to the network step that failed, after its retries; null when no answer
      came (a timeout, a refused or dropped connection).
  returned: on failure of a network step (a request to the Hub, or the download)
  type: int
  sample: 429
missing_files:
  description: With O(offline), the files of the snapshot that the cache lacks (paths in the repository).
  returned: on failure with RV(error_kind=incomplete), when O(offline) found files missing
  type: list
  elements: str
  sample: [model.safetensors]
corrupt_files:
  description:
    - The files (paths in the repository) whose content did not match the listing's size or checksum; a
      downloaded one was removed, and the ref was not moved.
    - With O(blobs_from), the files of the blob that did not match its object id.
  returned: on failure with RV(error_kind=integrity), when files failed their check
  type: list
  elements: str
  sample: [model.safetensors]
unsafe_name:
  description:
    - The name that was refused - a file name, commit or object id from the Hub (V(unsafe_listing)), from the
      cache's own refs, listings or links (V(unsafe_cache)), or from O(listing) (V(invalid_argument)) - that would
      lead outside the repository's folders in the cache.
  returned: on failure, when a name was refused
  type: str
  sample: ../../../etc/passwd
deferred:
  description:
    - V(true) when the run stopped after planning because files are to be downloaded and O(defer_download) was
      set; nothing was changed. The action plugin then runs the download and returns its result instead, so a
      task never sees this key.
  returned: when O(defer_download=true) and files are to be downloaded
  type: bool
  sample: true
link:
  description: The symlink to the snapshot, when O(link) is set.
  returned: when O(link) is set
  type: str
  sample: /opt/justnews/models/memory/all-MiniLM-L6-v2
record:
  description:
    - The model's record, the same keys as M(justnews.huggingface.hf_carry) returns per model and the role
      justnews.huggingface.model_cache lists in C(model_cache_result.models) - C(repo_id), C(repo_type),
      C(revision), C(ref), C(commit), C(previous_commit) and C(previous_link) (before this run, when it changed
      them), C(snapshot_path), C(link), C(files) (how many), C(bytes) (theirs), C(downloaded_files),
      C(downloaded_bytes), C(received_from) (the Hub's address, or null when nothing arrived), C(source)
      (V(hub)), C(changed), C(skipped), C(failed), and on failure C(msg), C(error_kind) and C(fix) (else null).
    - C(rollback_to) is the commit a rollback puts the model back on - C(previous_commit) when this run changed
      the model and it had one, else null.
  returned: always
  type: dict
  sample: {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "repo_type": "model", "revision": "main",
           "ref": "main", "commit": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
           "previous_commit": "8b3219a92973c328a8e22fadcfa821b5dc75636a", "previous_link": null,
           "snapshot_path": "/var/cache/hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
           "link": null, "files": 3, "bytes": 91517224, "downloaded_files": ["model.safetensors"],
           "downloaded_bytes": 90868376, "received_from": "https://huggingface.co", "source": "hub",
           "changed": true, "skipped": false, "failed": false, "msg": null, "error_kind": null, "fix": null,
           "rollback_to": "8b3219a92973c328a8e22fadcfa821b5dc75636a"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _record
from ansible_collections.justnews.huggingface.plugins.module_utils import _snapshot


def main():
    module = AnsibleModule(
        argument_spec=_snapshot.ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    _snapshot.require_library(module, "to fetch Hub snapshots")
    snapshot = None
    try:
        snapshot = _snapshot.Snapshot(module)
        result = snapshot.run()
    except _errors.Failure as failure:
        result = snapshot.finish() if snapshot else {"changed": False}
        result.update(failure.extra, changed=False)
        result["record"] = record(module.params, dict(result, failed=True, msg=failure.msg, error_kind=failure.kind))
        _errors.fail_with(module, failure, **result)
    result["record"] = record(module.params, result)
    module.exit_json(**result)


def record(params, result):
    """The model's record (_record.build) from this run's parameters and result."""
    return _record.build(params, result, "hub", params.get("endpoint"), bool(params.get("token")))


if __name__ == "__main__":
    main()
