"""Cache layout helpers: where huggingface_hub looks, and how links and modes are applied."""

import os
import stat

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache


def test_default_cache_dir_matches_huggingface_hub():
    assert _cache.default_cache_dir({"HF_HOME": "/var/cache/hf"}) == "/var/cache/hf/hub"
    assert _cache.default_cache_dir({"HF_HOME": "/x", "HF_HUB_CACHE": "/y"}) == "/y"
    assert _cache.default_cache_dir({"HUGGINGFACE_HUB_CACHE": "/z"}) == "/z"
    assert _cache.default_cache_dir({"HOME": "/root"}).endswith(".cache/huggingface/hub")


def test_repo_folder_name():
    assert _cache.repo_folder_name("sentence-transformers/all-MiniLM-L6-v2", "model") == \
        "models--sentence-transformers--all-MiniLM-L6-v2"
    assert _cache.repo_folder_name("roberta-base", "model") == "models--roberta-base"


def test_dir_mode_follows_file_mode():
    assert _cache.dir_mode(0o644) == 0o755
    assert _cache.dir_mode(0o640) == 0o750
    assert _cache.dir_mode(0o600) == 0o700


def test_swap_link_replaces_atomically_and_refuses_a_directory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    link = tmp_path / "models" / "m"
    _cache.swap_link(str(link), str(a))
    assert os.readlink(link) == str(a)
    _cache.swap_link(str(link), str(b))
    assert os.readlink(link) == str(b)
    assert sorted(os.listdir(link.parent)) == ["m"]
    try:
        _cache.swap_link(str(a), str(b))
    except IsADirectoryError as exc:
        assert "not a symlink" in str(exc)
    else:
        raise AssertionError("a directory was replaced by a link")


def test_ownership_plan_sees_the_library_0600_tree_file(tmp_path):
    tree = tmp_path / "trees" / "x.json"
    tree.parent.mkdir()
    tree.write_text("{}")
    tree.chmod(0o600)
    pending = _cache.plan_ownership([str(tree)], -1, -1, 0o644)
    assert pending == [str(tree)]
    _cache.apply_ownership(pending, -1, -1, 0o644)
    assert stat.S_IMODE(tree.stat().st_mode) == 0o644
    assert _cache.plan_ownership([str(tree)], -1, -1, 0o644) == []


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert _cache.git_blob_sha1(str(path)) == "ce013625030ba8dba906f756967f9e9ca394464a"
