#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_agent_env
short_description: Point the agents' systemd units at the model cache, keep the token file and the host's model facts
version_added: 0.1.0
description:
  - The host-side files of the C(justnews.huggingface.model_cache) role, in one call. Run it as root.
  - For each unit in O(units), a drop-in C(<systemd_dir>/<unit>.d/<dropin_name>) (root, C(0644); the C(.d) folder
    root C(0755) when it is made) that sets C(HF_HOME), C(HF_HUB_CACHE), C(HF_HUB_DISABLE_TELEMETRY), with
    O(offline) C(HF_HUB_OFFLINE=1), with O(endpoint) C(HF_ENDPOINT), and with O(token) an optional
    C(EnvironmentFile=) of O(token_file). The text is the role's template's, byte for byte. The vendor unit is
    never touched.
  - With O(token), the root-only O(token_file) (root, C(0600)) with C(HF_TOKEN) and C(HF_HUB_TOKEN); its folder is
    made root C(0755) when missing. Without O(token), or with O(state=absent), the file is removed.
  - With O(models), the host's local facts file O(facts_file) (C(ansible_local.justnews_huggingface)) - per model
    its repository, revision, commit, files, bytes, link and source, and when a run last fetched and verified it.
    These two times are kept from the file's previous entry of the same repository unless the model was fetched
    (it changed, and bytes were downloaded or its commit moved) or its commit differs from that entry's. The file
    is written only when its text changes, and not at all when a model of O(models) was skipped.
  - With O(state=absent), the drop-ins, the token file and the facts file are removed, and each C(.d) folder that
    is then empty.
  - With O(state=restored), the rollback of a run - each drop-in of O(backups) (the RV(dropins) of that run's
    result) is put back as it was before that run - its backup written over it (root, its permission bits up to
    C(0644)) and then removed - or removed when that run created it. The token file and the facts file are left
    as they are. Every backup and drop-in is checked before anything is written.
  - Every destination is checked before anything is written - its folder and itself reached without following a
    link, read without blocking and at most 1 MiB. One that is a symlink, a FIFO, a device, a socket or a
    directory, or a C(.d) folder that is a symlink, fails the module (V(unsafe_destination)) naming it, and
    nothing is written. Each file is written to a temporary file in its folder, given its owner and mode through
    its descriptor, fsync'ed and renamed over the destination. A file with the right text but another owner or
    mode is given them (and counts as changed).
  - With O(backup), a drop-in whose text changes is first copied (never linked) into the root-only folder
    O(backup_dir) (root, C(0600)); only the latest backup of each drop-in is kept there. A backup that an
    earlier release left beside a drop-in (C(<dest>.<pid>.<time>~)) is removed (RV(removed_backups)).
  - The token is never returned and never put in a message. A diff masks every secret value the module knows,
    old or new and whatever its shape - the token, the values of the token file, and in a drop-in the value of
    C(HF_TOKEN), C(HF_HUB_TOKEN), C(HUGGINGFACE_HUB_TOKEN), C(HUGGING_FACE_HUB_TOKEN) and any variable named like
    a token, secret, password or key.
  - Usually run by the C(justnews.huggingface.model_cache) role, which fills every option from its variables.
author:
  - JustNews maintainers (@justnews)
