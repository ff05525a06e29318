"""The action group of meta/runtime.yml as a play uses it: module_defaults for group/justnews.huggingface.cache
give hf_snapshot and hf_prune their cache_dir, and hf_snapshot's documented async, check mode and diff examples
work as written (a task's own async and poll 0, then async_status)."""

import json
import os
import subprocess

from tools.harness import controller_bin, target_python
from tools.hub.hubserver import COMMIT_B, MINILM_REPO

FOLDER = "models--sentence-transformers--all-MiniLM-L6-v2"


def test_the_cache_group_sets_cache_dir_and_the_documented_async_and_check_examples_work(
        hub, collections_path, tmp_path):
    cache = tmp_path / "group-cache"
    out = tmp_path / "results.json"
    fetch = {"repo_id": MINILM_REPO, "endpoint": hub.url, "allow_patterns": ["*.json"], "timeout": 120}
    play = [{
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {"group/justnews.huggingface.cache": {"cache_dir": str(cache)}},
        "tasks": [
            {"name": "Start the download in the background", "justnews.huggingface.hf_snapshot": fetch,
             "async": 300, "poll": 0, "register": "fetch_job"},
            {"name": "Wait for it", "ansible.builtin.async_status": {"jid": "{{ fetch_job.ansible_job_id }}"},
             "register": "fetched", "until": "fetched.finished", "retries": 120, "delay": 1},
            {"name": "See what following main would download", "justnews.huggingface.hf_snapshot":
                dict(fetch, revision="main", state="latest"), "check_mode": True, "diff": True,
             "register": "preview"},
            {"name": "Prune, in check mode", "justnews.huggingface.hf_prune": {"keep": 1}, "check_mode": True,
             "register": "pruned"},
            {"name": "Save", "ansible.builtin.copy": {
                "content": "{{ {'job': fetch_job, 'fetched': fetched, 'preview': preview, 'pruned': pruned}"
                           " | to_json }}", "dest": str(out)}},
        ],
    }]
    book = tmp_path / "play.yml"
    book.write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1",
               ANSIBLE_ASYNC_DIR=str(tmp_path / "async"),
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run([controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=" + target_python(), str(book)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())

    job, fetched = results["job"], results["fetched"]
    assert job["ansible_job_id"] and job["started"] and "commit" not in job  # poll 0: the job runs on
    assert fetched["finished"] and fetched["changed"] is True and not fetched.get("failed"), fetched
    # cache_dir came from the group's defaults only (HF_HOME of this session points elsewhere)
    assert fetched["cache_dir"] == str(cache) and fetched["commit"] == COMMIT_B
    assert fetched["snapshot_path"] == str(cache / FOLDER / "snapshots" / COMMIT_B)
    assert fetched["files"] and all(f.endswith(".json") for f in fetched["files"])
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_B

    preview = results["preview"]
    assert preview["changed"] is False and preview["downloaded_files"] == [] and preview["cache_dir"] == str(cache)
    assert preview["diff"]["before"]["commit"] == preview["diff"]["after"]["commit"] == COMMIT_B

    pruned = results["pruned"]
    assert pruned["cache_dir"] == str(cache) and pruned["changed"] is False
    assert [k["commit"] for k in pruned["kept"]] == [COMMIT_B] and pruned["removed_revisions"] == []
