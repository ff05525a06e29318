"""_fs: every path below the run's folder is reached without following links, and special files are never read."""

import os
import time

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _fs


@pytest.fixture
def tree(tmp_path):
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "f").write_bytes(b"hello")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    return top, outside


def test_reads_a_regular_file_below(tree):
    top, _outside = tree
    assert _fs.read_file(str(top), "a/b/f", 100) == b"hello"
    assert _fs.read_file(str(top), "a/b/none", 100) is None


@pytest.mark.parametrize("where", ["a/b/f", "a/b"])
def test_a_symlink_on_the_way_is_refused(tree, where):
    top, outside = tree
    path = top / where
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
        path.symlink_to(outside)
        rel = "a/b/secret"
    else:
        path.unlink()
        path.symlink_to(outside / "secret")
        rel = where
    with pytest.raises(_fs.Refused) as info:
        _fs.read_file(str(top), rel, 100)
    assert "symlink" in str(info.value)
    assert (outside / "secret").read_bytes() == b"secret"


def test_a_fifo_is_refused_at_once(tree):
    top, _outside = tree
    os.mkfifo(top / "a" / "fifo")
    started = time.monotonic()
    with pytest.raises(_fs.Refused) as info:
        _fs.read_file(str(top), "a/fifo", 100)
    assert "FIFO" in str(info.value)
    assert time.monotonic() - started < 2


def test_a_file_over_the_limit_is_refused(tree):
    top, _outside = tree
    with pytest.raises(_fs.Refused) as info:
        _fs.read_file(str(top), "a/b/f", 3)
    assert "more than the 3" in str(info.value)


def test_dot_dot_is_refused(tree):
    top, _outside = tree
    with pytest.raises(_fs.Refused):
        _fs.read_file(str(top), "a/../../outside/secret", 100)


def test_walk_never_descends_a_link(tree):
    top, outside = tree
    (top / "a" / "link").symlink_to(outside)
    names = {rel for rel, _st in _fs.walk(str(top))}
    assert "a/link" in names and "a/b/f" in names
    assert not any("secret" in n for n in names)


def test_unlink_at_removes_the_link_itself(tree):
    top, outside = tree
    (top / "a" / "link").symlink_to(outside / "secret")
    assert _fs.unlink_at(str(top), "a/link") is True
    assert (outside / "secret").read_bytes() == b"secret"
    assert _fs.unlink_at(str(top), "a/link") is False


def test_wait_child_kills_a_child_past_its_deadline():
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    started = time.monotonic()
    assert _fs.wait_child(pid, time.monotonic() + 0.5) is None
    assert time.monotonic() - started < 5
