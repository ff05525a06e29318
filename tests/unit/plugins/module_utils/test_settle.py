"""_settle: whether a run has anything to do on a host, from hf_snapshot's own plan (in a real child interpreter
with huggingface_hub, as the preflight runs it) and hf_agent_env's own check, on caches and files laid out on
disk. Nothing may be written and no request made."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env, _errors, _record, _settle

REPO_ID = "org/model"
FOLDER = "models--org--model"
COMMIT = "a" * 40
FILES = {"config.json": b'{"a": 1}\n', "README.md": b"model A\n", "1_Pooling/config.json": b"{}\n"}
CLOSED = "http://127.0.0.1:9"  # nothing listens: a request would fail, and the tests assert none is made


def oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lay_out(cache, commit=COMMIT, files=None, ref="main", mode=0o644):
    """A cache as huggingface_hub leaves it after fetching `files` at `commit`."""
    files = FILES if files is None else files
    root = cache / FOLDER
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / oid(data)
        blob.write_bytes(data)
        blob.chmod(mode)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "trees").mkdir(exist_ok=True)
    listing = {name: {"size": len(data), "blob_id": oid(data)} for name, data in files.items()}
    (root / "trees" / (commit + ".json")).write_text(json.dumps({"format_version": 1, "files": listing}))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return root


def run_command(argv, timeout=30):
    """As _systemd.run_command answers: 127 for a command that cannot be started."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except OSError as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def fetch(cache):
    return {"cache_dir": str(cache), "endpoint": CLOSED, "mode": "0644", "retries": 0, "timeout": 30}


def plans(models, cache, **job):
    answer, why = _settle.run_child(sys.executable, dict({"models": models, "fetch": fetch(cache), "owner": "root",
                                                          "group": "root"}, **job), run_command)
    assert why is None
    return answer


def env_params(tmp_path, **kw):
    p = dict(units=["justnews@memory.service"], systemd_dir=str(tmp_path / "systemd"), hf_home=str(tmp_path),
             hub_cache=str(tmp_path / "hub"), token_file=str(tmp_path / "token.env"),
             backup_dir=str(tmp_path / "backups"), facts_file=str(tmp_path / "facts" / "jn.fact"))
    p.update(kw)
    return p


def tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[path] = (st.st_mode, st.st_uid, st.st_size, os.readlink(path) if os.path.islink(path) else None)
    return out


def test_a_complete_pinned_commit_is_settled_and_its_record_is_the_fetchs(tmp_path):
    cache = tmp_path / "hub"
    lay_out(cache)
    before = tree(tmp_path)
    [plan] = plans([{"repo_id": REPO_ID, "revision": COMMIT}], cache)
    assert plan["settled"], plan
    record = _record.build({"repo_id": REPO_ID, "revision": COMMIT}, plan["result"], "hub", CLOSED)
    assert record == {
        "repo_id": REPO_ID, "repo_type": "model", "revision": COMMIT, "ref": "main", "commit": COMMIT,
        "previous_commit": COMMIT, "previous_link": None,
        "snapshot_path": str(cache / FOLDER / "snapshots" / COMMIT), "link": None, "downloaded_files": [],
        "downloaded_bytes": 0, "files": 3, "bytes": sum(len(d) for d in FILES.values()), "source": "hub",
        "received_from": None, "changed": False, "skipped": False, "failed": False, "msg": None,
        "error_kind": None, "fix": None, "rollback_to": None}
    assert tree(tmp_path) == before  # nothing written, not even a lock


def test_a_branch_the_cache_holds_complete_is_settled_without_a_request(tmp_path):
    cache = tmp_path / "hub"
    lay_out(cache)
    [plan] = plans([{"repo_id": REPO_ID, "revision": "main"}], cache)
    assert plan["settled"] and plan["result"]["commit"] == COMMIT


@pytest.mark.parametrize("model, change, words", [
    ({"revision": COMMIT}, "missing", "the fetch would change the cache"),
    ({"revision": "v2"}, None, "the fetch asks the Hub (resolving revision 'v2')"),
    ({"revision": "main", "state": "latest"}, None, "the fetch asks the Hub"),
    ({"revision": COMMIT}, "mode", "the fetch would change the cache"),
    ({"revision": COMMIT, "link": "LINK"}, None, "the fetch would change the cache"),
    ({"revision": "b" * 40}, None, "the fetch asks the Hub (listing the files of " + "b" * 40),
])
def test_a_model_with_anything_to_do_is_not_settled_and_no_request_is_made(tmp_path, model, change, words):
    cache = tmp_path / "hub"
    root = lay_out(cache, mode=0o600 if change == "mode" else 0o644)
    if change == "missing":
        (root / "snapshots" / COMMIT / "README.md").unlink()
    model = dict(model, repo_id=REPO_ID)
    if model.get("link") == "LINK":
        model["link"] = str(tmp_path / "models" / "memory")
    [plan] = plans([model], cache)
    assert not plan["settled"] and words in plan["why"], plan


