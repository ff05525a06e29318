"""Hard links planted in a cache or an image root: a chown or chmod acts on the inode, so it would reach the file
outside that shares it. Each test plants, as root (the cache's owner could where fs.protected_hardlinks is off),
a name in the cache that shares its inode with root's 0600 file outside, runs the real module through
ansible-playbook, and checks the file outside (owner, group, mode, bytes), the result and that the cache loads.
"""

import hashlib
import os
import shutil
import stat

import pytest

from tests.functional.conftest import Runner
from tests.functional.test_prune import verifies_offline
from tests.functional.test_trust_bundle import Tasks, image
from tools import shared_store
from tools.hub.hubserver import COMMIT_A, MINILM_REPO
from test_hf_snapshot import FOLDER, LFS_FILE, args

NOBODY = 65534
OWNED = {"owner": "nobody", "group": "nogroup", "mode": "0644"}
SHADOW = b"root:$6$planted$0123456789abcdef:19000:0:99999:7:::\n"


def fill(server, collections_path, tmp_path_factory, name):
    work = tmp_path_factory.mktemp(name)
    cache = work / "hub"
    result = Runner(collections_path, work)(args(server, cache, revision=COMMIT_A))
    assert result["changed"] is True, result.get("msg")
    return cache


@pytest.fixture(scope="module")
def xet_template(hub, collections_path, tmp_path_factory):
    """COMMIT_A fetched from the Xet Hub: its LFS file is an entry of the shared store."""
    cache = fill(hub, collections_path, tmp_path_factory, "hardlinks-xet")
    shared_store.publish(cache, FOLDER)
    return cache


@pytest.fixture(scope="module")
def lfs_template(hub_lfs, collections_path, tmp_path_factory):
    """COMMIT_A fetched from the plain-LFS Hub: every blob a regular file of the repository."""
    return fill(hub_lfs, collections_path, tmp_path_factory, "hardlinks-lfs")


def copy_of(template, tmp_path):
    cache = tmp_path / "hub"
    shutil.copytree(template, cache, symlinks=True)
    return cache


def state(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), path.read_bytes()


def plant(name, outside, content=None):
    """Make `name` in the cache a hard link to root's 0600 file `outside`, which holds `content` (by default what
    `name` holds: the copy is then sound). Returns the file's state, to compare afterwards."""
    outside.write_bytes(name.read_bytes() if content is None else content)
    outside.chmod(0o600)
    name.unlink()
    os.link(outside, name)
    return state(outside)


def owners(cache):
    """Inode, owner, group, mode and link count of everything in the cache."""
    return {str(p): (st.st_ino, st.st_uid, st.st_gid, st.st_mode, st.st_nlink)
            for p, st in ((p, os.lstat(p)) for p in cache.rglob("*"))}


def lfs_blob(cache):
    return cache / FOLDER / "blobs" / os.path.basename(os.readlink(cache / FOLDER / "snapshots" / COMMIT_A / LFS_FILE))


def store_entry(cache):
    links = shared_store.store_links(cache, FOLDER)
    return shared_store.entry(cache, links[lfs_blob(cache).name])


def planted_names(cache, case):
    if case == "plain blob":
        return [lfs_blob(cache)]
    if case == "store entry":
        return [store_entry(cache)]
    if case == "store manifest, lock and marker":
        entry = store_entry(cache)
        return [entry + ".refs", entry + ".lock", cache / "blobs" / ".huggingface-shared-blobs"]
    return [cache / FOLDER / "refs" / "main", cache / FOLDER / "trees" / (COMMIT_A + ".json"),
            cache / ".locks" / FOLDER / (lfs_blob(cache).name + ".lock")]


@pytest.mark.parametrize("case", ["plain blob", "store entry", "store manifest, lock and marker",
                                  "ref, listing and blob lock"])
def test_a_warm_run_with_owner_copies_a_hard_linked_file_and_never_changes_the_file_outside(
        hub, hub_lfs, xet_template, lfs_template, run, tmp_path, case):
    server, template = (hub_lfs, lfs_template) if case == "plain blob" else (hub, xet_template)
    cache = copy_of(template, tmp_path)
    names = [type(tmp_path)(n) for n in planted_names(cache, case)]
    if case == "ref, listing and blob lock":
        names[2].write_bytes(b"")  # the library's lock of the blob, left by the download
    outside = {n: tmp_path / ("outside-%d" % i) for i, n in enumerate(names)}
    before = {n: plant(n, outside[n], SHADOW if n.name.endswith(".lock") else None) for n in names}

    checked = run(args(server, cache, revision=COMMIT_A, **OWNED), check=True)
    assert checked["changed"] is True and not checked.get("failed"), checked.get("msg")
    assert all(os.stat(n).st_ino == os.stat(outside[n]).st_ino for n in names)  # check mode copies nothing

    result = run(args(server, cache, revision=COMMIT_A, **OWNED))
    assert result["changed"] is True and not result.get("failed"), result.get("msg")
    assert result["downloaded_files"] == []
    for name in names:
        assert state(outside[name]) == before[name] and os.stat(outside[name]).st_nlink == 1, name
        st = os.lstat(name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink) == (NOBODY, NOBODY, 0o644, 1), name
        if name.name.endswith(".lock"):
            assert name.read_bytes() == b""  # a new lock, never a copy of what the other file holds
        else:
            assert name.read_bytes() == before[name][3]
    assert verifies_offline(cache, MINILM_REPO, COMMIT_A)
    assert run(args(server, cache, revision=COMMIT_A, **OWNED))["changed"] is False


