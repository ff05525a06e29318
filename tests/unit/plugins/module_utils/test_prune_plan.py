"""Pure decisions of hf_prune and the disk-space check: sizes, repository folders, /proc, ages and protections."""

import os
import time

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _space
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _prune
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

A, B, C = "a" * 40, "b" * 40, "c" * 40


@pytest.mark.parametrize("value, expected", [
    (0, 0), (123, 123), ("123", 123), ("512M", 512 * 1024 ** 2), ("1G", 1024 ** 3), ("1.5g", 1536 * 1024 ** 2),
    ("2GiB", 2 * 1024 ** 3), ("10 KB", 10240), ("1T", 1024 ** 4)])
def test_sizes_are_read_in_powers_of_1024(value, expected):
    assert _space.parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "x", "-1", -1, "1P", "G", True, "1 G B"])
def test_bad_sizes_are_refused(value):
    with pytest.raises(ValueError):
        _space.parse_size(value)


def test_free_space_is_measured_where_the_cache_will_be(tmp_path):
    free, device = _space.free_space(str(tmp_path / "not" / "yet" / "there"))
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


# --- the shared blob store -------------------------------------------------------------------------------------

def publish(cache, repo_id, commit, files, age=100):
    """Lay out what huggingface_hub leaves after a Xet download: each file's content as a store entry named by
    its hash, the repository's blob a relative link to it, a `.refs` manifest line, the store's marker."""
    import hashlib
    repo = _cache.RepoCache(str(cache), repo_id)
    store = os.path.join(str(cache), "blobs")
    os.makedirs(store, exist_ok=True)
    with open(os.path.join(store, _store.MARKER), "w") as handle:
        handle.write("1\n")
    for path, content in files.items():
        data = content.encode()
        xet_hash = hashlib.sha256(b"xet" + data).hexdigest()
        etag = hashlib.sha256(data).hexdigest()
        entry = os.path.join(store, xet_hash[:2], xet_hash)
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        with open(entry, "wb") as handle:
            handle.write(data)
        os.makedirs(repo.blobs, exist_ok=True)
        blob = os.path.join(repo.blobs, etag)
        if not os.path.lexists(blob):
            os.symlink(_store.link_target(xet_hash), blob)
        with open(entry + ".refs", "a") as handle:
            handle.write("%s/blobs/%s\n" % (repo.folder_name, etag))
        link = os.path.join(repo.root, "snapshots", commit, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    past = time.time() - age
    os.utime(os.path.join(repo.root, "snapshots", commit), (past, past))
    return repo


def entry_of(content):
    import hashlib
    return hashlib.sha256(b"xet" + content.encode()).hexdigest()


def prune_all(cache, keep=0, check=False):
    """Plan every repository, then the store, and apply as the module does."""
    busy = set()
    plans = [_prune.plan_repo(str(cache), r, t, keep, [], {}, busy, 3600) for r, t in _prune.repos_in(str(cache))]
    predicted = _prune.plan_store(str(cache), plans, busy)
    if check:
        return plans, predicted, []
    for plan in plans:
        _prune.apply(plan)
    store = _prune.plan_store(str(cache), [], busy)
    return plans, predicted, _prune.apply_store(store, busy)


def test_a_store_entry_another_repository_uses_stays_and_one_nothing_uses_is_freed(tmp_path):
    publish(tmp_path, "org/one", A, {"model.bin": "shared weights", "README.md": "one's readme"}, age=300)
    publish(tmp_path, "org/one", B, {"model.bin": "shared weights", "README.md": "one's new readme"}, age=100)
    publish(tmp_path, "org/two", C, {"model.bin": "shared weights"}, age=100)
    shared, old_readme = entry_of("shared weights"), entry_of("one's readme")

    plans, predicted, _freed = prune_all(tmp_path, keep=1, check=True)
    one = next(p for p in plans if p.repo_id == "org/one")
    assert [r.commit for r in one.remove] == [A]
    assert predicted.entries == [(old_readme, len("one's readme"))]  # check mode lists it with its bytes
    assert os.path.exists(_store.entry_path(str(tmp_path), old_readme))

    _plans, _predicted, freed = prune_all(tmp_path, keep=1)
    assert freed == [(old_readme, len("one's readme"))]
    assert not os.path.lexists(_store.entry_path(str(tmp_path), old_readme))
    assert not os.path.lexists(_store.manifest_path(str(tmp_path), old_readme))
    with open(os.path.join(tmp_path, "models--org--one", "snapshots", B, "model.bin")) as handle:
        assert handle.read() == "shared weights"  # the kept revision still reads through its link
    assert os.path.isfile(_store.entry_path(str(tmp_path), shared))


def test_pruning_one_repository_keeps_the_entry_the_other_still_links_to(tmp_path):
    publish(tmp_path, "org/one", A, {"model.bin": "shared weights"})
    publish(tmp_path, "org/two", C, {"model.bin": "shared weights"})
    plan = _prune.plan_repo(str(tmp_path), "org/one", "model", 0, [], {}, set(), 3600)
    assert [r.commit for r in plan.remove] == [A] and plan.blobs and plan.blobs[0][1] == 0  # the link, no bytes
    store = _prune.plan_store(str(tmp_path), [plan], set(), scope=set())
    assert store.entries == [] and store.released == {entry_of("shared weights")}
    _prune.apply(plan)
    assert _prune.apply_store(_prune.plan_store(str(tmp_path), [], set(), scope=store.released), set()) == []
    assert os.path.isfile(_store.entry_path(str(tmp_path), entry_of("shared weights")))
    # then the other one goes too, and so does the entry
    plan = _prune.plan_repo(str(tmp_path), "org/two", "model", 0, [], {}, set(), 3600)
    store = _prune.plan_store(str(tmp_path), [plan], set(), scope=set())
    assert store.entries == [(entry_of("shared weights"), len("shared weights"))]


def test_a_manifest_is_not_trusted_either_way(tmp_path):
    """A `.refs` naming a path outside does not keep an entry nothing links to, and is never followed; a
    manifest emptied by hand does not free an entry a link still uses."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("not the cache's")
    cache = tmp_path / "hub"
    publish(cache, "org/one", A, {"a.bin": "orphan"})
    publish(cache, "org/two", C, {"b.bin": "used"})
    orphan, used = entry_of("orphan"), entry_of("used")
    with open(_store.manifest_path(str(cache), orphan), "a") as handle:
        handle.write("../outside/victim\n/etc/passwd\nmodels--org--two/blobs/%s\n" % ("0" * 64))
    open(_store.manifest_path(str(cache), used), "w").close()
    plan = _prune.plan_repo(str(cache), "org/one", "model", 0, [], {}, set(), 3600)
    store = _prune.plan_store(str(cache), [plan], set())
    assert [h for h, _size in store.entries] == [orphan]
    reported = [r for r in store.refused if r.path == _store.manifest_path(str(cache), orphan)]
    assert reported and "'../outside/victim'" in reported[0].reason and "'/etc/passwd'" in reported[0].reason
    _prune.apply(plan)
    assert _prune.apply_store(_prune.plan_store(str(cache), [], set()), set()) == [(orphan, len("orphan"))]
    assert (outside / "victim").read_text() == "not the cache's"
    assert os.path.isfile(_store.entry_path(str(cache), used))


def test_a_repository_blob_linking_outside_the_store_is_reported_and_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("x" * 1000)
    cache = tmp_path / "hub"
    repo = publish(cache, "org/one", A, {"a.bin": "mine"})
    foreign = os.path.join(repo.blobs, "f" * 64)
    os.symlink(str(secret), foreign)
    os.symlink("../../blobs/" + "f" * 64, os.path.join(repo.root, "snapshots", A, "evil.bin"))
    plan = _prune.plan_repo(str(cache), "org/one", "model", 0, [], {}, set(), 3600)
    assert [r.path for r in plan.refused] == [foreign]
    assert "not ../../blobs/<2 hex>/<64 hex>" in plan.refused[0].reason and "rm" in plan.refused[0].fix
    assert plan.freed == 0  # the target's 1000 bytes are not the cache's
    _prune.apply(plan)
    assert os.path.islink(foreign) and secret.read_text() == "x" * 1000


def test_a_fifo_as_store_entry_is_never_opened_and_is_reported(tmp_path):
    cache = tmp_path / "hub"
    repo = publish(cache, "org/one", A, {"a.bin": "will be a fifo"})
    entry = _store.entry_path(str(cache), entry_of("will be a fifo"))
    os.unlink(entry)
    os.mkfifo(entry)  # opening it for reading would block the module for ever
    plan = _prune.plan_repo(str(cache), "org/one", "model", 0, [], {}, set(), 3600)
    assert plan.blobs == [(os.path.basename(os.readlink(os.path.join(repo.root, "snapshots", A, "a.bin"))), 0)]
    store = _prune.plan_store(str(cache), [plan], set())
    assert store.entries == []
    (fifo,) = [r for r in store.refused if r.path == entry]
    assert "a FIFO" in fifo.reason and "remove %s" % entry in fifo.fix
    _prune.apply(plan)
    assert _prune.apply_store(_prune.plan_store(str(cache), [], set()), set()) == []
    assert os.path.exists(entry)


def test_a_store_entry_a_running_process_has_open_stays(tmp_path):
    publish(tmp_path, "org/one", A, {"a.bin": "in use"})
    real = os.path.join(os.path.realpath(str(tmp_path)), "blobs", entry_of("in use")[:2], entry_of("in use"))
    plan = _prune.plan_repo(str(tmp_path), "org/one", "model", 0, [], {}, {real}, 3600)
    assert plan.keep and plan.keep[0].reasons == ["open by a running process"]
    plan = _prune.plan_repo(str(tmp_path), "org/one", "model", 0, [], {}, set(), 3600)
    assert _prune.plan_store(str(tmp_path), [plan], {real}).entries == []


def test_a_symlinked_prefix_folder_is_not_followed_when_freeing(tmp_path):
    cache = tmp_path / "hub"
    publish(cache, "org/one", A, {"a.bin": "gone"})
    xet_hash = entry_of("gone")
    plan = _prune.plan_repo(str(cache), "org/one", "model", 0, [], {}, set(), 3600)
    _prune.apply(plan)
    store = _prune.plan_store(str(cache), [], set())
    assert store.entries == [(xet_hash, 4)]
    # swapped for a link to a folder outside between the plan and the removal
    prefix = os.path.dirname(_store.entry_path(str(cache), xet_hash))
    outside = tmp_path / "outside"
    os.rename(prefix, outside)
    os.symlink(str(outside), prefix)
    assert _prune.apply_store(store, set()) == []
    assert (outside / xet_hash).read_text() == "gone"
