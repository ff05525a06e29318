"""The shared blob store read as untrusted: only the library's own link form, reached without following links."""

import hashlib
import os
import stat

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _ownership
from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

CONTENT = b"weights" * 1000
ETAG = hashlib.sha256(CONTENT).hexdigest()
XET = hashlib.sha256(ETAG.encode()).hexdigest()
FOLDER = "models--org--name"


@pytest.fixture
def cache(tmp_path):
    """A cache as huggingface_hub leaves it after a Xet download, written by the library's own code."""
    from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store

    root = tmp_path / "hub"
    blobs = root / FOLDER / "blobs"
    blobs.mkdir(parents=True)
    (blobs / ETAG).write_bytes(CONTENT)
    assert publish_blob_to_shared_store(blob_path=str(blobs / ETAG), xet_hash=XET, cache_dir=str(root),
                                        expected_size=len(CONTENT))
    return root


def blob(cache):
    return str(cache / FOLDER / "blobs" / ETAG)


def relink(cache, target):
    os.unlink(blob(cache))
    os.symlink(target, blob(cache))


def test_the_library_layout_is_a_present_store_blob(cache):
    found = _store.inspect_blob(str(cache), blob(cache))
    assert (found.kind, found.xet_hash, found.size) == (_store.STORE, XET, len(CONTENT))
    assert b"".join(_store.read_chunks(_store.open_blob(str(cache), blob(cache)))) == CONTENT
    assert _store.entries(str(cache)) == {XET: len(CONTENT)}
    assert _store.read_manifest(str(cache), XET) == [FOLDER + "/blobs/" + ETAG]
    assert _store.referrers(str(cache), XET) == [blob(cache)]
    assert _store.repo_links(str(cache), str(cache / FOLDER)) == {ETAG: XET}
    assert _store.all_links(str(cache)) == {XET: [blob(cache)]}
    assert _store.unsound_paths(str(cache)) == []


def test_the_link_form_is_exact():
    assert _store.parse_target("../../blobs/%s/%s" % (XET[:2], XET)) == XET
    assert _store.link_target(XET) == "../../blobs/%s/%s" % (XET[:2], XET)
    pre = XET[:2]
    for target in ["/hub/blobs/%s/%s" % (pre, XET), "../../blobs/00/" + XET, "../../blobs/%s/%s/" % (pre, XET),
                   "../../blobs/./%s/%s" % (pre, XET), "../../../etc/passwd", "../../blobs/%s/%s" % (pre, ETAG[:40]),
                   "../../blobs/%s/%s" % (pre.upper(), XET.upper()), "../../other/%s/%s" % (pre, XET), None]:
        assert _store.parse_target(target) is None, target


@pytest.mark.parametrize("case", ["absolute link", "link to /etc/passwd", "link to ../../../etc/passwd",
                                  "wrong prefix", "dangling", "fifo entry", "symlinked entry", "directory entry",
                                  "symlinked prefix folder", "symlinked store folder"])
def test_hostile_store_links_are_refused_and_never_followed(cache, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / XET).write_bytes(CONTENT)  # the right bytes, in the wrong place: still refused
    entry = _store.entry_path(str(cache), XET)
    prefix = os.path.dirname(entry)
    if case == "absolute link":
        relink(cache, entry)
    elif case == "link to /etc/passwd":
        relink(cache, "/etc/passwd")
    elif case == "link to ../../../etc/passwd":
        relink(cache, "../../../etc/passwd")
    elif case == "wrong prefix":
        (cache / "blobs" / "00").mkdir()
        (cache / "blobs" / "00" / XET).write_bytes(CONTENT)
        relink(cache, "../../blobs/00/" + XET)
    elif case == "dangling":
        os.unlink(entry)
    elif case == "fifo entry":
        os.unlink(entry)
        os.mkfifo(entry)
    elif case == "symlinked entry":
        os.unlink(entry)
        os.symlink(outside / XET, entry)
    elif case == "directory entry":
        os.unlink(entry)
        os.mkdir(entry)
    elif case == "symlinked prefix folder":
        os.rename(prefix, outside / "p")
        os.symlink(outside / "p", prefix)
    elif case == "symlinked store folder":
        os.rename(cache / "blobs", outside / "store")
        os.symlink(outside / "store", cache / "blobs")
    found = _store.inspect_blob(str(cache), blob(cache))
    assert found.kind == _store.REFUSED and not found.present, found
    with pytest.raises((_store.StoreRefused, FileNotFoundError)):
        os.close(_store.open_blob(str(cache), blob(cache)))
    # the repository does not count it, and hashing it never reads through it
    repo = _cache.RepoCache(str(cache), "org/name")
    assert not repo.has_blob(ETAG)
    assert _cache.blob_matches_name(blob(cache), str(cache))[0] is False
    link_only = case.startswith(("absolute", "link to", "wrong prefix"))
    assert (XET in _store.entries(str(cache))) == link_only  # a tampered entry is not listed either
    if case.startswith("symlinked") and case.endswith("folder"):
        assert _store.unsound_paths(str(cache))
        assert _store.owned_paths(str(cache), [XET]) == [] or case == "symlinked prefix folder"
        assert not any(p.startswith(str(outside)) for p in _store.owned_paths(str(cache), [XET]))


