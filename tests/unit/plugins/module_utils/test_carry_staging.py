"""_carry on the host: where the chunks of a stream may be written (staging_dir and the stream's own folder), and
the controller's send into it with a hostile user at work between the probe and the send. Runs as root (it
changes owners and acts as other users)."""

import ast
import errno
import hashlib
import os
import shutil
import stat
import tempfile

import pytest

from ansible_collections.justnews.huggingface.plugins.action import hf_carry
from ansible_collections.justnews.huggingface.plugins.module_utils import _carry
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changes owners and acts as other users: needs root")

AGENT = 65534  # the cache's owner, hostile: nobody
UPLOADER = 4321  # a connection's user other than root (become)
CHUNK = _carry.MIN_CHUNK


def as_user(uid, func):
    """func() in a child process running as `uid` (group `uid`, no other groups): its repr, or the name of
    the exception it raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out = repr(func())
        except BaseException as exc:  # pylint: disable=broad-except
            out = repr(type(exc).__name__)
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while True:
        data = os.read(read, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(read)
    os.waitpid(pid, 0)
    return ast.literal_eval(b"".join(chunks).decode())


def mode_of(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink


@pytest.fixture
def open_top():
    """A folder of root's, 0755, below /tmp: others can pass through it (unlike pytest's 0700 tmp_path), so what
    stops a hostile user below it is the staging's own modes."""
    top = tempfile.mkdtemp(prefix="carry-staging-", dir="/tmp")
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top)


def refused(func, *args, **kwargs):
    with pytest.raises(_errors.Failure) as info:
        func(*args, **kwargs)
    return info.value


# --- staging_dir --------------------------------------------------------------------------------------------

def test_staging_inside_the_cache_or_hf_home_is_unsafe_and_around_them_invalid(tmp_path):
    home = tmp_path / "hf"
    for staging in (home / ".incoming", home / "hub" / ".incoming", home):
        error = refused(_carry.check_location, str(staging), str(home / "hub"), str(home))
        assert error.kind == _errors.UNSAFE_CACHE and "staging_dir" in str(error) and str(staging) in str(error)
    error = refused(_carry.check_location, str(tmp_path), str(home / "hub"), str(home))
    assert error.kind == _errors.INVALID_ARGUMENT and "staging_dir" in str(error)
    _carry.check_location(str(tmp_path / "incoming"), str(home / "hub"), str(home))


def test_staging_is_made_root_only_with_its_missing_parents(tmp_path):
    staging = tmp_path / "var" / "lib" / "incoming"
    fd = _carry.open_staging(str(staging), 0, create=True)
    os.close(fd)
    assert mode_of(staging)[:3] == (0, 0, 0o700)
    assert mode_of(staging.parent)[:3] == (0, 0, 0o755)
    other = tmp_path / "var" / "lib" / "for-another-uploader"
    fd = _carry.open_staging(str(other), 0, create=True, mode=0o711)
    os.close(fd)
    assert mode_of(other)[2] == 0o711
    assert _carry.open_staging(str(tmp_path / "absent" / "incoming"), 0, create=False) is None
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("case", ["symlink", "agent_owned_parent", "agent_owned", "world_writable",
                                  "group_writable", "sticky_itself", "file"])
def test_a_staging_dir_another_user_could_change_is_refused_before_anything_is_made(tmp_path, case):
    real = tmp_path / "real"
    real.mkdir()
    staging = tmp_path / "lib" / "incoming"
    staging.parent.mkdir()
    if case == "symlink":
        staging.parent.rmdir()
        staging.parent.symlink_to(real)
    elif case == "agent_owned_parent":
        os.chown(staging.parent, AGENT, AGENT)
    elif case == "file":
        staging.write_bytes(b"x")
    else:
        staging.mkdir()
        if case == "agent_owned":
            os.chown(staging, AGENT, AGENT)
        else:
            os.chmod(staging, {"world_writable": 0o777, "group_writable": 0o770, "sticky_itself": 0o1777}[case])
            if case == "group_writable":
                os.chown(staging, 0, AGENT)
    before = sorted(os.listdir(real)), sorted(os.listdir(staging.parent))
    for create in (True, False):
        error = refused(_carry.open_staging, str(staging), 0, create=create)
        assert error.kind == _errors.UNSAFE_CACHE and str(staging) in str(error), error
    assert (sorted(os.listdir(real)), sorted(os.listdir(staging.parent))) == before


def test_a_sticky_folder_of_roots_may_be_on_the_way(open_top):
    sticky = os.path.join(open_top, "tmp")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    fd = _carry.open_staging(os.path.join(sticky, "incoming"), 0, create=True)
    os.close(fd)
    os.chown(sticky, AGENT, AGENT)  # a sticky folder of another user's is not
    assert refused(_carry.open_staging, os.path.join(sticky, "incoming"), 0, create=False).kind == \
        _errors.UNSAFE_CACHE


