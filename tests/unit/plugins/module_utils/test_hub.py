"""Retry policy and error classification of the hf_snapshot module."""

import email.utils
import hashlib
import inspect
import os
import random
import subprocess
import sys
import time

import httpx2
import pytest
from huggingface_hub import errors

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache, _errors, _hub


def test_retry_after_in_seconds_and_as_http_date():
    assert _hub.parse_retry_after("7") == 7.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= _hub.parse_retry_after(date, now=now) <= 31
    assert _hub.parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert _hub.parse_retry_after("soon") is None
    assert _hub.parse_retry_after(None) is None


def http_error(status, cls=errors.HfHubHTTPError, headers=None):
    request = httpx2.Request("GET", "http://127.0.0.1/x")
    response = httpx2.Response(status, request=request, headers=headers or {})
    return cls("boom", response=response)


@pytest.mark.parametrize("exc, kind", [
    (http_error(429, headers={"Retry-After": "3"}), _errors.RATE_LIMITED),
    (http_error(503), _errors.SERVER_ERROR),
    (http_error(401, errors.GatedRepoError), _errors.GATED),
    (http_error(404, errors.RevisionNotFoundError), _errors.REVISION_NOT_FOUND),
    (http_error(401, errors.RepositoryNotFoundError), _errors.REPO_NOT_FOUND),
    (http_error(403), _errors.UNAUTHORIZED),
    (OSError(28, "No space left on device"), _errors.DISK_FULL),
    (PermissionError(13, "Permission denied"), _errors.NOT_WRITABLE),
    (httpx2.ConnectError("refused"), _errors.UNREACHABLE),
    (httpx2.ReadError("reset"), _errors.TRANSIENT),
])
def test_classify(exc, kind):
    assert _hub.classify(exc)[0] == kind


def test_status_is_found_through_the_library_wrapping():
    """The library wraps 429/5xx in LocalEntryNotFoundError; the status sits on the cause."""
    wrapped = errors.LocalEntryNotFoundError("not cached")
    wrapped.__cause__ = http_error(429, headers={"Retry-After": "2"})
    kind, status, retry_after, _message, _ratelimit = _hub.classify(wrapped)
    assert (kind, status, retry_after) == (_errors.RATE_LIMITED, 429, "2")


