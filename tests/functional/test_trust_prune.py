"""hf_prune against a cache whose owner planted links, FIFOs and leftovers: what it reports, and what is left on disk.

The module runs as root; the cache belongs to the agents' user. Each test plants something in a copy of a cache
that hf_snapshot filled, runs the real module through ansible-playbook, and checks the result and the disk: the
file outside the cache untouched (bytes and mode), each revision entirely there or entirely gone.
"""

import os
import shutil
import stat
import subprocess

import pytest

from tests.functional.test_prune import FOLDER, blobs_of, kept, snapshot_loads, verifies_offline
from tests.functional.test_prune import Prune, template  # noqa: F401  pylint: disable=unused-import
from tools import shared_store
from tools.hub.hubserver import COMMIT_A, COMMIT_B, MINILM_REPO

TRASH = ".hf_prune.trash"
SECRET = b"root's secret: " + b"0123456789abcdef" * 4 + b"\n"
UNSAFE_REFS = "refs not safely readable"


@pytest.fixture
def cache(template, tmp_path):  # noqa: F811  pylint: disable=redefined-outer-name
    path = tmp_path / "hub"
    shutil.copytree(template, path, symlinks=True)
    return path


@pytest.fixture
def prune(collections_path, tmp_path):
    return Prune(collections_path, tmp_path)


@pytest.fixture
def outside(tmp_path):
    """A folder outside the cache with root's file in it (mode 0600), as a planted link would aim at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    secret = folder / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return folder


def untouched(folder):
    """{relative path: (mode, bytes or link text)} of everything below a folder, to compare before and after."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            body = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            body = path.read_bytes()
        else:
            body = b""
        out[str(path.relative_to(folder))] = (st.st_mode, body)
    return out


def revision_state(cache, commit):
    """Everything of one revision: its snapshot's entries (with link texts), its listing and its blobs with their
    bytes, and the snapshot folder's modification time (which decides what is recent)."""
    snap = cache / FOLDER / "snapshots" / commit
    state = {"snapshot": untouched(snap) if snap.is_dir() else None,
             "mtime": os.lstat(snap).st_mtime if snap.is_dir() else None}
    tree = cache / FOLDER / "trees" / (commit + ".json")
    state["tree"] = tree.read_bytes() if tree.exists() else None
    blobs = cache / FOLDER / "blobs"
    state["blobs"] = {name: untouched_blob(blobs / name) for name in sorted(blobs_of(cache, commit))}
    return state


def untouched_blob(path):
    if not os.path.lexists(path):
        return None
    return os.readlink(path) if os.path.islink(path) else path.read_bytes()


def gone_entirely(cache, commit, only):
    """Nothing of the revision is left: no snapshot, no listing, none of the blobs only it used, no trash."""
    return (not os.path.lexists(cache / FOLDER / "snapshots" / commit)
            and not os.path.lexists(cache / FOLDER / "trees" / (commit + ".json"))
            and not any(os.path.lexists(cache / FOLDER / "blobs" / b) for b in only)
            and not os.path.lexists(cache / FOLDER / TRASH))


def refused_paths(result):
    return {r["path"]: r for r in result["refused"]}


# --- refs -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("planted", ["ref_link", "refs_folder_link", "ref_fifo"])
def test_a_ref_that_cannot_be_read_safely_keeps_every_revision(cache, prune, outside, planted):
    """refs/v1 alone protects COMMIT_A. Swapped for a link out of the cache (to root's file), a refs folder that
    is a link to a folder naming COMMIT_A, or a FIFO: the ref is never followed or read, is reported, and the
    repository's revisions all stay - the prune cannot tell which one the ref names."""
    refs = cache / FOLDER / "refs"
    if planted == "ref_link":
        (refs / "v1").unlink()
        (refs / "v1").symlink_to(outside / "secret")
        where = refs / "v1"
    elif planted == "refs_folder_link":
        (refs / "v1").unlink()
        (outside / "pr").mkdir()
        (outside / "pr" / "1").write_text(COMMIT_A)
        (refs / "pr").symlink_to(outside / "pr")
        where = refs / "pr"
    else:
        (refs / "v1").unlink()
        os.mkfifo(refs / "v1")  # a read would wait for a writer for ever
        where = refs / "v1"
    before, a_before = untouched(outside), revision_state(cache, COMMIT_A)

    result = prune({"cache_dir": str(cache), "keep": 0})
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False and result["removed_revisions"] == [] and result["freed_bytes"] == 0
    item = refused_paths(result)[str(where)]
    assert "never followed" in item["reason"] and "rm removes the link itself" in item["fix"]
    assert UNSAFE_REFS in kept(result, COMMIT_A) and UNSAFE_REFS in kept(result, COMMIT_B)
    assert untouched(outside) == before
    assert SECRET.decode().strip() not in prune.output
    assert revision_state(cache, COMMIT_A) == a_before and snapshot_loads(cache, COMMIT_B)
    assert os.path.islink(where) or stat.S_ISFIFO(os.lstat(where).st_mode)  # left for the owner to look at