def test_another_uploader_may_pass_through_staging_never_list_it(tmp_path):
    staging = tmp_path / "incoming"
    fd = _carry.open_staging(str(staging), 0, create=True)
    try:
        _carry.reachable_by(fd, 0)
        assert mode_of(staging)[2] == 0o700
        _carry.reachable_by(fd, UPLOADER)
        assert mode_of(staging)[2] == 0o711
    finally:
        os.close(fd)


# --- the stream's folder ------------------------------------------------------------------------------------

STREAM = "0123456789abcdef"


@pytest.fixture
def staging(tmp_path):
    path = tmp_path / "incoming"
    fd = _carry.open_staging(str(path), 0, create=True)
    yield path, fd
    os.close(fd)


def adopt(staging, uid=0):
    path, fd = staging
    stream_fd, removed = _carry.adopt_stream(fd, str(path), STREAM, uid, uid)
    os.close(stream_fd)
    return path / STREAM, removed


def test_the_streams_folder_is_made_for_the_uploader_and_kept_with_its_chunks(staging):
    folder, removed = adopt(staging, UPLOADER)
    assert not removed and mode_of(folder)[:3] == (UPLOADER, UPLOADER, 0o700)
    (folder / (STREAM + "-000000")).write_bytes(b"chunk")
    os.chown(folder / (STREAM + "-000000"), UPLOADER, UPLOADER)
    again, removed = adopt(staging, UPLOADER)
    assert not removed and os.listdir(again) == [STREAM + "-000000"]


@pytest.mark.parametrize("case", ["hardlink", "symlink_inside", "folder_inside", "other_name", "agent_owned",
                                  "mode_0755", "symlink_itself", "file_itself"])
def test_anything_else_at_the_streams_folder_is_removed_never_followed_or_chowned(staging, tmp_path, case):
    path, _fd = staging
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's secret\n")
    os.chown(victim, AGENT, AGENT)
    os.chmod(victim, 0o640)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = path / STREAM
    if case in ("symlink_itself", "file_itself"):
        if case == "symlink_itself":
            folder.symlink_to(elsewhere)
        else:
            folder.write_bytes(b"x")
    else:
        folder, _removed = adopt(staging)
        name = folder / (STREAM + "-000000")
        if case == "hardlink":
            os.link(victim, name)
        elif case == "symlink_inside":
            name.symlink_to(victim)
        elif case == "folder_inside":
            name.mkdir()
            (name / "x").symlink_to(victim)
        elif case == "other_name":
            (folder / "notes").write_bytes(b"x")
        elif case == "agent_owned":
            os.chown(folder, AGENT, AGENT)
        else:
            os.chmod(folder, 0o755)
    before = mode_of(victim)[:3], victim.read_bytes()
    folder, removed = adopt(staging)
    assert removed and os.listdir(folder) == [] and mode_of(folder)[:3] == (0, 0, 0o700)
    assert (mode_of(victim)[:3], victim.read_bytes()) == before and mode_of(victim)[3] == 1
    assert os.listdir(elsewhere) == []


def test_the_import_refuses_a_streams_folder_that_is_not_what_the_probe_made(staging, tmp_path):
    path, _fd = staging
    assert refused(_carry.open_stream, str(path), STREAM, 0, 0).kind == _errors.INCOMPLETE
    folder, _removed = adopt(staging)
    staging_fd, stream_fd = _carry.open_stream(str(path), STREAM, 0, 0)
    os.close(stream_fd)
    os.close(staging_fd)
    assert refused(_carry.open_stream, str(path), STREAM, UPLOADER, 0).kind == _errors.UNSAFE_CACHE
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere)
    assert refused(_carry.open_stream, str(path), STREAM, 0, 0).kind == _errors.UNSAFE_CACHE
    swapped = tmp_path / "swapped"
    path.rename(swapped)
    path.symlink_to(swapped)
    assert refused(_carry.open_stream, str(path), STREAM, 0, 0).kind == _errors.UNSAFE_CACHE


# --- the send, with the cache's owner at work between the probe and the send -------------------------------

class Memory:
    """The controller's blobs, as the action's reader of sources."""

    def __init__(self, data):
        self.data = data

    def open(self, blob):
        fd, path = tempfile.mkstemp()
        os.unlink(path)
        os.write(fd, self.data[blob["name"]])
        return _carry.Source(fd, 0, _errors.INTEGRITY, blob["name"])

    def close(self):
        pass


