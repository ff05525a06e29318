# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record of one model after a fetch: what hf_snapshot and hf_carry return per model as `record`, and what
the role model_cache lists in model_cache_result.models, the same keys whatever the source (the Hub, the
controller's cache, a bundle). The role reads these keys by name; every decision about a model's result (where
its bytes came from, what a rollback goes back to, the fix of its failure) is made here, once.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors

DEFAULT_ENDPOINT = "https://huggingface.co"
SOURCES = ("hub", "controller", "bundle")
# The keys of every record, in the order they are listed.
KEYS = ("repo_id", "repo_type", "revision", "ref", "commit", "previous_commit", "previous_link", "snapshot_path",
        "link", "downloaded_files", "downloaded_bytes", "files", "bytes", "source", "received_from", "changed",
        "skipped", "failed", "msg", "error_kind", "fix", "rollback_to")
# A token was given and the Hub still refused it: the kind's own fix (pass a token) would not help.
REFUSED_TOKEN_KINDS = (_errors.GATED, _errors.UNAUTHORIZED)
REFUSED_TOKEN_FIX = ("the Hub refused the token in 'token' (model_cache_token) for this repository: check that the"
                     " token is valid and has been granted access to it")


def received_from(source, endpoint, downloaded_bytes):
    """Where this run's bytes came from: None when none arrived, else the controller or the bundle, or the Hub's
    address."""
    if not downloaded_bytes:
        return None
    if source in ("controller", "bundle"):
        return source
    return endpoint or DEFAULT_ENDPOINT


def failure_fix(kind, fix=None, token=False):
    """The fix shown for a failure of `kind`: the module's, else the kind's; for a refused token, that."""
    if token and kind in REFUSED_TOKEN_KINDS:
        return REFUSED_TOKEN_FIX
    return fix or (_errors.fix(kind) if kind else None)


def build(model, result, source="hub", endpoint=None, token=False, skipped=False):
    """The record of `model` (a model_cache_models entry, or hf_snapshot's parameters) from `result` (hf_snapshot's
    result for it, or what hf_receive returned for it); `token`: whether a token was given to the fetch.

    rollback_to is the commit a rollback puts the model back on: the one it had before, when this run changed it
    and it had one; else None."""
    model = model if isinstance(model, dict) else {}
    result = result if isinstance(result, dict) else {}
    before = (result.get("diff") or {}).get("before") or {}
    if not isinstance(before, dict):
        before = {}
    listing = result.get("listing") or {}
    files = result.get("files") or []
    downloaded = int(result.get("downloaded_bytes") or 0)
    failed = bool(result.get("failed"))
    changed = bool(result.get("changed")) and not failed
    kind = result.get("error_kind") or (_errors.OTHER if failed else None)
    previous = before.get("commit")
    return {
        "repo_id": model.get("repo_id"),
        "repo_type": model.get("repo_type") or "model",
        "revision": model.get("revision") or "main",
        "ref": result.get("ref"),
        "commit": result.get("commit"),
        "previous_commit": previous,
        "previous_link": before.get("link"),
        "snapshot_path": result.get("snapshot_path"),
        "link": model.get("link"),
        "downloaded_files": list(result.get("downloaded_files") or []),
        "downloaded_bytes": downloaded,
        "files": len(files),
        "bytes": sum(int((listing.get(name) or {}).get("size") or 0) for name in files),
        "source": source,
        "received_from": received_from(source, endpoint, downloaded),
        "changed": changed,
        "skipped": bool(skipped),
        "failed": failed,
        "msg": result.get("msg") if failed else None,
        "error_kind": kind if failed else None,
        "fix": failure_fix(kind, result.get("fix"), token) if failed else None,
        "rollback_to": previous if changed and previous and not skipped else None,
    }


def name(record):
    """The model of a record as `repo_id@commit`, or `repo_id@revision` before a commit is known."""
    return "%s@%s" % (record.get("repo_id"), record.get("commit") or record.get("revision") or "main")


def failed_msg(records, msg):
    """`msg` led by the models whose record failed, unless it names them already."""
    names = [name(r) for r in records if r.get("failed")]
    missing = [n for n in names if n.split("@")[0] not in (msg or "")]
    if not missing:
        return msg
    return "%s: %s" % (", ".join(names), msg or "failed")
