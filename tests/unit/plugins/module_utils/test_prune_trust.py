"""hf_prune's reading and removing as root in a cache another user writes: links never followed, special files never
read, removals that put everything back when they fail."""

import errno
import os
import stat

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _prune
from ansible_collections.justnews.huggingface.plugins.module_utils import _store

A, B = "a" * 40, "b" * 40
FOLDER = "models--org--name"


def make_repo(cache, revisions):
    """{commit: {file: content}} as hf_snapshot lays them out, each blob named by its content's letter."""
    repo = _cache.RepoCache(str(cache), "org/name")
    for sub in ("blobs", "refs", "trees", "snapshots"):
        os.makedirs(os.path.join(repo.root, sub), exist_ok=True)
    for age, (commit, files) in enumerate(revisions.items()):
        for name, content in files.items():
            blob = os.path.join(repo.blobs, content * 40)
            with open(blob, "w") as handle:
                handle.write(content)
            link = os.path.join(repo.root, "snapshots", commit, name)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
        with open(repo.tree_path(commit), "w") as handle:
            handle.write("{}")
        os.utime(os.path.join(repo.root, "snapshots", commit), (1000 + age, 1000 + age))
    return repo


def plan(cache, keep=0, pinned=()):
    return _prune.plan_repo(str(cache), "org/name", "model", keep, list(pinned), {}, set(), 3600)


def tree_of(top):
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            body = os.readlink(path) if stat.S_ISLNK(st.st_mode) else \
                (open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None)
            rel = os.path.relpath(path, top)
            # a revision's folders keep their times (they decide what is recent); blobs/, trees/ and
            # snapshots/ themselves change when entries leave and come back
            out[rel] = (stat.S_IFMT(st.st_mode), body,
                        st.st_mtime_ns if stat.S_ISDIR(st.st_mode) and rel.startswith("snapshots/") else None)
    return out


# --- reading ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, expected", [
    ("../../../blobs/" + "1" * 40, "1" * 40),
    ("../../../blobs/" + "2" * 64, "2" * 64),
    ("../../../blobs/not-a-blob", None),
    ("../../../../other--repo/blobs/" + "1" * 40, None),
    ("/etc/passwd", None),
    ("../../../blobs/../refs/main", None),
])
def test_a_blob_is_named_from_the_link_text_alone(tmp_path, target, expected):
    rel = FOLDER + "/snapshots/" + A + "/sub/file"
    assert _prune._blob_named(str(tmp_path), FOLDER, rel, target) == expected


def test_an_absolute_link_into_the_repository_blobs_counts(tmp_path):
    target = os.path.join(str(tmp_path), FOLDER, "blobs", "3" * 40)
    assert _prune._blob_named(str(tmp_path), FOLDER, FOLDER + "/snapshots/" + A + "/f", target) == "3" * 40


@pytest.mark.parametrize("planted", ["link", "folder_link", "fifo", "huge"])
def test_refs_that_cannot_be_read_safely_keep_every_revision_and_are_reported(tmp_path, planted):
    repo = make_repo(tmp_path, {A: {"x": "1"}, B: {"x": "2"}})
    secret = tmp_path / "secret"
    secret.write_text(A)
    refs = os.path.join(repo.root, "refs")
    with open(os.path.join(refs, "main"), "w") as handle:
        handle.write(B)
    where = os.path.join(refs, "v1")
    if planted == "link":
        os.symlink(str(secret), where)
    elif planted == "folder_link":
        (tmp_path / "pr").mkdir()
        (tmp_path / "pr" / "1").write_text(A)
        where = os.path.join(refs, "pr")
        os.symlink(str(tmp_path / "pr"), where)
    elif planted == "fifo":
        os.mkfifo(where)
    else:
        with open(where, "w") as handle:
            handle.write(A + " " * 1000)
    result = plan(tmp_path)
    assert result.remove == [] and {r.commit for r in result.keep} == {A, B}
    assert all(_prune.UNSAFE_REFS in r.reasons for r in result.keep)
    assert [r.path for r in result.refused] == [where]
    assert secret.read_text() == A


def test_readable_refs_protect_their_revision_only(tmp_path):
    make_repo(tmp_path, {A: {"x": "1"}, B: {"x": "2"}})
    os.makedirs(tmp_path / FOLDER / "refs" / "pr")
    (tmp_path / FOLDER / "refs" / "pr" / "1").write_text(B + "\n")
    result = plan(tmp_path)
    assert [r.commit for r in result.remove] == [A] and result.keep[0].reasons == ["ref pr/1"]
    assert result.refused == []