# --- snapshots and listings -------------------------------------------------------------------------------------

def test_a_revision_folder_that_is_a_link_out_of_the_cache_fails_unsafe_and_nothing_is_removed(cache, prune, outside):
    (cache / FOLDER / "refs" / "v1").unlink()
    snap = cache / FOLDER / "snapshots" / COMMIT_A
    shutil.move(str(snap), str(outside / "snapshot"))
    snap.symlink_to(outside / "snapshot")
    before, b_before = untouched(outside), revision_state(cache, COMMIT_B)

    result = prune({"cache_dir": str(cache), "keep": 0})
    assert result.get("failed") is True and result["error_kind"] == "unsafe_cache", result
    assert str(snap) in result["msg"] and "nothing was removed" in result["msg"]
    assert str(snap) in refused_paths(result)
    assert result["changed"] is False and result["removed_revisions"] == []
    assert untouched(outside) == before and snap.is_symlink()
    assert revision_state(cache, COMMIT_B) == b_before


def test_a_link_among_the_snapshots_is_reported_and_the_revisions_are_judged_as_usual(cache, prune, outside):
    """snapshots/latest -> a folder outside: not a revision, never followed or removed, reported; the rest of
    the repository is pruned as without it."""
    (cache / FOLDER / "refs" / "v1").unlink()
    shutil.copytree(cache / FOLDER / "snapshots" / COMMIT_A, outside / "copy", symlinks=True)
    latest = cache / FOLDER / "snapshots" / "latest"
    latest.symlink_to(outside / "copy")
    only_a = blobs_of(cache, COMMIT_A) - blobs_of(cache, COMMIT_B)
    before = untouched(outside)

    result = prune({"cache_dir": str(cache), "keep": 0})
    assert result.get("failed") is not True, result.get("msg")
    assert [r["commit"] for r in result["removed_revisions"]] == [COMMIT_A]
    assert "never followed" in refused_paths(result)[str(latest)]["reason"]
    assert gone_entirely(cache, COMMIT_A, only_a) and latest.is_symlink()
    assert untouched(outside) == before
    assert verifies_offline(cache, MINILM_REPO, COMMIT_B)


def test_links_out_of_the_cache_inside_a_removed_revision_go_as_links_and_their_targets_stay(cache, prune, outside):
    """A snapshot file and the revision's listing swapped for links to root's files: the revision goes entirely,
    each link removed as a link; the targets keep their bytes and mode and are not counted as freed."""
    (cache / FOLDER / "refs" / "v1").unlink()
    only_a = blobs_of(cache, COMMIT_A) - blobs_of(cache, COMMIT_B)
    snap = cache / FOLDER / "snapshots" / COMMIT_A
    (snap / "config.json").unlink()
    (snap / "config.json").symlink_to(outside / "secret")
    (outside / "listing.json").write_bytes(b"{}" * 5000)
    (outside / "listing.json").chmod(0o640)
    tree = cache / FOLDER / "trees" / (COMMIT_A + ".json")
    tree.unlink()
    tree.symlink_to(outside / "listing.json")
    blob_bytes = sum(os.lstat(cache / FOLDER / "blobs" / b).st_size for b in only_a
                     if not os.path.islink(cache / FOLDER / "blobs" / b))
    before = untouched(outside)

    result = prune({"cache_dir": str(cache), "keep": 0})  # refs/main protects COMMIT_B
    assert result.get("failed") is not True, result.get("msg")
    assert [r["commit"] for r in result["removed_revisions"]] == [COMMIT_A]
    assert result["freed_bytes"] == blob_bytes + sum(e["size"] for e in result["removed_store_entries"])
    assert gone_entirely(cache, COMMIT_A, only_a)
    assert untouched(outside) == before
    assert verifies_offline(cache, MINILM_REPO, COMMIT_B)


