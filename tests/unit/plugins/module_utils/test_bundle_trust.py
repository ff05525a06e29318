"""_bundle's pure checks against hostile input: member types (what hf_bundle_info and hf_carry's bundle source
refuse)."""

import io
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
