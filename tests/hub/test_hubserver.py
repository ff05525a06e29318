"""The local Hub server against the real huggingface_hub client and sentence-transformers."""

import hashlib
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
    LARGE_COMMIT,
    LARGE_REPO,
    MINILM_REPO,
    README_B_SUFFIX,
    HubServer,
    large_block,
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
    assert set(tree["files"]["model.safetensors"]) == {"size", "blob_id", "lfs_sha256", "lfs_size", "xet_hash"}
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
    after = hub.stats()
    assert {k: after[k] for k in ("requests", "bytes", "log", "total")} == {"requests": {}, "bytes": {}, "log": [],
                                                                            "total": 0}
    assert after["lifetime"]["requests"]["head"] >= 1  # what a whole scenario asked, whatever reset cleared


def test_large_file_head_and_ranges(hub):
    url = hf_hub_url(LARGE_REPO, "big.bin", endpoint=hub.url)
    meta = get_hf_file_metadata(url)
    size = hub.repos[LARGE_REPO]["commits"][LARGE_COMMIT]["big.bin"].size
    assert meta.size == size > 2 * 1024**3 and meta.commit_hash == LARGE_COMMIT and len(meta.etag) == 64
    status, _unused1, first = http(url, headers={"Range": f"bytes=0-{CHUNK - 1}"})
    assert status == 206 and first == large_block(0)
    status, headers, last = http(url, headers={"Range": f"bytes=-{CHUNK}"})
    assert status == 206 and headers["Content-Range"] == f"bytes {size - CHUNK}-{size - 1}/{size}"
    index, offset = divmod(size - CHUNK, CHUNK)
    assert last == (large_block(index) + large_block(index + 1))[offset:offset + CHUNK]
    status, _unused2, middle = http(url, headers={"Range": f"bytes={CHUNK - 10}-{CHUNK + 9}"})  # across two blocks
    assert status == 206 and middle == large_block(0)[-10:] + large_block(1)[:10]
    # a Xet file: the resolver redirects to the bridge; the server counts a piece after the client may have it
    deadline = time.monotonic() + 5
    while hub.stats()["bytes"]["bridge"] < 2 * CHUNK + 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.stats()["bytes"]["bridge"] == 2 * CHUNK + 20
    assert "get" not in hub.stats()["bytes"]


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


# --- Xet storage, as huggingface.co serves LFS files -------------------------------------------------------------

def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _xet_run(hub, tmp_path, code, env=None):
    """Run client code in a fresh process (huggingface_hub reads its settings at import)."""
    environ = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path), HF_HUB_DISABLE_TELEMETRY="1",
                   HF_XET_CACHE=str(tmp_path / "xet-client"), **(env or {}))
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300,
                         check=False)
    return out


def test_the_large_file_does_not_deduplicate_in_xet(tmp_path):
    """Like weights, the large file's blocks all differ: hf_xet fetches about its size from the CAS, not one block."""
    size = 8 * CHUNK + 12345
    assert len({large_block(i) for i in range(64)}) == 64
    server = HubServer(large_size=size, xet_store=tmp_path / "store").start()
    try:
        out = _xet_run(server, tmp_path / "cache", "from huggingface_hub import hf_hub_download as d; print(d(%r, %r))"
                       % (LARGE_REPO, "big.bin"))
        assert out.returncode == 0, out.stderr
        path = out.stdout.strip().splitlines()[-1]
        blob = server.repos[LARGE_REPO]["commits"][LARGE_COMMIT]["big.bin"]
        assert os.path.getsize(path) == size and _sha256(path) == blob.sha256
        assert server.stats()["bytes"]["xorb"] >= 0.9 * size
    finally:
        server.stop()


