"""hf_snapshot against the local Hub: what an operator checks after a run."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from tools import shared_store
from tools.harness import library_snapshot, target_python
from tools.hub.hubserver import COMMIT_A, COMMIT_B, GATED_COMMIT, GATED_REPO, MINILM_REPO

FOLDER = "models--sentence-transformers--all-MiniLM-L6-v2"
LFS_FILE = "model.safetensors"


def args(hub, cache, **extra):
    base = {"repo_id": MINILM_REPO, "cache_dir": str(cache), "endpoint": hub.url, "timeout": 120}
    base.update(extra)
    return base


def offline_embedding(cache, model="all-MiniLM-L6-v2"):
    """Load the model the way the Memory agent does, with the network forbidden."""
    code = ("from sentence_transformers import SentenceTransformer\n"
            "m = SentenceTransformer(%r)\n"
            "print(len(m.encode('JustNews pre-fetched this model')))\n" % model)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_ENDPOINT="http://127.0.0.1:9")
    env.pop("SENTENCE_TRANSFORMERS_HOME", None)
    proc = subprocess.run([target_python(), "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1])


def requests(hub):
    return hub.stats()["total"]


def test_cold_fetch_then_agent_loads_offline(hub, cache, run):
    result = run(args(hub, cache))
    assert result["changed"] is True, run.output
    assert result["commit"] == COMMIT_B  # main
    assert result["ref"] == "main"
    assert LFS_FILE in result["downloaded_files"]
    assert result["downloaded_bytes"] > 80_000_000
    assert set(result["downloaded_files"]) == set(result["files"])
    # every file was checked against the listing from the digest taken while it was written, none read again
    assert result["verified_while_downloading"] == len(result["downloaded_files"])
    assert result["download_memory"] == 512 * 1024 ** 2  # the default cap
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_B
    assert offline_embedding(cache) == 384
    # the model's record: the task's revision (not the commit the download job was given), where the bytes came from
    record = result["record"]
    assert (record["revision"], record["commit"], record["source"], record["received_from"]) == (
        "main", COMMIT_B, "hub", hub.url)
    assert record["files"] == len(result["files"]) and record["downloaded_bytes"] == result["downloaded_bytes"]
    assert record["changed"] and not record["failed"] and record["rollback_to"] is None


def test_pinned_commit_is_what_main_loads_offline(hub, cache, run):
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is True, run.output
    assert result["commit"] == COMMIT_A
    assert hub.stats()["requests"].get("model_info", 0) == 0  # a pinned commit needs no resolution
    # The Hub's main is COMMIT_B, but the fleet pinned A: offline 'main' must load A.
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A
    assert offline_embedding(cache) == 384


def test_second_run_changes_nothing_and_pinned_makes_no_request(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    hub.reset()
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is False, run.output
    assert result["downloaded_files"] == []
    assert requests(hub) == 0


def test_second_run_with_branch_present_makes_no_request(hub, cache, run):
    run(args(hub, cache))
    hub.reset()
    result = run(args(hub, cache))
    assert result["changed"] is False
    assert requests(hub) == 0


def test_latest_follows_the_branch(hub, cache, run):
    run(args(hub, cache, revision="v1", ref="main"))
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A
    hub.reset()
    result = run(args(hub, cache, state="latest"))
    assert result["changed"] is True
    assert result["commit"] == COMMIT_B
    assert result["downloaded_files"] == ["README.md"]  # only the file that differs between A and B
    assert hub.stats()["requests"]["get"] == 1


def test_check_mode_lists_files_and_writes_nothing(hub, cache, run):
    result = run(args(hub, cache, revision=COMMIT_A), check=True, diff=True)
    assert result["changed"] is True, run.output
    assert LFS_FILE in result["downloaded_files"]
    assert not cache.exists() or not any(cache.rglob("*"))
    assert result["diff"]["before"]["commit"] is None
    assert result["diff"]["after"]["commit"] == COMMIT_A
    assert hub.stats()["requests"].get("get", 0) == 0


def test_check_mode_on_complete_cache_reports_no_change(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    result = run(args(hub, cache, revision=COMMIT_A), check=True)
    assert result["changed"] is False


def test_diff_shows_commit_move(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    result = run(args(hub, cache, revision=COMMIT_B), diff=True)
    assert result["diff"]["before"]["commit"] == COMMIT_A
    assert result["diff"]["after"]["commit"] == COMMIT_B
    assert COMMIT_B in run.output
    assert result["record"]["previous_commit"] == result["record"]["rollback_to"] == COMMIT_A


def test_rate_limit_bursts_are_survived(hub, cache, run):
    hub.set_faults([
        {"kind": "429", "count": 2, "endpoint": "model_info", "retry_after": "1"},
        {"kind": "429", "count": 1, "endpoint": "tree", "retry_after": "date", "seconds": 1},
        {"kind": "503", "count": 3, "endpoint": "get"},
    ])
    result = run(args(hub, cache))
    assert result.get("failed") is not True, run.output
    assert result["commit"] == COMMIT_B
    assert result["retries_used"] >= 2
    assert offline_embedding(cache) == 384


def test_connection_reset_and_truncation_are_survived(hub, cache, run):
    hub.set_faults([
        {"kind": "reset", "count": 1, "endpoint": "get", "path": LFS_FILE},
        {"kind": "truncate", "count": 1, "endpoint": "get", "path": "tokenizer.json"},
    ])
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result.get("failed") is not True, run.output
    assert not list((cache / FOLDER / "blobs").glob("*.incomplete"))


def test_hung_hub_ends_within_timeout_and_keeps_cache(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    before = sorted(str(p) for p in (cache / FOLDER).rglob("*"))
    hub.set_faults([{"kind": "hang", "count": -1, "endpoint": "any"}])
    started = time.monotonic()
    result = run(args(hub, cache, revision="main", state="latest", timeout=8))
    took = time.monotonic() - started
    assert result["failed"] is True
    assert "timeout" in result["msg"]
    assert took < 8 + 25  # the playbook's own start-up on top of the module's limit
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A
    assert sorted(str(p) for p in (cache / FOLDER).rglob("*")) == before


def test_permanent_server_errors_fail_clearly_and_keep_cache(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    hub.set_faults([{"kind": "500", "count": -1, "endpoint": "any"}])
    result = run(args(hub, cache, revision=COMMIT_B, retries=2))
    assert result["failed"] is True
    assert "server error" in result["msg"]
    assert result["error_kind"] == "server_error"
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A
    assert offline_embedding(cache) == 384


def test_corrupt_download_is_caught_removed_and_ref_not_moved(hub, cache, run):
    # Same size, other bytes, on plain HTTP and on Xet (the CAS answers with its terms in another order).
    hub.set_faults([{"kind": "corrupt", "count": -1, "endpoint": "get", "path": LFS_FILE},
                    {"kind": "corrupt", "count": -1, "endpoint": "reconstruction", "path": ""}])
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["failed"] is True
    assert "checksum mismatch" in result["msg"] and LFS_FILE in result["msg"]
    assert result["corrupt_files"] == [LFS_FILE]
    assert not (cache / FOLDER / "refs" / "main").exists()
    assert not (cache / FOLDER / "snapshots" / COMMIT_A / LFS_FILE).exists()
    # a corrupt file the library put into the shared store is gone too, or the next download would link it again
    assert not [p for p in (cache / "blobs").glob("??/*") if len(p.name) == 64] if (cache / "blobs").exists() else True
    hub.set_faults([])
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is True and result["downloaded_files"] == [LFS_FILE]


def test_leftover_incomplete_files_are_cleaned(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    orphan = cache / FOLDER / "blobs" / ("d" * 40 + ".0123abcd.incomplete")
    orphan.write_bytes(b"x" * 100)
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is True
    assert not orphan.exists()


def test_offline_verifies_without_network(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    hub.reset()
    result = run(args(hub, cache, offline=True, revision="main"))
    assert result["changed"] is False and result["commit"] == COMMIT_A
    assert requests(hub) == 0
    # A file whose link is gone but whose blob is cached is repaired without the network...
    link = cache / FOLDER / "snapshots" / COMMIT_A / "tokenizer.json"
    blob = link.resolve()
    link.unlink()
    result = run(args(hub, cache, offline=True, revision=COMMIT_A))
    assert result["changed"] is True and link.exists()
    # ...one whose content is gone is reported by name.
    link.unlink()
    blob.unlink()
    result = run(args(hub, cache, offline=True, revision=COMMIT_A))
    assert result["failed"] is True and "tokenizer.json" in result["msg"]
    assert requests(hub) == 0


def test_ownership_and_modes(hub, cache, run):
    nobody = "nobody"
    result = run(args(hub, cache, revision=COMMIT_A, owner=nobody, group="nogroup", mode="0640"))
    assert result["changed"] is True
    import pwd
    uid = pwd.getpwnam(nobody).pw_uid
    for path in [cache / FOLDER, *(cache / FOLDER).rglob("*"), *(cache / ".locks").rglob("*")]:
        st = path.lstat()
        assert st.st_uid == uid, path
        if stat.S_ISREG(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o640, path
        elif stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o750, path
    tree = cache / FOLDER / "trees" / (COMMIT_A + ".json")
    assert stat.S_IMODE(tree.stat().st_mode) == 0o640  # the library writes it 0600
    again = run(args(hub, cache, revision=COMMIT_A, owner=nobody, group="nogroup", mode="0640"))
    assert again["changed"] is False


def test_link_is_swapped_when_commit_changes(hub, cache, run, tmp_path):
    link = tmp_path / "models" / "all-MiniLM-L6-v2"
    run(args(hub, cache, revision=COMMIT_A, link=str(link)))
    assert os.readlink(link).endswith(COMMIT_A)
    result = run(args(hub, cache, revision=COMMIT_B, link=str(link)))
    assert result["changed"] is True and result["downloaded_files"] == ["README.md"]
    assert os.readlink(link).endswith(COMMIT_B)
    assert b"Revision B" in (link / "README.md").read_bytes()
    assert offline_embedding(cache, model=str(link)) == 384


def test_gated_repo_needs_token_and_never_prints_it(hub, cache, run):
    result = run({"repo_id": GATED_REPO, "cache_dir": str(cache), "endpoint": hub.url, "retries": 0})
    assert result["failed"] is True
    assert result["error_kind"] == "gated"
    assert "token" in result["msg"]
    assert result["record"]["failed"] and result["record"]["fix"] == result["fix"]
    result = run({"repo_id": GATED_REPO, "cache_dir": str(cache), "endpoint": hub.url,
                 "token": hub.token}, verbosity=4)
    assert result["changed"] is True and result["commit"] == GATED_COMMIT
    assert hub.token not in run.output
    assert hub.token not in json.dumps(result)


def test_token_from_environment(hub, cache, run):
    result = run({"repo_id": GATED_REPO, "cache_dir": str(cache), "endpoint": hub.url},
                 env={"HF_TOKEN": hub.token}, verbosity=3)
    assert result["changed"] is True, run.output
    assert hub.token not in run.output


@pytest.mark.parametrize("extra, words", [
    ({"repo_id": "justnews-test/no-such-model"}, ["was not found", "repo_id"]),
    ({"revision": "no-such-branch"}, ["revision 'no-such-branch' does not exist"]),
    ({"allow_patterns": ["*.nothing"]}, ["matches allow_patterns"]),
    ({"mode": "abc"}, ["octal"]),
    ({"owner": "no-such-user-xyz"}, ["owner or group does not exist"]),
    ({"read_timeout": 0}, ["read_timeout must be > 0 and at most timeout"]),
])
def test_bad_input_names_the_fix(hub, cache, run, extra, words):
    result = run(args(hub, cache, retries=0, **extra))
    assert result["failed"] is True
    for word in words:
        assert word in result["msg"]


def test_read_timeout_lets_a_silent_endpoint_finish_the_file(hub, cache, run):
    """A caching mirror that fetches a file for another caller sends the waiting ones nothing until it has the
    block (Olah: 64 MiB); the library's 10 s read timeout drops such a request, read_timeout waits it out."""
    stall = [{"kind": "stall", "endpoint": "get", "path": "config.json", "count": 1, "seconds": 15}]
    hub.set_faults(stall)
    dropped = run(args(hub, cache, revision=COMMIT_A, xet=False, retries=0))
    assert dropped["failed"] is True and dropped["error_kind"] == "transient", dropped["msg"]
    assert "ReadTimeout" in dropped["msg"] and not list(cache.glob(FOLDER + "/snapshots/*"))
    hub.reset()
    hub.set_faults(stall)
    waited = run(args(hub, cache, revision=COMMIT_A, xet=False, retries=0, read_timeout=30))
    assert waited["changed"] is True and waited["retries_used"] == 0, waited.get("msg")
    assert waited["elapsed"] >= 15 and not hub.get_faults()[0]["count"]  # the stall was served and waited out
    assert offline_embedding(cache) == 384


