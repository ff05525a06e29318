"""Pure decisions of hf_prune and the disk-space check: sizes, repository folders, /proc, ages and protections."""

import os
import time

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _prune

A, B, C = "a" * 40, "b" * 40, "c" * 40


@pytest.mark.parametrize("value, expected", [
    (0, 0), (123, 123), ("123", 123), ("512M", 512 * 1024 ** 2), ("1G", 1024 ** 3), ("1.5g", 1536 * 1024 ** 2),
    ("2GiB", 2 * 1024 ** 3), ("10 KB", 10240), ("1T", 1024 ** 4)])
def test_sizes_are_read_in_powers_of_1024(value, expected):
    assert _cache.parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "x", "-1", -1, "1P", "G", True, "1 G B"])
def test_bad_sizes_are_refused(value):
    with pytest.raises(ValueError):
        _cache.parse_size(value)


def test_free_space_is_measured_where_the_cache_will_be(tmp_path):
    free, device = _cache.free_space(str(tmp_path / "not" / "yet" / "there"))
    st = os.statvfs(tmp_path)
    assert device == os.stat(tmp_path).st_dev
    assert abs(free - st.f_bavail * st.f_frsize) < 64 * 1024 ** 2


def test_only_well_formed_repository_folders_are_listed(tmp_path):
    for name in ("models--org--name", "datasets--solo", "models--a--b--c", "models--..--x", "notes", ".locks"):
        (tmp_path / name).mkdir()
    assert _prune.repos_in(str(tmp_path)) == [("solo", "dataset"), ("org/name", "model")]
    assert _prune.repos_in(str(tmp_path / "missing")) == []


def test_open_paths_read_fds_maps_and_cwd_and_skip_unreadable(tmp_path):
    proc = tmp_path / "proc"
    (proc / "12" / "fd").mkdir(parents=True)
    os.symlink("/cache/blobs/x", proc / "12" / "fd" / "3")
    os.symlink("/work", proc / "12" / "cwd")
    (proc / "12" / "maps").write_text("7f00-7f01 r--p 00000000 08:01 42    /cache/blobs/y\n"
                                      "7f01-7f02 rw-p 00000000 00:00 0 \n7f02-7f03 r--p 0 0:0 0 [heap]\n")
    (proc / "13").mkdir()  # a process that ended, or whose entries are not readable
    (proc / "self").mkdir()
    assert _prune.open_paths(str(proc)) == {"/cache/blobs/x", "/cache/blobs/y", "/work"}


def snapshot(cache, commit, files, age):
    repo = _cache.RepoCache(str(cache), "org/name")
    for name, content in files.items():
        blob = os.path.join(repo.blobs, name)
        os.makedirs(repo.blobs, exist_ok=True)
        with open(blob, "w") as handle:
            handle.write(content)
        link = os.path.join(repo.root, "snapshots", commit, "f-" + name[:4])
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    past = time.time() - age
    os.utime(os.path.join(repo.root, "snapshots", commit), (past, past))
    return repo


def test_recent_means_the_latest_changed_snapshot_and_shared_blobs_stay(tmp_path):
    shared, only_a, only_c = "1" * 40, "2" * 40, "3" * 40
    snapshot(tmp_path, A, {shared: "s", only_a: "aaaa"}, age=300)
    snapshot(tmp_path, B, {shared: "s"}, age=100)
    repo = snapshot(tmp_path, C, {only_c: "cc"}, age=200)
    plan = _prune.plan_repo(str(tmp_path), "org/name", "model", 1, [], {}, set(), 3600)
    assert [r.commit for r in plan.keep] == [B] and plan.keep[0].reasons == ["recent"]
    assert sorted(r.commit for r in plan.remove) == [A, C]
    assert plan.blobs == [(only_a, 4), (only_c, 2)] and plan.freed == 6
    _prune.apply(plan)
    assert sorted(os.listdir(repo.blobs)) == [shared]
    assert os.listdir(os.path.join(repo.root, "snapshots")) == [B]


def test_a_busy_blob_or_a_link_to_a_file_of_the_snapshot_protects_it(tmp_path):
    repo = snapshot(tmp_path, A, {"4" * 40: "x"}, age=10)
    busy = {os.path.join(os.path.realpath(repo.blobs), "4" * 40)}
    plan = _prune.plan_repo(str(tmp_path), "org/name", "model", 0, [], {}, busy, 3600)
    assert plan.keep[0].reasons == ["open by a running process"] and not plan.remove
    link = tmp_path / "model-config"
    os.symlink(os.path.join(repo.root, "snapshots", A, "f-4444"), link)
    links = {str(link): _prune.link_targets(str(link))}
    plan = _prune.plan_repo(str(tmp_path), "org/name", "model", 0, [], links, set(), 3600)
    assert plan.keep[0].reasons == ["link %s" % link]