def test_a_refused_blob_is_cleared_and_a_directory_in_its_place_is_unsafe(cache):
    repo = _cache.RepoCache(str(cache), "org/name")
    relink(cache, "/etc/passwd")
    assert repo.clear_refused([ETAG]) == [ETAG]
    assert not os.path.lexists(blob(cache)) and os.path.exists("/etc/passwd")
    os.mkdir(blob(cache))
    with pytest.raises(_names.UnsafeName):
        repo.clear_refused([ETAG])


def test_a_corrupt_store_entry_is_discarded_with_its_link(cache):
    repo = _cache.RepoCache(str(cache), "org/name")
    entry = _store.entry_path(str(cache), XET)
    os.chmod(entry, 0o644)
    with open(entry, "r+b") as handle:
        handle.write(b"X")
    assert _cache.blob_matches_name(blob(cache), str(cache))[0] is False
    assert repo.settle_pending([ETAG]) == [ETAG]
    assert not os.path.lexists(entry) and not os.path.lexists(blob(cache))


def test_remove_entry_does_not_reach_through_a_symlinked_prefix(cache, tmp_path):
    entry = _store.entry_path(str(cache), XET)
    prefix = os.path.dirname(entry)
    os.rename(prefix, tmp_path / "p")
    os.symlink(tmp_path / "p", prefix)
    assert _store.remove_entry(str(cache), XET) is False
    assert (tmp_path / "p" / XET).exists()


def test_manifests_are_hints_read_with_a_cap(cache):
    manifest = _store.manifest_path(str(cache), XET)
    with open(manifest, "a") as handle:
        handle.write("/etc/passwd\n../../x/blobs/" + ETAG + "\nmodels--a--b/blobs/nothex\n")
    assert _store.read_manifest(str(cache), XET) == [FOLDER + "/blobs/" + ETAG]
    assert _store.read_manifest(str(cache), XET, limit=10) == []
    os.unlink(manifest)
    os.mkfifo(manifest)
    assert _store.read_manifest(str(cache), XET) == []  # a FIFO neither blocks nor counts


def test_ownership_covers_the_store_entries_the_repository_uses_only(cache):
    other = hashlib.sha256(b"other").hexdigest()
    (cache / "blobs" / other[:2]).mkdir(exist_ok=True)
    (cache / "blobs" / other[:2] / other).write_bytes(b"other")
    repo = _cache.RepoCache(str(cache), "org/name")
    paths = set(repo.owned_paths())
    entry = _store.entry_path(str(cache), XET)
    assert {str(cache / "blobs"), str(cache / "blobs" / _store.MARKER), os.path.dirname(entry), entry,
            entry + ".refs", entry + ".lock"} <= paths
    assert str(cache / "blobs" / other[:2] / other) not in paths
    assert str(cache) not in paths
    pending = _ownership.plan_ownership(sorted(paths), -1, -1, 0o640)
    _ownership.apply_ownership(pending, -1, -1, 0o640, str(cache))
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(os.path.dirname(entry)).st_mode) == 0o750
    assert _ownership.plan_ownership(sorted(paths), -1, -1, 0o640) == []


def test_apply_ownership_never_chmods_through_a_swapped_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    victim.chmod(0o600)
    path = tmp_path / "entry"
    path.write_text("y")
    pending = _ownership.plan_ownership([str(path)], -1, -1, 0o644)
    path.unlink()
    path.symlink_to(victim)  # swapped between plan and apply
    _ownership.apply_ownership(pending, -1, -1, 0o644, str(tmp_path))
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_apply_ownership_never_reaches_through_a_folder_swapped_after_the_plan(tmp_path):
    cache = tmp_path / "cache"
    (cache / "refs" / "x").mkdir(parents=True)
    planted = cache / "refs" / "x" / "shadow"
    planted.write_text("y")
    planted.chmod(0o600)
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "shadow").write_text("secret")
    (outside / "shadow").chmod(0o600)
    pending = _ownership.plan_ownership([str(planted)], -1, -1, 0o644)
    assert pending == [str(planted)]
    planted.unlink()
    (cache / "refs" / "x").rmdir()
    (cache / "refs" / "x").symlink_to(outside)  # the folder on the way, swapped between plan and apply
    _ownership.apply_ownership(pending, -1, -1, 0o644, str(cache))
    assert stat.S_IMODE((outside / "shadow").stat().st_mode) == 0o600