def test_unreachable_hub_names_the_endpoint(cache, run):
    result = run({"repo_id": MINILM_REPO, "cache_dir": str(cache), "endpoint": "http://127.0.0.1:9",
                 "retries": 1, "timeout": 30})
    assert result["failed"] is True
    assert "cannot connect to http://127.0.0.1:9" in result["msg"]


def test_state_absent_removes_repo_and_link(hub, cache, run, tmp_path):
    link = tmp_path / "m"
    run(args(hub, cache, revision=COMMIT_A, link=str(link)))
    result = run(args(hub, cache, state="absent", link=str(link)), check=True)
    assert result["changed"] is True and (cache / FOLDER).exists()
    result = run(args(hub, cache, state="absent", link=str(link)))
    assert result["changed"] is True
    assert not (cache / FOLDER).exists() and not os.path.lexists(link)
    result = run(args(hub, cache, state="absent", link=str(link)))
    assert result["changed"] is False


def test_default_cache_dir_follows_hf_home(hub, tmp_path, run):
    home = tmp_path / "hf-home"
    result = run({"repo_id": MINILM_REPO, "endpoint": hub.url, "revision": COMMIT_A},
                 env={"HF_HOME": str(home), "HF_HUB_CACHE": ""})
    assert result["cache_dir"] == str(home / "hub")
    assert (home / "hub" / FOLDER / "refs" / "main").read_text() == COMMIT_A