# --- a removal that fails part-way --------------------------------------------------------------------------------

def chattr(flag, path):
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


@pytest.mark.parametrize("immutable", ["blob", "subfolder"])
def test_a_file_that_cannot_be_removed_fails_not_writable_and_the_revision_is_put_back_whole(
        cache, prune, immutable):
    """chattr +i on the blob only COMMIT_A uses (found while moving), or on a folder inside its snapshot (found
    by the check before anything is deleted): the run fails naming it, everything moved is put back, and once
    the flag is gone the next run removes the revision entirely."""
    (cache / FOLDER / "refs" / "v1").unlink()
    only_a = blobs_of(cache, COMMIT_A) - blobs_of(cache, COMMIT_B)
    (readme,) = [b for b in only_a if not os.path.islink(cache / FOLDER / "blobs" / b)]
    target = cache / FOLDER / "blobs" / readme if immutable == "blob" else \
        cache / FOLDER / "snapshots" / COMMIT_A / "1_Pooling"
    a_before, b_before = revision_state(cache, COMMIT_A), revision_state(cache, COMMIT_B)
    chattr("+i", target)
    try:
        result = prune({"cache_dir": str(cache), "keep": 1})
        assert result.get("failed") is True and result["error_kind"] == "not_writable", result
        assert "nothing was removed, everything was put back" in result["msg"]
        assert (readme if immutable == "blob" else "1_Pooling") in result["msg"] and "chattr -i" in result["msg"]
        assert result["changed"] is False
        assert revision_state(cache, COMMIT_A) == a_before and revision_state(cache, COMMIT_B) == b_before
        assert not os.path.lexists(cache / FOLDER / TRASH)
        assert verifies_offline(cache, MINILM_REPO, COMMIT_A)
    finally:
        chattr("-i", target)

    result = prune({"cache_dir": str(cache), "keep": 1})
    assert result.get("failed") is not True, result.get("msg")
    assert [r["commit"] for r in result["removed_revisions"]] == [COMMIT_A]  # still the older one
    assert gone_entirely(cache, COMMIT_A, only_a)
    assert verifies_offline(cache, MINILM_REPO, COMMIT_B)


# --- what a run that was killed left ----------------------------------------------------------------------------

def leave_trash(cache, committed, only_a=()):
    """The repository folder as a run killed half-way through its moves leaves it: the trash holds COMMIT_A's
    snapshot and listing, its blobs are still in place; with `committed`, killed past the point of no return."""
    root = cache / FOLDER
    trash = root / TRASH
    trash.mkdir(mode=0o700)
    for part in ("snapshots", "trees", "blobs"):
        (trash / part).mkdir(mode=0o700)
    os.rename(root / "snapshots" / COMMIT_A, trash / "snapshots" / COMMIT_A)
    os.rename(root / "trees" / (COMMIT_A + ".json"), trash / "trees" / (COMMIT_A + ".json"))
    if committed:
        for blob in only_a:
            os.rename(root / "blobs" / blob, trash / "blobs" / blob)
        (trash / "committed").touch(mode=0o600)
    return trash


def test_a_trash_left_before_the_point_of_no_return_is_put_back(cache, prune):
    a_before = revision_state(cache, COMMIT_A)
    trash = leave_trash(cache, committed=False)
    result = prune({"cache_dir": str(cache), "keep": 0})  # refs/v1 still names COMMIT_A
    assert result.get("failed") is not True, result.get("msg")
    assert result["recovered"] == [{"repo_id": MINILM_REPO, "repo_type": "model", "path": str(trash),
                                    "action": "restored"}]
    assert result["changed"] is True and result["removed_revisions"] == []
    assert "ref v1" in kept(result, COMMIT_A)
    assert revision_state(cache, COMMIT_A) == a_before and not os.path.lexists(trash)
    assert verifies_offline(cache, MINILM_REPO, COMMIT_A)
    assert prune({"cache_dir": str(cache), "keep": 0})["changed"] is False