def test_a_blobs_from_folder_of_another_store_cache_is_read_through_its_store(cache, tmp_path):
    host = _cache.RepoCache(str(tmp_path / "host"), "org/name")
    host.check_layout(create=True)
    assert host.import_blob(blob(cache), ETAG) == len(CONTENT)
    copied = os.path.join(host.blobs, ETAG)
    assert not os.path.islink(copied) and open(copied, "rb").read() == CONTENT
    relink(cache, "/etc/passwd")
    with pytest.raises((OSError, _cache.BlobMismatch)):
        host.import_blob(blob(cache), hashlib.sha256(b"x").hexdigest())


def test_publishing_gives_up_on_an_entry_lock_the_owner_holds(tmp_path):
    """The library waits on the entry's lock without a limit; the module's publishing stops at its deadline."""
    import fcntl  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    hf_xet = pytest.importorskip("hf_xet")
    cache = tmp_path / "cache"
    blobs = cache / "models--org--name" / "blobs"
    blobs.mkdir(parents=True)
    content = b"weights " * 1000
    name = hashlib.sha256(content).hexdigest()
    (blobs / name).write_bytes(content)
    source = tmp_path / name
    source.write_bytes(content)
    xet_hash = hf_xet.hash_files([str(source)])[0].hash
    prefix = cache / "blobs" / xet_hash[:2]
    prefix.mkdir(parents=True)
    (cache / "blobs" / _store.MARKER).write_bytes(_store.MARKER_CONTENT)
    holder = os.open(str(prefix / (xet_hash + ".lock")), os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        why = _store.publish(str(cache), str(blobs / name), xet_hash, len(content), source=str(source), deadline=2)
        assert why and "lock was held" in why, why
        assert time.monotonic() - started < 15
    finally:
        os.close(holder)
    assert _store.publish(str(cache), str(blobs / name), xet_hash, len(content), source=str(source)) is None
    assert _store.link_hash(str(blobs / name)) == xet_hash


# --- hard links: never chowned or chmodded in place ------------------------------------------------------------

NOBODY = 65534
COMMIT = "a" * 40


def plant_hard_link(path, outside, content):
    """Make `path` a hard link to root's 0600 file `outside` holding `content` (as the cache's owner can where
    fs.protected_hardlinks is off); return what an operator would compare afterwards."""
    outside.write_bytes(content)
    outside.chmod(0o600)
    if os.path.lexists(path):
        os.unlink(path)
    os.link(outside, path)
    return outside_state(outside)


def outside_state(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), path.read_bytes()


def full_cache(cache):
    """The library layout plus a ref, a listing, the repository's lock and a plain blob."""
    repo = _cache.RepoCache(str(cache), "org/name")
    repo.check_layout(create=True)
    repo.write_ref("main", COMMIT)
    repo.write_tree(COMMIT, {"w.bin": {"size": len(CONTENT), "blob_id": "b" * 40, "lfs_sha256": ETAG}})
    with _cache.RepoLock(repo, 5):
        pass
    plain = b"plain config\n"
    plain_id = hashlib.sha1(b"blob %d\0" % len(plain) + plain).hexdigest()
    (cache / FOLDER / "blobs" / plain_id).write_bytes(plain)
    return repo, plain_id, plain


@pytest.mark.parametrize("which", ["store entry", "manifest", "entry lock", "marker", "plain blob", "ref",
                                   "listing", "repository lock"])
def test_ownership_replaces_a_hard_linked_file_by_a_private_copy(cache, tmp_path, which):
    repo, plain_id, plain = full_cache(cache)
    entry = _store.entry_path(str(cache), XET)
    path, content = {
        "store entry": (entry, CONTENT),
        "manifest": (entry + ".refs", (FOLDER + "/blobs/" + ETAG + "\n").encode()),
        "entry lock": (entry + ".lock", b"root's secret\n"),
        "marker": (str(cache / "blobs" / _store.MARKER), _store.MARKER_CONTENT),
        "plain blob": (str(cache / FOLDER / "blobs" / plain_id), plain),
        "ref": (str(cache / FOLDER / "refs" / "main"), COMMIT.encode()),
        "listing": (repo.tree_path(COMMIT), open(repo.tree_path(COMMIT), "rb").read()),
        "repository lock": (os.path.join(repo.locks, _cache.LOCK_NAME), b"root's secret\n"),
    }[which]
    outside = tmp_path / "outside"
    before = plant_hard_link(path, outside, content)
    paths = sorted(repo.owned_paths())
    assert path in paths
    pending = _ownership.plan_ownership(paths, NOBODY, NOBODY, 0o644, str(cache), repo.copy_rule)
    assert path in pending and outside_state(outside) == before  # planning changes nothing
    _ownership.apply_ownership(pending, NOBODY, NOBODY, 0o644, str(cache), repo.copy_rule)
    assert outside_state(outside) == before and os.stat(outside).st_nlink == 1
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink) == (NOBODY, NOBODY, 0o644, 1)
    expected = b"" if which.endswith("lock") else content
    assert open(path, "rb").read() == expected
    assert _ownership.plan_ownership(sorted(repo.owned_paths()), NOBODY, NOBODY, 0o644, str(cache), repo.copy_rule) == []
    assert _store.inspect_blob(str(cache), blob(cache)).kind == _store.STORE
    assert repo.read_ref("main") == COMMIT and repo.read_tree(COMMIT) is not None


