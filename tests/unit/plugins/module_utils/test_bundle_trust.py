"""_bundle's pure checks against hostile input: member types (what hf_bundle_info and hf_carry's bundle source
refuse), and a manifest checked whole against the bytes of the members it describes."""

import hashlib
import io
import json
import tarfile

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _bundle, _errors

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
    with pytest.raises(_errors.Failure) as info:
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


# --- the manifest checked whole against the members ----------------------------------------------------------

CONFIG = b'{"hidden_size": 8}\n'
WEIGHTS = bytes(range(256)) * 16


def git_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def manifest(config_sha=None, files=(("config.json", CONFIG), ("model.safetensors", WEIGHTS))):
    """acme/tiny: config.json a git blob, the weights an LFS file named by its SHA-256."""
    listing, entries = {}, []
    for path, data in files:
        lfs = path.endswith(".safetensors")
        blob = sha(data) if lfs else git_id(data)
        listing[path] = dict({"size": len(data), "blob_id": git_id(data)}, **({"lfs_sha256": blob} if lfs else {}))
        entries.append({"path": path, "blob": blob, "size": len(data), "sha256": sha(data)})
    if config_sha:
        entries[0]["sha256"] = config_sha
    return {"format": "justnews.huggingface.bundle", "format_version": 1,
            "models": [{"repo_id": "acme/tiny", "repo_type": "model", "revision": "main", "ref": "main",
                        "commit": "1" * 40, "listing": listing, "files": entries}]}


def bundle(tmp_path, data=None, members=None, extra=()):
    """A bundle file: the manifest, then the members (name -> bytes; default: each file's blob, as it is)."""
    data = data or manifest()
    if members is None:
        members = {"blobs/" + git_id(CONFIG): CONFIG, "blobs/" + sha(WEIGHTS): WEIGHTS}
    path = tmp_path / "b.tar"
    path.write_bytes(tar_bytes(regular(_bundle.MANIFEST, json.dumps(data).encode()),
                               *[regular(n, d) for n, d in sorted(members.items())], *extra))
    return path


def test_a_sound_bundle_is_read_whole(tmp_path):
    assert _bundle.read_manifest(str(bundle(tmp_path)), whole=True)["models"][0]["repo_id"] == "acme/tiny"


def test_a_manifest_that_lies_about_a_git_blobs_sha256_fails_integrity_naming_member_and_field(tmp_path):
    path = str(bundle(tmp_path, manifest(config_sha=sha(b"something else"))))
    assert _bundle.read_manifest(path)  # the manifest alone agrees with itself: what the whole check is for
    with pytest.raises(_errors.Failure) as err:
        _bundle.read_manifest(path, whole=True)
    msg = str(err.value)
    assert err.value.kind == _errors.INTEGRITY and err.value.extra["files"] == [("acme/tiny", "config.json")]
    assert "blobs/" + git_id(CONFIG) in msg and "(sha256)" in msg and sha(CONFIG) in msg and path in msg


def test_a_damaged_member_fails_corrupt_bundle_naming_its_object_id(tmp_path):
    damaged = b'{"hidden_size": 9}\n'
    path = str(bundle(tmp_path, members={"blobs/" + git_id(CONFIG): damaged, "blobs/" + sha(WEIGHTS): WEIGHTS}))
    with pytest.raises(_errors.Failure) as err:
        _bundle.read_manifest(path, whole=True)
    assert err.value.kind == _errors.CORRUPT_BUNDLE and "(blob)" in str(err.value)
    assert git_id(damaged) in str(err.value) and "config.json" in str(err.value)


@pytest.mark.parametrize("members, kind, words", [
    ({"blobs/" + git_id(CONFIG): CONFIG}, _errors.CORRUPT_BUNDLE, "has no member blobs/" + sha(WEIGHTS)),
    ({"blobs/" + git_id(CONFIG): CONFIG, "blobs/" + sha(WEIGHTS): WEIGHTS, "blobs/" + "b" * 64: b"x"},
     _errors.UNSAFE_BUNDLE, "not a blob of its manifest"),
    ({"blobs/" + git_id(CONFIG): CONFIG, "blobs/" + sha(WEIGHTS): WEIGHTS[:-1]}, _errors.CORRUPT_BUNDLE,
     "manifest says %d" % len(WEIGHTS)),
], ids=["a member missing", "a member the manifest does not list", "a member of another size"])
def test_members_must_be_the_manifests_blobs_each_once(tmp_path, members, kind, words):
    with pytest.raises(_errors.Failure) as err:
        _bundle.read_manifest(str(bundle(tmp_path, members=members)), whole=True)
    assert err.value.kind == kind and words in str(err.value)


def test_a_member_there_twice_is_refused(tmp_path):
    twice = regular("blobs/" + git_id(CONFIG), CONFIG)
    with pytest.raises(_errors.Failure) as err:
        _bundle.read_manifest(str(bundle(tmp_path, extra=[twice])), whole=True)
    assert err.value.kind == _errors.UNSAFE_BUNDLE and "twice" in str(err.value)


def check_of(data, blob, sha256):
    info = {"size": len(data), "sha256": sha256, "files": [("acme/tiny", "config.json")]}
    return _bundle.MemberCheck(io.BytesIO(data), blob, info, "b.tar")


def test_the_last_bytes_are_not_handed_on_when_the_manifest_contradicts_them():
    reader = check_of(CONFIG, git_id(CONFIG), sha(b"other"))
    assert reader.read(5) == CONFIG[:5]
    with pytest.raises(_errors.Failure) as err:
        reader.read(len(CONFIG))
    assert err.value.kind == _errors.INTEGRITY and err.value.extra["files"] == [("acme/tiny", "config.json")]


def test_an_empty_member_is_checked_when_it_is_closed_unread():
    # tarfile reads nothing of an empty member: hf_carry's stream closes it unread
    with pytest.raises(_errors.Failure) as err:
        with check_of(b"", git_id(b""), sha(b"not empty")):
            pass
    assert err.value.kind == _errors.INTEGRITY
    with check_of(b"", git_id(b""), sha(b"")):
        pass