options:
  state:
    description:
      - Whether the files are there (V(present)) or removed (V(absent)); V(restored) puts back the drop-ins of
        O(backups).
    type: str
    default: present
    choices: [present, absent, restored]
  units:
    description:
      - The agents' units, full names such as C(justnews@memory.service). A name must be a systemd unit name
        (letters, digits, C(:_.@-) and backslashes, ending in a unit type such as C(.service)), never a path.
      - At least one with O(state=present).
    type: list
    elements: str
    required: true
  dropin_name:
    description: File name of the drop-in in each C(<unit>.d) folder; it must end in C(.conf).
    type: str
    default: 60-hf-cache.conf
  systemd_dir:
    description: The folder of the units' drop-in folders.
    type: path
    default: /etc/systemd/system
  hf_home:
    description: C(HF_HOME) of the agents (the role's C(model_cache_dir)). Required with O(state=present).
    type: path
  hub_cache:
    description: C(HF_HUB_CACHE) of the agents, also the facts' C(cache_dir); default O(hf_home)C(/hub).
    type: path
  offline:
    description: Whether the drop-ins set C(HF_HUB_OFFLINE=1).
    type: bool
    default: true
  endpoint:
    description: C(HF_ENDPOINT) of the agents; empty sets none.
    type: str
    default: ""
  token:
    description:
      - The Hub token the agents use, written only into O(token_file); empty removes that file.
    type: str
    default: ""
  token_file:
    description: The root-only file with the token, which the drop-ins read with C(EnvironmentFile=-).
    type: path
    default: /etc/justnews/huggingface-token.env
  backup:
    description:
      - Before a drop-in whose text changes is replaced, keep a copy of the previous one in O(backup_dir) (root,
        C(0600)) and return it as C(backup_file) of that unit in RV(dropins), for a rollback with
        O(state=restored). A previous backup of the same drop-in is removed then.
      - A drop-in larger than 1 MiB cannot be kept; it fails the module (V(unsafe_destination)).
    type: bool
    default: true
  backup_dir:
    description:
      - The root-only folder of the backups of O(backup). Made root C(0700) when missing (the folders above it
        root C(0755)).
      - It must be root's with no permission for group or others, and every folder above it root's and writable
        by no other user (a sticky folder such as C(/tmp) excepted); no symlink is followed on the way. Otherwise
        the module fails (V(unsafe_destination)) and writes nothing.
    type: path
    default: /var/lib/justnews-huggingface/dropin-backups
  backups:
    description:
      - With O(state=restored), the drop-ins to put back - the RV(dropins) of the run that kept them (C(unit),
        C(dest), C(created), C(backup_file), C(backup_mode)). An entry with C(backup_file) is put back from that
        backup, which must be the file O(backup_dir) keeps for that unit's drop-in; one with C(created) and no
        backup is removed; others (only the owner or mode changed) are left as they are.
      - Only with O(state=restored).
    type: list
    elements: dict
  facts_file:
    description: The host's local facts file of the models; its folder is made root C(0755) when missing.
    type: path
    default: /etc/ansible/facts.d/justnews_huggingface.fact
  models:
    description:
      - The per-model results of the fetch (M(justnews.huggingface.hf_snapshot)) - C(repo_id), C(revision),
        C(commit), C(files), C(bytes), C(link), C(source), C(changed), C(downloaded_bytes), C(previous_commit),
        C(skipped).
      - Not given, the facts file is left as it is with O(state=present).
    type: list
    elements: dict
  now:
    description: The time written as C(last_fetched) and C(last_verified), UTC as C(%Y-%m-%dT%H:%M:%SZ); default now.
    type: str
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.model_cache
attributes:
  check_mode:
    support: full
    details:
      - Every file is read and compared; what would change is reported, nothing is written.
  diff_mode:
    support: full
    details:
      - One entry per file that changes, every secret value masked.
  idempotent:
    support: full
    details:
      - A file is written only when its text, owner or mode differs; the facts' times move only when a model was
        fetched.
  platform:
    details:
      - Writes the drop-ins of systemd units; it runs no C(systemctl) itself.
notes:
  - Runs as root, to give the files and folders their owner C(root).
  - Run C(systemctl daemon-reload) and restart the units of RV(changed_units) afterwards; the module does neither.
seealso:
  - module: justnews.huggingface.hf_units
    description: Checks the units before the drop-ins change, and that they come back with these settings after
      their restart.
  - module: justnews.huggingface.hf_snapshot
    description: Fetches the models whose results O(models) records in the facts file.
  - module: justnews.huggingface.hf_doctor
    description: Compares what the units and their processes see with the settings of the drop-ins.
"""

EXAMPLES = r"""
- name: Point the Memory agent at the cache, with a token, and record the models
  justnews.huggingface.hf_agent_env:
    units: [justnews@memory.service]
    hf_home: /var/cache/hf
    offline: true
    token: "{{ vault_hf_token }}"
    models: "{{ fetched.results }}"
  register: agent_env

- name: Reload systemd when a drop-in changed
  ansible.builtin.systemd_service:
    daemon_reload: true
  when: agent_env.changed_units | length > 0

- name: Put the previous drop-ins back (a rollback of the run registered as agent_env)
  justnews.huggingface.hf_agent_env:
    state: restored
    units: [justnews@memory.service]
    backups: "{{ agent_env.dropins }}"

- name: Remove the drop-ins, the token file and the facts file
  justnews.huggingface.hf_agent_env:
    state: absent
    units: [justnews@memory.service]
"""

RETURN = r"""
dropins:
  description: Per unit, its drop-in.
  returned: always
  type: list
  elements: dict
  contains:
    unit:
      description: The unit.
      type: str
    dest:
      description: The drop-in's path.
      type: str
    changed:
      description: Whether the drop-in was (or, in check mode, would be) written, given its owner or mode, or removed.
      type: bool
    created:
      description: Whether it did not exist before and was (would be) written.
      type: bool
    backup_file:
      description:
        - The copy of the previous drop-in in O(backup_dir), kept when its text changed (O(backup)); only when one
          was kept.
      type: str
    backup_mode:
      description: The permission bits of the previous drop-in, with RV(dropins[].backup_file).
      type: str
    restored:
      description: Whether it was (would be) put back from its backup. O(state=restored) only.
      type: bool
    removed:
      description: Whether it was (would be) removed. O(state=absent) and O(state=restored) only.
      type: bool
    dir_removed:
      description: Whether its C(.d) folder was (would be) removed, left empty. O(state=absent) only.
      type: bool
  sample: [{unit: justnews@memory.service, dest: /etc/systemd/system/justnews@memory.service.d/60-hf-cache.conf,
            changed: true, created: false, backup_mode: "0644",
            backup_file: "/var/lib/justnews-huggingface/dropin-backups/justnews@memory.service_60-hf-cache.conf.\
              1f0c2a9b3d4e5f60.4242.20260131T120000~"}]
removed_backups:
  description:
    - The backups that an earlier release of the module left beside the drop-ins (C(<dest>.<pid>.<time>~), hard
      links readable by everyone), removed (in check mode, to be removed). They do not count as a change of the
      units.
  returned: with O(state=present) or O(state=absent)
  type: list
  elements: str
  sample: ["/etc/systemd/system/justnews@memory.service.d/60-hf-cache.conf.4242.2026-01-31@12:00:00~"]
changed_units:
  description: The units whose drop-in changed (written, created, given its owner or mode, or removed).
  returned: always
  type: list
  elements: str
  sample: [justnews@memory.service]
token_file:
  description: The token file - its path, whether it changed, and whether it is there (V(present)) or not (V(absent)).
  returned: always
  type: dict
  sample: {path: /etc/justnews/huggingface-token.env, changed: true, state: present}
token_changed:
  description: Whether the token file changed.
  returned: always
  type: bool
  sample: false
facts:
  description:
    - The facts file - its path and whether it changed; C(skipped) says why it was left alone (O(models) not
      given, or a model was skipped).
  returned: always
  type: dict
  sample: {path: /etc/ansible/facts.d/justnews_huggingface.fact, changed: true}
facts_changed:
  description: Whether the facts file changed.
  returned: always
  type: bool
  sample: true
msg:
  description: What changed, or why the module failed.
  returned: always
  type: str
  sample: Changed the token file, the drop-ins of justnews@memory.service.
error_kind:
  description:
    - On failure, the cause - V(invalid_argument) (an option is out of range; the message names it),
      V(unsafe_destination) (a destination or its folder is a symlink or not a regular file; nothing was written),
      V(not_writable) (a file or folder could not be written or removed), V(disk_full) (no space left for a file),
      V(not_root) (the module must run as root), V(other) (another error of the filesystem, named in the message)
      or V(internal) (an unexpected error; the message names it).
  returned: on failure
  type: str
  sample: unsafe_destination
fix:
  description:
    - On failure, what to do about RV(error_kind), the same text for every failure of that kind (C(msg) says what
      was wrong).
  returned: on failure
  type: str
  sample: "run the task with become: true"
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors


def argument_spec():
    spec = _agent_env.options()
    spec.update(
        state=dict(type="str", default="present", choices=["present", "absent", "restored"]),
        units=dict(type="list", elements="str", required=True),
        backups=dict(type="list", elements="dict"),
        models=dict(type="list", elements="dict"),
        now=dict(type="str"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = dict(module.params)
    p["endpoint"] = p["endpoint"] or ""
    p["token"] = p["token"] or ""
    try:
        _agent_env.check_params(p)
    except _errors.Failure as exc:
        _errors.fail(module, exc.kind, exc.msg, **exc.extra)
    if os.geteuid() != 0:
        _errors.fail(module, _errors.NOT_ROOT, "hf_agent_env must run as root to give the drop-ins, the token file"
                                               " and the facts file the owner root")
    run = _agent_env.AgentEnv(p, check_mode=module.check_mode)
    try:
        result, diffs = run.run()
    except _errors.Failure as exc:
        _errors.fail(module, exc.kind, exc.msg, **exc.extra)
    except Exception as exc:  # reported with its kind, never a traceback; the token masked in the text
        _errors.fail(module, _errors.INTERNAL, run.mask("hf_agent_env stopped: %s: %s" % (type(exc).__name__, exc)))
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = diffs
    module.exit_json(msg=run.message(result), **result)


if __name__ == "__main__":
    main()