class HostileConnection:
    """put_file as the local connection does it (open the destination, following links, and write), as the
    connection's user; before the first put, the cache's owner tries to redirect it: swap the stream's folder
    or staging_dir for a link to a folder of theirs, plant a link at the next chunk's name."""

    def __init__(self, staging, uploader, victim, elsewhere):
        self.staging, self.uploader, self.victim, self.elsewhere = staging, uploader, victim, elsewhere
        self.attempts = None
        self.puts = []

    def attack(self, remote):
        folder = os.path.dirname(remote)
        steps = {
            "swap the stream's folder": lambda: (os.rename(folder, folder + ".old"),
                                                 os.symlink(self.elsewhere, folder)),
            "plant a link at the chunk": lambda: os.symlink(self.victim, remote),
            "swap staging_dir": lambda: (os.rename(self.staging, self.staging + ".old"),
                                         os.symlink(self.elsewhere, self.staging)),
        }
        done = {}
        for name, step in steps.items():
            try:
                step()
                done[name] = "done"
            except OSError as exc:
                done[name] = errno.errorcode[exc.errno]
        return done

    def put_file(self, in_path, out_path):
        if self.attempts is None:
            self.attempts = as_user(AGENT, lambda: self.attack(out_path))
        with open(in_path, "rb") as handle:
            data = handle.read()

        def write():
            with open(out_path, "wb") as out:
                out.write(data)
            return len(data)

        assert as_user(self.uploader, write) == len(data)
        self.puts.append(out_path)


@pytest.mark.parametrize("uploader", [0, UPLOADER], ids=["root", "another_user"])
def test_the_cache_owner_cannot_redirect_a_chunk_between_probe_and_send(open_top, monkeypatch, uploader):
    contents = [os.urandom(CHUNK + 100), b"{}\n", os.urandom(3 * CHUNK)]
    blobs = sorted(({"name": hashlib.sha256(c).hexdigest(), "size": len(c), "files": [["org/m", "f%d" % i]]}
                    for i, c in enumerate(contents)), key=lambda b: b["name"])
    data = {hashlib.sha256(c).hexdigest(): c for c in contents}
    plan = _carry.plan_stream(blobs, CHUNK)
    # the agents' own folder beside the staging, and a file of root's they would like to overwrite
    elsewhere = os.path.join(open_top, "agents")
    os.mkdir(elsewhere)
    os.chown(elsewhere, AGENT, AGENT)
    victim = os.path.join(open_top, "victim")
    with open(victim, "wb") as handle:
        handle.write(b"root's file\n")
    os.chmod(victim, 0o644)
    # the probe, as hf_receive does it
    staging = os.path.join(open_top, "incoming")
    fd = _carry.open_staging(staging, 0, create=True, mode=0o700 if uploader == 0 else 0o711)
    _carry.reachable_by(fd, uploader)
    stream_fd, _removed = _carry.adopt_stream(fd, staging, plan["id"], uploader, uploader)
    os.close(stream_fd)
    os.close(fd)
    # the send
    monkeypatch.setattr(hf_carry, "ControllerSource", lambda seeds: Memory(data))
    action = hf_carry.ActionModule.__new__(hf_carry.ActionModule)
    action._connection = HostileConnection(staging, uploader, victim, elsewhere)
    action.stats = {"bytes_sent": 0, "bytes_held": 0, "chunks_sent": 0}
    stream_dir = os.path.join(staging, plan["id"])
    chunks = action.send(plan, blobs, "controller", [], {}, [], stream_dir, {})
    attempts = action._connection.attempts
    assert attempts and set(attempts.values()) == {"EACCES"}, attempts
    assert os.listdir(elsewhere) == []
    with open(victim, "rb") as handle:
        assert handle.read() == b"root's file\n"
    assert mode_of(victim)[:3] == (0, 0, 0o644)
    assert sorted(os.listdir(staging)) == [plan["id"]]
    assert sorted(os.listdir(stream_dir)) == [c["name"] for c in plan["chunks"]]
    # what arrived is the stream: the import takes every blob from it
    staging_fd, stream_fd = _carry.open_stream(staging, plan["id"], uploader, 0)
    dest = os.path.join(open_top, "blobs")
    os.mkdir(dest)
    dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _carry.unpack(stream_fd, stream_dir, chunks, blobs, dest_fd, dest)
    finally:
        for each in (dest_fd, stream_fd, staging_fd):
            os.close(each)
    for blob in blobs:
        with open(os.path.join(dest, blob["name"]), "rb") as handle:
            assert handle.read() == data[blob["name"]]


def test_the_import_takes_the_stream_from_its_chunk_names_all_alike():
    chunk = {"name": STREAM + "-000000", "size": 1, "sha256": "0" * 64}
    assert _carry.stream_of([chunk, dict(chunk, name=STREAM + "-000001")]) == STREAM
    for names in ([STREAM + "-000000", "fedcba9876543210-000001"], ["../" + STREAM + "-000000"]):
        error = refused(_carry.stream_of, [dict(chunk, name=n) for n in names])
        assert error.kind == _errors.INVALID_ARGUMENT
