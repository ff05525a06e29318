"""hf_snapshot refuses, before any download or copy, a model that would not fit on the cache's filesystem."""

import os
import subprocess

import pytest

from tools.hub.hubserver import COMMIT_A, LARGE_REPO, MINILM_REPO

GIB = 1024 ** 3
MIB = 1024 ** 2


@pytest.fixture
def small_fs(tmp_path):
    """A real 128 MiB filesystem (tmpfs): the MiniLM model (~87 MiB) fits, twice it does not."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128M,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root and mount permission): %s"
                    % proc.stderr.strip())
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def args(hub, cache, repo=MINILM_REPO, **extra):
    base = {"repo_id": repo, "cache_dir": str(cache), "endpoint": hub.url, "timeout": 120}
    base.update(extra)
    return base


def files_written(cache):
    """Files in the cache other than the repository's lock (taken before the plan is made)."""
    return [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts]


def assert_refused(result, hub, cache, needed_at_least):
    assert result.get("failed") is True, result
    assert result["error_kind"] == "no_space"
    assert result["changed"] is False
    needed, free_bytes = result["needed_bytes"], result["free_bytes"]
    assert needed >= needed_at_least and needed > free_bytes
    assert str(needed) in result["msg"] and str(free_bytes) in result["msg"]
    assert "free_space_margin" in result["msg"]
    assert hub.stats()["requests"].get("get", 0) == 0  # no file was requested
    assert files_written(cache) == []


def test_a_model_larger_than_the_free_space_is_refused_before_any_download(hub, small_fs, run):
    cache = small_fs / "hub"
    result = run(args(hub, cache, repo=LARGE_REPO))
    big = hub.repos[LARGE_REPO]["commits"]
    size = sum(blob.size for blob in next(iter(big.values())).values())
    assert_refused(result, hub, cache, size + GIB)
    assert result["needed_bytes"] == size + GIB  # the default margin is 1 GiB
    assert abs(result["free_bytes"] - free(small_fs)) < MIB


def test_check_mode_refuses_too(hub, small_fs, run):
    cache = small_fs / "hub"
    result = run(args(hub, cache, repo=LARGE_REPO), check=True)
    assert_refused(result, hub, cache, 2 * GIB)


def test_the_margin_counts_and_a_model_that_fits_is_fetched(hub, small_fs, run):
    cache = small_fs / "hub"
    refused = run(args(hub, cache, revision=COMMIT_A, free_space_margin="1G"))
    assert_refused(refused, hub, cache, GIB)
    model = refused["needed_bytes"] - GIB
    assert 80 * MIB < model < 100 * MIB

    fetched = run(args(hub, cache, revision=COMMIT_A, free_space_margin="8M"))
    assert fetched.get("failed") is not True, fetched.get("msg")
    assert fetched["changed"] is True and fetched["needed_bytes"] == model + 8 * MIB
    assert free(small_fs) >= 8 * MIB
    again = run(args(hub, cache, revision=COMMIT_A, free_space_margin="1G"))
    assert again["changed"] is False and "needed_bytes" not in again  # nothing missing, nothing to check


def test_zero_turns_the_check_off(hub, small_fs, run):
    cache = small_fs / "hub"
    result = run(args(hub, cache, repo=LARGE_REPO, free_space_margin=0), check=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True and "needed_bytes" not in result


def test_blobs_from_import_is_refused_before_any_copy(hub, small_fs, run, tmp_path):
    source = tmp_path / "source-cache"
    seeded = run(args(hub, source, revision=COMMIT_A, free_space_margin=0))
    assert seeded["changed"] is True, seeded.get("msg")
    blobs = source / "models--sentence-transformers--all-MiniLM-L6-v2" / "blobs"
    hub.reset()
    cache = small_fs / "hub"
    result = run({"repo_id": MINILM_REPO, "cache_dir": str(cache), "revision": COMMIT_A,
                  "listing": seeded["listing"], "blobs_from": str(blobs), "free_space_margin": "64M"})
    assert_refused(result, hub, cache, 64 * MIB)
    assert hub.stats()["total"] == 0


def test_the_controller_probe_counts_the_staged_copy_on_the_same_filesystem(hub, small_fs, run, tmp_path):
    source = tmp_path / "source-cache"
    seeded = run(args(hub, source, revision=COMMIT_A, free_space_margin=0))
    hub.reset()
    cache = small_fs / "hub"
    probe = {"repo_id": MINILM_REPO, "cache_dir": str(cache), "revision": COMMIT_A, "listing": seeded["listing"],
             "free_space_margin": "8M"}
    # Staged on the cache's filesystem: the model counts twice (~174 MiB) and 128 MiB is not enough.
    refused = run(dict(probe, staging_dir=str(small_fs / ".incoming")), check=True)
    assert_refused(refused, hub, cache, 2 * seeded["downloaded_bytes"])
    assert "staged copy" in refused["msg"]
    # Staged elsewhere: only the cache's copy counts, and it fits.
    fits = run(dict(probe, staging_dir=str(tmp_path / "incoming")), check=True)
    assert fits.get("failed") is not True, fits.get("msg")
    assert fits["changed"] is True and fits["needed_bytes"] == seeded["downloaded_bytes"] + 8 * MIB
