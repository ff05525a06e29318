"""hf_doctor on a real cache fetched by hf_snapshot from the local Hub: the verdicts an operator reads."""

import json
import os
import subprocess

import pytest

from tools import shared_store
from tools.harness import controller_bin, target_python
from tools.hub.hubserver import GATED_REPO, MINILM_REPO

FOLDER = "models--sentence-transformers--all-MiniLM-L6-v2"


def play(collections, workdir, tasks, check=False):
    """Run tasks on localhost with ansible-playbook; return (results by task name, output)."""
    out = workdir / "results.json"
    book = workdir / "play.yml"
    saved = "{{ {%s} | to_json }}" % ", ".join("'%s': %s" % (t["register"], t["register"]) for t in tasks)
    book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        dict(t, ignore_errors=True) for t in tasks] + [
        {"ansible.builtin.copy": {"content": saved, "dest": str(out)}, "check_mode": False}]}]))
    cmd = [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=" + target_python(), str(book)] + (["--check"] if check else [])
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=600, check=False)
    assert out.exists(), proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout + proc.stderr


def fetch(hub, cache, repo=MINILM_REPO, token=None):
    args = {"repo_id": repo, "cache_dir": str(cache), "endpoint": hub.url, "timeout": 120}
    if token:
        args["token"] = token
    return {"name": "fetch " + repo, "justnews.huggingface.hf_snapshot": args, "register": "fetch"}


def doctor(hub, cache, **extra):
    args = {"cache_dir": str(cache), "models": [{"repo_id": MINILM_REPO}], "endpoint": hub.url, "timeout": 3}
    args.update(extra)
    return {"name": "doctor", "justnews.huggingface.hf_doctor": args, "register": "doctor"}


def verdicts(result, check):
    return [(f["verdict"], f["subject"], f["detail"], f["fix"]) for f in result["findings"] if f["check"] == check]


@pytest.fixture
def fetched(hub, tmp_path, collections_path):
    cache = tmp_path / "hub-cache"
    results, output = play(collections_path, tmp_path, [fetch(hub, cache)])
    assert results["fetch"]["changed"], output
    shared_store.publish(cache, FOLDER)  # LFS files in the shared store, as Xet downloads leave them
    return cache


def test_healthy_cache_and_hub(hub, fetched, tmp_path, collections_path):
    hub.reset()
    results, output = play(collections_path, tmp_path, [doctor(hub, fetched)])
    result = results["doctor"]
    assert result["changed"] is False, output
    assert result["verdict"] == "ok", result["findings"]
    (model,) = verdicts(result, "model")
    assert "complete at" in model[2] and "13 files" in model[2] and "checksums verified" in model[2]
    assert verdicts(result, "hub")[0][0] == "ok"
    assert verdicts(result, "cache")[0][0] == "ok"
    assert hub.stats()["requests"].get("get", 0) == 0  # the doctor downloads nothing


def test_missing_file_is_named(hub, fetched, tmp_path, collections_path):
    snapshot = next((fetched / FOLDER / "snapshots").iterdir())
    (snapshot / "tokenizer.json").unlink()
    results = play(collections_path, tmp_path, [doctor(hub, fetched)])[0]
    (model,) = verdicts(results["doctor"], "model")
    assert model[0] == "fail" and "1 of 13 files missing" in model[2] and "tokenizer.json" in model[2]
    assert "justnews.huggingface.prefetch" in model[3]


