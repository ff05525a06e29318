"""_carry: the stream's plan, its chunks, resume decisions and the host's member checks, without Ansible."""

import hashlib
import io
import os
import tarfile
import time

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _carry
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors

CHUNK = _carry.MIN_CHUNK


def git_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_blobs():
    """Three blobs: a git blob, an LFS blob spanning several chunks, an empty file."""
    contents = [b"{\"hidden_size\": 384}\n", os.urandom(3 * CHUNK + 1234), b""]
    blobs, data = [], {}
    for i, content in enumerate(contents):
        name = git_id(content) if i != 1 else sha(content)
        blobs.append({"name": name, "size": len(content), "files": [["org/model", "file%d" % i]]})
        data[name] = content
    return sorted(blobs, key=lambda b: b["name"]), data


class Held(_carry.Source):
    """A Source over bytes held in memory (the controller's file); `later` is what a second read finds, as a file
    changed after its check would give."""

    def __init__(self, data, where, later=None, wrap=None):
        super().__init__(None, 0, _errors.INTEGRITY, where, owned=False, wrap=wrap)
        self.data, self.later, self.reads = data, later, 0

    def pread(self, size, pos):
        if pos == 0:
            self.reads += 1
        data = self.later if self.later is not None and self.reads > 1 else self.data
        return data[pos:pos + size]

    def stamp(self):
        """What a write moves: the file once read again is the later one."""
        return self.later is not None and self.reads > 1


def write(folder, blobs, data, chunk_size=CHUNK, held=None, sources=None, sent_bytes=None):
    """The controller's side: the chunks in `folder`, and the names it would have sent (their bytes appended to
    `sent_bytes` when given)."""
    plan = _carry.plan_stream(blobs, chunk_size)
    sent, done = [], []
    checker = _carry.Prechecker(blobs, lambda b: (sources or {}).get(b["name"]) or Held(data[b["name"]], b["name"]))
    try:
        for chunk, path in _carry.write_chunks(plan, blobs, checker, str(folder)):
            done.append(chunk)
            if not _carry.held_matches(chunk, held or {}):
                sent.append(chunk["name"])
                if sent_bytes is not None:
                    with open(path, "rb") as handle:
                        sent_bytes.append(handle.read())
    finally:
        checker.close()
    return plan, done, sent


def unpack(folder, chunks, blobs):
    dest = folder / "blobs"
    dest.mkdir(exist_ok=True)
    staging_fd, dest_fd = os.open(folder, os.O_RDONLY), os.open(dest, os.O_RDONLY)
    try:
        return _carry.unpack(staging_fd, str(folder), chunks, blobs, dest_fd, str(dest))
    finally:
        os.close(staging_fd)
        os.close(dest_fd)


def test_plan_is_the_size_of_the_stream_and_the_same_for_the_same_blobs(tmp_path):
    blobs, data = make_blobs()
    plan, done, _sent = write(tmp_path, blobs, data)
    assert sum(c["size"] for c in done) == plan["total"]
    assert [c["size"] for c in done] == [c["size"] for c in plan["chunks"]]
    assert all(c["size"] == CHUNK for c in plan["chunks"][:-1]) and len(plan["chunks"]) == 4
    assert _carry.plan_stream(blobs, CHUNK) == plan
    assert _carry.plan_stream(blobs[:2], CHUNK)["id"] != plan["id"]
    assert _carry.plan_stream(blobs, 2 * CHUNK)["id"] != plan["id"]
    stream = b"".join((tmp_path / c["name"]).read_bytes() for c in done)
    raw = io.BytesIO()  # the bytes tarfile writes for the same members: what hosts holding chunks already have
    with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for blob in blobs:
            tar.addfile(_carry.tarinfo(blob["name"], blob["size"]), io.BytesIO(data[blob["name"]]))
    assert stream == raw.getvalue()
    again = tmp_path / "again"
    again.mkdir()
    assert write(again, blobs, data)[1] == done  # same bytes, same chunk hashes: what resume relies on


def test_chunk_size_below_the_minimum_is_refused():
    with pytest.raises(_errors.Failure) as info:
        _carry.plan_stream([], 1024)
    assert info.value.kind == _errors.INVALID_ARGUMENT


def test_merge_keeps_each_blob_once_with_every_file():
    a = {"name": "a" * 64, "size": 3, "files": ["x.bin"]}
    merged = _carry.merge_blobs([("org/one", [a]), ("org/two", [dict(a, files=["y.bin"])])])
    assert merged == [{"name": "a" * 64, "size": 3, "files": [["org/one", "x.bin"], ["org/two", "y.bin"]]}]
    with pytest.raises(_errors.Failure):
        _carry.merge_blobs([("org/one", [a]), ("org/two", [dict(a, size=4)])])
    with pytest.raises(_errors.Failure):
        _carry.merge_blobs([("org/one", [dict(a, name="../etc/passwd")])])


