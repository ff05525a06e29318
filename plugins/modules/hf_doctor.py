#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_doctor
short_description: Diagnose a host's Hugging Face cache, its agents and their route to the Hub
version_added: 0.1.0
description:
  - Answers "why does my agent still download, or hit 429?" on one host, changing nothing. Each check gives a
    verdict (C(ok), C(warn), C(fail) or C(skip)), what it found and the fix.
  - C(unit) - each unit is loaded and active, and answers its readiness URL.
  - C(cache) - the cache exists, and each unit's user can read the configured snapshots and take the locks
    (checked in a child process running with that user's ids, killed after O(check_timeout) seconds). The cache
    belongs to the agents' user, so nothing in it is trusted - every path below O(cache_dir) is reached from a
    descriptor of its folder with C(O_NOFOLLOW), files are opened with C(O_NONBLOCK) and judged by C(fstat)
    before a byte is read, and a FIFO, a device or a link the library would not make (under C(refs/),
    C(trees/), C(.locks/), a snapshot folder, a blob) is never followed or read but named in a C(cache) or
    C(blob) finding with its fix.
  - C(model) - each model is complete at its commit (the commit itself when O(models[].revision) is one, else
    the commit its ref records), checked offline against the cache's own listing, checksums included. Files
    that C(huggingface_hub) keeps in its shared blob store (after Xet downloads, C(<cache>/blobs/<2 hex>/<xet
    hash>), linked from the repository's C(blobs/<etag>)) are read and checked through the store.
  - C(blob) - for each file of a model that cannot be read, why - a dangling link (to a blob or a store entry
    that is not there), a foreign link (a snapshot file or blob linking outside the repository's blobs or the
    shared store), or a store entry that is not a regular file (a FIFO, a device) - with the fix. Links are read,
    never followed, and such entries are never opened.
  - C(token) - the token file is present, root-only and read by every unit, and the Hub accepts the token
    (C(/api/whoami-v2)); its value is never returned, logged or put on a command line. Every token value the
    module knows - O(token), the token file's, and C(HF_TOKEN), C(HF_HUB_TOKEN), C(HUGGINGFACE_HUB_TOKEN) or
    C(HUGGING_FACE_HUB_TOKEN) in a unit's C(Environment=), its environment files or its process - is masked,
    whatever its shape, wherever the results quote a text (journal lines, a Hub's error), besides anything that
    looks like a Hub token (C(hf_...)).
  - C(hub) - the Hub or mirror answers for each model's revision, when O(reach_hub) says the host should reach it.
  - C(environment) - the settings a unit gets (its C(Environment=), then every C(EnvironmentFile=), which the
    JustNews start script re-sources so that they win) and those of its running process (C(MainPID) and its
    children) equal O(expected_env).
  - C(journal) - the agent's journal since its last start (its C(InvocationID)) - model downloads, rate limits
    (429) and offline-mode errors, counted. C(systemctl) and C(journalctl) are killed after O(check_timeout)
    seconds.
  - Environment files and the token file are read only when they are regular files of at most 1 MiB, opened with
    C(O_NONBLOCK), and without following a link below a folder another user can write (the cache among them);
    anything else is a C(fail) finding naming the file.
  - Usually run through the C(doctor) entry point of the C(justnews.huggingface.model_cache) role, or the
    C(justnews.huggingface.doctor) playbook, which fill every option from the role's variables.
author:
  - JustNews maintainers (@justnews)
options:
  cache_dir:
    description: The hub cache (C(HF_HUB_CACHE)) of the agents.
    type: path
    required: true
  models:
    description: The models the agents load.
    type: list
    elements: dict
    default: []
    suboptions:
      repo_id:
        description: Repository as C(owner/name).
        type: str
        required: true
      repo_type:
        description: Repository type.
        type: str
        default: model
        choices: [model, dataset, space]
      revision:
        description: Branch, tag or 40-hex commit.
        type: str
        default: main
      ref:
        description: The name under C(refs/) that records a branch or tag, when it is not O(models[].revision).
        type: str
      allow_patterns:
        description: Only files matching these patterns belong to the snapshot.
        type: list
        elements: str
      ignore_patterns:
        description: Files matching these patterns do not belong to the snapshot.
        type: list
        elements: str
      link:
        description: The model's link, as an entry of the role's C(model_cache_models) gives it; not checked.
        type: str
      state:
        description: V(absent) leaves the model out of the checks (an entry of C(model_cache_models) being removed).
        type: str
        default: present
        choices: [present, absent]
  units:
    description:
      - The systemd units of the agents that load the models - each a unit name, or an entry of the role's
        C(model_cache_units) (C(name), C(ready), C(ready_url), C(ready_port), C(ready_path), C(ready_command), as
        O(justnews.huggingface.hf_units#module:units) of C(justnews.huggingface.hf_units) reads them).
      - A unit's readiness URL is worked out as C(justnews.huggingface.hf_units) does - its C(ready_url), else
        C(http://127.0.0.1:<ready_port, else the port of its agent in O(agent_ports)><ready_path>); a unit with
        C(ready) false or a C(ready_command) is checked for being active only.
    type: list
    elements: raw
    default: []
  agent_ports:
    description:
      - Port of each agent's HTTP server, by the instance name of its unit (C(memory) of C(justnews@memory.service)).
      - The default maps the upstream JustNews agents as its C(health_check.sh) does.
    type: dict
    default: {mcp_bus: 8000, chief_editor: 8001, scout: 8002, fact_checker: 8003, analyst: 8004, synthesizer: 8005,
              critic: 8006, memory: 8007, reasoning: 8008, newsreader: 8009, analytics: 8011, archive: 8012,
              dashboard: 8013, gpu_orchestrator: 8014, crawler: 8015}
  ready_urls:
    description:
      - Readiness URL per unit (C(GET) must answer 200, and C(ready) must not be false in a JSON body), instead of
        the one worked out from O(units).
    type: dict
    default: {}
  hf_home:
    description:
      - C(HF_HOME) of the units' drop-in. With O(expected_env) empty, the units and their processes must see what
        C(justnews.huggingface.hf_agent_env)'s drop-in sets - this, O(cache_dir) as C(HF_HUB_CACHE),
        C(HF_HUB_OFFLINE) by O(offline), C(HF_ENDPOINT) when O(endpoint) is set, and C(HF_TOKEN) present exactly
        when O(token_expected).
    type: path
  offline:
    description: Whether the units' drop-in sets C(HF_HUB_OFFLINE=1) (see O(hf_home)).
    type: bool
    default: true
  expected_env:
    description:
      - What the units and their processes must see. V(<set>) and V(<unset>) test presence only; the values of
        token variables are never compared or shown.
      - Empty takes what the drop-in sets (O(hf_home)); without O(hf_home) too, nothing is compared.
    type: dict
    default: {}
  managed_env:
    description: Variables read from the units' EnvironmentFiles, because they decide where the agents look.
    type: list
    elements: str
    default: [HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT, HF_TOKEN, HF_HUB_TOKEN, HUGGINGFACE_HUB_TOKEN,
              HUGGING_FACE_HUB_TOKEN, HUGGINGFACE_HUB_CACHE, TRANSFORMERS_OFFLINE, SENTENCE_TRANSFORMERS_HOME]
  sourced_files:
    description:
      - Files that the units' start scripts source besides their EnvironmentFiles (C(%i) is the unit's instance).
    type: list
    elements: str
    default: []
  endpoint:
    description: The Hub or mirror the host fetches from; empty is C(https://huggingface.co).
    type: str
    default: ""
  reach_hub:
    description:
      - Whether the host is meant to reach O(endpoint). When false (models sent from the controller or a
        bundle), the C(hub) check is skipped and the token is not tested against the Hub.
    type: bool
    default: true
  token_file:
    description: The root-only file that the drop-in reads with C(EnvironmentFile=).
    type: path
  token_expected:
    description: Whether a token is configured for these units.
    type: bool
    default: false
  verify_checksums:
    description: Hash every file of the models against the listing (SHA-256 or git blob id).
    type: bool
    default: true
  journal:
    description: Count the downloads, rate limits and offline errors in each unit's journal since its last start.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each HTTP answer.
    type: int
    default: 10
  check_timeout:
    description:
      - Seconds each check that reads the cache or a process as a unit's user (in a child process), and each
        C(systemctl) or C(journalctl) run, may take. Past it the child or command is killed and a C(fail)
        finding says what it was reading.
    type: int
    default: 30
  token:
    description:
      - The token the units are given (the role's C(model_cache_token)). It is only used to mask its value in
        the results; the doctor tests the token in O(token_file).
    type: str
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.info_module
  - justnews.huggingface.attributes.idempotent_not_modify_state
  - justnews.huggingface.attributes.platform_linux
  - justnews.huggingface.attributes.actiongroup_cache
  - justnews.huggingface.model_cache
attributes:
  check_mode:
    details:
      - Check mode runs every check.
notes:
  - Runs as root, to read the units' token file and switch to their users. It needs no C(huggingface_hub).
seealso:
  - module: justnews.huggingface.hf_snapshot
    description: Fetches the models into the cache; its RV(justnews.huggingface.hf_snapshot#module:error_kind)
      and RV(justnews.huggingface.hf_snapshot#module:fix) tell why a fetch failed.
  - module: justnews.huggingface.hf_prune
    description: Frees the revisions the agents no longer use.
  - module: justnews.huggingface.hf_units
    description: The same reading of the units, before and after a rollout's restarts.
  - module: justnews.huggingface.hf_agent_env
    description: Writes the drop-ins whose settings the C(environment) check compares.
"""

EXAMPLES = r"""
- name: Diagnose the Memory agent's model cache
  justnews.huggingface.hf_doctor:
    cache_dir: /var/cache/hf/hub
    models:
      - repo_id: sentence-transformers/all-MiniLM-L6-v2
        revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
    units:
      - name: justnews@memory.service  # GET http://127.0.0.1:8007/ready, from agent_ports
    hf_home: /var/cache/hf  # the units must see HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE=1, no HF_TOKEN
  register: doctor

- name: Show what is wrong
  ansible.builtin.debug:
    msg: "{{ doctor.findings | rejectattr('verdict', 'in', ['ok', 'skip']) | list }}"
"""

RETURN = r"""
findings:
  description: One entry per check and subject.
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description:
        - C(unit), C(cache), C(model), C(blob), C(token), C(hub), C(environment) or C(journal).
        - A C(cache) finding whose subject is a path below O(cache_dir) names an entry the doctor refused - a
          link the library would not make there, a FIFO, a device - and how to remove it.
      type: str
    subject:
      description: The unit, model, file or endpoint checked.
      type: str
    verdict:
      description: C(ok), C(warn), C(fail) or C(skip).
      type: str
    detail:
      description: What the check found.
      type: str
    fix:
      description: What to do about it (empty when nothing is to be done).
      type: str
  sample:
    - {check: environment, subject: justnews@memory.service, verdict: fail,
       detail: "HF_HUB_OFFLINE=0 set by /etc/justnews/memory.env, the role sets 1",
       fix: "remove HF_HUB_OFFLINE from /etc/justnews/memory.env (the start script re-sources it after systemd)"}
verdict:
  description: The worst verdict of the findings.
  returned: always
  type: str
  sample: fail
counts:
  description: Findings per verdict.
  returned: always
  type: dict
  sample: {ok: 7, warn: 0, fail: 1, skip: 1}
error_kind:
  description:
    - On failure of the module itself (not a C(fail) finding), the cause - V(invalid_argument) (an option is
      out of range or names an unsafe repository or revision), V(not_root) (the module must run as root) or
      V(internal) (an unexpected error; the message names it).
  returned: on failure
  type: str
  sample: invalid_argument
fix:
  description:
    - On failure of the module itself, what to do about RV(error_kind), the same text for every failure of that
      kind (C(msg) says what was wrong).
  returned: on failure
  type: str
  sample: "run the task with become: true"
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env
from ansible_collections.justnews.huggingface.plugins.module_utils import _doctor
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _systemd

# Of these only names and checks are used whose failures _doctor turns into findings; an entry of units that
# _systemd refuses fails this module with invalid_argument, which it returns itself.
CONTAINS_FAILURES_OF = ("_agent_env", "_systemd")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cache_dir=dict(type="path", required=True),
            models=dict(type="list", elements="dict", default=[], options=dict(
                repo_id=dict(type="str", required=True),
                repo_type=dict(type="str", default="model", choices=["model", "dataset", "space"]),
                revision=dict(type="str", default="main"),
                ref=dict(type="str"),
                allow_patterns=dict(type="list", elements="str"),
                ignore_patterns=dict(type="list", elements="str"),
                link=dict(type="str"),
                state=dict(type="str", default="present", choices=["present", "absent"]),
            )),
            units=dict(type="list", elements="raw", default=[]),
            agent_ports=dict(type="dict", default=dict(_systemd.AGENT_PORTS)),
            ready_urls=dict(type="dict", default={}),
            hf_home=dict(type="path"),
            offline=dict(type="bool", default=True),
            expected_env=dict(type="dict", default={}),
            managed_env=dict(type="list", elements="str", default=list(_agent_env.MANAGED_ENV)),
            sourced_files=dict(type="list", elements="str", default=[]),
            endpoint=dict(type="str", default=""),
            reach_hub=dict(type="bool", default=True),
            token_file=dict(type="path"),
            token_expected=dict(type="bool", default=False),
            verify_checksums=dict(type="bool", default=True),
            journal=dict(type="bool", default=True),
            timeout=dict(type="int", default=10),
            check_timeout=dict(type="int", default=_systemd.DEFAULT_CHECK_TIMEOUT),
            token=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    p = dict(module.params)
    secrets = _systemd.Secrets()
    secrets.add(p["token"])

    def fail(msg, kind):
        module.no_log_values.update(secrets.values)
        _errors.fail(module, kind, secrets.mask(msg))

    for option in ("timeout", "check_timeout"):
        if p[option] <= 0:
            fail("%s must be a positive number of seconds (default %d), got %d"
                 % (option, 10 if option == "timeout" else _systemd.DEFAULT_CHECK_TIMEOUT, p[option]),
                 _errors.INVALID_ARGUMENT)
    if not p["expected_env"] and p["hf_home"]:  # what hf_agent_env's drop-in sets
        p["expected_env"] = _agent_env.expected_env(p["hf_home"], p["cache_dir"], p["offline"], p["endpoint"],
                                                    p["token_expected"])
    p["expected_env"] = {k: str(v) for k, v in p["expected_env"].items()}
    p["managed_env"] = sorted(set(p["managed_env"]) | set(p["expected_env"]))
    p["endpoint"] = p["endpoint"] or "https://huggingface.co"
    p["agent_ports"] = {str(k): v for k, v in p["agent_ports"].items()}
    try:
        p["units"] = _systemd.unit_entries(p["units"])
    except _errors.Failure as exc:
        fail(exc.msg, exc.kind)
    p["models"] = [model for model in p["models"] if model["state"] == "present"]
    for model in p["models"]:
        try:
            _names.check_repo_id(model["repo_id"])
            if not _names.is_commit(model["revision"]):
                _names.check_ref_name(model["revision"], "revision")
            if model.get("ref"):
                _names.check_ref_name(model["ref"], "ref")
        except _names.UnsafeName as exc:
            fail("models: %s: give repo_id as owner/name, revision as a branch, tag or 40-hex commit" % exc,
                 _errors.INVALID_ARGUMENT)
    if os.geteuid() != 0:
        fail("hf_doctor must run as root to read the token file and switch to the units' users", _errors.NOT_ROOT)
    limit = p["check_timeout"]
    doctor = _doctor.Doctor(p, lambda argv: _systemd.run_command(module, argv, timeout=limit),
                            lambda user, func, *args: _systemd.run_as(user, func, *args, timeout=limit),
                            lambda url, timeout, token=None, proxy=False: _systemd.http_get(
                                url, timeout, token, proxy, agent="justnews.huggingface hf_doctor"), secrets)
    try:
        findings = doctor.run()
    except Exception as exc:  # a check that breaks is reported, never a traceback that may quote a file
        fail("hf_doctor stopped: %s: %s; the findings so far were not returned" % (type(exc).__name__, exc),
             _errors.INTERNAL)
    module.no_log_values.update(secrets.values)
    counts = {v: sum(1 for f in findings if f["verdict"] == v) for v in _doctor.RANK}
    module.exit_json(changed=False, findings=findings, verdict=_doctor.worst(findings), counts=counts)


if __name__ == "__main__":
    main()