def test_a_trash_left_past_the_point_of_no_return_is_finished(cache, prune):
    (cache / FOLDER / "refs" / "v1").unlink()
    only_a = blobs_of(cache, COMMIT_A) - blobs_of(cache, COMMIT_B)
    trash = leave_trash(cache, committed=True, only_a=only_a)
    result = prune({"cache_dir": str(cache), "keep": 0, "pinned": ["main"]})
    assert result.get("failed") is not True, result.get("msg")
    assert [r["action"] for r in result["recovered"]] == ["finished"]
    assert result["changed"] is True
    assert gone_entirely(cache, COMMIT_A, only_a)  # its blobs went with this run: nothing links to them
    assert verifies_offline(cache, MINILM_REPO, COMMIT_B)


def test_a_trash_planted_as_a_link_is_removed_as_a_link_and_never_followed(cache, prune, outside):
    (outside / "snapshots").mkdir()
    (outside / "committed").touch()
    (outside / "snapshots" / COMMIT_B).mkdir()  # would be "finished" if the link were followed
    trash = cache / FOLDER / TRASH
    trash.symlink_to(outside)
    before, b_before = untouched(outside), revision_state(cache, COMMIT_B)
    result = prune({"cache_dir": str(cache), "keep": 2})
    assert result.get("failed") is not True, result.get("msg")
    assert [r["action"] for r in result["recovered"]] == ["removed"]
    assert "a symlink" in refused_paths(result)[str(trash)]["reason"]
    assert not os.path.lexists(trash) and untouched(outside) == before
    assert revision_state(cache, COMMIT_B) == b_before


def test_a_locks_folder_that_is_a_link_fails_unsafe_and_nothing_is_made_or_removed_through_it(cache, prune, outside):
    (cache / FOLDER / "refs" / "v1").unlink()
    locks = cache / ".locks" / FOLDER
    if locks.exists():
        shutil.rmtree(locks)
    locks.parent.mkdir(exist_ok=True)
    locks.symlink_to(outside)
    before, a_before = untouched(outside), revision_state(cache, COMMIT_A)
    result = prune({"cache_dir": str(cache), "keep": 0})
    assert result.get("failed") is True and result["error_kind"] == "unsafe_cache", result
    assert str(locks) in refused_paths(result) and str(locks) in result["msg"]
    assert untouched(outside) == before  # no lock file made there
    assert revision_state(cache, COMMIT_A) == a_before


# --- hard links ------------------------------------------------------------------------------------------------

def test_store_entries_whose_lock_and_manifest_are_hard_links_are_freed_and_the_files_outside_never_change(
        cache, prune, outside):
    """hf_prune takes each entry's lock before freeing it (and makes a missing one, owned as its folder): a lock
    or manifest that shares its inode with root's file is locked or unlinked by name, never chowned, chmodded or
    written."""
    shutil.rmtree(cache / FOLDER / "refs")  # nothing protects either revision: every entry goes
    (cache / FOLDER / "refs").mkdir()
    entries = sorted(shared_store.entry(cache, h) for h in shared_store.store_links(cache, FOLDER).values())
    assert entries
    for i, entry in enumerate(entries):
        for suffix in (".lock", ".refs"):
            target = outside / ("target-%d%s" % (i, suffix))
            target.write_bytes(SECRET)
            target.chmod(0o600)
            if os.path.lexists(entry + suffix):
                os.unlink(entry + suffix)
            os.link(target, entry + suffix)
    before = untouched(outside)
    owners = {p.name: (os.stat(p).st_uid, os.stat(p).st_gid) for p in outside.iterdir()}

    result = prune({"cache_dir": str(cache), "keep": 0})
    assert result.get("failed") is not True, result.get("msg")
    assert sorted(shared_store.entry(cache, e["xet_hash"]) for e in result["removed_store_entries"]) == entries
    assert not any(os.path.lexists(e) or os.path.lexists(e + ".refs") for e in entries)
    assert untouched(outside) == before
    assert {p.name: (os.stat(p).st_uid, os.stat(p).st_gid) for p in outside.iterdir()} == owners
