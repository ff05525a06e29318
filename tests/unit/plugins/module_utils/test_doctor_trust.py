"""The doctor's masking of token values, its deadlines for children and commands, and its refusal to follow
links or read special files, without systemd or a Hub (fakes answer for them)."""

import functools
import json
import os
import time

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.justnews.huggingface.plugins.module_utils import _doctor, _fs, _systemd


@functools.lru_cache(maxsize=None)
def ansible_module():
    """A module with no options: _systemd.run_command runs commands through its run_command."""
    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


UNIT = "justnews@memory.service"
TOKEN = "s3cr3t-mirror-token-42"  # a mirror's token: not shaped like hf_...
COMMIT = "c" * 40


def params(tmp_path, **extra):
    p = dict(cache_dir=str(tmp_path / "hub"), models=[], units=[{"name": UNIT}], agent_ports={}, ready_urls={},
             expected_env={}, managed_env=["HF_HUB_OFFLINE", "HF_TOKEN"], sourced_files=[], endpoint="http://mirror.invalid",
             reach_hub=False, token_file=None, token_expected=False, verify_checksums=True, journal=True, timeout=1)
    p.update(extra)
    return p


def show(environment="", env_files=(), pid=0):
    lines = ["Id=" + UNIT, "LoadState=loaded", "ActiveState=active", "SubState=running", "User=adra",
             "MainPID=%d" % pid, "InvocationID=0123abcd", "Environment=" + environment]
    return "\n".join(lines + ["EnvironmentFiles=%s (ignore_errors=yes)" % f for f in env_files]) + "\n"


def fake_run(show_text, journal="", journal_rc=0):
    def run_command(argv):
        if argv[0] == "systemctl":
            return 0, show_text, ""
        if journal_rc is None:
            return None, "", "did not finish within 7 s; it was killed"
        return journal_rc, journal, ""
    return run_command


def by_check(findings, check):
    return [f for f in findings if f["check"] == check]


# --- masking -----------------------------------------------------------------------------------------------

def test_mask_takes_known_values_of_any_shape_and_hub_tokens():
    assert _systemd.mask("Bearer %s failed" % TOKEN, {TOKEN}) == "Bearer *** failed"
    assert _systemd.mask("login with hf_abcdefgh12345 failed") == "login with hf_*** failed"
    # names that merely start with hf_ stay readable
    assert _systemd.mask("another hf_snapshot run; /srv/hf_models") == "another hf_snapshot run; /srv/hf_models"
    secrets = _systemd.Secrets()
    secrets.add("abc")  # too short to be a token: masking it would blank out words
    secrets.add(" %s " % TOKEN)
    assert secrets.mask("x%sy abc" % TOKEN) == "x***y abc"


def test_every_known_token_is_masked_in_journal_hub_and_readiness_texts(tmp_path):
    os.makedirs(tmp_path / "hub")
    token_file = tmp_path / "hf-token.env"
    token_file.write_text("HF_TOKEN=%s\n" % TOKEN)
    token_file.chmod(0o600)
    env_file = tmp_path / "memory.env"
    env_file.write_text("HF_HUB_TOKEN=file-secret-123\n")
    journal = "\n".join(["HTTP Error 429 thrown (Bearer %s)" % TOKEN, "LocalEntryNotFoundError unit-secret-456",
                         "Fetching 3 files file-secret-123 given-secret-789 process-secret-000"])

    def as_user(user, func, *args):
        if func is _systemd.process_environment:
            return [[4242, {k: "process-secret-000" if k == "HUGGINGFACE_HUB_TOKEN" else None for k in args[1]}]]
        return []

    def http_get(url, timeout, token=None, proxy=False):
        return None, {}, "BadStatusLine: you sent Bearer %s and %s" % (token, "unit-secret-456")

    p = params(tmp_path, token_file=str(token_file), token_expected=True, reach_hub=True, token="given-secret-789",
               models=[{"repo_id": "org/name", "repo_type": "model", "revision": "main"}])
    doctor = _doctor.Doctor(p, fake_run(show("HUGGING_FACE_HUB_TOKEN=unit-secret-456",
                                             [str(token_file), str(env_file)], pid=4242), journal),
                            as_user, http_get)
    findings = doctor.run()
    text = json.dumps(findings)
    for secret in (TOKEN, "unit-secret-456", "file-secret-123", "given-secret-789", "process-secret-000"):
        assert secret not in text, secret
    assert "Bearer ***" in by_check(findings, "journal")[0]["detail"]
    assert "***" in by_check(findings, "hub")[0]["detail"]


# --- deadlines ---------------------------------------------------------------------------------------------

def sleeper(path):
    _systemd.note(path)
    time.sleep(60)
    return ["never"]