def test_large_file_streams_to_disk_with_bounded_memory(hub, cache, run, tmp_path):
    """A 2 GiB+ LFS file: the module and its download process stay far below the file's size in memory."""
    from tools.hub.hubserver import LARGE_COMMIT, LARGE_REPO  # pylint: disable=import-outside-toplevel
    probe = tmp_path / "probe.py"
    # ru_maxrss of RUSAGE_CHILDREN covers every waited-for descendant: ansible, the module, its download child.
    probe.write_text(
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=False, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    result = run({"repo_id": LARGE_REPO, "cache_dir": str(cache), "endpoint": hub.url, "timeout": 600},
                 wrapper=[sys.executable, str(probe)])
    assert result["changed"] is True, run.output
    assert result["commit"] == LARGE_COMMIT
    big = cache / "models--justnews-test--large" / "snapshots" / LARGE_COMMIT / "big.bin"
    assert big.stat().st_size > 2 * 1024 ** 3
    peak_kib = int(run.wrapper_output.strip().splitlines()[-1])
    print("peak RSS while fetching %d bytes: %d MiB" % (big.stat().st_size, peak_kib // 1024))
    assert peak_kib < 512 * 1024, "peak RSS %d MiB while fetching a 2 GiB file" % (peak_kib // 1024)
    shutil.rmtree(cache)


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MiB tmpfs: too small for the model's 90 MB weights."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        pytest.skip("cannot mount a tmpfs here: %s" % proc.stderr.strip())
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_names_the_cache_and_leaves_no_partial_files(any_hub, small_disk, run):
    # On Xet, hf_xet writes the file and names the OS error only in its text; on plain HTTP it is an OSError.
    hub = any_hub
    cache = small_disk / "hub"
    # The disk fills during the download (the space check, which would refuse first, is off).
    result = run({"repo_id": MINILM_REPO, "cache_dir": str(cache), "endpoint": hub.url, "revision": COMMIT_A,
                  "free_space_margin": 0})
    assert result["failed"] is True, run.output
    assert "no space left in %s" % cache in result["msg"]
    assert result["error_kind"] == "disk_full"
    assert not (cache / FOLDER / "refs" / "main").exists()
    assert not list((cache / FOLDER / "blobs").glob("*.incomplete"))


def test_a_second_cache_filled_from_the_first_sends_nothing_to_the_hub(hub, cache, run, tmp_path):
    """One fetch from the Hub (as on a controller), then a host fed from its blobs with no Hub in reach."""
    seed = run(args(hub, cache, revision=COMMIT_A))
    hub.reset()
    host_cache = tmp_path / "host-cache"
    plan = run({"repo_id": MINILM_REPO, "cache_dir": str(host_cache), "revision": COMMIT_A,
                "listing": seed["listing"], "endpoint": "http://127.0.0.1:9"}, check=True)
    assert plan["changed"] is True
    assert sum(b["size"] for b in plan["missing_blobs"]) == seed["downloaded_bytes"]
    result = run({"repo_id": MINILM_REPO, "cache_dir": str(host_cache), "revision": COMMIT_A,
                  "listing": seed["listing"], "blobs_from": str(cache / FOLDER / "blobs"),
                  "endpoint": "http://127.0.0.1:9"})
    assert result["changed"] is True and result["downloaded_bytes"] == seed["downloaded_bytes"], result.get("msg")
    assert requests(hub) == 0
    assert offline_embedding(host_cache) == 384


# --- the shared blob store of Xet downloads ---------------------------------------------------------------

def store_cache(hub, cache, run, **extra):
    """A cache as Xet downloads leave it: the LFS blob in <cache>/blobs/<2 hex>/<hash>, linked from the repo."""
    result = run(args(hub, cache, revision=COMMIT_A, **extra))
    assert result["changed"] is True, run.output
    links = shared_store.publish(cache, FOLDER)
    return result, links


def test_a_warm_pinned_run_on_the_shared_store_changes_nothing_and_offline_holds(hub, cache, run):
    seeded, links = store_cache(hub, cache, run)
    etag, xet_hash = next(iter(links.items()))
    entry = shared_store.entry(cache, xet_hash)
    before = hashlib.sha256(open(entry, "rb").read()).hexdigest()
    hub.reset()
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is False and result["downloaded_files"] == [], result.get("msg")
    assert requests(hub) == 0
    offline = run(args(hub, cache, revision=COMMIT_A, offline=True))
    assert offline["changed"] is False and not offline.get("failed"), offline.get("msg")
    assert requests(hub) == 0
    # the store is as the library left it: the link, the entry, its content
    assert os.readlink(cache / FOLDER / "blobs" / etag) == "../../blobs/%s/%s" % (xet_hash[:2], xet_hash)
    assert hashlib.sha256(open(entry, "rb").read()).hexdigest() == before == etag
    assert library_snapshot(cache, COMMIT_A) == seeded["snapshot_path"]
    assert offline_embedding(cache) == 384


def test_a_corrupt_store_entry_is_an_integrity_failure_and_the_next_run_repairs_it(hub, cache, run):
    _seeded, links = store_cache(hub, cache, run)
    etag, xet_hash = next(iter(links.items()))
    entry = shared_store.entry(cache, xet_hash)
    size = os.path.getsize(entry)
    os.chmod(entry, 0o644)
    with open(entry, "r+b") as handle:  # same size, other bytes: the library's size check passes
        handle.seek(size // 2)
        handle.write(b"\0" * 64)
    result = run(args(hub, cache, revision=COMMIT_A, offline=True))
    assert result["failed"] is True and result["error_kind"] == "integrity", result
    assert result["corrupt_files"] == [LFS_FILE]
    # the bad entry and the links to it are gone, so no later download links it again by size
    assert not os.path.lexists(entry)
    assert not os.path.lexists(cache / FOLDER / "blobs" / etag)
    assert not os.path.lexists(cache / FOLDER / "snapshots" / COMMIT_A / LFS_FILE)
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A
    repaired = run(args(hub, cache, revision=COMMIT_A))
    assert repaired["changed"] is True and repaired["downloaded_files"] == [LFS_FILE], repaired.get("msg")
    data = (cache / FOLDER / "snapshots" / COMMIT_A / LFS_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == etag
    assert run(args(hub, cache, revision=COMMIT_A, offline=True))["changed"] is False


def test_ownership_and_modes_reach_the_store_entries_the_repository_uses(hub, cache, run):
    import pwd
    _seeded, links = store_cache(hub, cache, run)
    uid = pwd.getpwnam("nobody").pw_uid
    root_before = cache.stat()
    tag_before = (cache / "CACHEDIR.TAG").stat()
    result = run(args(hub, cache, revision=COMMIT_A, owner="nobody", group="nogroup", mode="0640"))
    assert result["changed"] is True, result.get("msg")
    store = cache / "blobs"
    paths = [store, store / ".huggingface-shared-blobs"]
    for xet_hash in links.values():
        entry = shared_store.entry(cache, xet_hash)
        paths += [os.path.dirname(entry), entry, entry + ".refs", entry + ".lock"]
    for path in paths:
        st = os.lstat(path)
        assert st.st_uid == uid, path
        want = 0o750 if stat.S_ISDIR(st.st_mode) else 0o640
        assert stat.S_IMODE(st.st_mode) == want, path
    # the cache root and its tag are shared by every repository and stay as they were
    assert (cache.stat().st_uid, cache.stat().st_mode) == (root_before.st_uid, root_before.st_mode)
    assert (cache / "CACHEDIR.TAG").stat().st_uid == tag_before.st_uid
    again = run(args(hub, cache, revision=COMMIT_A, owner="nobody", group="nogroup", mode="0640"))
    assert again["changed"] is False, again.get("msg")


def test_shared_blobs_false_fetches_into_regular_files(hub, cache, run):
    result = run(args(hub, cache, revision=COMMIT_A, shared_blobs=False))
    assert result["changed"] is True, result.get("msg")
    blobs = cache / FOLDER / "blobs"
    assert all(not os.path.islink(p) for p in blobs.iterdir())
    assert not (cache / "blobs").exists()
    assert library_snapshot(cache, COMMIT_A) == result["snapshot_path"]


def test_xet_false_takes_every_byte_from_the_endpoint_not_the_cas(hub, cache, run):
    """What a caching mirror that passes the Xet information through needs: no byte from the CAS it names."""
    hub.reset()
    result = run(args(hub, cache, revision=COMMIT_A, xet=False))
    assert result["changed"] is True, result.get("msg")
    sent, asked = hub.stats()["bytes"], hub.stats()["requests"]
    assert sent.get("xorb", 0) == 0 and asked.get("xet_token", 0) == 0 and asked.get("reconstruction", 0) == 0, asked
    assert sum(sent.values()) >= result["downloaded_bytes"] > 80_000_000, sent
    # plain HTTP hashes in the write path too: no file read back after the download
    assert result["verified_while_downloading"] == len(result["downloaded_files"])
    blobs = cache / FOLDER / "blobs"
    assert all(p.is_file() and not p.is_symlink() for p in blobs.iterdir())
    assert library_snapshot(cache, COMMIT_A) == result["snapshot_path"]
    assert offline_embedding(cache) == 384


def test_a_host_fed_from_a_store_layout_cache_gets_the_store_layout_the_library_reads(hub, cache, run, tmp_path):
    """The controller's cache holds Xet's layout; a host takes its blobs in (blobs_from) with no Hub in reach and
    ends with the same layout: each Xet file in the host's store under the Xet hash computed from it."""
    seed, links = store_cache(hub, cache, run)
    hub.reset()
    host_cache = tmp_path / "host-cache"
    base = {"repo_id": MINILM_REPO, "cache_dir": str(host_cache), "revision": COMMIT_A, "listing": seed["listing"],
            "endpoint": "http://127.0.0.1:9"}
    plan = run(base, check=True)
    assert plan["changed"] is True
    result = run(dict(base, blobs_from=str(cache / FOLDER / "blobs")))
    assert result["changed"] is True and result["downloaded_bytes"] == seed["downloaded_bytes"], result.get("msg")
    assert requests(hub) == 0
    host_blobs = host_cache / FOLDER / "blobs"
    for etag, xet_hash in links.items():
        blob = host_blobs / etag
        assert os.readlink(blob) == "../../blobs/%s/%s" % (xet_hash[:2], xet_hash)
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == etag
        assert (host_cache / "blobs" / xet_hash[:2] / xet_hash).is_file()
    assert library_snapshot(host_cache, COMMIT_A) == result["snapshot_path"]
    assert run(base)["changed"] is False