def test_settle_checks_the_environment_with_hf_agent_env_own_run(tmp_path):
    cache = tmp_path / "hub"
    lay_out(cache)
    spec = {"source": "hub", "models": [{"repo_id": REPO_ID, "revision": COMMIT}], "fetch": fetch(cache),
            "environment": env_params(tmp_path)}
    first = _settle.settle(spec, "root", "root", True, sys.executable, run_command)
    assert not first["settled"] and first["unsettled"] == ["the environment would change"] and first["models"] == []
    assert not (tmp_path / "systemd").exists()  # the check wrote nothing

    # hf_agent_env writes what the role's environment task would, given the fetch's records: then nothing is left
    models = [_record.build(spec["models"][0], plans(spec["models"], cache)[0]["result"], "hub", CLOSED)]
    p = _agent_env.check_params(dict(_agent_env.CHECK_DEFAULTS, **dict(env_params(tmp_path), models=models)))
    _agent_env.AgentEnv(p).run()
    second = _settle.settle(spec, "root", "root", True, sys.executable, run_command)
    assert second == {"settled": True, "models": models, "unsettled": []}

    # a token the token file does not hold yet is a change; its value is never in the answer
    third = _settle.settle(dict(spec, environment=env_params(tmp_path, token="hf_s3cretTOKEN42")), "root", "root",
                           True, sys.executable, run_command)
    assert not third["settled"] and "hf_s3cretTOKEN42" not in json.dumps(third)


def test_a_branch_from_the_controller_or_a_bundle_is_never_settled_on_the_host(tmp_path):
    def refuse(argv, timeout=30):
        raise AssertionError("no child is started: %s" % argv)
    spec = {"source": "controller", "models": [{"repo_id": REPO_ID, "revision": "main"}]}
    answer = _settle.settle(spec, "root", "root", True, sys.executable, refuse)
    assert not answer["settled"] and "resolves branches on the controller: org/model" in answer["unsettled"][0]


def test_a_child_that_cannot_run_leaves_the_host_unsettled(tmp_path):
    answer = _settle.settle({"models": [{"repo_id": REPO_ID}], "fetch": fetch(tmp_path)}, "root", "root", True,
                            str(tmp_path / "no-python"), run_command)
    assert not answer["settled"] and answer["unsettled"][0].startswith("the fetch plan did not run")


def test_the_payload_root_is_the_entry_above_ansible_collections():
    assert _settle.payload_root("/tmp/p/x_payload.zip/ansible_collections/justnews/huggingface/plugins/"
                                "module_utils/_settle.py") == "/tmp/p/x_payload.zip"
    assert _settle.payload_root("/elsewhere/_settle.py") is None


def test_the_failures_of_the_checks_it_runs_leave_the_host_unsettled_instead_of_failing(tmp_path, monkeypatch):
    """CONTAINS_FAILURES_OF: hf_units never returns the error kinds of hf_snapshot or hf_agent_env."""
    assert set(_settle.CONTAINS_FAILURES_OF) == {"_snapshot", "_agent_env"}
    not_a_folder = tmp_path / "hub"
    not_a_folder.write_text("a file where the cache should be")
    plan = _settle.plan_model({"repo_id": REPO_ID, "revision": COMMIT}, fetch(not_a_folder), "root", "root")
    assert not plan["settled"] and plan["why"].startswith("the fetch would fail: "), plan

    cache = tmp_path / "cache"
    lay_out(cache)

    def refuse(params):
        raise _errors.Failure("unsafe_destination", "a drop-in folder another user can write to")
    monkeypatch.setattr(_agent_env, "check", refuse)
    spec = {"source": "hub", "models": [{"repo_id": REPO_ID, "revision": COMMIT}], "fetch": fetch(cache),
            "environment": env_params(tmp_path)}
    answer = _settle.settle(spec, "root", "root", True, sys.executable, run_command)
    assert not answer["settled"] and answer["unsettled"] == [
        "the environment: a drop-in folder another user can write to"], answer