def test_a_revision_folder_that_is_a_link_is_refused_with_its_path(tmp_path):
    make_repo(tmp_path, {B: {"x": "2"}})
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), tmp_path / FOLDER / "snapshots" / A)
    with pytest.raises(_names.UnsafeName) as caught:
        plan(tmp_path)
    assert caught.value.name == str(tmp_path / FOLDER / "snapshots" / A) and "a symlink" in str(caught.value)


def test_a_revision_s_size_counts_its_regular_files_not_what_its_links_lead_to(tmp_path):
    make_repo(tmp_path, {A: {"x": "1"}, B: {"x": "2"}})
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    os.symlink(str(big), tmp_path / FOLDER / "snapshots" / A / "link-out")
    (tmp_path / FOLDER / "snapshots" / A / "plain").write_bytes(b"y" * 7)
    os.utime(tmp_path / FOLDER / "snapshots" / A, (1000, 1000))
    result = plan(tmp_path, keep=1)
    assert [r.commit for r in result.remove] == [A]
    assert result.freed == 7 + 1 + 2  # the plain file, the blob "1", the listing "{}"


def test_the_walk_refuses_a_folder_swapped_for_a_link(tmp_path):
    (tmp_path / "top" / "sub").mkdir(parents=True)
    entries = _prune.walk(str(tmp_path), "top")
    path, st, target = next(entries)
    assert path == "top/sub" and stat.S_ISDIR(st.st_mode) and target is None
    (tmp_path / "top" / "sub").rmdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("x")
    os.symlink(str(tmp_path / "outside"), tmp_path / "top" / "sub")
    with pytest.raises(_fs.Refused):
        list(entries)


def test_an_entry_lock_is_never_made_through_a_linked_store_folder(tmp_path):
    (tmp_path / "outside" / "ab").mkdir(parents=True)
    os.symlink(str(tmp_path / "outside"), tmp_path / "blobs")
    lock = _prune.EntryLock(str(tmp_path), "ab" * 32, timeout=0)
    with pytest.raises(_fs.Refused):
        lock.acquire()
    assert os.listdir(tmp_path / "outside" / "ab") == []


def test_the_repository_lock_is_never_made_through_a_linked_locks_folder(tmp_path):
    repo = make_repo(tmp_path, {A: {"x": "1"}})
    (tmp_path / ".locks").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(str(tmp_path / "outside"), tmp_path / ".locks" / FOLDER)
    with pytest.raises(_fs.Refused):
        _prune.RepoLock(repo, 0).acquire()
    assert os.listdir(tmp_path / "outside") == []
    os.unlink(tmp_path / ".locks" / FOLDER)
    os.makedirs(tmp_path / ".locks" / FOLDER)
    os.mkfifo(tmp_path / ".locks" / FOLDER / _cache.LOCK_NAME)
    with pytest.raises(_fs.Refused):
        _prune.RepoLock(repo, 0).acquire()


@pytest.mark.parametrize("number, kind", [
    (errno.EACCES, "not_writable"), (errno.EPERM, "not_writable"), (errno.EROFS, "not_writable"),
    (errno.EBUSY, "not_writable"), (errno.ELOOP, "unsafe_cache"), (errno.ENOTDIR, "unsafe_cache"),
    (errno.ENOSPC, "disk_full"), (errno.EIO, "other")])
def test_error_kinds_follow_the_cause(number, kind):
    assert _prune.error_kind(OSError(number, os.strerror(number), "/x")) == kind
    assert _prune.error_kind(_fs.Refused("/x", "is a symlink")) == "unsafe_cache"


# --- removing ----------------------------------------------------------------------------------------------------

def test_a_removal_goes_through_the_trash_and_leaves_none(tmp_path):
    repo = make_repo(tmp_path, {A: {"x": "1", "d/y": "3"}, B: {"x": "2"}})
    result = plan(tmp_path, keep=1)
    _prune.apply(result)
    assert sorted(os.listdir(repo.blobs)) == ["2" * 40]
    assert os.listdir(os.path.join(repo.root, "snapshots")) == [B]
    assert os.listdir(os.path.join(repo.root, "trees")) == [B + ".json"]
    assert not os.path.lexists(os.path.join(repo.root, _prune.TRASH))