def test_dangling_foreign_and_non_regular_store_entries_are_named_with_a_fix(
        hub, fetched, tmp_path, collections_path):
    from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store

    blobs = fetched / FOLDER / "blobs"
    plain = sorted(p.name for p in blobs.iterdir() if not p.is_symlink())
    assert len(plain) >= 2, plain
    fifo_etag, foreign = plain[:2]
    # one more blob in the store, as the library publishes one, to put a FIFO in place of its entry
    assert publish_blob_to_shared_store(
        blob_path=str(blobs / fifo_etag), xet_hash=shared_store.xet_hash_for(fifo_etag), cache_dir=str(fetched),
        expected_size=os.path.getsize(blobs / fifo_etag))
    links = shared_store.store_links(fetched, FOLDER)
    fifo = links.pop(fifo_etag)
    assert len(links) == 1, links
    dangling, gone = next(iter(links.items()))
    os.unlink(shared_store.entry(fetched, gone))
    secret = tmp_path / "secret"
    secret.write_text("root's")
    (blobs / foreign).unlink()
    (blobs / foreign).symlink_to(secret)
    os.unlink(shared_store.entry(fetched, fifo))
    os.mkfifo(shared_store.entry(fetched, fifo))
    results, output = play(collections_path, tmp_path, [doctor(hub, fetched, reach_hub=False)])
    result = results["doctor"]
    (model,) = verdicts(result, "model")
    assert model[0] == "fail" and "files missing" in model[2], output
    named = {f[1]: f for f in verdicts(result, "blob")}
    assert "dangling link" in named[str(blobs / dangling)][2]
    assert "foreign link" in named[str(blobs / foreign)][2] and str(secret) in named[str(blobs / foreign)][2]
    assert "a FIFO" in named[shared_store.entry(fetched, fifo)][2]
    assert all("rm " in f[3] and "justnews.huggingface.prefetch" in f[3] for f in named.values())
    assert secret.read_text() == "root's"


def test_corrupt_file_fails_its_checksum(hub, fetched, tmp_path, collections_path):
    snapshot = next((fetched / FOLDER / "snapshots").iterdir())
    with open(os.path.realpath(snapshot / "config.json"), "r+b") as handle:
        handle.write(b"X")
    results = play(collections_path, tmp_path, [doctor(hub, fetched)])[0]
    (model,) = verdicts(results["doctor"], "model")
    assert model[0] == "fail" and "content does not match" in model[2] and "config.json" in model[2]
    results = play(collections_path, tmp_path, [doctor(hub, fetched, verify_checksums=False)])[0]
    assert verdicts(results["doctor"], "model")[0][0] == "ok"


def write_token(path, token, mode=0o600):
    path.write_text("# managed\nHF_TOKEN=%s\nHF_HUB_TOKEN=%s\n" % (token, token))
    path.chmod(mode)


def test_token_accepted_rejected_exposed_or_missing(hub, fetched, tmp_path, collections_path):
    token_file = tmp_path / "hf-token.env"
    cases = [(hub.token, 0o600, "ok", "accepted by"), ("hf_wrongtoken0000", 0o600, "fail", "rejects the token"),
             (hub.token, 0o644, "fail", "readable beyond root"), (None, None, "fail", "missing")]
    for token, mode, verdict, words in cases:
        if token:
            write_token(token_file, token, mode)
        elif token_file.exists():
            token_file.unlink()
        results, output = play(collections_path, tmp_path, [
            doctor(hub, fetched, token_file=str(token_file), token_expected=True)])
        (finding,) = verdicts(results["doctor"], "token")
        assert finding[0] == verdict and words in finding[2], (token, mode, finding)
        assert hub.token not in output and hub.token not in json.dumps(results)


def test_gated_model_without_token_and_unreachable_hub(hub, fetched, tmp_path, collections_path):
    results = play(collections_path, tmp_path, [
        doctor(hub, fetched, models=[{"repo_id": GATED_REPO}])])[0]
    (hub_finding,) = verdicts(results["doctor"], "hub")
    assert hub_finding[0] == "fail" and "model_cache_token" in hub_finding[3]
    (model,) = verdicts(results["doctor"], "model")
    assert model[0] == "fail" and "not in the cache" in model[2]

    results = play(collections_path, tmp_path, [doctor(hub, fetched, endpoint="http://127.0.0.1:9")])[0]
    (hub_finding,) = verdicts(results["doctor"], "hub")
    assert hub_finding[0] == "fail" and "unreachable" in hub_finding[2]
    assert verdicts(results["doctor"], "model")[0][0] == "ok"  # the cache is checked offline

    results = play(collections_path, tmp_path, [
        doctor(hub, fetched, endpoint="http://127.0.0.1:9", reach_hub=False)])[0]
    assert verdicts(results["doctor"], "hub")[0][0] == "skip"
    assert results["doctor"]["verdict"] == "ok"


def test_check_mode_gives_the_same_verdicts(hub, fetched, tmp_path, collections_path):
    normal = play(collections_path, tmp_path, [doctor(hub, fetched)])[0]
    checked = play(collections_path, tmp_path, [doctor(hub, fetched)], check=True)[0]
    assert checked["doctor"]["findings"] == normal["doctor"]["findings"]
    assert checked["doctor"]["changed"] is False