HUB_LIMIT = {"RateLimit": '"api";r=0;t=55', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'}


def test_the_hub_ratelimit_headers_are_read_as_the_library_reads_them():
    assert _hub.parse_ratelimit(HUB_LIMIT) == (55, 0, '"api" r=0, 500 requests per 300s')
    assert _hub.parse_ratelimit({"ratelimit": '"resolvers";r=12;t=7'}) == (7, 12, '"resolvers" r=12')
    assert _hub.parse_ratelimit({"RateLimit": "garbage"}) is None
    assert _hub.parse_ratelimit({}) is None
    kind, status, retry_after, _message, ratelimit = _hub.classify(http_error(429, headers=HUB_LIMIT))
    assert (kind, status, retry_after, ratelimit[0]) == (_errors.RATE_LIMITED, 429, None, 55)


class RuntimeXetError(ConnectionError):
    """hf_xet raises builtin exceptions; its own classes only for authentication and missing objects."""


XetAuthenticationError = type("XetAuthenticationError", (PermissionError,), {})
XetObjectNotFoundError = type("XetObjectNotFoundError", (FileNotFoundError,), {})


@pytest.mark.parametrize("exc, kind, status, retry_after", [
    (ConnectionError("Rate limited: Request error: HTTP status client error (429 Too Many Requests) for url"
                     " (http://cas/v1/reconstructions/ab), domain: cas"), _errors.RATE_LIMITED, 429, None),
    (ConnectionError("Rate limited: 429 Too Many Requests; retry-after: 12"), _errors.RATE_LIMITED, None, "12"),
    (ConnectionError("Server error: Request error: HTTP status server error (503 Service Unavailable) for url"
                     " (http://cas/x), domain: cas"), _errors.SERVER_ERROR, 503, None),
    (ConnectionError("Network error: Request middleware error: error sending request"), _errors.UNREACHABLE, None,
     None),
    (TimeoutError("Timeout: Request error: operation timed out"), _errors.TRANSIENT, None, None),
    (XetAuthenticationError("Authentication error: Auth error: token expired"), _errors.UNAUTHORIZED, None, None),
    (XetObjectNotFoundError("Not found: File not found for hash: ab"), _errors.ENTRY_NOT_FOUND, None, None),
    # what hf_xet 1.8 raises when the CAS answers 429 or 503 inside a download task (measured)
    (RuntimeError("Task error: File reconstruction error: CAS Client Error: Request error: HTTP status client"
                  " error (429 Too Many Requests), domain: http://127.0.0.1:1/v2/reconstructions/ab"),
     _errors.RATE_LIMITED, 429, None),
    (RuntimeError("Task error: File reconstruction error: CAS Client Error: Request error: HTTP status server"
                  " error (503 Service Unavailable), domain: http://127.0.0.1:1/v1/xorbs/default/ab"),
     _errors.SERVER_ERROR, 503, None),
    # a refused CAS token: the next attempt's process gets a fresh one from the Hub (measured)
    (RuntimeError("Task error: File reconstruction error: CAS Client Error: Request error: HTTP status client"
                  " error (401 Unauthorized), domain: http://127.0.0.1:1/v2/reconstructions/ab"),
     _errors.TRANSIENT, 401, None),
    # the writer's error reported instead of the failed fetch's (seen against a CAS failing with 500): tried again
    (RuntimeError("Task error: File reconstruction error: Internal Writer Error: Data sender was dropped before"
                  " sending data."), _errors.TRANSIENT, None, None),
    # hf_xet writes the file itself: a full disk is only its text (measured on a full tmpfs)
    (RuntimeError("Task error: File reconstruction error: IO Error: No space left on device (os error 28)"),
     _errors.DISK_FULL, None, None),
])
def test_hf_xet_errors_are_classified_by_their_category(exc, kind, status, retry_after):
    """hf_xet raises ConnectionError for 429, 5xx and network failures alike: the message prefix tells them apart,
    and an authentication error (a PermissionError) is not taken for an unwritable cache."""
    got_kind, got_status, got_retry_after, message, _ratelimit = _hub.classify(exc)
    assert (got_kind, got_status, got_retry_after) == (kind, status, retry_after)
    assert message.startswith(type(exc).__name__)


def test_plain_os_errors_are_not_taken_for_hf_xet_errors():
    assert _hub.classify(ConnectionRefusedError(111, "Connection refused"))[0] != _errors.RATE_LIMITED
    assert _hub.classify(RuntimeError("something else (500 things)"))[0] == _errors.OTHER
    assert _hub.classify(PermissionError(13, "Permission denied"))[0] == _errors.NOT_WRITABLE


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def failing(kind, times, retry_after=None, ratelimit=None):
    state = {"left": times}

    def step():
        if state["left"]:
            state["left"] -= 1
            failure = _hub.HubFailure(kind, "synthetic %s" % kind)
            failure.retry_after = retry_after
            failure.ratelimit = ratelimit
            raise failure
        return "done"
    return step


def retrier(clock, retries=5, timeout=100):
    return _hub.Retrier(retries, timeout, backoff=1.0, sleep=clock.sleep, clock=clock.clock)


def test_exponential_backoff_then_success(monkeypatch):
    clock = FakeClock()
    step = failing(_errors.SERVER_ERROR, 3)
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    r = retrier(clock)
    assert r.call(step) == "done"
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert r.retries_used == 3


def test_a_writer_error_of_hf_xet_reports_the_status_an_earlier_attempt_was_given(monkeypatch):
    """hf_xet at times reports its writer's end ("Data sender was dropped") instead of the 503 behind it."""
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    told = _hub.HubFailure(_errors.SERVER_ERROR, "CAS answered 503", status=503)
    failures = [told, _hub.HubFailure(_errors.TRANSIENT, "RuntimeError: Data sender was dropped before sending data")]

    def step():
        raise failures.pop(0)
    with pytest.raises(_hub.HubFailure) as info:
        retrier(clock, retries=1).call(step)
    assert info.value.kind == _errors.SERVER_ERROR and info.value.status == 503 and info.value.attempts == 2


def test_retry_after_is_honoured(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    r = retrier(clock)
    assert r.call(failing(_errors.RATE_LIMITED, 1, retry_after="9")) == "done"
    assert clock.sleeps == [9.0]


def test_a_429_without_retry_after_waits_for_the_ratelimit_window(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    r = retrier(clock)
    assert r.call(failing(_errors.RATE_LIMITED, 1, ratelimit=(55, 0, '"api" r=0'))) == "done"
    assert clock.sleeps == [55.0] and r.waited_for_hub == 55.0 and r.retries_used == 1


def test_retry_after_wins_over_the_ratelimit_reset(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    assert retrier(clock).call(failing(_errors.RATE_LIMITED, 1, retry_after="4", ratelimit=(55, 0, "x"))) == "done"
    assert clock.sleeps == [4.0]


def test_a_server_error_with_ratelimit_headers_backs_off_as_usual(monkeypatch):
    """The reset time says when the quota refills, which is no reason to wait after a 503."""
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    assert retrier(clock).call(failing(_errors.SERVER_ERROR, 1, ratelimit=(55, 3, "x"))) == "done"
    assert clock.sleeps == [1.0]


def test_a_ratelimit_reset_beyond_the_deadline_fails_naming_both_numbers(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    r = retrier(clock, timeout=30)
    with pytest.raises(_hub.HubFailure) as info:
        r.call(failing(_errors.RATE_LIMITED, 1, ratelimit=(280, 0, '"api" r=0, 500 requests per 300s')))
    assert info.value.kind == _errors.RATE_LIMITED and clock.sleeps == []
    assert "asked to wait 280s" in info.value.msg and "30s left" in info.value.msg
    assert 'RateLimit "api" r=0, 500 requests per 300s, t=280' in info.value.msg
    assert r.waited_for_hub == 280.0


def test_permanent_errors_are_not_retried(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    with pytest.raises(_hub.HubFailure) as info:
        retrier(clock).call(failing(_errors.GATED, 1))
    assert info.value.kind == _errors.GATED and clock.sleeps == []


def test_gives_up_when_retries_run_out(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    with pytest.raises(_hub.HubFailure) as info:
        retrier(clock, retries=2).call(failing(_errors.RATE_LIMITED, 10))
    assert info.value.attempts == 3 and len(clock.sleeps) == 2


def test_a_wait_beyond_the_timeout_fails_at_once(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    with pytest.raises(_hub.HubFailure) as info:
        retrier(clock, timeout=10).call(failing(_errors.RATE_LIMITED, 1, retry_after="3600"))
    assert info.value.kind == _errors.RATE_LIMITED and clock.sleeps == []
    assert "the Hub asked to wait 3600s (Retry-After)" in info.value.msg


def test_a_short_deadline_keeps_the_real_cause_and_says_whose_wait_it_was(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    r = retrier(clock, timeout=5)
    with pytest.raises(_hub.HubFailure) as info:
        r.call(failing(_errors.SERVER_ERROR, 100))
    assert info.value.kind == _errors.SERVER_ERROR  # not "timeout": the Hub answered, with errors
    assert "no time left for retry" in info.value.msg and "asked" not in info.value.msg
    assert r.retries_used == len(clock.sleeps) == 2 and r.waited_for_hub is None


def test_every_retry_is_counted(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))
    r = retrier(clock)
    assert r.call(failing(_errors.UNREACHABLE, 4)) == "done"
    assert r.retries_used == 4


def test_the_child_makes_single_attempts_and_dies_with_its_parent():
    """The library's own retries would multiply the module's; its child must not outlive the module."""
    def probe():
        from huggingface_hub import file_download
        from huggingface_hub.utils import _http
        with open("/proc/self/status", encoding="ascii") as handle:
            status = handle.read()
        return (inspect.unwrap(_http.http_stream_backoff).__kwdefaults__["max_retries"],
                inspect.unwrap(file_download.http_get).__kwdefaults__["_nb_retries"],
                os.environ.get("HF_XET_CLIENT_RETRY_MAX_ATTEMPTS"),
                "PPid" in status)

    assert _hub.run_with_deadline(probe, (), 60) == (0, 0, "0", True)


def test_hf_xet_reads_the_single_attempt_setting():
    """The setting's name as hf_xet 1.8 reads it (xet_runtime config group `client`, retry_max_attempts)."""
    import hf_xet
    with open(hf_xet.hf_xet.__file__, "rb") as handle:
        assert b"HF_XET_CLIENT_RETRY_MAX_ATTEMPTS" in handle.read()
    assert set(_hub.XET_SINGLE_ATTEMPT) == {"HF_XET_CLIENT_RETRY_MAX_ATTEMPTS"}


def test_a_step_that_never_answers_is_killed_at_the_deadline():
    started = time.monotonic()
    with pytest.raises(_hub.HubFailure) as info:
        _hub.run_with_deadline(time.sleep, (60,), 1.0)
    assert info.value.kind == _errors.TIMEOUT
    assert time.monotonic() - started < 10


def test_child_results_and_errors_come_back():
    assert _hub.run_with_deadline(sum, ([1, 2, 3],), 30) == 6
    with pytest.raises(_hub.HubFailure) as info:
        _hub.run_with_deadline(open, ("/nonexistent/x",), 30)
    assert "FileNotFoundError" in info.value.msg


# --- against the test Hub: the real library and hf_xet, the module's clock -----------------------------------

def hub_retrier(clock, timeout=600):
    return _hub.Retrier(3, timeout, backoff=1.0, sleep=clock.sleep, clock=clock.clock)


def test_an_api_429_waits_for_the_hubs_ratelimit_reset(hub):
    from tools.hub.hubserver import COMMIT_B, MINILM_REPO
    hub.set_faults([{"kind": "429", "count": 1, "endpoint": "model_info", "reset": 42}])
    clock = FakeClock()
    r = hub_retrier(clock)
    assert r.call(_hub.Hub(hub.url, None, MINILM_REPO, "model").resolve_commit, "main") == COMMIT_B
    assert clock.sleeps == [42.0] and r.retries_used == 1
    assert hub.stats()["requests"]["model_info"] == 2  # the library tried once each time


def test_a_ratelimit_reset_beyond_the_timeout_fails_at_once_naming_both(hub):
    from tools.hub.hubserver import MINILM_REPO
    hub.set_faults([{"kind": "429", "count": -1, "endpoint": "tree", "reset": 280}])
    clock = FakeClock()
    with pytest.raises(_hub.HubFailure) as info:
        hub_retrier(clock, timeout=60).call(_hub.Hub(hub.url, None, MINILM_REPO, "model").list_tree, "main")
    assert info.value.kind == _errors.RATE_LIMITED and clock.sleeps == []
    assert "asked to wait 280s (RateLimit" in info.value.msg and "60s left" in info.value.msg
    assert hub.stats()["requests"]["tree"] == 1


@pytest.mark.parametrize("endpoint, wait", [("reconstruction", 1.0), ("xorb", 1.0), ("xet_token", 7.0)])
def test_a_429_on_the_xet_path_is_one_attempt_and_the_retrier_waits(hub, tmp_path, endpoint, wait):
    """hf_xet's own retries are off: the CAS's 429 (or the Hub's for the Xet token) comes back to the Retrier,
    which classifies it and tries again - after the Hub's Retry-After when the library saw the response, after
    its own backoff when only hf_xet's message came back (it carries no headers)."""
    from tools.hub.hubserver import COMMIT_B, MINILM_REPO
    step = _hub.Hub(hub.url, None, MINILM_REPO, "model")
    listing = step.list_tree(COMMIT_B)
    expected = {path: entry.get("lfs_sha256") or entry["blob_id"] for path, entry in listing.items()}
    lfs = sorted(path for path, entry in listing.items() if entry.get("lfs_sha256"))
    hub.reset()
    hub.set_faults([{"kind": "429", "count": 1, "endpoint": endpoint, "retry_after": 7}])
    # The library keeps Xet tokens per process: one from an earlier test in this worker would skip the token request
    # (the module's downloads each run in a child of their own, so there it never outlives a run).
    from huggingface_hub.utils import _xet
    _xet.XET_CONNECTION_INFO_CACHE.clear()
    clock = FakeClock()
    r = hub_retrier(clock)
    done = r.call(step.download, COMMIT_B, str(tmp_path / "cache"), lfs, None, expected)
    assert os.path.isfile(os.path.join(done["path"], lfs[0]))
    assert done["digests"][expected[lfs[0]]][0] == expected[lfs[0]]  # hashed while hf_xet wrote it
    assert clock.sleeps == [wait] and r.retries_used == 1


# --- download_memory: hf_xet's own settings, in the download process only ----------------------------------------

def test_a_cap_becomes_hf_xets_buffer_settings_in_bytes_within_its_own_invariant():
    cap = 512 * 1024 ** 2
    env = _hub.download_memory_env(cap)
    limit, size, perfile = (int(env[k]) for k in (_hub.XET_BUFFER_LIMIT, _hub.XET_BUFFER_SIZE,
                                                   _hub.XET_BUFFER_PERFILE))
    assert limit == cap // 2 and size + 8 * perfile <= limit  # 8: hf_xet's concurrent file downloads
    assert int(env[_hub.XET_MIN_PREFETCH]) <= limit
    assert all(value.isdigit() for value in env.values())  # hf_xet ignores '512M' without a word
    assert _hub.download_memory_env(0) == {}


def test_hf_xet_reads_the_cap_and_the_high_performance_preset_goes():
    environ = {_hub.XET_HIGH_PERFORMANCE: "1", "PATH": os.environ.get("PATH", "")}
    _hub.apply_download_memory(256 * 1024 ** 2, environ)
    assert _hub.XET_HIGH_PERFORMANCE not in environ
    code = ("import hf_xet; c = hf_xet.XetConfig(); print(c.get('reconstruction.download_buffer_limit'),"
            " c.get('reconstruction.download_buffer_size'), c.get('reconstruction.download_buffer_perfile_size'))")
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert [int(v) for v in out.stdout.split()] == [128 * 1024 ** 2, 32 * 1024 ** 2, 8 * 1024 ** 2]
    uncapped = {_hub.XET_HIGH_PERFORMANCE: "1"}
    assert _hub.apply_download_memory(0, uncapped) == {} and uncapped == {_hub.XET_HIGH_PERFORMANCE: "1"}


# --- hashing in the write path ------------------------------------------------------------------------------------

DATA = random.Random(26).randbytes(3 * 1024 * 1024 + 17)  # the same in every pytest worker
SHA256 = hashlib.sha256(DATA).hexdigest()
GIT = hashlib.sha1(b"blob %d\0" % len(DATA) + DATA).hexdigest()


@pytest.mark.parametrize("name", [SHA256, GIT], ids=["sha256", "git"])
def test_the_writer_hashes_what_it_writes_as_the_content_check_reads_it(tmp_path, name):
    path = tmp_path / ("%s.0123abcd.incomplete" % name)
    digests = {}
    with open(path, "wb") as raw:
        writer = _hub.HashingWriter(raw, _hub.blob_of_partial(path), len(DATA))
        for start in range(0, len(DATA), 1 << 20):
            writer.write(DATA[start:start + (1 << 20)])
        writer.record(digests)
    st = os.stat(path)
    assert digests == {name: [name, st.st_dev, st.st_ino, len(DATA)]}
    assert _cache.blob_digest(str(path), git=len(name) == 40) == name


def test_a_seek_a_short_body_or_an_unknown_name_leaves_the_file_to_the_read_back(tmp_path):
    def written(name, size, seek=False, data=DATA):
        with open(tmp_path / "f", "wb") as raw:
            writer = _hub.HashingWriter(raw, name, size)
            writer.write(data)
            if seek:
                writer.seek(0)
                writer.truncate()
                writer.write(data)
            digests = {}
            writer.record(digests)
            return digests

    assert written(SHA256, len(DATA))
    assert written(SHA256, len(DATA), seek=True) == {}  # the library restarted the body: not front to back
    assert written(SHA256, len(DATA), data=DATA[:-1]) == {}
    assert written(GIT, None) == {} and written("model.safetensors", len(DATA)) == {}


def test_http_get_is_wrapped_so_the_library_writes_through_the_hash(tmp_path):
    def library_http_get(url, temp_file, *, expected_size=None, **_kw):
        assert url == "http://hub/f"
        for start in range(0, len(DATA), 10 << 20):
            temp_file.write(DATA[start:start + (10 << 20)])

    digests = {}
    path = tmp_path / ("%s.89abcdef.incomplete" % SHA256)
    with open(path, "wb") as f:
        _hub.hashing_http_get(library_http_get, digests)("http://hub/f", f, expected_size=len(DATA))
    assert digests[SHA256][0] == SHA256 and path.read_bytes() == DATA


def test_the_tail_hasher_follows_a_file_written_front_to_back_while_it_grows(tmp_path):
    path = tmp_path / ("%s.0123abcd.incomplete" % SHA256)
    path.write_bytes(b"")
    hasher = _hub.TailHasher(path, SHA256, len(DATA)).start()
    with open(path, "r+b") as out:  # as hf_xet writes: in order, in pieces, while the hasher follows
        for start in range(0, len(DATA), 256 * 1024):
            out.write(DATA[start:start + 256 * 1024])
            out.flush()
            time.sleep(0.005)
    digests = {}
    hasher.finish(digests)
    st = os.stat(path)
    assert digests == {SHA256: [SHA256, st.st_dev, st.st_ino, len(DATA)]}


def test_a_hole_the_writer_fills_later_gives_a_digest_that_does_not_pass(tmp_path):
    path = tmp_path / ("%s.0123abcd.incomplete" % SHA256)
    half = len(DATA) // 2
    with open(path, "wb") as out:
        out.seek(half)
        out.write(DATA[half:])  # the second half first: zeros below it until the first half lands
    hasher = _hub.TailHasher(path, SHA256, len(DATA)).start()
    time.sleep(0.3)
    with open(path, "r+b") as out:
        out.write(DATA[:half])
    digests = {}
    hasher.finish(digests)
    assert digests[SHA256][0] != SHA256  # check_content then reads the file back before judging it
    unfinished = _hub.TailHasher(path, SHA256, len(DATA)).start()
    unfinished.finish(None)  # a download that failed records nothing, and the file is closed either way
