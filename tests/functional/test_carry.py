"""hf_carry through ansible-playbook -c local and the installed collection: the controller's cache or a bundle
carried into a host cache as one stream of chunks; a warm run sends nothing, a cut-short run resumes, damaged
sources change nothing, check mode sends nothing."""

import os

import pytest

from test_bundle import Play, manifest_of, rewrite, tree
from tools.hub.hubserver import MINILM_REPO

PATTERNS = ["*.json", "*.txt", "README.md", "model.safetensors"]
MODEL = {"repo_id": MINILM_REPO, "revision": "main", "allow_patterns": PATTERNS}
CHUNK = "8M"


@pytest.fixture
def play(collections_path, tmp_path):
    return Play(collections_path, tmp_path)


@pytest.fixture
def controller(hub, play, tmp_path):
    """The controller's cache, filled by hf_snapshot from the test Hub; the seed hf_carry takes."""
    cache = tmp_path / "controller-cache"
    fetched = play(("justnews.huggingface.hf_snapshot", dict(
        MODEL, cache_dir=str(cache), endpoint=hub.url)))[0]
    assert fetched["changed"] and not fetched.get("failed"), play.output
    hub.reset()
    return cache, dict(fetched, item=MODEL)


def staging_of(host):
    """The host's staging folder: root's, outside HF_HOME (the role's /var/lib/justnews-huggingface/incoming)."""
    return host.parent / "var-lib" / "incoming"


def carry(play, host, seeds, check=False, **args):
    task = dict({"models": seeds, "source": "controller", "cache_dir": str(host / "hub"),
                 "hf_home": str(host), "dir_mode": "0750", "staging_dir": str(staging_of(host)),
                 "chunk_size": CHUNK, "free_space_margin": 0}, **args)
    return play(("justnews.huggingface.hf_carry", task), check=check)[0]


def chunks_in(staging):
    """The chunks kept in the stream's folder (<staging>/<stream id>), by name."""
    return sorted(p.name for p in staging.glob("?" * 16 + "/*") if p.is_file())


def damage_last_blob(cache):
    """Flip the last byte of the controller's last blob (in the stream's order), so that the chunks before it go
    out before the mismatch is caught; returns (blob, the file behind it, its bytes)."""
    folder = cache / "models--sentence-transformers--all-MiniLM-L6-v2" / "blobs"
    last = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))[-1]
    target = os.path.realpath(folder / last)
    with open(target, "rb") as handle:
        original = handle.read()
    os.chmod(target, 0o644)
    with open(target, "r+b") as handle:
        handle.seek(len(original) - 1)
        handle.write(bytes([original[-1] ^ 1]))
    return last, target, original


def test_controller_source_carries_once_then_sends_nothing(hub, play, controller, tmp_path):
    cache, seed = controller
    host = tmp_path / "host"
    first = carry(play, host, [seed])
    assert not first.get("failed") and first["changed"], first
    assert first["bytes_sent"] == first["bytes_total"] > first["missing_bytes"] > 0
    assert first["chunks_sent"] == first["chunks_total"] > 1 and first["bytes_held"] == 0
    assert first["host_calls"] == 2 and first["mean_rate"] > 0 and first["elapsed"] > 0
    model = first["results"][0]
    assert model["item"] == MODEL and model["changed"] and model["commit"] == seed["commit"]
    record = model["record"]  # the same keys as hf_snapshot's, whatever the source
    assert (record["repo_id"], record["revision"], record["commit"], record["source"]) == (
        MODEL["repo_id"], "main", seed["commit"], "controller")
    assert record["received_from"] == "controller" and record["changed"] and not record["failed"]
    assert record["files"] == len(seed["files"]) and record["bytes"] > 0 and record["rollback_to"] is None
    assert set(record) == set(seed["record"])
    assert set(model["downloaded_files"]) == set(seed["files"]) and model["downloaded_bytes"] > 0
    assert model["snapshot_path"] == str(host / "hub" / os.path.relpath(seed["snapshot_path"], cache))
    assert tree(host / "hub") == tree(cache)  # as the controller's own fetch left it, shared store included
    assert not staging_of(host).exists() and sorted(os.listdir(host)) == ["hub"]
    assert hub.stats()["total"] == 0
    second = carry(play, host, [seed])
    assert not second.get("failed") and not second["changed"], second
    assert (second["bytes_sent"], second["chunks_total"], second["host_calls"]) == (0, 0, 1)
    assert second["results"][0]["item"] == MODEL and not second["results"][0]["changed"]
    assert second["results"][0]["record"]["received_from"] is None and not second["results"][0]["record"]["changed"]
    assert not staging_of(host).exists()


def test_check_mode_sends_nothing_and_reports_what_would_be_sent(play, controller, tmp_path):
    _cache, seed = controller
    host = tmp_path / "host"
    result = carry(play, host, [seed], check=True)
    assert not result.get("failed") and result["changed"], result
    assert result["bytes_sent"] == 0 and result["missing_bytes"] > 0 and result["bytes_total"] > 0
    assert result["results"][0]["changed"] and result["results"][0]["downloaded_files"]
    assert result["host_calls"] == 1
    assert not host.exists()


