"""_bundle's pure checks against hostile input: member types, declared sizes, free space, the image's ids and
writes into an image root through a descriptor."""

import io
import os
import tarfile

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _bundle

BLOB = "a" * 64


def only_member(data):
    """The one member of a tar and its sparse map."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        found = [(m, m.sparse) for m in tar]
    assert len(found) == 1
    return found[0]


def tar_bytes(*entries, fmt=tarfile.PAX_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def pax_sparse(name, stored, realsize):
    """A GNU sparse 1.0 member as GNU tar writes it: a map block, then the stored data; PAX headers give the
    real size."""
    body = b"1\n0\n%d\n" % len(stored)
    body = body.ljust(512, b"\0") + stored
    info = tarfile.TarInfo("GNUSparseFile.0/x")
    info.size = len(body)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                        "GNU.sparse.realsize": str(realsize)}
    return info, body


def old_gnu_sparse(name, stored, realsize):
    """An old GNU sparse member (type S): the sparse map and the real size in the header itself."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, len(stored)
    buf = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    buf[386:398] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)
    buf[398:410] = tarfile.itn(len(stored), 12, tarfile.GNU_FORMAT)
    buf[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)
    buf[148:156] = b"        "
    buf[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(buf))[0]
    return bytes(buf) + stored.ljust((len(stored) + 511) // 512 * 512, b"\0")


def regular(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_a_plain_regular_member_passes():
    member = only_member(tar_bytes(regular("blobs/" + BLOB)))[0]
    assert _bundle.plain_member(member) is None


def test_a_pax_sparse_member_is_refused_although_tarfile_calls_it_regular():
    member, sparse = only_member(tar_bytes(pax_sparse("blobs/" + BLOB, b"y" * 10, 300 * 1024 * 1024)))
    assert member.isreg() and sparse and member.size == 300 * 1024 * 1024  # what the fix is about
    assert "sparse" in _bundle.plain_member(member)
    with pytest.raises(_bundle.BundleError) as info:
        _bundle._check_member(member, "b.tar")
    assert info.value.kind == "unsafe_bundle" and "GNU.sparse" in str(info.value)


def test_an_old_gnu_sparse_member_is_refused():
    data = old_gnu_sparse("blobs/" + BLOB, b"z" * 10, 1 << 30) + b"\0" * 1024
    member = only_member(data)[0]
    assert member.size == 1 << 30
    assert "sparse" in _bundle.plain_member(member)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE,
                                  tarfile.CONTTYPE, tarfile.DIRTYPE])
def test_links_special_and_continuous_members_are_refused(kind):
    info = tarfile.TarInfo("blobs/" + BLOB)
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/shadow"
    member = only_member(tar_bytes((info, None)))[0]
    assert _bundle.plain_member(member)


def table(*sizes):
    return {("%064x" % i): {"size": size, "files": [("o/n", "f%d" % i)]} for i, size in enumerate(sizes)}


def test_declared_sizes_must_fit_in_the_archive():
    blobs = table(100, 200)
    assert _bundle.check_sizes(blobs, {"%064x" % 1}, 10_000, "b.tar") == 200
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.check_sizes(table(100, 1 << 40), {"%064x" % 1}, 10_000, "b.tar")
    assert info.value.kind == "corrupt_bundle" and "b.tar" in str(info.value)
    assert ("o/n", "f1") in info.value.files


def test_free_space_is_checked_with_the_margin():
    _bundle.check_space(1000, 900, 100, "/stage")
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.check_space(1000, 901, 100, "/stage")
    assert info.value.kind == "no_space" and "/stage" in str(info.value)


def write_etc(root, passwd, group="root:x:0:\njustnews:x:4322:\n"):
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text(group)


