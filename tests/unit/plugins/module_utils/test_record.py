"""The record of a model is the same whatever fetched it, and decides where its bytes came from, what a rollback
goes back to and the fix of its failure."""

from __future__ import annotations

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _record

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
MODEL = {"repo_id": "org/name", "link": "/opt/models/name", "allow_patterns": ["*.json"]}


def fetched(**extra):
    result = {"changed": True, "commit": COMMIT_B, "ref": "main", "snapshot_path": "/c/snapshots/" + COMMIT_B,
              "files": ["config.json", "model.safetensors"],
              "listing": {"config.json": {"size": 10}, "model.safetensors": {"size": 90}, "other.bin": {"size": 5}},
              "downloaded_files": ["model.safetensors"], "downloaded_bytes": 90,
              "diff": {"before": {"commit": COMMIT_A, "link": "/c/snapshots/" + COMMIT_A}}}
    result.update(extra)
    return result


def test_every_record_has_the_same_keys_in_the_same_order():
    for result in (fetched(), {}, {"failed": True, "msg": "boom"}):
        for source in _record.SOURCES:
            assert tuple(_record.build(MODEL, result, source)) == _record.KEYS


def test_a_changed_model_records_what_it_had_and_rolls_back_to_it():
    record = _record.build(MODEL, fetched())
    assert record["repo_type"] == "model" and record["revision"] == "main" and record["link"] == MODEL["link"]
    assert (record["commit"], record["previous_commit"], record["rollback_to"]) == (COMMIT_B, COMMIT_A, COMMIT_A)
    assert record["previous_link"] == "/c/snapshots/" + COMMIT_A
    assert (record["files"], record["bytes"], record["downloaded_bytes"]) == (2, 100, 90)
    assert record["received_from"] == _record.DEFAULT_ENDPOINT and record["source"] == "hub"
    assert not record["failed"] and record["msg"] is record["fix"] is record["error_kind"] is None


def test_nothing_to_roll_back_to_when_unchanged_new_or_skipped():
    assert _record.build(MODEL, fetched(changed=False))["rollback_to"] is None
    assert _record.build(MODEL, fetched(diff={"before": {"present": False}}))["rollback_to"] is None
    assert _record.build(MODEL, fetched(), skipped=True)["rollback_to"] is None


def test_bytes_come_from_the_mirror_the_controller_or_the_bundle_or_nowhere():
    assert _record.build(MODEL, fetched(), "hub", "https://mirror.example")["received_from"] == "https://mirror.example"
    assert _record.build(MODEL, fetched(), "controller")["received_from"] == "controller"
    assert _record.build(MODEL, fetched(), "bundle")["received_from"] == "bundle"
    assert _record.build(MODEL, fetched(downloaded_bytes=0))["received_from"] is None


def test_a_failure_carries_its_message_kind_and_fix_and_no_change():
    record = _record.build(MODEL, {"failed": True, "changed": True, "msg": "gone", "error_kind": _errors.TIMEOUT})
    assert record["failed"] and not record["changed"] and record["msg"] == "gone"
    assert (record["error_kind"], record["fix"]) == (_errors.TIMEOUT, _errors.fix(_errors.TIMEOUT))
    assert _record.build(MODEL, {"failed": True})["error_kind"] == _errors.OTHER


def test_a_refused_token_is_said_to_be_refused_not_missing():
    for kind in (_errors.GATED, _errors.UNAUTHORIZED):
        result = {"failed": True, "msg": "401", "error_kind": kind, "fix": _errors.fix(kind)}
        assert _record.build(MODEL, result, token=True)["fix"] == _record.REFUSED_TOKEN_FIX
        assert _record.build(MODEL, result, token=False)["fix"] == _errors.fix(kind)
        assert "model_cache_token" in _record.build(MODEL, result, token=True)["fix"]


def test_a_failed_msg_names_the_failed_models_once():
    good = _record.build(MODEL, fetched())
    bad = _record.build({"repo_id": "org/other"}, {"failed": True, "commit": COMMIT_A})
    assert _record.failed_msg([good, bad], "stream cut") == "org/other@%s: stream cut" % COMMIT_A
    assert _record.failed_msg([good, bad], "org/other: no space") == "org/other: no space"
    assert _record.failed_msg([good], "stream cut") == "stream cut"