def test_resume_sends_only_chunks_the_host_lacks_or_holds_damaged(tmp_path):
    blobs, data = make_blobs()
    plan, done, sent = write(tmp_path, blobs, data)
    assert sent == [c["name"] for c in plan["chunks"]]
    held = {c["name"]: dict(c) for c in done[:3]}
    held[done[1]["name"]]["sha256"] = "0" * 64          # damaged on the host
    held[done[2]["name"]]["size"] -= 1                  # cut short
    again = tmp_path / "again"
    again.mkdir()
    assert write(again, blobs, data, held=held)[2] == [done[1]["name"], done[2]["name"], done[3]["name"]]


def test_held_chunks_lists_regular_chunk_files_with_one_link_only(tmp_path):
    blobs, data = make_blobs()
    plan, done, _sent = write(tmp_path, blobs, data)
    outside = tmp_path.parent / ("outside-" + tmp_path.name)
    outside.write_bytes((tmp_path / done[0]["name"]).read_bytes())
    (tmp_path / ("%s-000009" % plan["id"])).symlink_to(outside)
    os.link(outside, tmp_path / ("%s-000008" % plan["id"]))  # a hard link: never read as a chunk
    (tmp_path / "other").write_bytes(b"x")
    (tmp_path / "0123456789abcdef-000000").write_bytes(b"another stream's")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _carry.held_chunks(fd, plan["id"]) == done
    finally:
        os.close(fd)


def test_unpack_checks_and_writes_every_blob(tmp_path):
    blobs, data = make_blobs()
    _plan, done, _sent = write(tmp_path, blobs, data)
    assert unpack(tmp_path, done, blobs) == sum(b["size"] for b in blobs)
    for blob in blobs:
        assert (tmp_path / "blobs" / blob["name"]).read_bytes() == data[blob["name"]]
    assert not [p for p in tmp_path.iterdir() if p.name != "blobs"]  # every chunk consumed


@pytest.mark.parametrize("damage", ["missing", "short", "flipped", "symlink", "hardlink"])
def test_a_damaged_chunk_fails_and_leaves_nothing(tmp_path, damage):
    blobs, data = make_blobs()
    _plan, done, _sent = write(tmp_path, blobs, data)
    chunk = tmp_path / done[2]["name"]
    if damage == "missing":
        chunk.unlink()
    elif damage == "short":
        chunk.write_bytes(chunk.read_bytes()[:-1])
    elif damage == "flipped":
        raw = bytearray(chunk.read_bytes())
        raw[100] ^= 1
        chunk.write_bytes(bytes(raw))
    else:
        target = tmp_path.parent / ("elsewhere-" + tmp_path.name)
        target.write_bytes(chunk.read_bytes())
        chunk.unlink()
        if damage == "symlink":
            chunk.symlink_to(target)
        else:
            os.link(target, chunk)
    with pytest.raises(_errors.Failure) as info:
        unpack(tmp_path, done, blobs)
    want = {"missing": _errors.INCOMPLETE, "short": _errors.INCOMPLETE, "flipped": _errors.INTEGRITY,
            "symlink": _errors.UNSAFE_CACHE, "hardlink": _errors.UNSAFE_CACHE}[damage]
    assert info.value.kind == want, info.value
    assert not list((tmp_path / "blobs").iterdir())


