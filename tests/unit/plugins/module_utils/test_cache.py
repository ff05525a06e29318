"""Cache layout helpers: where huggingface_hub looks, and how links and modes are applied."""

import fcntl
import hashlib
import os
import stat
import time

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _ownership
from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _cache
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs


def test_default_cache_dir_matches_huggingface_hub():
    assert _names.default_cache_dir({"HF_HOME": "/var/cache/hf"}) == "/var/cache/hf/hub"
    assert _names.default_cache_dir({"HF_HOME": "/x", "HF_HUB_CACHE": "/y"}) == "/y"
    assert _names.default_cache_dir({"HUGGINGFACE_HUB_CACHE": "/z"}) == "/z"
    assert _names.default_cache_dir({"HOME": "/root"}).endswith(".cache/huggingface/hub")


def test_repo_folder_name():
    assert _names.repo_folder_name("sentence-transformers/all-MiniLM-L6-v2", "model") == \
        "models--sentence-transformers--all-MiniLM-L6-v2"
    assert _names.repo_folder_name("roberta-base", "model") == "models--roberta-base"


def test_dir_mode_follows_file_mode():
    assert _ownership.dir_mode(0o644) == 0o755
    assert _ownership.dir_mode(0o640) == 0o750
    assert _ownership.dir_mode(0o600) == 0o700


def test_swap_link_replaces_atomically_and_refuses_a_directory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    link = tmp_path / "models" / "m"
    _ownership.swap_link(str(link), str(a))
    assert os.readlink(link) == str(a)
    _ownership.swap_link(str(link), str(b))
    assert os.readlink(link) == str(b)
    assert sorted(os.listdir(link.parent)) == ["m"]
    try:
        _ownership.swap_link(str(a), str(b))
    except IsADirectoryError as exc:
        assert "not a symlink" in str(exc)
    else:
        raise AssertionError("a directory was replaced by a link")


def test_ownership_plan_sees_the_library_0600_tree_file(tmp_path):
    tree = tmp_path / "trees" / "x.json"
    tree.parent.mkdir()
    tree.write_text("{}")
    tree.chmod(0o600)
    pending = _ownership.plan_ownership([str(tree)], -1, -1, 0o644)
    assert pending == [str(tree)]
    _ownership.apply_ownership(pending, -1, -1, 0o644, str(tmp_path))
    assert stat.S_IMODE(tree.stat().st_mode) == 0o644
    assert _ownership.plan_ownership([str(tree)], -1, -1, 0o644) == []


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert _cache.blob_digest(str(path), git=True) == "ce013625030ba8dba906f756967f9e9ca394464a"


# --- writes and removals inside the repository reach nothing through a folder swapped for a link ------------

COMMIT = "a" * 40
BLOB = hashlib.sha256(b"content").hexdigest()


def _repo(tmp_path):
    repo = _cache.RepoCache(str(tmp_path / "cache"), "org/name")
    repo.check_layout(create=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    return repo, outside


def _swap_for_link(folder, target):
    for child in os.listdir(folder):
        os.unlink(os.path.join(folder, child))
    os.rmdir(folder)
    os.symlink(str(target), folder)


def test_a_ref_is_never_written_through_a_swapped_refs_folder(tmp_path):
    repo, outside = _repo(tmp_path)
    _swap_for_link(os.path.join(repo.root, "refs"), outside)
    with pytest.raises((_fs.Refused, _names.UnsafeName)):
        repo.write_ref("main", COMMIT)
    with pytest.raises(_fs.Refused):  # the write itself, past the folder check
        _fs.write_file_at(repo.cache_dir, os.path.join(repo.folder_name, "refs", "main"), COMMIT.encode())
    assert os.listdir(outside) == []


def test_a_snapshot_link_is_never_made_or_unlinked_through_a_swapped_folder(tmp_path):
    repo, outside = _repo(tmp_path)
    (outside / "config.json").write_text("root's own")
    snapshot = repo.snapshot_path(COMMIT)
    os.makedirs(snapshot)
    _swap_for_link(snapshot, outside)
    with pytest.raises(_names.UnsafeName):
        repo.link_existing_blob(COMMIT, "config.json", BLOB)
    assert (outside / "config.json").read_text() == "root's own"


def test_remove_never_follows_a_locks_folder_that_is_a_link(tmp_path):
    repo, _outside = _repo(tmp_path)
    other = tmp_path / "other-cache"
    (other / repo.folder_name).mkdir(parents=True)
    (other / repo.folder_name / "keep").write_text("another cache's")
    locks = os.path.join(repo.cache_dir, ".locks")
    _swap_for_link(os.path.join(locks, repo.folder_name), tmp_path / "nowhere")
    os.rename(locks, str(tmp_path / "locks-real"))
    os.symlink(str(other), locks)
    assert repo.remove() is True
    assert (other / repo.folder_name / "keep").read_text() == "another cache's"
    assert not os.path.lexists(repo.root)


def test_an_import_waits_for_a_held_blob_lock_only_until_its_deadline(tmp_path):
    repo, outside = _repo(tmp_path)
    source = outside / BLOB
    source.write_bytes(b"content")
    holder = os.open(os.path.join(repo.locks, BLOB + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        with pytest.raises(_cache.LockTimeout):
            repo.import_blob(str(source), BLOB, lock_timeout=1)
        assert time.monotonic() - started < 10
    finally:
        os.close(holder)
    assert repo.import_blob(str(source), BLOB) == len(b"content")
    assert open(repo.blob_path(BLOB), "rb").read() == b"content"
