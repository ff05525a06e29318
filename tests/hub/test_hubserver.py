"""The local Hub server against the real huggingface_hub client and sentence-transformers."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tools.harness import REPO
from tools.hub.hubserver import (
    CHUNK,
    COMMIT_A,
    COMMIT_B,
    GATED_COMMIT,
    GATED_REPO,
    LARGE_BLOCK,
    LARGE_COMMIT,
    LARGE_REPO,
    MINILM_REPO,
    README_B_SUFFIX,
)

CACHE_NAME = "models--sentence-transformers--all-MiniLM-L6-v2"


def http(url, method="GET", headers=None, data=None, timeout=10):
    """Plain stdlib request; returns (status, headers, body) for any status."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_snapshot_main_then_offline_sentence_transformers(hub, tmp_path):
    path = snapshot_download(MINILM_REPO, cache_dir=tmp_path, endpoint=hub.url)
    repo_dir = tmp_path / CACHE_NAME
    assert Path(path) == repo_dir / "snapshots" / COMMIT_B
    assert (repo_dir / "refs" / "main").read_text() == COMMIT_B
    assert (Path(path) / "README.md").read_bytes().endswith(README_B_SUFFIX)
    tree = json.loads((repo_dir / "trees" / f"{COMMIT_B}.json").read_text())
    assert tree["format_version"] == 1
    assert set(tree["files"]["model.safetensors"]) == {"size", "blob_id", "lfs_sha256", "lfs_size"}
    assert "1_Pooling/config.json" in tree["files"]

    hub.reset()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))
    code = ("from sentence_transformers import SentenceTransformer;"
            "print(SentenceTransformer('all-MiniLM-L6-v2').encode(['hello world']).shape)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("(1, 384)")
    assert hub.stats()["total"] == 0  # offline means no request at all


def test_pinned_commit_a_and_tag(hub, tmp_path):
    path = snapshot_download(MINILM_REPO, revision=COMMIT_A, cache_dir=tmp_path, endpoint=hub.url)
    assert not (Path(path) / "README.md").read_bytes().endswith(README_B_SUFFIX)
    assert hub.stats()["requests"].get("model_info", 0) == 0  # a commit needs no revision lookup
    hub.reset()
    snapshot_download(MINILM_REPO, revision=COMMIT_A, cache_dir=tmp_path, endpoint=hub.url)
    assert hub.stats()["total"] == 0  # complete cache + pinned commit: fully local
    readme = hf_hub_download(MINILM_REPO, "README.md", revision="v1", cache_dir=tmp_path, endpoint=hub.url)
    assert COMMIT_A in readme
    assert (tmp_path / CACHE_NAME / "refs" / "v1").read_text() == COMMIT_A


def test_resolve_headers_and_range(hub):
    url = hf_hub_url(MINILM_REPO, "vocab.txt", revision=COMMIT_A, endpoint=hub.url)
    status, headers, _unused1 = http(url, method="HEAD")
    assert status == 200
    assert headers["X-Repo-Commit"] == COMMIT_A
    assert headers["ETag"].startswith('"') and headers["X-Linked-Etag"] == headers["ETag"]
    assert headers["Accept-Ranges"] == "bytes"
    assert not [k for k in headers if k.lower().startswith("x-xet")]
    size = int(headers["Content-Length"])
    _unused1, _unused2, full = http(url)
    assert len(full) == size
    status, headers, body = http(url, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == full[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{size}"
    status, _unused1, body = http(url, headers={"Range": "bytes=-10"})
    assert status == 206 and body == full[-10:]
    assert http(url, headers={"Range": f"bytes={size}-"})[0] == 416

    meta = get_hf_file_metadata(hf_hub_url(MINILM_REPO, "model.safetensors", endpoint=hub.url))
    assert meta.commit_hash == COMMIT_B and len(meta.etag) == 64  # LFS: etag is the sha256


def test_gated_repo(hub, tmp_path):
    api = HfApi(endpoint=hub.url)
    with pytest.raises(GatedRepoError):
        api.model_info(GATED_REPO, token=False)
    with pytest.raises(GatedRepoError):
        hf_hub_download(GATED_REPO, "config.json", cache_dir=tmp_path, endpoint=hub.url, token=False)
    with pytest.raises(GatedRepoError):
        api.model_info(GATED_REPO, token="hf_test_wrong")
    assert api.model_info(GATED_REPO, token=hub.token).sha == GATED_COMMIT
    path = snapshot_download(GATED_REPO, cache_dir=tmp_path, endpoint=hub.url, token=hub.token)
    assert Path(path).name == GATED_COMMIT and (Path(path) / "model.safetensors").is_file()


def test_typed_errors(hub, tmp_path):
    api = HfApi(endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError) as e:
        api.model_info("justnews-test/missing")
    assert e.value.response.status_code == 401
    with pytest.raises(RevisionNotFoundError):
        api.model_info(MINILM_REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(MINILM_REPO, "config.json", revision="no-such-branch", cache_dir=tmp_path,
                        endpoint=hub.url)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(MINILM_REPO, "missing.txt", cache_dir=tmp_path, endpoint=hub.url)
    status, _unused1, body = http(hub.url + "/api/agent-harnesses")
    assert status == 404 and json.loads(body) == {"error": "Not Found"}


def test_tree_lists_directories_and_lfs(hub):
    entries = {e.path: e for e in HfApi(endpoint=hub.url).list_repo_tree(MINILM_REPO, recursive=True)}
    assert type(entries["1_Pooling"]).__name__ == "RepoFolder"
    assert entries["model.safetensors"].lfs.size == entries["model.safetensors"].size
    assert entries["config.json"].lfs is None


def test_429_retry_after_is_seen(hub, tmp_path):
    hub.set_faults([{"kind": "429", "count": 1, "endpoint": "model_info", "retry_after": "2"}])
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(endpoint=hub.url).model_info(MINILM_REPO)
    assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "2"

    # The tree listing is retried after Retry-After, so the download still succeeds.
    hub.set_faults([{"kind": "429", "count": 1, "endpoint": "tree", "retry_after": "1"}])
    snapshot_download(MINILM_REPO, revision=COMMIT_A, cache_dir=tmp_path, endpoint=hub.url)
    assert [s for m, p, s in hub.stats()["log"] if "/tree/" in p] == [429, 200]


def test_truncate_resumes_and_corrupt_goes_unnoticed(hub, tmp_path):
    hub.set_faults([{"kind": "truncate", "count": 1, "endpoint": "get", "path": "vocab.txt"}])
    path = hf_hub_download(MINILM_REPO, "vocab.txt", cache_dir=tmp_path / "a", endpoint=hub.url)
    _unused1, _unused2, good = http(hf_hub_url(MINILM_REPO, "vocab.txt", endpoint=hub.url))
    assert Path(path).read_bytes() == good
    assert hub.stats()["requests"]["get"] == 3  # truncated, resumed with Range, plus our check

    hub.set_faults([{"kind": "corrupt", "count": 1, "endpoint": "get"}])
    path = hf_hub_download(MINILM_REPO, "vocab.txt", cache_dir=tmp_path / "b", endpoint=hub.url)
    assert Path(path).stat().st_size == len(good) and Path(path).read_bytes() != good


def test_hang_does_not_block_control_api(hub):
    url = hub.url + "/api/models/" + MINILM_REPO
    status, _unused1, _unused2 = http(hub.url + "/_test/faults", "POST", {"Content-Type": "application/json"},
                                      json.dumps({"faults": [{"kind": "hang", "count": 1, "endpoint": "model_info"}]}).encode())
    assert status == 200
    outcome = []

    def call():
        try:
            outcome.append(http(url, timeout=30)[0])
        except OSError as e:  # the server closes the hung request on reset/stop
            outcome.append(e)

    waiter = threading.Thread(target=call, daemon=True)
    waiter.start()
    time.sleep(0.3)
    start = time.monotonic()
    status, _unused1, body = http(hub.url + "/_test/stats", timeout=5)
    assert status == 200 and time.monotonic() - start < 2
    assert json.loads(body)["requests"] == {"model_info": 1}
    assert waiter.is_alive()  # still waiting for an answer
    assert http(url)[0] == 200  # the rule was used up; other requests are served meanwhile
    hub.reset()  # releases the hung request
    waiter.join(5)
    assert not waiter.is_alive() and outcome and outcome[0] != 200


def test_stats_and_control_reset(hub, tmp_path):
    hf_hub_download(MINILM_REPO, "config.json", revision=COMMIT_A, cache_dir=tmp_path, endpoint=hub.url)
    _unused1, _unused2, body = http(hub.url + "/_test/stats")
    stats = json.loads(body)
    assert stats["requests"] == {"head": 1, "get": 1} and stats["total"] == 2
    assert stats["bytes"]["get"] == 612
    assert [m for m, _path, _status in stats["log"]] == ["HEAD", "GET"]
    http(hub.url + "/_test/reset", "POST", data=b"")
    assert hub.stats() == {"requests": {}, "bytes": {}, "log": [], "total": 0}


def test_large_file_head_and_ranges(hub):
    url = hf_hub_url(LARGE_REPO, "big.bin", endpoint=hub.url)
    meta = get_hf_file_metadata(url)
    size = hub.repos[LARGE_REPO]["commits"][LARGE_COMMIT]["big.bin"].size
    assert meta.size == size > 2 * 1024**3 and meta.commit_hash == LARGE_COMMIT and len(meta.etag) == 64
    status, _unused1, first = http(url, headers={"Range": f"bytes=0-{CHUNK - 1}"})
    assert status == 206 and first == LARGE_BLOCK
    status, headers, last = http(url, headers={"Range": f"bytes=-{CHUNK}"})
    assert status == 206 and headers["Content-Range"] == f"bytes {size - CHUNK}-{size - 1}/{size}"
    offset = (size - CHUNK) % CHUNK
    assert last == (LARGE_BLOCK * 2)[offset:offset + CHUNK]
    assert hub.stats()["bytes"]["get"] == 2 * CHUNK


def test_the_launcher_starts_and_stops_the_hub_as_a_process(tmp_path):
    launcher = [str(REPO / "tools" / "hub" / "hub.sh")]
    env = dict(os.environ, PYTHON=sys.executable)
    url = subprocess.run(launcher + ["start", str(tmp_path)], env=env, check=True, capture_output=True,
                         text=True, timeout=120).stdout.strip()
    try:
        token = (tmp_path / "hub.token").read_text().strip()
        assert (tmp_path / "hub.token").stat().st_mode & 0o077 == 0
        assert http(url + f"/api/models/{GATED_REPO}", headers={"Authorization": "Bearer " + token})[0] == 200
        again = subprocess.run(launcher + ["start", str(tmp_path)], env=env, check=True, capture_output=True,
                               text=True, timeout=60).stdout.strip()
        assert again == url  # one Hub per folder
        assert json.loads(http(url + "/_test/stats")[2])["total"] == 1
    finally:
        pid = int((tmp_path / "hub.pid").read_text())
        subprocess.run(launcher + ["stop", str(tmp_path)], env=env, check=True, timeout=60)
    deadline = time.monotonic() + 10
    while os.path.exists("/proc/%d" % pid) and open("/proc/%d/stat" % pid).read().split()[2] != "Z":
        assert time.monotonic() < deadline, "the Hub process did not stop"
        time.sleep(0.1)


def test_whoami_accepts_only_the_hubs_token(hub):
    """HfApi.whoami(), which the doctor uses to test a token without printing it."""
    assert HfApi(endpoint=hub.url, token=hub.token).whoami()["name"] == "justnews-test"
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(endpoint=hub.url, token="hf_wrong").whoami()
    assert info.value.response.status_code == 401
    assert http(hub.url + "/api/whoami-v2")[0] == 401