def hostile(tmp_path, members):
    """A stream written by hand (not by write_chunks), as one chunk."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    data = raw.getvalue()
    name = "%016x-000000" % 1
    (tmp_path / name).write_bytes(data)
    return [{"name": name, "size": len(data), "sha256": sha(data)}]


def member(name, size, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, linkname
    return info


@pytest.mark.parametrize("case", ["traversal", "absolute", "symlink", "hardlink", "device", "fifo", "unknown",
                                  "duplicate", "wrong_size", "wrong_content", "missing_blob", "sparse", "sparse_map"])
def test_unpack_refuses_hostile_members(tmp_path, case):
    content = b"hello\n"
    good = {"name": git_id(content), "size": len(content), "files": [["org/model", "a.txt"]]}
    ok = (member("blobs/" + good["name"], len(content)), content)
    members = {
        "traversal": [(member("blobs/../../" + good["name"], len(content)), content)],
        "absolute": [(member("/tmp/" + good["name"], len(content)), content)],
        "symlink": [(member("blobs/" + good["name"], 0, tarfile.SYMTYPE, "/etc/passwd"), None)],
        "hardlink": [(member("blobs/" + good["name"], 0, tarfile.LNKTYPE, "/etc/passwd"), None)],
        "device": [(member("blobs/" + good["name"], 0, tarfile.CHRTYPE), None)],
        "fifo": [(member("blobs/" + good["name"], 0, tarfile.FIFOTYPE), None)],
        "unknown": [ok, (member("blobs/" + "b" * 64, 1), b"x")],
        "duplicate": [ok, ok],
        "wrong_size": [(member("blobs/" + good["name"], len(content) + 1), content + b"!")],
        "wrong_content": [(member("blobs/" + good["name"], len(content)), b"HELLO\n")],
        "missing_blob": [],
        "sparse": [],
        "sparse_map": [],
    }[case]
    if case == "sparse":
        info = member("blobs/" + good["name"], len(content))
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
        members = [(info, content)]
    if case == "sparse_map":
        info = member("blobs/" + good["name"], len(content))
        info.pax_headers = {"GNU.sparse.map": "0,6", "GNU.sparse.size": "6"}
        members = [(info, content)]
    chunks = hostile(tmp_path, members)
    with pytest.raises(_errors.Failure) as info:
        unpack(tmp_path, chunks, [good])
    assert info.value.kind == _errors.INTEGRITY, info.value
    assert not list((tmp_path / "blobs").iterdir())
    assert not os.path.exists("/tmp/" + good["name"]) or case != "absolute"


def test_a_source_that_does_not_match_its_id_stops_the_stream(tmp_path):
    blobs, data = make_blobs()
    data[blobs[0]["name"]] = b"X" * blobs[0]["size"]
    with pytest.raises(_errors.Failure) as info:
        write(tmp_path, blobs, data)
    assert info.value.kind == _errors.INTEGRITY and "org/model" in str(info.value)
    short = dict(blobs[0], size=blobs[0]["size"] + 5)
    (tmp_path / "x").mkdir()
    with pytest.raises(_errors.Failure):
        write(tmp_path / "x", [short], {short["name"]: data[blobs[0]["name"]]})


def stream_offset(blobs, name):
    """Where the header of blob `name` starts in the stream of `blobs`."""
    offset = 0
    for blob in blobs:
        if blob["name"] == name:
            return offset
        offset += _carry.header_size(blob["name"], blob["size"]) + -(-blob["size"] // _carry.BLOCK) * _carry.BLOCK
    raise KeyError(name)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_no_byte_of_a_blob_that_fails_its_check_is_sent(tmp_path, which):
    """Blobs of several chunks each; the one at `which` in the stream's order has its size and other bytes: the
    chunks wholly before it are sent, none that holds a byte of it (or its header)."""
    contents = [os.urandom(2 * CHUNK + 777 * (i + 1)) for i in range(3)]
    blobs = sorted(({"name": sha(c), "size": len(c), "files": [["org/model", "f%d" % i]]}
                    for i, c in enumerate(contents)), key=lambda b: b["name"])
    data = {sha(c): c for c in contents}
    bad = blobs[which]
    forged = bytearray(data[bad["name"]])
    forged[-1] ^= 1
    data[bad["name"]] = bytes(forged)
    sent_bytes = []
    with pytest.raises(_errors.Failure) as info:
        write(tmp_path, blobs, data, sent_bytes=sent_bytes)
    assert info.value.kind == _errors.INTEGRITY and bad["name"] in str(info.value) and not info.value.extra.get("discard")
    start = stream_offset(blobs, bad["name"])
    prefix = b"".join(sent_bytes)
    assert len(prefix) == start // CHUNK * CHUNK  # every chunk wholly before it went out, no other
    assert bad["name"].encode() not in prefix and forged[:CHUNK // 2] not in prefix


def test_a_blob_changed_after_its_check_is_caught_and_marked_for_discard(tmp_path):
    blobs, data = make_blobs()
    big = max(blobs, key=lambda b: b["size"])
    changed = bytearray(data[big["name"]])
    changed[5] ^= 1
    source = Held(data[big["name"]], "the controller's file", later=bytes(changed))
    with pytest.raises(_errors.Failure) as info:
        write(tmp_path, blobs, data, sources={big["name"]: source})
    assert info.value.kind == _errors.INTEGRITY and info.value.extra.get("discard") and "changed after its check" in str(info.value)


def test_a_sources_own_check_runs_before_a_byte_of_the_blob_is_written(tmp_path):
    """A source may wrap the check's reader in a check of its own (a bundle's manifest): what it refuses is
    refused before the blob's header goes into a chunk."""
    blobs, data = make_blobs()

    class Refusing:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size=-1):
            raise _errors.Failure(_errors.CORRUPT_BUNDLE, "the manifest says otherwise")

        def close(self):
            self.handle.close()

    sent_bytes = []
    sources = {blobs[0]["name"]: Held(data[blobs[0]["name"]], "member", wrap=Refusing)}
    with pytest.raises(_errors.Failure) as info:
        write(tmp_path, blobs, data, sources=sources, sent_bytes=sent_bytes)
    assert info.value.kind == _errors.CORRUPT_BUNDLE and sent_bytes == []


