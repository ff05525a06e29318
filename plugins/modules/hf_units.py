#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_units
short_description: Check the agents' systemd units before a model cache rollout, and after their restart
version_added: 0.1.0
description:
  - The host-side checks of the C(justnews.huggingface.model_cache) role, each one call on the host. It changes
    nothing. Run it as root.
  - O(phase=preflight), before anything changes - whether systemd manages the host (C(systemctl is-system-running));
    for each unit in O(units) its C(LoadState), C(User=), C(Group=), C(EnvironmentFiles=) and current process; its
    readiness check; the cache owner and group the units imply when O(owner) or O(group) are empty (they must
    agree); that owner and group exist; that each unit's user will read the cache laid out as O(owner):O(group)
    with O(dir_mode) and O(file_mode), judged with the ids and groups that user really has (looked up in a child
    process running as that user, with the unit's own C(Group=) and C(SupplementaryGroups=)); and which
    EnvironmentFiles of the units set a variable of O(managed_env), whose values win over a drop-in because the
    JustNews start script re-sources them. Every problem is collected, with the O(problems) the caller found
    before, into one failure (V(preflight)) that names them all. With O(env_conflicts=warn) the EnvironmentFiles
    that override the drop-in are a warning instead.
  - O(phase=verify), after the restarts - each unit in O(restarted) must become active with a new process (its
    C(InvocationID) or C(MainPID) differs from O(previous)) and pass its readiness check before O(ready_timeout)
    seconds have passed; every other unit must be active. The default readiness check of
    C(<template>@<agent>.service) is C(GET http://127.0.0.1:<port>/ready) (the port from O(agent_ports) by the
    agent's name) answering 200 with C(ready) true, or a body without a C(ready) key. A unit that is not back
    fails the module (V(not_ready)) with a message naming the unit, what was awaited, the last answer, its
    C(ActiveState), C(SubState), C(Result), C(MainPID) and C(NRestarts), the drop-in and the last O(journal_lines)
    lines of its journal.
  - Then, with O(state=present) and O(expected_env), the environment of every unit's processes (C(MainPID) and its
    children, C(/proc/<pid>/environ) read in a child running as the unit's user) must equal O(expected_env); a
    difference fails the module (V(env_overridden)) naming the unit, the pid, the key, the value in use and the
    EnvironmentFile that sets it. With O(env_conflicts=warn), a difference that an EnvironmentFile explains is
    reported in RV(environment) and RV(msg) instead.
  - EnvironmentFiles are read only when they are regular files of at most 1 MiB, opened with C(O_NONBLOCK) and
    without following a link below a folder another user can write; a FIFO, a device or such a link is a
    preflight problem naming the file, never read. Every C(systemctl), C(journalctl) and readiness command, and
    every child run as a unit's user, is killed after O(command_timeout) seconds (a readiness command also at the
    deadline of the wait).
  - Token values are never returned - a token variable is reported as V(<set>) or V(<unset>) - and every token
    value the module sees (in the token file, a unit's C(Environment=), its EnvironmentFiles or its process) is
    masked in every text it returns, besides anything that looks like a Hub token (C(hf_...)).
  - Usually run by the C(justnews.huggingface.model_cache) role, which fills every option from its variables.
author:
  - JustNews maintainers (@justnews)
options:
  phase:
    description: Which check to run.
    type: str
    required: true
    choices: [preflight, verify]
  state:
    description:
      - What the rollout does. V(absent) (the drop-ins are being removed) skips the preflight's checks of the
        owner, the readiness checks, the cache's readability and the EnvironmentFiles, and the verification's check
        of the processes' environment; the drop-in is named as removed in messages.
    type: str
    default: present
    choices: [present, absent]
  units:
    description: The agents' units, with their readiness checks.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Full unit name, for example C(justnews@memory.service).
        type: str
        required: true
      ready:
        description: V(false) awaits only that the unit is active after a restart.
        type: bool
        default: true
      ready_url:
        description: URL whose C(GET) answers the readiness, instead of the default.
        type: str
      ready_port:
        description: Port on 127.0.0.1 of the default readiness URL, instead of the one from O(agent_ports).
        type: int
      ready_path:
        description: Path of the default readiness URL.
        type: str
        default: /ready
      ready_command:
        description: Command (split into words, no shell, run as root) that exits 0 when the unit is ready.
        type: str
  agent_ports:
    description:
      - Port of each agent's HTTP server, by the instance name of its unit (C(memory) of C(justnews@memory.service)).
      - The default maps the upstream JustNews agents as its C(health_check.sh) does.
    type: dict
    default: {mcp_bus: 8000, chief_editor: 8001, scout: 8002, fact_checker: 8003, analyst: 8004, synthesizer: 8005,
              critic: 8006, memory: 8007, reasoning: 8008, newsreader: 8009, analytics: 8011, archive: 8012,
              dashboard: 8013, gpu_orchestrator: 8014, crawler: 8015}
  owner:
    description: Owner of the cache; empty takes the units' C(User=) (C(root) when unset). O(phase=preflight).
    type: str
    default: ""
  group:
    description: Group of the cache; empty takes the units' C(Group=), else their user's primary group. O(phase=preflight).
    type: str
    default: ""
  dir_mode:
    description:
      - Mode the cache's folders will have, as an octal string such as V(0750). O(phase=preflight).
      - Anything else fails the module with V(invalid_argument), unless O(problems) is not empty (a caller's own
        checks then name the mode); the readability check is skipped then.
    type: str
    default: "0750"
  file_mode:
    description: Mode the cache's files will have, as an octal string such as V(0640). O(phase=preflight).
    type: str
    default: "0640"
  managed_env:
    description:
      - The variables that the drop-in sets or that redirect the agents' cache, endpoint or token. An
        EnvironmentFile that sets one of them overrides the drop-in.
    type: list
    elements: str
    default: [HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT, HF_TOKEN, HF_HUB_TOKEN, HUGGINGFACE_HUB_TOKEN,
              HUGGING_FACE_HUB_TOKEN, HUGGINGFACE_HUB_CACHE, TRANSFORMERS_OFFLINE, SENTENCE_TRANSFORMERS_HOME]
  token_file:
    description:
      - The root-only file that the drop-in reads with C(EnvironmentFile=). It is not an override; its token values
        are only used to mask them.
    type: path
  env_conflicts:
    description:
      - V(fail) makes an EnvironmentFile that sets a variable of O(managed_env) a preflight problem, and every
        difference of a process from O(expected_env) a failure of the verification.
      - V(warn) reports them instead (a warning in the preflight, RV(environment) after the verification); a
        difference that no EnvironmentFile explains still fails.
    type: str
    default: fail
    choices: [fail, warn]
  dropin_name:
    description: File name of the drop-in in C(/etc/systemd/system/<unit>.d/), named in the messages.
    type: str
  problems:
    description:
      - Problems the caller found before (the role's checks of its variables), reported first in the same
        preflight failure. O(phase=preflight).
    type: list
    elements: str
    default: []
  host_name:
    description: How the messages name this host (the role gives C(inventory_hostname)); default its node name.
    type: str
  restarted:
    description: The units restarted for this rollout, whose readiness is awaited. O(phase=verify).
    type: list
    elements: str
    default: []
  previous:
    description:
      - Per unit, its state before the restart (RV(units) of the preflight, or of the verification before a
        rollback). A restarted unit must run a process with another C(InvocationID) (else C(MainPID)); a unit not
        in it is not checked for a new process. O(phase=verify).
    type: dict
    default: {}
  restart_errors:
    description: Per unit, what its restart answered when it failed, quoted in the message. O(phase=verify).
    type: dict
    default: {}
  expected_env:
    description:
      - What the units' processes must see. V(<set>) and V(<unset>) test presence only; the values of token
        variables are never compared or returned. O(phase=verify).
      - Empty takes what O(environment) sets; without O(environment) too, the check is skipped.
    type: dict
    default: {}
  environment:
    description:
      - The agents' environment as C(justnews.huggingface.hf_agent_env) writes it (its options). With
        O(phase=verify) and O(expected_env) empty, the processes must see what its drop-in sets - O(environment.hf_home),
        O(environment.hub_cache), C(HF_HUB_OFFLINE) by O(environment.offline), C(HF_ENDPOINT) when
        O(environment.endpoint) is set, and C(HF_TOKEN) present exactly when O(environment.token) is.
    type: dict
    suboptions:
      units:
        description: The units whose drop-in is written.
        type: list
        elements: str
        default: []
      dropin_name:
        description: The drop-in's file name.
        type: str
        default: 60-hf-cache.conf
      systemd_dir:
        description: Where the units' drop-in folders are.
        type: path
        default: /etc/systemd/system
      hf_home:
        description: C(HF_HOME) of the drop-in.
        type: path
      hub_cache:
        description: C(HF_HUB_CACHE) of the drop-in.
        type: path
      offline:
        description: Whether the drop-in sets C(HF_HUB_OFFLINE=1).
        type: bool
        default: true
      endpoint:
        description: C(HF_ENDPOINT) of the drop-in, when not empty.
        type: str
        default: ""
      token:
        description: The token the token file holds (never returned).
        type: str
        default: ""
      token_file:
        description: The root-only token file.
        type: path
        default: /etc/justnews/huggingface-token.env
      backup:
        description: Whether a replaced drop-in is kept for a rollback (only where systemd runs).
        type: bool
        default: true
      backup_dir:
        description: Where those copies are kept.
        type: path
        default: /var/lib/justnews-huggingface/dropin-backups
      facts_file:
        description: The local facts file.
        type: path
        default: /etc/ansible/facts.d/justnews_huggingface.fact
  ready_timeout:
    description: Seconds from the start of the verification within which the restarted units must be ready.
    type: int
    default: 300
  interval:
    description: Seconds between two looks at a unit that is not ready yet.
    type: float
    default: 2
  http_timeout:
    description: Seconds to wait for each answer of a readiness URL.
    type: int
    default: 5
  journal_lines:
    description: Lines of the journal of each unit that is not back, quoted in the message; V(0) quotes none.
    type: int
    default: 15
  command_timeout:
    description:
      - Seconds each C(systemctl), C(journalctl) or readiness command, and each child run as a unit's user, may
        take; past it the command's process group or the child is killed.
    type: int
    default: 30
  fetch_python:
    description:
      - The interpreter that will run the fetch (the role's venv, or C(model_cache_python)). O(phase=preflight)
        with O(state=present) reports in RV(fetch_tool) whether it exists and has O(fetch_requirements), so that a
        run whose tool is ready skips the install.
    type: path
  fetch_python_named:
    description: O(fetch_python) was named by the operator (C(model_cache_python)); its absence is then a problem.
    type: bool
    default: false
  fetch_requirements:
    description:
      - Requirements such as V(huggingface_hub==2.4.0) that O(fetch_python) must have installed. A requirement that
        is not a name with a version range (a path, a URL) counts as unsatisfied.
    type: list
    elements: str
    default: []
  settle:
    description:
      - With O(phase=preflight) and O(state=present), also works out whether the rollout has anything to do on the
        host, so that the role can skip its fetch and environment tasks (RV(settled)). Nothing is written and no
        request is made.
      - The fetch plan of each model is C(justnews.huggingface.hf_snapshot)'s own, in check mode, run by
        O(fetch_python) (which has C(huggingface_hub)) in a child process, the one that checks
        O(fetch_requirements), with the cache owner and group of this preflight. A model whose plan would ask the
        Hub (a branch the cache does not hold complete, V(state=latest)) or change the cache is not settled.
      - Then the environment check is C(justnews.huggingface.hf_agent_env)'s own run in check mode, given the
        models' records - whether a drop-in, the token file or the facts file would change.
      - Skipped (RV(settled) false) when there is a problem or O(fetch_requirements) are not satisfied.
    type: dict
    suboptions:
      source:
        description:
          - Where the models come from (C(model_cache_source)). With V(controller) or V(bundle) a model whose
            revision is a branch or tag is never settled, as the controller decides its commit.
        type: str
        choices: [hub, controller, bundle]
        default: hub
      models:
        description:
          - The models, as C(model_cache_models) lists them (C(repo_id), C(repo_type), C(revision), C(ref),
            C(allow_patterns), C(ignore_patterns), C(link), C(state)).
        type: list
        elements: dict
        default: []
      fetch:
        description:
          - The options of C(justnews.huggingface.hf_snapshot) that the fetch task sets for every model -
            C(hf_home), C(cache_dir), C(dir_mode), C(mode), C(endpoint), C(shared_blobs), C(xet),
            C(free_space_margin), C(verify_checksums), C(retries), C(timeout), C(read_timeout).
        type: dict
        default: {}
      environment:
        description:
          - The options of C(justnews.huggingface.hf_agent_env) that the environment task sets, but C(models)
            (the records of this check) and C(backup), which applies only where systemd runs.
        type: dict
        default: {}
        suboptions:
          units:
            description: The units whose drop-in is written.
            type: list
            elements: str
            default: []
          dropin_name:
            description: The drop-in's file name.
            type: str
            default: 60-hf-cache.conf
          systemd_dir:
            description: Where the units' drop-in folders are.
            type: path
            default: /etc/systemd/system
          hf_home:
            description: C(HF_HOME) of the drop-in.
            type: path
          hub_cache:
            description: C(HF_HUB_CACHE) of the drop-in.
            type: path
          offline:
            description: Whether the drop-in sets C(HF_HUB_OFFLINE=1).
            type: bool
            default: true
          endpoint:
            description: C(HF_ENDPOINT) of the drop-in, when not empty.
            type: str
            default: ""
          token:
            description: The token the token file holds (never returned).
            type: str
            default: ""
          token_file:
            description: The root-only token file.
            type: path
            default: /etc/justnews/huggingface-token.env
          backup:
            description: Whether a replaced drop-in is kept for a rollback (only where systemd runs).
            type: bool
            default: true
          backup_dir:
            description: Where those copies are kept.
            type: path
            default: /var/lib/justnews-huggingface/dropin-backups
          facts_file:
            description: The local facts file.
            type: path
            default: /etc/ansible/facts.d/justnews_huggingface.fact
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.info_module
  - justnews.huggingface.attributes.idempotent_not_modify_state
  - justnews.huggingface.attributes.platform_linux
  - justnews.huggingface.model_cache
attributes:
  check_mode:
    details:
      - The module only reads (and waits); check mode runs both phases as they are.
notes:
  - Runs as root, to read the units' EnvironmentFiles and to switch to their users. It needs no C(huggingface_hub).
  - The readability check of the preflight judges the cache as it is to be laid out, by the permission bits for the
    user's ids and groups; ACLs and mandatory access control (SELinux, AppArmor) are not considered.
  - M(justnews.huggingface.hf_doctor) reads the units, their EnvironmentFiles and their processes the same way.
seealso:
  - module: justnews.huggingface.hf_doctor
    description: Reads the units, their EnvironmentFiles and their processes the same way, on demand.
  - module: justnews.huggingface.hf_agent_env
    description: Writes the drop-ins whose settings O(expected_env) describes.
"""

EXAMPLES = r"""
- name: Check the Memory agent's unit before changing anything
  justnews.huggingface.hf_units:
    phase: preflight
    units:
      - name: justnews@memory.service
    agent_ports: {memory: 8007}
    dir_mode: "0750"
    file_mode: "0640"
    token_file: /etc/justnews/huggingface-token.env
    dropin_name: 60-hf-cache.conf
  register: preflight

- name: Restart the agent
  ansible.builtin.systemd_service:
    name: justnews@memory.service
    state: restarted

- name: Wait until it is ready again and runs with the cache settings
  justnews.huggingface.hf_units:
    phase: verify
    units:
      - name: justnews@memory.service
    agent_ports: {memory: 8007}
    restarted: [justnews@memory.service]
    previous: "{{ preflight.units }}"
    ready_timeout: 300
    expected_env:
      HF_HOME: /var/cache/hf
      HF_HUB_CACHE: /var/cache/hf/hub
      HF_HUB_OFFLINE: "1"
      HF_TOKEN: <unset>
    dropin_name: 60-hf-cache.conf
"""

RETURN = r"""
booted:
  description: Whether systemd manages the host. When not, no unit is read.
  returned: phase=preflight
  type: bool
  sample: true
system_state:
  description: What C(systemctl is-system-running) answered (C(n/a) when it answered nothing).
  returned: phase=preflight
  type: str
  sample: running
units:
  description:
    - Per unit, what systemd says of it (in the verification, after the wait). The preflight adds its user,
      groups, EnvironmentFiles and readiness check. Give it as O(previous) to a later verification.
  returned: always
  type: dict
  contains:
    load_state:
      description: C(LoadState) (C(unknown) when systemd does not run, empty when C(systemctl show) failed).
      type: str
    active_state:
      description: C(ActiveState).
      type: str
    sub_state:
      description: C(SubState).
      type: str
    result:
      description: C(Result).
      type: str
    main_pid:
      description: C(MainPID) (0 without a process).
      type: int
    n_restarts:
      description: C(NRestarts).
      type: int
    invocation_id:
      description: C(InvocationID), which changes at each start.
      type: str
    user:
      description: The user the unit runs as (C(root) without C(User=)). Preflight only.
      type: str
    group:
      description: Its C(Group=), else the user's primary group. Preflight only.
      type: str
    groups:
      description: The groups it runs with (the user's, and the unit's C(Group=) and C(SupplementaryGroups=)). Preflight only.
      type: list
      elements: str
    env_files:
      description: Its C(EnvironmentFiles=), in order. Preflight only.
      type: list
      elements: str
    ready_kind:
      description: C(http), C(command), C(none) (only active is awaited) or C(unknown). Preflight only.
      type: str
    ready_target:
      description: The readiness URL or command. Preflight only.
      type: str
  sample:
    justnews@memory.service: {load_state: loaded, active_state: active, sub_state: running, result: success,
                              main_pid: 4242, n_restarts: 0, invocation_id: 0123abcd, user: adra, group: adra,
                              groups: [adra], env_files: [/etc/justnews/global.env, /etc/justnews/memory.env],
                              ready_kind: http, ready_target: "http://127.0.0.1:8007/ready"}
owner:
  description: The cache owner - O(owner), else the units' one user, C(root) without units or users; empty when they disagree.
  returned: phase=preflight
  type: str
  sample: adra
group:
  description: The cache group, worked out as RV(owner).
  returned: phase=preflight
  type: str
  sample: adra
conflicts:
  description: The EnvironmentFiles that set a variable of O(managed_env), and which (values never shown).
  returned: phase=preflight
  type: list
  elements: dict
  sample: [{file: /etc/justnews/global.env, names: [HF_HOME]}]
conflict_keys:
  description: The variables of RV(conflicts), once each.
  returned: phase=preflight
  type: list
  elements: str
  sample: [HF_HOME]
fetch_tool:
  description: Whether O(fetch_python) exists and has O(fetch_requirements) installed, with the versions found.
  returned: phase=preflight, state=present and O(fetch_python) set
  type: dict
  sample: {python: /opt/justnews-huggingface/venv/bin/python, exists: true, satisfied: true,
           installed: {huggingface_hub: 2.4.0}}
settled:
  description:
    - Whether the rollout has nothing to do on the host (O(settle)) - every model's fetch plan and the environment
      would change nothing - so that the role skips the fetch and the environment tasks.
  returned: phase=preflight
  type: bool
  sample: true
models:
  description:
    - When RV(settled), each model's record as the role's C(model_cache_result.models) lists it (commit, ref, files,
      bytes, link, source, C(changed) false); else empty.
  returned: phase=preflight
  type: list
  elements: dict
  sample: [{repo_id: sentence-transformers/all-MiniLM-L6-v2, revision: main, commit: 1d4f2d2..., files: 14,
            bytes: 91472291, changed: false, skipped: false}]
unsettled:
  description: Why RV(settled) is false, one text per reason (empty when settled).
  returned: phase=preflight
  type: list
  elements: str
  sample: ["sentence-transformers/all-MiniLM-L6-v2: the fetch would change the cache"]
problems:
  description: Every problem found (O(problems) first); the preflight fails when there is one.
  returned: phase=preflight
  type: list
  elements: str
  sample: ["unit justnews@memory.service is not loaded: install it (for JustNews the justnews@.service template) or
            fix its name in model_cache_units"]
ready:
  description: The units that are active and, when restarted, passed their readiness check.
  returned: phase=verify
  type: list
  elements: str
  sample: [justnews@memory.service]
not_ready:
  description: The units that are not, each with what was awaited, the last answer, its state and its journal's last lines.
  returned: phase=verify
  type: list
  elements: dict
  contains:
    unit:
      description: The unit.
      type: str
    restarted:
      description: Whether it was restarted for this rollout.
      type: bool
    awaited:
      description: "What was awaited, for example C(GET http://127.0.0.1:8007/ready answering 200 with ready: true)."
      type: str
    last:
      description: The last answer, for example C(HTTP 404), or the unit's C(ActiveState).
      type: str
    state:
      description: Its C(ActiveState), C(SubState), C(Result), C(MainPID) and C(NRestarts) at the end.
      type: str
    journal:
      description: The last O(journal_lines) lines of its journal (token values masked).
      type: list
      elements: str
environment:
  description:
    - Where a unit's process differs from O(expected_env) - the pid, the key, the value in use (V(<set>) or
      V(<unset>) for a token) and the EnvironmentFile(s) that set it (empty when none explains it). A process whose
      environment could not be read has the key C(/proc/<pid>/environ) and the value C(not readable).
  returned: phase=verify
  type: list
  elements: dict
  sample: [{unit: justnews@memory.service, pid: 4242, key: HF_HOME, value: /srv/hf-elsewhere,
            source: /etc/justnews/global.env}]
msg:
  description:
    - What was found - the preflight's numbered problems; the verification's restarts, units not back, or the
      settings the processes run with.
  returned: always
  type: str
  sample: "Restarted justnews@memory.service: all back and ready (justnews@memory.service). justnews@memory.service
           run with HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN as the drop-in sets them (MainPID and children)."
error_kind:
  description:
    - On failure, the cause - V(preflight) (problems to fix before anything changes; RV(problems) lists them),
      V(not_ready) (a unit is not back and ready; RV(not_ready) says which and why), V(env_overridden) (a process
      runs with settings other than the drop-in's; RV(environment) says which), V(invalid_argument) (an option is
      out of range), V(not_root) (the module must run as root) or V(internal) (an unexpected error; the message
      names it).
  returned: on failure
  type: str
  sample: not_ready
fix:
  description:
    - On failure, what to do about RV(error_kind), the same text for every failure of that kind (C(msg) says what
      was wrong).
  returned: on failure
  type: str
  sample: "run the task with become: true"
"""

import os
import platform
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _settle
from ansible_collections.justnews.huggingface.plugins.module_utils import _systemd
from ansible_collections.justnews.huggingface.plugins.module_utils import _units

# Of these only names, specs and checks are used whose failures _units and _settle turn into problems or states:
# none becomes this module's error kind.
CONTAINS_FAILURES_OF = ("_agent_env", "_systemd")
MODE_RE = re.compile(r"^0?[0-7]{3}$")


def argument_spec():
    return dict(
        phase=dict(type="str", required=True, choices=["preflight", "verify"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        units=dict(type="list", elements="dict", default=[], options=_systemd.UNIT_OPTIONS),
        agent_ports=dict(type="dict", default=dict(_systemd.AGENT_PORTS)),
        owner=dict(type="str", default=""),
        group=dict(type="str", default=""),
        dir_mode=dict(type="str", default="0750"),
        file_mode=dict(type="str", default="0640"),
        managed_env=dict(type="list", elements="str", default=list(_agent_env.MANAGED_ENV)),
        token_file=dict(type="path"),
        env_conflicts=dict(type="str", default="fail", choices=["fail", "warn"]),
        dropin_name=dict(type="str"),
        problems=dict(type="list", elements="str", default=[]),
        host_name=dict(type="str"),
        restarted=dict(type="list", elements="str", default=[]),
        previous=dict(type="dict", default={}),
        restart_errors=dict(type="dict", default={}),
        expected_env=dict(type="dict", default={}),
        environment=dict(type="dict", options=_agent_env.options()),
        ready_timeout=dict(type="int", default=300),
        interval=dict(type="float", default=2),
        http_timeout=dict(type="int", default=5),
        journal_lines=dict(type="int", default=15),
        command_timeout=dict(type="int", default=_systemd.DEFAULT_CHECK_TIMEOUT),
        fetch_python=dict(type="path"),
        fetch_python_named=dict(type="bool", default=False),
        fetch_requirements=dict(type="list", elements="str", default=[]),
        settle=dict(type="dict", options=dict(
            source=dict(type="str", default="hub", choices=["hub", "controller", "bundle"]),
            models=dict(type="list", elements="dict", default=[]),
            fetch=dict(type="dict", default={}),
            environment=dict(type="dict", default={}, options=_agent_env.options()),
        )),
    )


def check_params(p):
    """The parameters as the phases read them; the text of the first one out of range, else None."""
    for option, least in (("ready_timeout", 0), ("journal_lines", 0), ("http_timeout", 1), ("command_timeout", 1)):
        if p[option] < least:
            return "%s must be at least %d, got %d" % (option, least, p[option])
    if p["interval"] <= 0:
        return "interval must be a positive number of seconds, got %s" % p["interval"]
    names = [unit["name"] for unit in p["units"]]
    unknown = [name for name in p["restarted"] if name not in names]
    if unknown:
        return "restarted names %s, which units does not list" % ", ".join(unknown)
    p["host_name"] = p["host_name"] or platform.node()
    p["agent_ports"] = {str(k): v for k, v in p["agent_ports"].items()}
    env = p["environment"]
    if not p["expected_env"] and env and env["hf_home"]:
        p["expected_env"] = _agent_env.expected_env(env["hf_home"], env["hub_cache"], env["offline"],
                                                    env["endpoint"], bool(env["token"]))
    p["expected_env"] = {str(k): str(v) for k, v in p["expected_env"].items()}
    p["managed_env"] = list(p["managed_env"]) + [k for k in p["expected_env"] if k not in p["managed_env"]]
    p["restart_errors"] = {str(k): str(v) for k, v in p["restart_errors"].items() if v}
    p["previous"] = {str(k): v for k, v in p["previous"].items() if isinstance(v, dict)}
    p["dir_mode_text"], p["file_mode_text"] = p["dir_mode"], p["file_mode"]
    for option in ("dir_mode", "file_mode"):
        if MODE_RE.match(p[option] or ""):
            p[option] = int(p[option], 8)
        elif p["phase"] == "preflight" and not p["problems"]:
            return '%s must be an octal string such as "0750", got %r' % (option, p[option])
        else:
            p[option] = None
    return None


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = dict(module.params)
    problem = check_params(p)
    if problem:
        _errors.fail(module, _errors.INVALID_ARGUMENT, problem)
    if os.geteuid() != 0:
        _errors.fail(module, _errors.NOT_ROOT, "hf_units must run as root to read the units' EnvironmentFiles and"
                                               " switch to their users")
    limit = p["command_timeout"]

    def run_command(argv, timeout=limit):
        return _systemd.run_command(module, argv, timeout=timeout)

    def as_user(user, func, *args):
        return _systemd.run_as(user, func, *args, timeout=limit)

    if p["phase"] == "preflight":
        checks = _units.Preflight(p, run_command, as_user)
    else:
        checks = _units.Verify(p, run_command, as_user, lambda url, timeout: _systemd.http_get(
            url, timeout, agent="justnews.huggingface hf_units"))
    try:
        result = checks.run()
    except Exception as exc:  # a check that breaks is reported, never a traceback that may quote a file
        module.no_log_values.update(checks.secrets.values)
        _errors.fail(module, _errors.INTERNAL, checks.mask("hf_units stopped in phase %s: %s: %s"
                                                           % (p["phase"], type(exc).__name__, exc)))
    module.no_log_values.update(checks.secrets.values)
    answer = None
    if p["phase"] == "preflight" and p["state"] == "present" and p["fetch_python"]:
        # the fetch plan of settle runs in the same child as the check of the fetch tool: one interpreter start
        result["fetch_tool"], problem, answer = _units.fetch_tool(
            p["fetch_python"], p["fetch_requirements"], run_command, named=p["fetch_python_named"],
            then=_settle.follow_up(p, result))
        if problem:
            result["problems"].append(problem)
    if p["phase"] == "preflight":
        result.update(settled=False, models=[], unsettled=[])
        if p["settle"] and p["state"] == "present" and not result["problems"]:
            result.update(_settle.settle_preflight(p, result, answer))
        for warning in result.pop("warnings"):
            module.warn(warning)
        if result["problems"]:
            _errors.fail(module, _errors.PREFLIGHT, **result)
        result["msg"] = "No problem found on %s." % p["host_name"]
    elif result["not_ready"]:
        _errors.fail(module, _errors.NOT_READY, **result)
    elif checks.env_failed:
        _errors.fail(module, _errors.ENV_OVERRIDDEN, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