def test_hf_download_and_snapshot_download_take_the_xet_path(hub, tmp_path):
    """The real client sees a Xet file: a CAS token, a reconstruction, ranged xorb reads; no resolver body."""
    blob = hub.repos[MINILM_REPO]["commits"][COMMIT_B]["model.safetensors"]
    hf = Path(sys.executable).with_name("hf")
    out = subprocess.run([str(hf), "download", MINILM_REPO, "--cache-dir", str(tmp_path / "cli")],
                         env=dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1"),
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    stats = hub.stats()
    assert stats["requests"]["xet_token"] >= 1 and stats["requests"]["reconstruction"] == 1
    assert stats["requests"]["xorb"] >= 1 and stats["bytes"]["xorb"] > blob.size // 2
    lfs_gets = [p for m, p, _s in stats["log"] if m == "GET" and p.endswith("/model.safetensors")]
    assert lfs_gets == []  # the bytes came from the CAS, not the resolver
    assert "bridge" not in stats["requests"]

    hub.reset()
    out = _xet_run(hub, tmp_path / "lib", "from huggingface_hub import snapshot_download as s; print(s(%r))"
                   % MINILM_REPO)
    assert out.returncode == 0, out.stderr
    snapshot = Path(out.stdout.strip().splitlines()[-1])
    assert hub.stats()["requests"]["reconstruction"] == 1 and "bridge" not in hub.stats()["requests"]
    # the library's shared store: the repository's blob is a relative link to <cache>/blobs/<2 hex>/<xet hash>
    repo_blob = tmp_path / "lib" / CACHE_NAME / "blobs" / blob.sha256
    assert os.readlink(repo_blob) == "../../blobs/%s/%s" % (blob.xet_hash[:2], blob.xet_hash)
    store = tmp_path / "lib" / "blobs" / blob.xet_hash[:2] / blob.xet_hash
    assert store.is_file() and not store.is_symlink() and (tmp_path / "lib" / "blobs" / ".huggingface-shared-blobs").is_file()
    assert _sha256(snapshot / "model.safetensors") == blob.sha256


def test_clients_without_hf_xet_follow_the_redirect_to_the_bridge(hub, tmp_path):
    blob = hub.repos[MINILM_REPO]["commits"][COMMIT_B]["model.safetensors"]
    out = _xet_run(hub, tmp_path, "from huggingface_hub import hf_hub_download as d; print(d(%r, %r))"
                   % (MINILM_REPO, "model.safetensors"), env={"HF_HUB_DISABLE_XET": "1"})
    assert out.returncode == 0, out.stderr
    assert _sha256(out.stdout.strip().splitlines()[-1]) == blob.sha256
    stats = hub.stats()
    assert stats["bytes"]["bridge"] == blob.size and "reconstruction" not in stats["requests"]
    meta = get_hf_file_metadata(hf_hub_url(MINILM_REPO, "model.safetensors", endpoint=hub.url))
    assert meta.xet_file_data.file_hash == blob.xet_hash and "/xet-read-token/" in meta.xet_file_data.refresh_route
    assert meta.location.startswith(hub.cas_url + "/bridge/")


def test_the_plain_lfs_hub_serves_bytes_from_the_resolver(hub_lfs, tmp_path):
    entries = {e.path: e for e in HfApi(endpoint=hub_lfs.url).list_repo_tree(MINILM_REPO, recursive=True)}
    assert entries["model.safetensors"].xet_hash is None
    path = snapshot_download(MINILM_REPO, cache_dir=tmp_path, endpoint=hub_lfs.url)
    assert not os.path.islink(tmp_path / CACHE_NAME / "blobs" / entries["model.safetensors"].lfs.sha256)
    assert hub_lfs.stats()["bytes"]["get"] >= entries["model.safetensors"].size
    assert Path(path, "model.safetensors").stat().st_size == entries["model.safetensors"].size


def test_listing_paths_info_and_token_route(hub):
    api = HfApi(endpoint=hub.url)
    blob = hub.repos[MINILM_REPO]["commits"][COMMIT_A]["model.safetensors"]
    entries = {e.path: e for e in api.list_repo_tree(MINILM_REPO, revision=COMMIT_A, recursive=True)}
    assert entries["model.safetensors"].xet_hash == blob.xet_hash and entries["config.json"].xet_hash is None
    info = api.get_paths_info(MINILM_REPO, ["model.safetensors", "config.json", "nope"], revision=COMMIT_A)
    assert {i.path: i.xet_hash for i in info} == {"model.safetensors": blob.xet_hash, "config.json": None}
    status, headers, body = http(f"{hub.url}/api/models/{MINILM_REPO}/xet-read-token/{COMMIT_A}")
    answer = json.loads(body)
    assert status == 200 and answer["casUrl"] == hub.cas_url == headers["X-Xet-Cas-Url"]
    assert answer["exp"] > time.time() + 600 and headers["X-Xet-Access-Token"] == answer["accessToken"]
    # the gated repository's CAS token needs the Hub token, as its files do
    assert http(f"{hub.url}/api/models/{GATED_REPO}/xet-read-token/main")[0] == 401
    # the CAS refuses a reconstruction without a valid token
    assert http(f"{hub.cas_url}/v1/reconstructions/{blob.xet_hash}")[0] == 401
    auth = {"Authorization": "Bearer " + answer["accessToken"]}
    status, _headers, body = http(f"{hub.cas_url}/v1/reconstructions/{blob.xet_hash}", headers=auth)
    plan = json.loads(body)
    assert status == 200 and sum(t["unpacked_length"] for t in plan["terms"]) == blob.size
    fetch = plan["fetch_info"][plan["terms"][0]["hash"]][0]
    assert http(fetch["url"])[0] == 403  # xorb reads must name their range
    span = "bytes=%d-%d" % (fetch["url_range"]["start"], fetch["url_range"]["end"])
    status, _headers, body = http(fetch["url"], headers={"Range": span})
    assert status == 206 and len(body) == fetch["url_range"]["end"] - fetch["url_range"]["start"] + 1


def test_rate_limit_headers_as_the_hub_sends_them(hub):
    from huggingface_hub.utils import parse_ratelimit_headers

    _status, headers, _body = http(f"{hub.url}/api/models/{MINILM_REPO}")
    info = parse_ratelimit_headers(headers)
    assert info.resource_type == "api" and 0 < info.remaining <= 500 and 0 < info.reset_in_seconds <= 300
    hub.set_faults([{"kind": "429", "endpoint": "reconstruction", "reset": 7},
                    {"kind": "429", "endpoint": "head", "retry_after": 3, "reset": 9}])
    blob = hub.repos[MINILM_REPO]["commits"][COMMIT_B]["model.safetensors"]
    token = json.loads(http(f"{hub.url}/api/models/{MINILM_REPO}/xet-read-token/main")[2])["accessToken"]
    status, headers, _body = http(f"{hub.cas_url}/v1/reconstructions/{blob.xet_hash}",
                                  headers={"Authorization": "Bearer " + token})
    assert status == 429 and "Retry-After" not in headers
    assert parse_ratelimit_headers(headers).reset_in_seconds == 7 and parse_ratelimit_headers(headers).remaining == 0
    status, headers, _body = http(hf_hub_url(MINILM_REPO, "config.json", endpoint=hub.url), "HEAD")
    assert status == 429 and headers["Retry-After"] == "3" and parse_ratelimit_headers(headers).resource_type == "resolvers"


def test_a_refused_cas_token_fails_the_librarys_download(hub, tmp_path):
    """hf_xet renews its token by the expiry time it was given, not on a 401: a caller must retry the call."""
    hub.set_faults([{"kind": "401", "endpoint": "reconstruction", "count": 1}])
    code = "from huggingface_hub import hf_hub_download as d; print(d(%r, %r))" % (MINILM_REPO, "model.safetensors")
    out = _xet_run(hub, tmp_path, code)
    assert out.returncode != 0 and "401" in out.stderr
    assert not list((tmp_path / CACHE_NAME / "snapshots").rglob("model.safetensors"))
    out = _xet_run(hub, tmp_path, code)  # the next call gets through
    assert out.returncode == 0, out.stderr
    assert [s for _m, p, s in hub.stats()["log"] if "/reconstructions/" in p] == [401, 200]


def test_the_client_gets_a_new_cas_token_when_one_expires_mid_download(hub, tmp_path):
    blob = hub.repos[MINILM_REPO]["commits"][COMMIT_B]["model.safetensors"]
    hub.set_faults([{"kind": "expire", "endpoint": "xet_token", "count": -1, "value": 1},
                    {"kind": "throttle", "endpoint": "xorb", "count": -1, "value": 30_000_000}])
    out = _xet_run(hub, tmp_path, "from huggingface_hub import hf_hub_download as d; print(d(%r, %r))"
                   % (MINILM_REPO, "model.safetensors"))
    assert out.returncode == 0, out.stderr
    assert _sha256(out.stdout.strip().splitlines()[-1]) == blob.sha256
    assert hub.stats()["requests"]["xet_token"] >= 2


def test_a_cas_answer_with_other_bytes_passes_the_librarys_size_check(hub, tmp_path):
    """What only a content check catches: the library keeps a file whose bytes differ from the listing."""
    blob = hub.repos[MINILM_REPO]["commits"][COMMIT_B]["model.safetensors"]
    hub.set_faults([{"kind": "corrupt", "endpoint": "reconstruction", "count": -1}])
    out = _xet_run(hub, tmp_path, "from huggingface_hub import hf_hub_download as d; print(d(%r, %r))"
                   % (MINILM_REPO, "model.safetensors"))
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip().splitlines()[-1]
    assert os.path.getsize(path) == blob.size and _sha256(path) != blob.sha256