@pytest.mark.parametrize("which", ["store entry", "plain blob", "ref", "listing", "marker", "unknown file",
                                   "snapshot file"])
def test_a_hard_link_whose_content_does_not_belong_there_is_refused_before_any_change(cache, tmp_path, which):
    repo, plain_id, _plain = full_cache(cache)
    snapshot = cache / FOLDER / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    path = {"store entry": _store.entry_path(str(cache), XET),
            "plain blob": str(cache / FOLDER / "blobs" / plain_id),
            "ref": str(cache / FOLDER / "refs" / "main"),
            "listing": repo.tree_path(COMMIT),
            "marker": str(cache / "blobs" / _store.MARKER),
            "unknown file": str(cache / FOLDER / "notes.txt"),
            "snapshot file": str(snapshot / "config.json")}[which]
    outside = tmp_path / "shadow"
    before = plant_hard_link(path, outside, b"root:$6$secret:19000:0:99999:7:::\n")
    # every field but the access time, which reading a folder's entries may update
    def state(p):
        st = os.lstat(p)
        return st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    cache_before = {p: state(p) for p in repo.owned_paths()}
    with pytest.raises(_fs.Refused) as info:
        _ownership.plan_ownership(sorted(repo.owned_paths()), NOBODY, NOBODY, 0o644, str(cache), repo.copy_rule)
    assert str(info.value).startswith(path + " is a hard link") and "rm" in str(info.value)
    assert outside_state(outside) == before and os.stat(outside).st_nlink == 2
    assert {p: state(p) for p in repo.owned_paths()} == cache_before
    # applied anyway (a link planted after the plan), it is refused the same way and nothing is copied out
    with pytest.raises(_fs.Refused):
        _ownership.apply_ownership([path], NOBODY, NOBODY, 0o644, str(cache), repo.copy_rule)
    assert outside_state(outside) == before and os.lstat(path).st_ino == os.stat(outside).st_ino


def test_the_repository_lock_is_never_written_through_a_hard_link(cache, tmp_path):
    repo, _plain_id, _plain = full_cache(cache)
    outside = tmp_path / "shadow"
    before = plant_hard_link(os.path.join(repo.locks, _cache.LOCK_NAME), outside, b"root's secret\n")
    with _cache.RepoLock(repo, 5) as lock:
        held = os.fstat(lock.fd)
        assert held.st_ino != os.stat(outside).st_ino and held.st_nlink == 1
        assert os.stat(os.path.join(repo.locks, _cache.LOCK_NAME)).st_ino == held.st_ino
    assert outside_state(outside) == before


def test_the_library_finds_no_hard_linked_lock_or_manifest_to_chmod_or_append_to(cache, tmp_path):
    from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store

    entry = _store.entry_path(str(cache), XET)
    lock_out, refs_out = tmp_path / "lock-target", tmp_path / "refs-target"
    lock_before = plant_hard_link(entry + ".lock", lock_out, b"root's secret\n")
    refs_before = plant_hard_link(entry + ".refs", refs_out, (FOLDER + "/blobs/" + ETAG + "\nnot a line\n").encode())
    assert _store.detach_links(str(cache), [XET]) == [entry + ".lock", entry + ".refs"]
    assert open(entry + ".refs", "rb").read() == (FOLDER + "/blobs/" + ETAG + "\n").encode()
    assert stat.S_IMODE(os.stat(entry + ".lock").st_mode) == 0o666
    # what a second repository's publish does as root: lock (fchmod 0666) and append to the manifest
    other = cache / "models--org--other" / "blobs"
    other.mkdir(parents=True)
    (other / ETAG).write_bytes(CONTENT)
    assert publish_blob_to_shared_store(blob_path=str(other / ETAG), xet_hash=XET, cache_dir=str(cache),
                                        expected_size=len(CONTENT))
    assert outside_state(lock_out) == lock_before and outside_state(refs_out) == refs_before
    assert _store.detach_links(str(cache), [XET]) == []
