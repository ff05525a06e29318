"""hf_carry's results: per model, the model as item and its record; a failure fails the model it concerns and
its msg names it."""

from __future__ import annotations

from types import SimpleNamespace

from ansible_collections.justnews.huggingface.plugins.action import hf_carry

A, B = "a" * 40, "b" * 40
MODELS = [{"repo_id": "org/one", "revision": "main"}, {"repo_id": "org/two", "link": "/opt/two"}]
SEEDS = [{"item": MODELS[0], "commit": A, "listing": {"f": {"size": 3}}},
         {"item": MODELS[1], "commit": B, "listing": {"g": {"size": 5}}}]


def action(source="controller"):
    plugin = hf_carry.ActionModule.__new__(hf_carry.ActionModule)
    plugin._task = SimpleNamespace(args={"source": source})  # pylint: disable=protected-access
    return plugin


def test_each_result_carries_the_model_as_item_and_its_record():
    taken = [{"changed": True, "commit": A, "files": ["f"], "downloaded_bytes": 3},
             {"changed": False, "commit": B, "files": ["g"], "downloaded_bytes": 0}]
    results = action("bundle").results(SEEDS, taken)
    assert [r["item"] for r in results] == MODELS
    first, second = (r["record"] for r in results)
    assert (first["repo_id"], first["commit"], first["bytes"], first["received_from"]) == ("org/one", A, 3, "bundle")
    assert (second["link"], second["received_from"], second["changed"]) == ("/opt/two", None, False)


def test_the_failed_model_is_the_one_named_and_the_msg_names_it():
    failure = {"failed": True, "msg": "no space left", "error_kind": "no_space", "fix": "free some",
               "model": "org/two@" + B, "model_result": {"commit": B}}
    failure["results"] = action().results(SEEDS, [{"changed": True, "commit": A}], failure)
    failed = action().named(failure)
    records = [r["record"] for r in failed["results"]]
    assert [r["failed"] for r in records] == [False, True]
    assert (records[1]["error_kind"], records[1]["fix"], records[1]["msg"]) == ("no_space", "free some",
                                                                                "no space left")
    assert failed["msg"] == "org/two@%s: no space left" % B


def test_a_failed_stream_fails_the_models_of_its_refused_files_else_all():
    failure = {"failed": True, "msg": "blob refused", "error_kind": "integrity", "fix": "x",
               "corrupt_files": [["org/one", "f"]]}
    results = action().results(SEEDS, [], failure)
    assert [r["item"]["repo_id"] for r in results] == ["org/one"]
    failure["corrupt_files"] = []
    assert [r["record"]["failed"] for r in action().results(SEEDS, [], failure)] == [True, True]