def test_a_corrupt_blob_fails_with_integrity_then_the_run_resumes(play, controller, tmp_path):
    """The stream stops at a blob of the controller's cache that no longer matches its id: the chunks sent
    before it stay on the host, the cache is untouched. Once the blob is sound again, only the chunks the host
    lacks (one of them cut short meanwhile) are sent."""
    cache, seed = controller
    host = tmp_path / "host"
    last, target, original = damage_last_blob(cache)
    failed = carry(play, host, [seed])
    assert failed.get("failed") and failed["error_kind"] == "integrity", failed
    assert last in failed["msg"] and MINILM_REPO in failed["msg"] and failed["fix"]
    record = failed["results"][0]["record"]  # the model whose blob was refused fails, with the msg and fix
    assert record["failed"] and record["error_kind"] == "integrity" and record["fix"] == failed["fix"]
    assert failed["results"][0]["item"] == MODEL and not record["changed"]
    assert not (host / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2").exists()
    held = chunks_in(staging_of(host))
    assert held and failed["chunks_sent"] == len(held)

    with open(target, "wb") as handle:
        handle.write(original)
    cut = next(staging_of(host).glob("*/" + held[0]))
    cut.write_bytes(cut.read_bytes()[:1000])  # a transfer that was dropped mid-chunk
    resumed = carry(play, host, [seed])
    assert not resumed.get("failed") and resumed["changed"], resumed
    assert resumed["bytes_held"] > 0 and resumed["bytes_sent"] == resumed["bytes_total"] - resumed["bytes_held"]
    assert resumed["chunks_sent"] == resumed["chunks_total"] - (len(held) - 1)
    assert tree(host / "hub") == tree(cache)
    assert not staging_of(host).exists()


def test_a_damaged_chunk_on_the_host_is_sent_again(play, controller, tmp_path):
    """Chunks of an earlier stream left on the host: a flipped byte is caught by its SHA-256 and sent anew."""
    cache, seed = controller
    host = tmp_path / "host"
    staging = staging_of(host)
    # an earlier, cut-short run: the chunks before the last blob arrived but the import never ran
    _last, target, original = damage_last_blob(cache)
    assert carry(play, host, [seed])["error_kind"] == "integrity"
    with open(target, "wb") as handle:
        handle.write(original)
    held = chunks_in(staging)
    chunk = next(staging.glob("*/" + held[0]))
    raw = bytearray(chunk.read_bytes())
    raw[10] ^= 1
    chunk.write_bytes(bytes(raw))
    resumed = carry(play, host, [seed])
    assert not resumed.get("failed"), resumed
    assert resumed["chunks_sent"] == resumed["chunks_total"] - len(held) + 1
    assert tree(host / "hub") == tree(cache)


@pytest.fixture
def bundled(hub, play, tmp_path):
    bundle = tmp_path / "out" / "models.tar"
    bundle.parent.mkdir()
    play.bundle_playbook(hub, bundle, tmp_path / "build-cache", models=[MODEL])
    hub.reset()
    return bundle


def inspect(play, bundle):
    entry = play(("justnews.huggingface.hf_bundle_info", {"path": str(bundle), "models": [MODEL]}))[0]
    assert not entry.get("failed"), entry
    return entry["models"]


def test_bundle_source_carries_only_what_is_missing(hub, play, bundled, tmp_path):
    host = tmp_path / "host"
    seeds = inspect(play, bundled)
    first = carry(play, host, seeds, source="bundle", bundle=str(bundled))
    assert not first.get("failed") and first["changed"], first
    assert first["bytes_sent"] == first["bytes_total"] > 0 and first["host_calls"] == 2
    assert tree(host / "hub") == tree(tmp_path / "build-cache")
    assert hub.stats()["total"] == 0
    second = carry(play, host, seeds, source="bundle", bundle=str(bundled))
    assert not second["changed"] and second["bytes_sent"] == 0 and second["host_calls"] == 1, second


def test_a_corrupt_bundle_member_fails_and_leaves_the_cache_unchanged(play, bundled, tmp_path):
    _first, manifest = manifest_of(bundled)
    big = max(manifest["models"][0]["files"], key=lambda f: f["size"])
    damaged = tmp_path / "damaged.tar"
    rewrite(bundled, damaged, member_data={
        "blobs/" + big["blob"]: lambda data: data[:-1] + bytes([data[-1] ^ 1])})
    host = tmp_path / "host"
    refused = play(("justnews.huggingface.hf_bundle_info", {"path": str(damaged), "models": [MODEL]}))[0]
    assert refused.get("failed") and refused["error_kind"] == "corrupt_bundle", refused
    assert big["blob"] in refused["msg"] and big["path"] in refused["msg"]
    # hf_carry checks what it takes out on its own: given the sound bundle's entries (the same manifest)
    seeds = inspect(play, bundled)
    result = carry(play, host, seeds, source="bundle", bundle=str(damaged))
    assert result.get("failed") and result["error_kind"] == "corrupt_bundle", result
    assert big["blob"] in result["msg"] and big["path"] in result["msg"]
    assert not (host / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2").exists()
