# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a model_cache run has anything to do on a host, decided in the preflight's one call (hf_units): the
fetch plan of every model, made offline by hf_snapshot's own planning code in check mode, and the environment
that hf_agent_env would write, checked by its own code in check mode. A host where neither would change anything
is settled: the role then skips the fetch and the environment tasks, and the run costs one module call.

The fetch plan needs huggingface_hub (the patterns are the library's), which the interpreter that runs hf_units
may lack: it runs in a child of the fetch interpreter (the role's venv), which imports this file from the
module's own payload. The child never reaches the network: a step that would ask the Hub (a branch the cache does
not hold complete, state latest) makes the model unsettled, and the fetch task then runs as before.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import json
import os

from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _record

# The options of a model_cache_models entry that hf_snapshot reads, and those the fetch task sets for all models.
# The modules whose checks this file runs: every failure of theirs becomes a reason the host is not settled (the
# fetch or hf_agent_env then runs and reports it), so their error kinds never leave hf_units.
CONTAINS_FAILURES_OF = ("_snapshot", "_agent_env")
MODEL_KEYS = ("repo_id", "repo_type", "revision", "ref", "allow_patterns", "ignore_patterns", "link", "state")
FETCH_KEYS = ("hf_home", "cache_dir", "dir_mode", "mode", "endpoint", "shared_blobs", "xet", "free_space_margin",
              "verify_checksums", "retries", "timeout", "read_timeout")
# What the child may take: it reads caches, listings and links of every model (the checks of hf_snapshot).
CHILD_TIMEOUT = 120
COMMIT_LEN = 40

# The fetch plan, run by the fetch interpreter: after the check of its requirements in the same child
# (_units.fetch_tool's `then`), or alone. Its args, after "--": the collection's sys.path entry and the job.
CHILD = r"""
import json, sys
_args = sys.argv[sys.argv.index("--") + 1:]
sys.path.insert(0, _args[0])
from ansible_collections.justnews.huggingface.plugins.module_utils import _settle
print(json.dumps(_settle.plan_models(json.loads(_args[1]))))
"""


def payload_root(path=__file__):
    """The sys.path entry this collection was imported from (the module's payload zip, or a folder)."""
    marker = os.sep + "ansible_collections" + os.sep
    index = path.rfind(marker)
    return path[:index] if index > 0 else None


def is_commit(revision):
    return isinstance(revision, str) and len(revision) == COMMIT_LEN and all(c in "0123456789abcdef" for c in revision)


# --- the fetch plan, in the child ---------------------------------------------------------------------------------

class _Module:
    """What Snapshot reads of a module: params, check_mode, warn."""

    def __init__(self, params):
        self.params = params
        self.check_mode = True
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


class NeedsHub(Exception):
    """The plan would ask the Hub: the host is not settled for this model."""


def plan_model(model, fetch, owner, group):
    """{settled, why, result} for one model: hf_snapshot's own plan in check mode, without the network."""
    # Imported here, in the child that has huggingface_hub; the preflight's own process never loads them.
    from ansible_collections.justnews.huggingface.plugins.module_utils import _snapshot

    class Planner(_snapshot.Snapshot):
        def network(self, step, func, *args):
            raise NeedsHub(step)

    if _snapshot.HF_IMPORT_ERROR:
        return {"settled": False, "why": "huggingface_hub cannot be imported"}
    # The library's own check (_library) is left to the fetch: a settled run does not use the library.
    params = dict((name, spec.get("default")) for name, spec in _snapshot.ARGUMENT_SPEC.items())
    params.update((k, fetch[k]) for k in FETCH_KEYS if fetch.get(k) is not None)
    params.update((k, model[k]) for k in MODEL_KEYS if model.get(k) is not None)
    params.update(owner=owner or None, group=group or None, offline=False, token=None, listing=None,
                  blobs_from=None, defer_download=False, progress_file=None, staging_dir=None)
    try:
        result = Planner(_Module(params)).run()
    except NeedsHub as exc:
        return {"settled": False, "why": "the fetch asks the Hub (%s)" % exc}
    except _errors.Failure as exc:
        return {"settled": False, "why": "the fetch would fail: %s" % exc.msg}
    except Exception as exc:  # any other surprise: the fetch task runs and says what it is
        return {"settled": False, "why": "%s: %s" % (type(exc).__name__, exc)}
    if result.get("changed"):
        return {"settled": False, "why": "the fetch would change the cache", "result": result}
    return {"settled": True, "why": "", "result": result}


def plan_models(job):
    """Every model's plan (the child's answer): [{settled, why, result}]."""
    return [plan_model(model, job.get("fetch") or {}, job.get("owner"), job.get("group"))
            for model in job.get("models") or []]


def then(job, root=None):
    """The fetch plan of `job` as _units.fetch_tool's follow-up: (script, args, timeout); None when the
    collection's code cannot be found for the child."""
    root = root or payload_root()
    if not root:
        return None
    return CHILD, [root, json.dumps(job)], CHILD_TIMEOUT


def read_plans(answer, job):
    """(plans, None) from the child's (rc, out, err), else (None, why)."""
    if answer is None:
        return None, "the fetch plan did not run"
    rc, out, err = answer
    if rc != 0:
        how = "timed out" if rc is None else "rc %s" % rc
        return None, "the fetch plan did not run (%s): %s" % (how, (err or out).strip()[-300:])
    try:
        plans = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "the fetch plan answered no result"
    if not isinstance(plans, list) or len(plans) != len(job.get("models") or []):
        return None, "the fetch plan answered %r" % (plans,)
    return plans, None


def run_child(python, job, run_command, root=None):
    """plan_models(job) in a child of `python` of its own: (plans, None), else (None, why)."""
    follow = then(job, root)
    if follow is None:
        return None, "the collection's code was not found"
    script, args, timeout = follow
    return read_plans(run_command([python, "-I", "-c", "import sys\n" + script, "--"] + args, timeout=timeout), job)


# --- what the role records per model ------------------------------------------------------------------------------

# --- the whole check ------------------------------------------------------------------------------------------------

def plan_job(spec, owner, group):
    """(job for the child, None), or (None, why the host cannot be settled without it)."""
    source = spec.get("source") or "hub"
    models = list(spec.get("models") or [])
    if not models:
        return None, "no model to check"
    if source != "hub":
        # The controller's fetch or the bundle's manifest decides a branch's commit, not the host's refs.
        branches = [m.get("repo_id") for m in models if not is_commit(m.get("revision") or "main")]
        if branches:
            return None, ("model_cache_source %s resolves branches on the controller: %s"
                          % (source, ", ".join(map(str, branches))))
    return {"models": models, "fetch": dict(spec.get("fetch") or {}), "owner": owner, "group": group}, None


_RUN = object()


def settle(spec, owner, group, booted, fetch_python, run_command, answer=_RUN):
    """{settled, models, unsettled}: whether neither the fetch nor hf_agent_env would change anything, the models'
    records (when every model is settled) and, per part that is not, why. `spec` is hf_units' option settle;
    `answer` the child's (rc, out, err) when fetch_tool ran the plan, else the plan runs in a child here."""
    answer_out = {"settled": False, "models": [], "unsettled": []}
    job, why = plan_job(spec, owner, group)
    if job is None:
        answer_out["unsettled"].append(why)
        return answer_out
    if answer is _RUN:
        plans, why = run_child(fetch_python, job, run_command)
    else:
        plans, why = read_plans(answer, job)
    if plans is None:
        answer_out["unsettled"].append(why)
        return answer_out
    models, source, endpoint = job["models"], spec.get("source") or "hub", job["fetch"].get("endpoint")
    for model, plan in zip(models, plans):
        if not plan.get("settled"):
            answer_out["unsettled"].append("%s: %s" % (model.get("repo_id"), plan.get("why")))
    if answer_out["unsettled"]:
        return answer_out
    records = [_record.build(m, plan["result"], source, endpoint) for m, plan in zip(models, plans)]
    env = dict(spec.get("environment") or {})
    env["backup"] = bool(env.get("backup", True)) and booted
    env["models"] = records
    try:
        changed, _result = _agent_env.check(env)
    except _errors.Failure as exc:
        answer_out["unsettled"].append("the environment: %s" % exc.msg)
        return answer_out
    except Exception as exc:  # hf_agent_env's own run reports it
        answer_out["unsettled"].append("the environment: %s" % type(exc).__name__)
        return answer_out
    if changed:
        answer_out["unsettled"].append("the environment would change")
        return answer_out
    answer_out.update(settled=True, models=records)
    return answer_out


def follow_up(params, preflight):
    """The fetch plan for _units.fetch_tool to run after its check (None when there is nothing to plan)."""
    if not params.get("settle") or params["state"] != "present" or preflight.get("problems"):
        return None
    job, _why = plan_job(params["settle"], preflight.get("owner"), preflight.get("group"))
    return then(job) if job else None


def settle_preflight(params, preflight, answer):
    """The settle part of hf_units' preflight result, from its parameters, what the preflight found (the owner
    and group, whether systemd runs, the fetch tool) and the answer of the plan that fetch_tool ran."""
    tool = preflight.get("fetch_tool") or {}
    if not params.get("fetch_python") or not tool.get("satisfied"):
        return {"settled": False, "models": [], "unsettled": ["the fetch tool is not installed as required"]}
    return settle(params["settle"], preflight.get("owner"), preflight.get("group"), preflight.get("booted"),
                  params["fetch_python"], None, answer=answer)