def test_the_check_runs_ahead_of_the_writer_by_one_blob_at_most():
    blobs = [{"name": git_id(b"%d" % i), "size": len(b"%d" % i), "files": []} for i in range(4)]
    opened = []

    def open_blob(blob):
        opened.append(blob["name"])
        return Held(b"%d" % blobs.index(blob), blob["name"])

    checker = _carry.Prechecker(blobs, open_blob)
    try:
        checker.take(0).close()
        time.sleep(0.2)
        assert opened == [b["name"] for b in blobs[:2]]
        for index in (1, 2, 3):
            checker.take(index).close()
    finally:
        checker.close()
    assert opened == [b["name"] for b in blobs]


def test_progress_speaks_after_30_seconds_then_every_15():
    from ansible_collections.justnews.huggingface.plugins.action import hf_carry

    now = [100.0]
    progress = hf_carry.Progress("web1", 1000 * 1024 * 1024, clock=lambda: now[0])
    progress.sent = 300 * 1024 * 1024
    lines = []
    for second in range(0, 76):
        now[0] = 100.0 + second
        line = progress.line(now[0])
        if line:
            lines.append((second, line))
    assert [s for s, _l in lines] == [30, 45, 60, 75]
    assert "300.00 MB of 1000.00 MB (30%)" in lines[0][1] and "10.00 MB/s" in lines[0][1]


def test_links_false_leaves_each_model_link_out():
    from ansible_collections.justnews.huggingface.plugins.action import hf_carry

    seed = {"item": {"repo_id": "org/model", "link": "/opt/models/m", "allow_patterns": ["*.json"]},
            "commit": "1" * 40, "ref": "main", "listing": {}}
    assert hf_carry.model_args(seed)["link"] == "/opt/models/m"
    left_out = hf_carry.model_args(seed, links=False)
    assert "link" not in left_out and left_out["allow_patterns"] == ["*.json"]

    action = hf_carry.ActionModule.__new__(hf_carry.ActionModule)
    base = {"models": [seed], "staging_dir": "/var/lib/x"}
    assert action.check_args(base)[3] is True
    assert action.check_args(dict(base, links="no"))[3] is False
    with pytest.raises(_errors.Failure) as info:
        action.check_args(dict(base, links="sometimes"))
    assert info.value.kind == _errors.INVALID_ARGUMENT and "links" in str(info.value)


def test_chunks_are_put_in_order_while_the_next_is_written_and_a_failed_put_stops_the_rest(tmp_path):
    """The sender puts each chunk in a thread of its own and removes its file; a put that fails is raised to the
    writer at its next hand-over (or at the end), and no later chunk is put."""
    from ansible_collections.justnews.huggingface.plugins.action import hf_carry

    put = []

    def accept(chunk, path):
        assert os.path.exists(path)
        time.sleep(0.01)
        put.append(chunk["name"])

    paths = []
    for index in range(4):
        paths.append(tmp_path / ("c%d" % index))
        paths[-1].write_bytes(b"x")
    sender = hf_carry.Sender(accept)
    for path in paths:
        sender.send({"name": path.name}, str(path))
    sender.finish()
    assert put == ["c0", "c1", "c2", "c3"] and not any(p.exists() for p in paths)

    def refuse(chunk, _path):
        raise _errors.Failure(_errors.TRANSIENT, "sending %s failed" % chunk["name"])

    sender = hf_carry.Sender(refuse)
    for path in paths:
        path.write_bytes(b"x")
    handed = []
    with pytest.raises(_errors.Failure) as info:
        for path in paths:
            sender.send({"name": path.name}, str(path))
            handed.append(path)
            time.sleep(0.05)
    sender.finish(raise_error=False)
    assert info.value.kind == _errors.TRANSIENT and "c0" in str(info.value)
    assert len(handed) < len(paths) and not any(p.exists() for p in handed)  # the rest: the caller's folder


def test_chunk_folders_of_runs_that_are_gone_are_removed_only_theirs(tmp_path):
    from ansible_collections.justnews.huggingface.plugins.action import hf_carry

    dead = tmp_path / "hf-carry-999999999-abc"
    alive = tmp_path / ("hf-carry-%d-def" % os.getpid())
    other = tmp_path / "hf-carry-notapid"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "chunk").write_bytes(b"x")
    hf_carry.forget_dead_runs(str(tmp_path))
    assert not dead.exists() and alive.exists() and other.exists()
    assert hf_carry.chunk_folder(64 * 1024 * 1024) is not None or not os.path.isdir("/dev/shm")