def test_image_ids_and_root_refused(tmp_path):
    write_etc(tmp_path, "root:x:0:0::/root:/bin/sh\njustnews:x:4321:4322::/:/bin/sh\nevil:x:0:4322::/:/bin/sh\n")
    assert _bundle.image_ids(str(tmp_path), "justnews", None) == (4321, 4322)
    for owner, group in (("evil", None), ("root", None), ("justnews", "root")):
        with pytest.raises(_bundle.BundleError) as info:
            _bundle.image_ids(str(tmp_path), owner, group)
        assert info.value.kind == "unsafe_image_root", (owner, group)
        assert "etc/passwd" in str(info.value) or "etc/group" in str(info.value)
        assert _bundle.image_ids(str(tmp_path), owner, group, allow_root=True)


def test_a_non_numeric_id_names_the_file_and_line(tmp_path):
    write_etc(tmp_path, "root:x:0:0::/root:/bin/sh\n# comment\njustnews:x:12ab:4322::/:/bin/sh\n")
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.image_ids(str(tmp_path), "justnews", None)
    assert info.value.kind == "invalid_argument"
    assert "etc/passwd line 3" in str(info.value) and "12ab" in str(info.value)


def test_passwd_that_is_a_symlink_or_fifo_is_refused(tmp_path):
    write_etc(tmp_path, "justnews:x:4321:4322::/:/bin/sh\n")
    outside = tmp_path.parent / (tmp_path.name + "-outside-passwd")
    outside.write_text("justnews:x:4321:4322::/:/bin/sh\n")
    (tmp_path / "etc" / "passwd").unlink()
    (tmp_path / "etc" / "passwd").symlink_to(outside)
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.image_ids(str(tmp_path), "justnews", None)
    assert info.value.kind == "unsafe_image_root" and "symlink" in str(info.value)
    (tmp_path / "etc" / "passwd").unlink()
    os.mkfifo(tmp_path / "etc" / "passwd")
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.image_ids(str(tmp_path), "justnews", None)
    assert info.value.kind == "unsafe_image_root" and "FIFO" in str(info.value)


def test_image_writer_refuses_a_symlinked_component(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "var").symlink_to(outside)
    writer = _bundle.ImageWriter(str(root), os.getuid(), os.getgid())
    for call in (lambda: writer.directory("/var/cache/hf", "service", "0750"),
                 lambda: writer.file("/var/x.conf", "data"),
                 lambda: writer.link("/var/model", "/var/cache/hf/hub/x")):
        with pytest.raises(_bundle.BundleError) as info:
            call()
        assert info.value.kind == "unsafe_image_root" and str(root / "var") in str(info.value)
    assert list(outside.iterdir()) == []


def test_image_writer_writes_and_is_idempotent(tmp_path):
    writer = _bundle.ImageWriter(str(tmp_path), os.getuid(), os.getgid())
    writer.directory("/var/cache/hf/hub", "service", "0750")
    writer.file("/var/cache/hf/hub/CACHEDIR.TAG", "tag\n", force=False)
    writer.link("/opt/models/m", "/var/cache/hf/hub/models--a--b/snapshots/c")
    assert (tmp_path / "var/cache/hf/hub/CACHEDIR.TAG").read_text() == "tag\n"
    assert os.readlink(tmp_path / "opt/models/m") == "/var/cache/hf/hub/models--a--b/snapshots/c"
    assert oct((tmp_path / "var/cache/hf/hub").stat().st_mode & 0o777) == "0o750"
    assert oct((tmp_path / "var/cache").stat().st_mode & 0o777) == "0o755"
    again = _bundle.ImageWriter(str(tmp_path), os.getuid(), os.getgid())
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
    writer = _bundle.ImageWriter(str(tmp_path), os.getuid(), os.getgid(), check=True)
    writer.directory("/var/cache/hf", "service", "0750")
    writer.file("/etc/x.conf", "x")
    writer.link("/opt/m", "/var/cache/hf")
    assert writer.changed and list(tmp_path.iterdir()) == []


def test_remove_staging_refuses_other_folders(tmp_path):
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.remove_staging(str(tmp_path))
    assert info.value.kind == "invalid_argument"
    path, fd = _bundle.make_staging(str(tmp_path))
    os.close(fd)
    (tmp_path / os.path.basename(path) / BLOB).write_bytes(b"x")
    assert _bundle.remove_staging(path) and not os.path.lexists(path)
    assert _bundle.remove_staging(path) is False
