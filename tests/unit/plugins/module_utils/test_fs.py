"""_fs: every path below the run's folder is reached without following links, and special files are never read."""

import hashlib
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


# --- owner and mode never through a hard link ----------------------------------------------------------------

NOBODY = 65534
SECRET = b"root's secret\n"


@pytest.fixture
def linked(tmp_path):
    """A folder the run owns whose file `entry` is a hard link to root's 0600 file outside it."""
    top = tmp_path / "top"
    top.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    os.link(secret, top / "entry")
    return top, secret


def kept(path):
    st = os.lstat(path)
    return st.st_ino, st.st_uid, st.st_gid, st.st_mode, (path.read_bytes() if path.is_file() else None)


def at(top, func, *args, **kwargs):
    dir_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return func(dir_fd, *args, **kwargs)
    finally:
        os.close(dir_fd)


def accept_all(data):
    return data


def test_a_hard_linked_file_gets_a_private_copy_and_the_other_name_keeps_everything(linked):
    top, secret = linked
    before = kept(secret)
    done = at(top, _fs.own_at, "entry", NOBODY, NOBODY, 0o644, copy=_fs.checked(100, accept_all))
    assert done == _fs.COPIED
    assert kept(secret) == before and os.stat(secret).st_nlink == 1
    st = os.lstat(top / "entry")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_nlink) == (NOBODY, NOBODY, 0o644, 1)
    assert st.st_ino != before[0] and (top / "entry").read_bytes() == SECRET
    assert sorted(os.listdir(top)) == ["entry"]


def test_a_hard_linked_file_without_a_copy_rule_is_refused_and_left_as_it_is(linked):
    top, secret = linked
    before = kept(secret)
    with pytest.raises(_fs.Refused) as info:
        at(top, _fs.own_at, "entry", NOBODY, NOBODY, 0o644, where="/cache/entry")
    assert str(info.value).startswith("/cache/entry is a hard link (2 names")
    assert kept(secret) == before and os.lstat(top / "entry").st_ino == before[0]
    with pytest.raises(_fs.Refused):
        at(top, _fs.set_attrs_at, "entry", 0o644, NOBODY, NOBODY)
    assert kept(secret) == before


def test_a_copy_whose_content_is_not_what_belongs_there_is_refused_and_leaves_nothing(linked):
    top, secret = linked
    before = kept(secret)
    rule = _fs.hashed(lambda _size: hashlib.sha256(), hashlib.sha256(b"the model's weights").hexdigest())
    for check in (True, False):
        with pytest.raises(_fs.Refused) as info:
            at(top, _fs.own_at, "entry", NOBODY, NOBODY, 0o644, copy=rule, check=check)
        assert "not the %s its name says" % hashlib.sha256(b"the model's weights").hexdigest() in str(info.value)
    assert kept(secret) == before and os.lstat(top / "entry").st_ino == before[0]
    assert sorted(os.listdir(top)) == ["entry"]


def test_a_blob_copy_keeps_its_content_and_the_check_changes_nothing(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    data = b"weights" * 100_000
    outside = tmp_path / "weights"
    outside.write_bytes(data)
    outside.chmod(0o600)
    os.link(outside, top / "blob")
    rule = _fs.hashed(lambda _size: hashlib.sha256(), hashlib.sha256(data).hexdigest(), chunk=4096)
    assert at(top, _fs.own_at, "blob", NOBODY, -1, 0o644, copy=rule, check=True) == _fs.COPIED
    assert os.stat(outside).st_nlink == 2 and os.stat(outside).st_uid == 0
    assert at(top, _fs.own_at, "blob", NOBODY, -1, 0o644, copy=rule) == _fs.COPIED
    assert (top / "blob").read_bytes() == data and os.stat(top / "blob").st_uid == NOBODY
    assert os.stat(top / "blob").st_gid == os.stat(outside).st_gid  # -1 keeps the group the name had
    assert (os.stat(outside).st_uid, os.stat(outside).st_mode & 0o777, os.stat(outside).st_nlink) == (0, 0o600, 1)


def test_a_lock_copy_never_reads_the_other_file(linked):
    top, secret = linked
    assert at(top, _fs.own_at, "entry", NOBODY, NOBODY, 0o666, copy=_fs.fresh) == _fs.COPIED
    assert (top / "entry").read_bytes() == b"" and secret.read_bytes() == SECRET
    assert os.stat(secret).st_mode & 0o777 == 0o600


def test_a_hard_linked_symlink_is_made_anew_never_chowned_in_place(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    other = tmp_path / "other-link"
    other.symlink_to("/opt/models")
    os.link(other, top / "link", follow_symlinks=False)
    assert at(top, _fs.own_at, "link", NOBODY, NOBODY) == _fs.COPIED
    assert os.lstat(other).st_uid == 0 and os.lstat(other).st_nlink == 1
    assert os.readlink(top / "link") == "/opt/models" and os.lstat(top / "link").st_uid == NOBODY


def test_an_entry_with_one_name_is_changed_in_place(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    ino = os.stat(tmp_path / "f").st_ino
    assert at(tmp_path, _fs.own_at, "f", NOBODY, NOBODY, 0o640) == _fs.OWNED
    st = os.stat(tmp_path / "f")
    assert (st.st_ino, st.st_uid, st.st_mode & 0o777) == (ino, NOBODY, 0o640)
    os.mkfifo(tmp_path / "fifo")
    assert at(tmp_path, _fs.own_at, "fifo", NOBODY, NOBODY, 0o640) is None
    assert os.stat(tmp_path / "fifo").st_uid == 0


def test_own_fd_refuses_a_hard_link_unless_the_run_made_the_file(linked):
    top, secret = linked
    fd = os.open(top / "entry", os.O_RDONLY)
    try:
        with pytest.raises(_fs.Refused):
            _fs.own_fd(fd, NOBODY, NOBODY, 0o644, "entry")
    finally:
        os.close(fd)
    assert os.stat(secret).st_uid == 0 and os.stat(secret).st_mode & 0o777 == 0o600


def test_an_entry_swapped_while_it_is_copied_is_left_to_the_new_one(linked):
    top, secret = linked

    def swap_then_copy(fd, st):
        (top / "new").write_bytes(b"planted later")
        os.replace(top / "new", top / "entry")
        yield os.read(fd, 100)

    assert at(top, _fs.own_at, "entry", NOBODY, NOBODY, 0o644, copy=swap_then_copy) is None
    assert (top / "entry").read_bytes() == b"planted later" and os.stat(top / "entry").st_uid == 0
    assert sorted(os.listdir(top)) == ["entry"] and secret.read_bytes() == SECRET


def test_the_copy_is_made_in_the_real_folder_even_if_its_name_is_swapped_for_a_link(tmp_path):
    cache = tmp_path / "cache"
    (cache / "refs").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "main").write_bytes(b"a" * 40)
    (outside / "main").chmod(0o600)
    os.link(outside / "main", cache / "refs" / "main")
    dir_fd = _fs.open_dir(str(cache), "refs")

    def swap_folder(fd, st):
        os.rename(cache / "refs", cache / "refs.real")
        (cache / "refs").symlink_to(outside)
        yield os.read(fd, 100)

    try:
        _fs.own_at(dir_fd, "main", NOBODY, NOBODY, 0o644, copy=swap_folder)
    finally:
        os.close(dir_fd)
    assert sorted(os.listdir(outside)) == ["main"]
    assert os.stat(outside / "main").st_uid == 0 and os.stat(outside / "main").st_mode & 0o777 == 0o600
    assert os.stat(cache / "refs.real" / "main").st_uid == NOBODY