def zombies():
    """This process's children that died and were not reaped."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry))
    return found


def test_a_child_past_its_deadline_is_killed_and_named_by_what_it_was_reading():
    started = time.monotonic()
    result = _systemd.run_as("root", sleeper, "/var/cache/hf/hub/models--a--b/blobs/fifo", timeout=1)
    assert time.monotonic() - started < 5
    assert isinstance(result, _systemd.ChildTimeout)
    assert result.reading == "/var/cache/hf/hub/models--a--b/blobs/fifo"
    assert "did not finish within 1 s" in result.describe() and "blobs/fifo" in result.describe()
    assert not zombies()  # the child was killed and reaped


def test_a_child_that_finishes_returns_its_result_and_one_that_fails_none():
    assert _systemd.run_as("root", lambda a, b: {"sum": a + b}, 2, 3, timeout=10) == {"sum": 5}
    assert _systemd.run_as("root", lambda: 1 / 0, timeout=10) is None
    assert _systemd.run_as("no-such-user-here", lambda: 1, timeout=10) is None


def test_a_child_that_closes_nothing_and_never_writes_is_killed():
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # a fake child: holds the pipe open and hangs
        time.sleep(60)
        os._exit(0)
    os.close(write_fd)
    started = time.monotonic()
    result = _systemd.collect_child(pid, read_fd, 0.5)
    assert isinstance(result, _systemd.ChildTimeout) and result.reading is None
    assert time.monotonic() - started < 3
    assert pid not in zombies()


def test_timeouts_of_the_access_check_and_the_process_environment_are_fail_findings(tmp_path):
    os.makedirs(tmp_path / "hub")

    def as_user(user, func, *args):
        return _systemd.ChildTimeout(30, "/var/cache/hf/hub/.locks/models--a--b/x.lock")

    doctor = _doctor.Doctor(params(tmp_path, expected_env={"HF_HUB_OFFLINE": "1"}),
                            fake_run(show("HF_HUB_OFFLINE=1", pid=4242)), as_user, None)
    findings = doctor.run()
    cache = by_check(findings, "cache")[0]
    assert cache["verdict"] == "fail" and "did not finish within 30 s" in cache["detail"]
    assert ".locks/models--a--b/x.lock" in cache["detail"] and cache["fix"]
    process = [f for f in by_check(findings, "environment") if "pid 4242" in f["subject"]][0]
    assert process["verdict"] == "fail" and "did not finish within 30 s" in process["detail"]


def test_a_hung_journalctl_is_a_fail_finding(tmp_path):
    os.makedirs(tmp_path / "hub")
    doctor = _doctor.Doctor(params(tmp_path), fake_run(show(), journal_rc=None), lambda *a: [], None)
    (journal,) = by_check(doctor.run(), "journal")
    assert journal["verdict"] == "fail" and "did not finish within 7 s" in journal["detail"] and journal["fix"]


def test_run_command_kills_the_whole_process_group_at_its_deadline(tmp_path):
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    rc, _out, err = _systemd.run_command(ansible_module(), ["sh", "-c", "sleep 60 & echo $! > %s; wait" % pid_file],
                                         timeout=1)
    assert rc is None and "did not finish within 1 s" in err
    assert time.monotonic() - started < 8
    grandchild = int(pid_file.read_text())
    time.sleep(0.2)
    assert not os.path.exists("/proc/%d" % grandchild) or " Z " in open("/proc/%d/stat" % grandchild).read()
    assert _systemd.run_command(ansible_module(), ["/nonexistent/journalctl"])[0] == 127


def test_run_command_runs_argv_as_given_with_no_input(tmp_path):
    """No shell and no expansion of the arguments; the command reads /dev/null, never the module's input."""
    rc, out, err = _systemd.run_command(ansible_module(), ["sh", "-c", 'printf "%s|" "$0" "$1"; cat', "$HOME", "~"],
                                        timeout=10)
    assert (rc, out, err) == (0, "$HOME|~|", "")
    rc, out, _err = _systemd.run_command(ansible_module(), ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (rc, out) == (3, "out\n")


def test_process_environment_reads_capped_proc_files():
    env = dict(_systemd.process_environment(os.getpid(), ["PATH", "NO_SUCH_VARIABLE_HERE"]))
    assert env[os.getpid()]["PATH"] == os.environ["PATH"] and env[os.getpid()]["NO_SUCH_VARIABLE_HERE"] is None


# --- environment files -------------------------------------------------------------------------------------

def test_env_files_that_are_fifos_devices_links_in_the_cache_or_huge_are_refused(tmp_path):
    cache = tmp_path / "hub"
    cache.mkdir()
    secret = tmp_path / "root.env"
    secret.write_text("HF_TOKEN=%s\n" % TOKEN)
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    (cache / "agent.env").symlink_to(secret)
    huge = tmp_path / "huge.env"
    huge.write_bytes(b"A=1\n" * (_systemd.ENV_FILE_MAX // 4 + 1))
    started = time.monotonic()
    for path, words in ((fifo, "a FIFO"), ("/dev/zero", "a character device"), (cache / "agent.env", "symlink"),
                        (huge, "more than")):
        with pytest.raises(_fs.Refused) as raised:
            _systemd.read_env_file(str(path), str(cache))
        assert words in str(raised.value), (path, raised.value)
    assert time.monotonic() - started < 2
    assert _systemd.read_env_file(str(secret), str(cache)) == {"HF_TOKEN": TOKEN}
    assert _systemd.read_env_file(str(cache / "absent.env"), str(cache)) is None


def test_nothing_is_followed_below_a_folder_another_user_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    secret = tmp_path / "root.env"
    secret.write_text("HF_TOKEN=%s\n" % TOKEN)
    (shared / "memory.env").symlink_to(secret)
    top, rel = _systemd.split_trusted(str(shared / "memory.env"))
    assert os.path.join(top, rel) == str(shared / "memory.env")  # the link is a name below top, not resolved
    with pytest.raises(_fs.Refused):
        _systemd.read_env_file(str(shared / "memory.env"))


def test_an_env_file_that_is_a_fifo_is_one_finding_and_not_read(tmp_path):
    os.makedirs(tmp_path / "hub")
    fifo = tmp_path / "memory.env"
    os.mkfifo(fifo)
    doctor = _doctor.Doctor(params(tmp_path, sourced_files=[str(fifo)], journal=False),
                            fake_run(show("HF_HUB_OFFLINE=1", [str(fifo)])), lambda *a: [], None)
    findings = [f for f in doctor.run() if f["subject"] == str(fifo)]
    assert len(findings) == 1 and findings[0]["verdict"] == "fail" and "a FIFO" in findings[0]["detail"]


# --- the cache as root and as the unit's user ----------------------------------------------------------------

def repo_with_ref(tmp_path):
    cache = tmp_path / "hub"
    refs = cache / "models--org--name" / "refs"
    refs.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_text("d" * 40)
    return cache, refs, outside


def model_doctor(cache):
    p = params(cache.parent, cache_dir=str(cache), units=[], journal=False,
               models=[{"repo_id": "org/name", "repo_type": "model", "revision": "main"}])
    return _doctor.Doctor(p, None, lambda user, func, *args: [], None)


def test_a_ref_that_links_out_of_the_cache_is_named_not_read(tmp_path):
    cache, refs, outside = repo_with_ref(tmp_path)
    (refs / "main").symlink_to(outside)
    doctor = model_doctor(cache)
    doctor.check_model(doctor.p["models"][0])
    planted = [f for f in doctor.findings if f["subject"] == str(refs / "main")]
    assert planted and planted[0]["verdict"] == "fail" and "symlink" in planted[0]["detail"]
    assert "rm %s" % (refs / "main") in planted[0]["fix"]
    assert "d" * 40 not in json.dumps(doctor.findings)
    assert [f["verdict"] for f in doctor.findings if f["check"] == "model"] == ["fail"]


def test_a_snapshot_folder_that_links_out_of_the_cache_is_named_not_walked(tmp_path):
    cache, refs, outside = repo_with_ref(tmp_path)
    (refs / "main").write_text(COMMIT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret-name.bin").write_text("x")
    (cache / "models--org--name" / "snapshots").mkdir()
    (cache / "models--org--name" / "snapshots" / COMMIT).symlink_to(elsewhere)
    doctor = model_doctor(cache)
    doctor.check_model(doctor.p["models"][0])
    assert any(f["subject"] == str(cache / "models--org--name" / "snapshots" / COMMIT) for f in doctor.findings)
    problems = _doctor.access_problems(str(cache), ["models--org--name"], {"models--org--name": [COMMIT]})
    assert len(problems) == 1 and "symlink" in problems[0], problems
    assert "secret-name" not in json.dumps([doctor.findings, problems])


def test_the_access_check_names_lock_fifos_and_links_out_without_opening_them(tmp_path):
    cache = tmp_path / "hub"
    locks = cache / ".locks" / "models--org--name"
    locks.mkdir(parents=True)
    os.mkfifo(locks / "x.lock")
    snap = cache / "models--org--name" / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (cache / "models--org--name" / "blobs").mkdir()
    os.mkfifo(cache / "models--org--name" / "blobs" / ("a" * 40))
    (snap / "fifo.bin").symlink_to("../../blobs/" + "a" * 40)
    (snap / "out.bin").symlink_to("/dev/zero")
    started = time.monotonic()
    problems = _doctor.access_problems(str(cache), ["models--org--name"], {"models--org--name": [COMMIT]})
    assert time.monotonic() - started < 2
    text = "; ".join(problems)
    assert "the lock %s is a FIFO" % (locks / "x.lock") in text
    assert "the blob of fifo.bin is a FIFO" in text
    assert "foreign link: the snapshot file out.bin links to '/dev/zero'" in text