@pytest.mark.parametrize("fail_at", [1, 2, 3, 5])
def test_a_failure_before_the_point_of_no_return_puts_everything_back(tmp_path, monkeypatch, fail_at):
    """The Nth rename fails (the moves, then the probe): the repository is as it was, times included."""
    repo = make_repo(tmp_path, {A: {"x": "1", "d/y": "3"}, B: {"x": "2"}})
    before = tree_of(repo.root)
    result = plan(tmp_path, keep=1)
    real_rename, calls = os.rename, []

    def rename(*args, **kwargs):
        calls.append(args)
        if len(calls) == fail_at:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_rename(*args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(_errors.Failure) as caught:
        _prune.apply(result)
    monkeypatch.undo()
    assert caught.value.kind == "not_writable" and "everything was put back" in caught.value.msg
    assert caught.value.extra["path"].startswith(repo.root) and _prune.TRASH not in caught.value.extra["path"]
    assert tree_of(repo.root) == before


def test_a_failure_while_putting_back_leaves_the_trash_for_the_next_run(tmp_path, monkeypatch):
    repo = make_repo(tmp_path, {A: {"x": "1"}, B: {"x": "2"}})
    before = tree_of(repo.root)
    result = plan(tmp_path, keep=1)
    real_rename, calls = os.rename, []

    def rename(*args, **kwargs):
        calls.append(args)
        if len(calls) >= 3:  # the blob's move, and every move back
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_rename(*args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(_errors.Failure) as caught:
        _prune.apply(result)
    monkeypatch.undo()
    trash = os.path.join(repo.root, _prune.TRASH)
    assert caught.value.kind == "partial_failure" and trash in caught.value.msg
    assert os.path.isdir(os.path.join(trash, "snapshots", A))  # whole, in the trash
    assert _prune.recover(repo) == ("restored", trash, [])
    assert tree_of(repo.root) == before


def test_a_failure_past_the_point_of_no_return_is_finished_by_the_next_run(tmp_path, monkeypatch):
    repo = make_repo(tmp_path, {A: {"x": "1"}, B: {"x": "2"}})
    result = plan(tmp_path, keep=1)
    real_rmdir = os.rmdir

    def rmdir(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "rmdir", rmdir)
    with pytest.raises(_errors.Failure) as caught:
        _prune.apply(result)
    monkeypatch.setattr(os, "rmdir", real_rmdir)
    trash = os.path.join(repo.root, _prune.TRASH)
    assert caught.value.kind == "partial_failure" and "gone from snapshots" in caught.value.msg
    assert os.listdir(os.path.join(repo.root, "snapshots")) == [B]
    assert _prune.recover(repo) == ("finished", trash, [])
    assert not os.path.lexists(trash) and sorted(os.listdir(repo.blobs)) == ["2" * 40]


def test_putting_back_never_replaces_what_the_repository_has_again(tmp_path):
    repo = make_repo(tmp_path, {A: {"x": "1"}})
    trash = os.path.join(repo.root, _prune.TRASH)
    os.makedirs(os.path.join(trash, "blobs"))
    with open(os.path.join(trash, "blobs", "1" * 40), "w") as handle:
        handle.write("stale")
    with open(os.path.join(trash, "blobs", "not-a-blob"), "w") as handle:
        handle.write("?")
    assert _prune.recover(repo)[0] == "restored"
    with open(os.path.join(repo.blobs, "1" * 40)) as handle:
        assert handle.read() == "1"
    assert not os.path.lexists(os.path.join(repo.blobs, "not-a-blob")) and not os.path.lexists(trash)


def test_a_trash_that_is_a_link_is_removed_itself(tmp_path):
    repo = make_repo(tmp_path, {A: {"x": "1"}})
    (tmp_path / "outside" / "snapshots").mkdir(parents=True)
    os.symlink(str(tmp_path / "outside"), os.path.join(repo.root, _prune.TRASH))
    action, _path, refused = _prune.recover(repo)
    assert action == "removed" and "a symlink" in refused[0].reason
    assert os.listdir(tmp_path / "outside") == ["snapshots"]
    assert _prune.recover(repo) is None


def test_store_links_are_never_read_through_a_linked_snapshots_folder(tmp_path):
    repo = make_repo(tmp_path, {A: {"x": "1"}})
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink("../../blobs/ab/" + "ab" * 32, outside / "file")
    os.rename(os.path.join(repo.root, "snapshots"), tmp_path / "moved")
    os.symlink(str(outside), os.path.join(repo.root, "snapshots"))
    assert _prune.store_links(str(tmp_path)) == {}
    assert _store.HASH_RE.match("ab" * 32)