@pytest.mark.parametrize("case", ["store entry", "file the cache does not know"])
def test_a_hard_link_to_a_file_that_does_not_belong_there_is_refused_before_anything_changes(
        hub, xet_template, run, tmp_path, case):
    cache = copy_of(xet_template, tmp_path)
    if case == "store entry":
        name = type(tmp_path)(store_entry(cache))
    else:
        name = cache / FOLDER / "notes.txt"
        name.write_bytes(b"")
    outside = tmp_path / "shadow"
    before = plant(name, outside, SHADOW)
    cache_before = owners(cache)

    for check in (True, False):
        result = run(args(hub, cache, revision=COMMIT_A, **OWNED), check=check)
        assert result.get("failed") is True and result["error_kind"] == "unsafe_cache", result
        assert str(name) + " is a hard link" in result["msg"] and "rm" in result["msg"]
        assert SHADOW.decode().strip() not in run.output
    assert state(outside) == before and os.stat(outside).st_nlink == 2
    assert owners(cache) == cache_before  # nothing chowned, chmodded or copied


def test_a_download_as_root_leaves_the_library_no_hard_linked_store_lock_or_manifest(hub, cache, run, tmp_path):
    """The library, run as root by the module, fchmods an entry's lock to 0666 and appends to its manifest."""
    xet_hash = hub.repos[MINILM_REPO]["commits"][COMMIT_A][LFS_FILE].xet_hash
    prefix = cache / "blobs" / xet_hash[:2]
    prefix.mkdir(parents=True)
    (cache / "blobs" / ".huggingface-shared-blobs").write_bytes(b"1\n")
    lock, manifest = prefix / (xet_hash + ".lock"), prefix / (xet_hash + ".refs")
    lock.write_bytes(b"")
    manifest.write_bytes(b"")
    before = {lock: plant(lock, tmp_path / "lock-target", SHADOW),
              manifest: plant(manifest, tmp_path / "refs-target", SHADOW)}

    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is True and LFS_FILE in result["downloaded_files"], result.get("msg")
    assert state(tmp_path / "lock-target") == before[lock]
    assert state(tmp_path / "refs-target") == before[manifest]
    assert os.lstat(lock).st_nlink == 1 and os.lstat(manifest).st_nlink == 1
    assert os.path.isfile(prefix / xet_hash) and verifies_offline(cache, MINILM_REPO, COMMIT_A)


# --- hf_image_root ---------------------------------------------------------------------------------------------

def test_image_root_entries_that_are_hard_links_are_replaced_and_the_files_outside_keep_their_owner(
        collections_path, tmp_path):
    root = image(tmp_path)
    (root / "opt" / "models").mkdir(parents=True)
    (root / "etc" / "justnews").mkdir()
    controller = tmp_path / "controller"
    controller.mkdir()
    (controller / "link").symlink_to("/var/cache/hf/hub/models--acme--tiny/snapshots/1")
    os.link(controller / "link", root / "opt" / "models" / "tiny", follow_symlinks=False)
    (controller / "global.env").write_bytes(SHADOW)
    (controller / "global.env").chmod(0o600)
    os.link(controller / "global.env", root / "etc" / "justnews" / "global.env")
    before = {p: os.lstat(p) for p in controller.iterdir()}
    task = {"image_root": str(root), "owner": "justnews",
            "links": [{"path": "/opt/models/tiny", "src": "/var/cache/hf/hub/models--acme--tiny/snapshots/1"}],
            "files": [{"path": "/etc/justnews/global.env", "content": "HF_HUB_OFFLINE=1\n", "mode": "0644"}]}
    result = Tasks(collections_path, tmp_path)(task, module="hf_image_root")[0]
    assert not result.get("failed") and sorted(result["written"]) == ["/etc/justnews/global.env", "/opt/models/tiny"]
    after = {p: os.lstat(p) for p in controller.iterdir()}
    for path, st in before.items():
        assert (after[path].st_uid, after[path].st_gid, after[path].st_mode) == (st.st_uid, st.st_gid, st.st_mode)
        assert after[path].st_nlink == 1
    assert (controller / "global.env").read_bytes() == SHADOW
    link = os.lstat(root / "opt" / "models" / "tiny")
    assert (link.st_uid, link.st_gid, link.st_nlink) == (4321, 4322, 1)
    assert (root / "etc" / "justnews" / "global.env").read_text() == "HF_HUB_OFFLINE=1\n"
