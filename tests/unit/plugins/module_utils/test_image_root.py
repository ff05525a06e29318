"""_image_root's checks against a hostile image root: the image's ids, named paths, and writes through a
descriptor of the root."""

import os

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _image_root


def write_etc(root, passwd, group="root:x:0:\njustnews:x:4322:\n"):
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text(group)


def test_image_ids_and_root_refused(tmp_path):
    write_etc(tmp_path, "root:x:0:0::/root:/bin/sh\njustnews:x:4321:4322::/:/bin/sh\nevil:x:0:4322::/:/bin/sh\n")
    assert _image_root.image_ids(str(tmp_path), "justnews", None) == (4321, 4322)
    for owner, group in (("evil", None), ("root", None), ("justnews", "root")):
        with pytest.raises(_errors.Failure) as info:
            _image_root.image_ids(str(tmp_path), owner, group)
        assert info.value.kind == "unsafe_image_root", (owner, group)
        assert "etc/passwd" in str(info.value) or "etc/group" in str(info.value)
        assert _image_root.image_ids(str(tmp_path), owner, group, allow_root=True)


def test_a_non_numeric_id_names_the_file_and_line(tmp_path):
    write_etc(tmp_path, "root:x:0:0::/root:/bin/sh\n# comment\njustnews:x:12ab:4322::/:/bin/sh\n")
    with pytest.raises(_errors.Failure) as info:
        _image_root.image_ids(str(tmp_path), "justnews", None)
    assert info.value.kind == "invalid_argument"
    assert "etc/passwd line 3" in str(info.value) and "12ab" in str(info.value)


def test_passwd_that_is_a_symlink_or_fifo_is_refused(tmp_path):
    write_etc(tmp_path, "justnews:x:4321:4322::/:/bin/sh\n")
    outside = tmp_path.parent / (tmp_path.name + "-outside-passwd")
    outside.write_text("justnews:x:4321:4322::/:/bin/sh\n")
    (tmp_path / "etc" / "passwd").unlink()
    (tmp_path / "etc" / "passwd").symlink_to(outside)
    with pytest.raises(_errors.Failure) as info:
        _image_root.image_ids(str(tmp_path), "justnews", None)
    assert info.value.kind == "unsafe_image_root" and "symlink" in str(info.value)
    (tmp_path / "etc" / "passwd").unlink()
    os.mkfifo(tmp_path / "etc" / "passwd")
    with pytest.raises(_errors.Failure) as info:
        _image_root.image_ids(str(tmp_path), "justnews", None)
    assert info.value.kind == "unsafe_image_root" and "FIFO" in str(info.value)


def test_image_writer_refuses_a_symlinked_component(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "var").symlink_to(outside)
    writer = _image_root.ImageWriter(str(root), os.getuid(), os.getgid())
    for call in (lambda: writer.directory("/var/cache/hf", "service", "0750"),
                 lambda: writer.file("/var/x.conf", "data"),
                 lambda: writer.link("/var/model", "/var/cache/hf/hub/x")):
        with pytest.raises(_errors.Failure) as info:
            call()
        assert info.value.kind == "unsafe_image_root" and str(root / "var") in str(info.value)
    assert list(outside.iterdir()) == []


def test_image_writer_writes_and_is_idempotent(tmp_path):
    writer = _image_root.ImageWriter(str(tmp_path), os.getuid(), os.getgid())
    writer.directory("/var/cache/hf/hub", "service", "0750")
    writer.file("/var/cache/hf/hub/CACHEDIR.TAG", "tag\n", force=False)
    writer.link("/opt/models/m", "/var/cache/hf/hub/models--a--b/snapshots/c")
    assert (tmp_path / "var/cache/hf/hub/CACHEDIR.TAG").read_text() == "tag\n"
    assert os.readlink(tmp_path / "opt/models/m") == "/var/cache/hf/hub/models--a--b/snapshots/c"
    assert oct((tmp_path / "var/cache/hf/hub").stat().st_mode & 0o777) == "0o750"
    assert oct((tmp_path / "var/cache").stat().st_mode & 0o777) == "0o755"
    again = _image_root.ImageWriter(str(tmp_path), os.getuid(), os.getgid())
    again.directory("/var/cache/hf/hub", "service", "0750")
    again.file("/var/cache/hf/hub/CACHEDIR.TAG", "other\n", force=False)
    again.link("/opt/models/m", "/var/cache/hf/hub/models--a--b/snapshots/c")
    assert again.changed == []
    assert (tmp_path / "var/cache/hf/hub/CACHEDIR.TAG").read_text() == "tag\n"
    # a symlink where a file goes is replaced, never written through
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "drop.conf").symlink_to(target)
    again.file("/etc/drop.conf", "new\n")
    assert target.read_text() == "keep" and (tmp_path / "etc" / "drop.conf").read_text() == "new\n"
    assert not (tmp_path / "etc" / "drop.conf").is_symlink()


def test_check_mode_writer_writes_nothing(tmp_path):
    writer = _image_root.ImageWriter(str(tmp_path), os.getuid(), os.getgid(), check=True)
    writer.directory("/var/cache/hf", "service", "0750")
    writer.file("/etc/x.conf", "x")
    writer.link("/opt/m", "/var/cache/hf")
    assert writer.changed and list(tmp_path.iterdir()) == []


def test_named_paths_are_returned_under_the_root_by_name(tmp_path):
    paths = _image_root.paths_in_root(str(tmp_path), {"hf_home": "/var/cache/hf", "hub_cache": "/var/cache/hf/hub"})
    assert paths == {"hf_home": str(tmp_path / "var/cache/hf"), "hub_cache": str(tmp_path / "var/cache/hf/hub")}
    for bad in ({"x": "/var/../etc"}, {"x": "relative"}, {"": "/var"}, ["/var"]):
        with pytest.raises(_errors.Failure) as info:
            _image_root.paths_in_root(str(tmp_path), bad)
        assert info.value.kind == "invalid_argument", bad
    (tmp_path / "var").symlink_to("/var")
    with pytest.raises(_errors.Failure) as info:
        _image_root.paths_in_root(str(tmp_path), {"hub_cache": "/var/cache/hf/hub"})
    assert info.value.kind == "unsafe_image_root" and str(tmp_path / "var") in str(info.value)


def test_a_link_in_the_image_that_is_a_hard_link_is_made_anew_never_chowned_in_place(tmp_path):
    root = tmp_path / "root"
    (root / "opt" / "models").mkdir(parents=True)
    outside = tmp_path / "controller-link"
    outside.symlink_to("/var/cache/hf/hub/x")
    os.link(outside, root / "opt" / "models" / "m", follow_symlinks=False)
    writer = _image_root.ImageWriter(str(root), 4321, 4322, check=True)
    writer.link("/opt/models/m", "/var/cache/hf/hub/x")
    assert writer.changed == ["/opt/models/m"] and os.lstat(outside).st_nlink == 2
    writer = _image_root.ImageWriter(str(root), 4321, 4322)
    writer.link("/opt/models/m", "/var/cache/hf/hub/x")
    assert writer.changed == ["/opt/models/m"]
    assert (os.lstat(outside).st_uid, os.lstat(outside).st_nlink) == (0, 1)
    made = os.lstat(root / "opt" / "models" / "m")
    assert (made.st_uid, made.st_gid, made.st_nlink) == (4321, 4322, 1)
    assert os.readlink(root / "opt" / "models" / "m") == "/var/cache/hf/hub/x"
    assert sorted(os.listdir(root / "opt" / "models")) == ["m"]
