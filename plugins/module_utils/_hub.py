# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Talk to the Hub through huggingface_hub under a hard deadline, with retries.

huggingface_hub sets no timeout on some calls and retries only some of them (model_info never), so every
network step runs in a forked child that is killed at the deadline, and failures come back as plain data
that the module can classify and retry.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import ctypes
import email.utils
import errno
import hashlib
import inspect
import multiprocessing
import os
import re
import signal
import threading
import time
import traceback
from urllib.parse import unquote, urlsplit

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors

# The kinds (_errors) tried again while retries and time remain.
RETRYABLE = frozenset((_errors.RATE_LIMITED, _errors.SERVER_ERROR, _errors.UNREACHABLE, _errors.TRANSIENT))

MAX_BACKOFF = 60.0


class HubFailure(_errors.Failure):
    """A network step that failed for good (or ran out of retries or time): caught apart by _snapshot, which words
    it with the step and the attempts."""

    def __init__(self, kind, msg, status=None, attempts=1):
        super().__init__(kind, msg)
        self.status = status
        self.attempts = attempts
        self.retry_after = None  # the Retry-After header as sent
        self.ratelimit = None  # (seconds until the window resets, remaining, policy) from the RateLimit headers


class UnsafeRemote(Exception):
    """The Hub answered with a name or id that would lead outside the cache, or contradicts its listing."""


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def parse_ratelimit(headers):
    """(seconds until reset, requests remaining, policy text) from the Hub's RateLimit headers, else None.

    The Hub sends `RateLimit: "api";r=0;t=55` and `RateLimit-Policy: "fixed window";"api";q=500;w=300`;
    huggingface_hub's own parser reads them, so the module reads them exactly as the library does.
    """
    from huggingface_hub.utils import parse_ratelimit_headers

    if not headers:
        return None
    info = parse_ratelimit_headers(headers)
    if info is None:
        return None
    policy = '"%s" r=%d' % (info.resource_type, info.remaining)
    if info.limit is not None and info.window_seconds is not None:
        policy += ", %d requests per %ds" % (info.limit, info.window_seconds)
    return info.reset_in_seconds, info.remaining, policy


# hf_xet's errors carry no response object, only text (xet_pkg XetError): ConnectionError for network failures,
# 429 and 5xx alike, told apart by the message's prefix; a failure inside a download task comes as RuntimeError
# ("Task error: ... CAS Client Error: Request error: HTTP status client error (429 Too Many Requests) ...").
# Its retries are off in the download child, so these reach the Retrier.
_XET_KINDS = (("Rate limited:", _errors.RATE_LIMITED), ("Server error:", _errors.SERVER_ERROR),
              ("Network error:", _errors.UNREACHABLE), ("Timeout:", _errors.TRANSIENT),
              ("Authentication error:", _errors.UNAUTHORIZED))
_XET_WRITER_DROPPED = "Data sender was dropped before sending data"
_XET_OS_ERROR_RE = re.compile(r"\(os error (\d+)\)")
_XET_STATUS_RE = re.compile(r"HTTP status (?:client|server) error \((\d{3})[ )]|\((\d{3}) [A-Z][a-z]")
_XET_RETRY_AFTER_RE = re.compile(r"retry-after[\"']?\s*[:=]\s*[\"']?(\d+)", re.I)


def _xet_status_kind(status):
    if status == 429:
        return _errors.RATE_LIMITED
    if status >= 500:
        return _errors.SERVER_ERROR
    if status in (401, 403, 408):
        # The CAS refused its short-lived token or a presigned URL, not the Hub token: hf_xet renews a token by
        # its expiry time only, and the next attempt's process asks the Hub for a fresh one.
        return _errors.TRANSIENT
    return None


def classify_xet(exc):
    """(kind, status, retry_after) of an hf_xet error, or None when exc did not come from hf_xet."""
    name = type(exc).__name__
    text = str(exc).strip()
    match = _XET_STATUS_RE.search(text)
    status = int(match.group(1) or match.group(2)) if match else None
    os_error = _XET_OS_ERROR_RE.search(text)
    if os_error and int(os_error.group(1)) in (errno.ENOSPC, errno.EACCES, errno.EROFS):
        # hf_xet writes the file itself and reports the OS error in its text ("IO Error: ... (os error 28)").
        return (_errors.DISK_FULL if int(os_error.group(1)) == errno.ENOSPC else _errors.NOT_WRITABLE), None, None
    if name == "XetAuthenticationError":
        kind = _errors.UNAUTHORIZED
    elif name == "XetObjectNotFoundError":
        kind = _errors.ENTRY_NOT_FOUND
    elif isinstance(exc, RuntimeError) and _XET_WRITER_DROPPED in text and status is None:
        # The fetch feeding hf_xet's file writer failed and the writer's error won the race to be reported (seen
        # about once in five runs against a CAS failing with 500): the cause is unsaid, a new attempt may tell.
        kind = _errors.TRANSIENT
    elif isinstance(exc, (ConnectionError, TimeoutError, RuntimeError)):
        kind = next((k for prefix, k in _XET_KINDS if text.startswith(prefix)), None)
        if status is not None and (kind is None or isinstance(exc, RuntimeError)):
            kind = _xet_status_kind(status) or kind
        if kind is None or (isinstance(exc, RuntimeError) and status is None and not text.startswith(
                tuple(prefix for prefix, _k in _XET_KINDS))):
            return None
    else:
        return None
    retry_after = _XET_RETRY_AFTER_RE.search(text)
    return kind, status, retry_after.group(1) if retry_after else None


def _response_of(exc):
    """The HTTP response behind an exception, following the library's wrapping (__cause__/__context__)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        if response is not None and getattr(response, "status_code", None) is not None:
            return response
        exc = exc.__cause__ or exc.__context__
    return None


def classify(exc):
    """Map a huggingface_hub / httpx / hf_xet / OS exception to (kind, status, retry_after, message, ratelimit).

    retry_after is the Retry-After header as sent; ratelimit is parse_ratelimit() of the same response.
    """
    from huggingface_hub import errors as hf_errors

    message = "%s: %s" % (type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    response = _response_of(exc)
    status = response.status_code if response is not None else None
    retry_after = response.headers.get("Retry-After") if response is not None else None
    ratelimit = parse_ratelimit(response.headers) if response is not None else None

    chain, cursor = [], exc
    while cursor is not None and len(chain) < 10:
        chain.append(cursor)
        cursor = cursor.__cause__ or cursor.__context__

    def has(cls):
        return any(isinstance(item, cls) for item in chain)

    xet = next((found for found in map(classify_xet, chain) if found), None) if response is None else None
    if xet is not None:
        kind, status, retry_after = xet
        message = next("%s: %s" % (type(item).__name__, str(item).strip().splitlines()[0])
                       for item in chain if classify_xet(item))
    elif has(UnsafeRemote):
        kind = _errors.UNSAFE_LISTING
        message = str(next(item for item in chain if isinstance(item, UnsafeRemote)))
    elif "Consistency check failed" in str(exc):
        kind = _errors.INTEGRITY
    elif has(hf_errors.GatedRepoError):
        kind = _errors.GATED
    elif has(hf_errors.RevisionNotFoundError):
        kind = _errors.REVISION_NOT_FOUND
    elif has(hf_errors.RepositoryNotFoundError):
        kind = _errors.REPO_NOT_FOUND
    elif has(hf_errors.RemoteEntryNotFoundError):
        kind = _errors.ENTRY_NOT_FOUND
    elif status == 429:
        kind = _errors.RATE_LIMITED
    elif status is not None and status >= 500:
        kind = _errors.SERVER_ERROR
    elif status in (401, 403):
        kind = _errors.UNAUTHORIZED
    elif status == 408:
        kind = _errors.TRANSIENT
    elif any(isinstance(item, OSError) and item.errno == errno.ENOSPC for item in chain):
        kind = _errors.DISK_FULL
    elif any(isinstance(item, PermissionError) for item in chain):
        kind = _errors.NOT_WRITABLE
    elif any(type(item).__name__ in ("ConnectError", "ProxyError") for item in chain):
        kind = _errors.UNREACHABLE
    elif any(type(item).__name__ in ("ReadError", "RemoteProtocolError", "ReadTimeout", "ConnectTimeout",
                                     "WriteError", "PoolTimeout", "TimeoutException", "ReadTimeoutError")
             for item in chain):
        kind = _errors.TRANSIENT
    else:
        kind = _errors.OTHER
    return kind, status, retry_after, message, ratelimit


def _die_with_parent(parent_pid):
    """Ask the kernel to kill this process when the module process goes away, however it goes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


XET_SINGLE_ATTEMPT = {"HF_XET_CLIENT_RETRY_MAX_ATTEMPTS": "0"}  # the number of retries after the first try


def _single_attempt_library():
    """Make every request of huggingface_hub and hf_xet a single attempt: the module's Retrier is the only retry
    layer. hf_xet reads its settings from the environment when its session starts, after this."""
    os.environ.update(XET_SINGLE_ATTEMPT)
    from huggingface_hub import file_download
    from huggingface_hub.utils import _http

    for func, key in ((_http._http_backoff_base, "max_retries"), (_http.http_backoff, "max_retries"),
                      (_http.http_stream_backoff, "max_retries"), (file_download.http_get, "_nb_retries")):
        func = inspect.unwrap(func)
        if func.__kwdefaults__ and key in func.__kwdefaults__:
            func.__kwdefaults__[key] = 0


# --- memory of the download ------------------------------------------------------------------------------

MIN_DOWNLOAD_MEMORY = 64 * 1024 ** 2
XET_BUFFER_LIMIT = "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT"
XET_BUFFER_SIZE = "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE"
XET_BUFFER_PERFILE = "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE"
XET_MIN_PREFETCH = "HF_XET_RECONSTRUCTION_MIN_PREFETCH_BUFFER"
XET_HIGH_PERFORMANCE = "HF_XET_HIGH_PERFORMANCE"


def download_memory_env(cap):
    """hf_xet's own settings (environment variables, in bytes: hf_xet reads a bare number as bytes and silently
    ignores '512M') that hold a download's buffers within `cap` bytes; {} for 0 (hf_xet sizes them from the
    machine's memory: 1/4, 1/16 and 1/64 of it). Half the cap is the buffers' hard limit, the other half is left
    for the interpreter, the library and the pieces in flight; the shares keep hf_xet's own invariant
    (size + 8 concurrent files x per-file share <= limit)."""
    if not cap:
        return {}
    limit = cap // 2
    return {XET_BUFFER_LIMIT: str(limit), XET_BUFFER_SIZE: str(limit // 4), XET_BUFFER_PERFILE: str(limit // 16),
            XET_MIN_PREFETCH: str(limit // 4)}


def apply_download_memory(cap, environ=None):
    """Set the cap in `environ` (the download child's own os.environ); the high-performance preset would
    override an explicit cap (hf_xet applies it after the environment), so it goes when a cap is set."""
    environ = os.environ if environ is None else environ
    settings = download_memory_env(cap)
    if settings:
        environ.pop(XET_HIGH_PERFORMANCE, None)
        environ.update(settings)
    return settings


# --- checksums in the write path ------------------------------------------------------------------------------

_BLOB_NAME_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def blob_hasher(name, size):
    """The hash object whose hexdigest a blob named `name` must have: SHA-256 for a 64-hex name (LFS), the git
    blob id (SHA-1 over "blob <size>\\0" and the content) for a 40-hex one; None for any other name or a git blob
    of unknown size."""
    if not _BLOB_NAME_RE.match(name or ""):
        return None
    if len(name) == 64:
        return hashlib.sha256()
    if size is None:
        return None
    return hashlib.sha1(b"blob %d\0" % int(size))


def blob_of_partial(path):
    """The blob name behind the library's partial file `<blob>.<8 hex>.incomplete` (or `<blob>.incomplete`)."""
    return os.path.basename(str(path)).split(".", 1)[0]


class HashingWriter:
    """A file object that hashes, in order, every byte written through it, for the blob `name` of `size` bytes.

    The digest is only worth anything when the file was written front to back: a seek or truncate (the library
    restarts a body the server sent whole after a ranged request) spoils it, and hexdigest() is then None, as it
    is when the bytes written are not `size` - the file is then checked by reading it back."""

    def __init__(self, raw, name, size):
        self.raw = raw
        self.name = name
        self.size = size
        self.written = 0
        self.spoiled = False
        self._hash = blob_hasher(name, size)

    def write(self, data):
        count = self.raw.write(data)
        if self._hash is not None:
            self._hash.update(data)
        self.written += len(data)
        return count

    def seek(self, *args):
        self.spoiled = True
        return self.raw.seek(*args)

    def truncate(self, *args):
        self.spoiled = True
        return self.raw.truncate(*args)

    def __getattr__(self, attribute):
        return getattr(self.raw, attribute)

    def hexdigest(self):
        if self._hash is None or self.spoiled or (self.size is not None and self.written != self.size):
            return None
        return self._hash.hexdigest()

    def record(self, digests):
        """Put [digest, device, inode, size] of the written file into `digests` under the blob's name: the
        digest vouches only for that file (the module compares what the snapshot links to with it), not for a
        store entry the library may link instead."""
        digest = self.hexdigest()
        if digest is None:
            return
        self.raw.flush()
        st = os.fstat(self.raw.fileno())
        digests[self.name] = [digest, st.st_dev, st.st_ino, self.written]


def _child(conn, parent_pid, func, args):
    _die_with_parent(parent_pid)
    try:
        _single_attempt_library()
        conn.send(("ok", func(*args)))
    except BaseException as exc:  # report everything; the parent decides
        try:
            outcome = classify(exc)
        except Exception:
            outcome = _errors.OTHER, None, None, traceback.format_exc(limit=1), None
        conn.send(("error", outcome))
    finally:
        conn.close()


def run_with_deadline(func, args, seconds):
    """Run func(*args) in a forked child; kill it if it has not answered within `seconds`."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child, os.getpid(), func, args), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(max(0.0, seconds)):
            process.kill()
            process.join(5)
            raise HubFailure(_errors.TIMEOUT, "no answer from the Hub within %d seconds" % max(0, round(seconds)))
        try:
            status, payload = parent.recv()
        except EOFError:
            process.join(5)
            raise HubFailure(_errors.OTHER, "the download process died (exit code %s)" % process.exitcode)
    finally:
        parent.close()
    process.join(5)
    if status == "ok":
        return payload
    kind, code, retry_after, message, ratelimit = payload
    failure = HubFailure(kind, message, status=code)
    failure.retry_after = retry_after
    failure.ratelimit = ratelimit
    raise failure


def asked_wait(failure):
    """(seconds, why) the Hub asked to wait before the next try, or (None, None).

    Retry-After wins (either form); a 429 without it waits for the RateLimit window to reset (its t=).
    """
    asked = parse_retry_after(failure.retry_after)
    if asked is not None:
        return asked, "Retry-After"
    if failure.kind == _errors.RATE_LIMITED and failure.ratelimit is not None:
        reset, _remaining, policy = failure.ratelimit
        return float(reset), "RateLimit %s, t=%d" % (policy, reset)
    return None, None


class Retrier:
    """The one retry layer: exponential backoff or the Hub's Retry-After / RateLimit reset, inside one total
    deadline."""

    def __init__(self, retries, timeout, backoff=1.0, sleep=time.sleep, clock=time.monotonic):
        self.retries = retries
        self.deadline = clock() + timeout
        self.timeout = timeout
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        self.retries_used = 0
        self.waited_for_hub = None  # the last wait the Hub asked for, in seconds

    def remaining(self):
        return self.deadline - self.clock()

    def call(self, func, *args):
        attempt, said = 0, None
        while True:
            try:
                return run_with_deadline(func, args, self.remaining())
            except HubFailure as caught:
                attempt += 1
                failure = caught
                if _XET_WRITER_DROPPED in failure.msg and said is not None:
                    # hf_xet reported its writer's end instead of the answer behind it: the cause an earlier
                    # attempt was told (a 500, a 429) is the one to report and to retry on.
                    failure = said
                elif failure.status is not None:
                    said = failure
                failure.attempts = attempt
                if failure.kind == _errors.TIMEOUT:
                    failure.msg = ("no answer from the Hub within the %ds timeout (attempt %d)"
                                   % (self.timeout, attempt))
                    raise failure
                if failure.kind not in RETRYABLE or attempt > self.retries:
                    raise failure
                asked, why = asked_wait(failure)
                if asked is not None:
                    self.waited_for_hub = asked
                wait = asked if asked is not None else min(MAX_BACKOFF, self.backoff * (2 ** (attempt - 1)))
                if wait >= self.remaining():
                    if asked is not None:
                        failure.msg += (" (the Hub asked to wait %ds (%s), longer than the %ds left of"
                                        " the timeout)" % (round(asked), why, max(0, round(self.remaining()))))
                    else:
                        failure.msg += (" (no time left for retry %d within the %ds timeout)"
                                        % (attempt, self.timeout))
                    raise failure
                self.retries_used += 1
                self.sleep(wait)


# --- Steps run inside the child process (they import huggingface_hub there) ---------------------------

class Hub:
    """One repository on one Hub or mirror: the network steps of a run, bound to their target once."""

    def __init__(self, endpoint, token, repo_id, repo_type):
        self.endpoint = endpoint
        self.token = token
        self.repo_id = repo_id
        self.repo_type = repo_type

    def _api(self):
        from huggingface_hub import HfApi
        return HfApi(endpoint=self.endpoint, token=self.token, library_name="justnews.huggingface")

    def resolve_commit(self, revision):
        return self._api().repo_info(repo_id=self.repo_id, repo_type=self.repo_type, revision=revision).sha

    def list_tree(self, commit):
        """The repository listing at a commit, in the library's tree-cache format."""
        from huggingface_hub.hf_api import RepoFile
        files = {}
        for item in self._api().list_repo_tree(repo_id=self.repo_id, repo_type=self.repo_type, revision=commit,
                                               recursive=True):
            if not isinstance(item, RepoFile):
                continue
            entry = {"size": item.size, "blob_id": item.blob_id}
            if item.lfs is not None:
                entry["lfs_sha256"] = item.lfs.sha256
                entry["lfs_size"] = item.lfs.size
            if getattr(item, "xet_hash", None):
                entry["xet_hash"] = item.xet_hash  # as the library's own tree cache keeps it
            files[item.path] = entry
        return files

    def download(self, commit, cache_dir, allow_patterns, ignore_patterns, expected, received=None, memory=0):
        """snapshot_download of a commit, each file's metadata checked against the listing before use; returns
        {"path": the snapshot folder, "digests": {blob: [hexdigest, device, inode, size]}} of the blobs hashed
        while their bytes arrived.

        `expected` maps file names to the blob name the listing promises. The library names blobs and snapshot
        folders after the ETag and X-Repo-Commit headers without checking them, so a header that is not the
        listed id would put files anywhere: it is refused before the library acts on it.

        `received`, a Received made before the fork, counts the bytes this attempt took from the network.
        `memory` caps hf_xet's download buffers (bytes, 0: hf_xet's own sizing), in this process only.
        """
        from huggingface_hub import file_download, snapshot_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        apply_download_memory(memory)
        real_metadata = file_download.get_hf_file_metadata
        marker = "/resolve/%s/" % commit

        def checked_metadata(url, *a, **kw):
            try:
                meta = real_metadata(url, *a, **kw)
            except RemoteEntryNotFoundError as exc:
                # The library makes a folder named after this header to remember the missing file.
                got = exc.response.headers.get("X-Repo-Commit") if exc.response is not None else None
                if got is not None and got != commit:
                    raise UnsafeRemote("the Hub answered a missing file with commit %r, not the requested %s"
                                       % (got, commit)) from exc
                raise
            path = urlsplit(url).path
            name = unquote(path.split(marker, 1)[1]) if marker in path else None
            if meta.commit_hash != commit:
                raise UnsafeRemote("the Hub answered %s with commit %r, not the requested %s"
                                   % (name or url, meta.commit_hash, commit))
            if name not in expected or meta.etag != expected[name]:
                raise UnsafeRemote("the Hub's ETag for %r is %r, not the object id %r of its listing"
                                   % (name, meta.etag, expected.get(name)))
            return meta

        digests = {}
        file_download.get_hf_file_metadata = checked_metadata
        file_download.http_get = hashing_http_get(file_download.http_get, digests)
        file_download.xet_get = hashing_xet_get(file_download.xet_get, digests)
        extra = {"tqdm_class": received.counting_bars()} if received is not None else {}
        path = snapshot_download(repo_id=self.repo_id, repo_type=self.repo_type, revision=commit,
                                 cache_dir=cache_dir, endpoint=self.endpoint, token=self.token,
                                 allow_patterns=allow_patterns, ignore_patterns=ignore_patterns, **extra)
        return {"path": path, "digests": digests}


def hashing_http_get(real_http_get, digests):
    """file_download.http_get with the SHA-256 (or git blob id) of the body computed as it is written to the
    library's partial file; the digest lands in `digests` under the blob's name once the body is complete."""

    def http_get(url, temp_file, *args, **kwargs):
        name = blob_of_partial(getattr(temp_file, "name", ""))
        writer = HashingWriter(temp_file, name, kwargs.get("expected_size"))
        real_http_get(url, writer, *args, **kwargs)
        writer.record(digests)

    return http_get


class TailHasher:
    """Hashes a file that another writer fills front to back, following it while it grows, from a thread: the
    digest is ready when the writer is done, with no pass over the file after the download.

    hf_xet writes a file's bytes in order, growing it (measured: its size and allocated blocks rise together), so
    every byte below the size it shows is final. Should a writer ever leave a hole to fill later, the digest
    simply does not match and the module reads the file back before it judges it (see check_content)."""

    READ = 8 * 1024 * 1024
    IDLE = 0.05

    def __init__(self, path, name, size):
        self.fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW)
        self.name = name
        self.size = size
        self.offset = 0
        self.spoiled = False
        self._hash = blob_hasher(name, size)
        self._buffer = bytearray(self.READ)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="hf_snapshot-hash", daemon=True)

    def start(self):
        if self._hash is not None:
            self._thread.start()
        return self

    def _step(self):
        """Hash what arrived since the last step; False when nothing did."""
        length = os.fstat(self.fd).st_size
        if length < self.offset:
            self.spoiled = True  # truncated under us: the digest no longer describes the file
        if self.spoiled or length == self.offset:
            return False
        view = memoryview(self._buffer)[:min(self.READ, length - self.offset)]
        got = os.preadv(self.fd, [view], self.offset)
        self._hash.update(view[:got])
        self.offset += got
        return got > 0

    def _follow(self):
        try:
            while not self._done.is_set():
                if not self._step():
                    self._done.wait(self.IDLE)
            while self._step():
                pass
        except OSError:
            self.spoiled = True

    def finish(self, digests=None):
        """Stop following (the writer is done), hash the rest, and with `digests` record the result as
        HashingWriter.record does; always closes the file."""
        self._done.set()
        try:
            if self._thread.is_alive():
                self._thread.join()
            if digests is None or self._hash is None or self.spoiled or self.offset != self.size:
                return
            st = os.fstat(self.fd)
            if st.st_size == self.offset:
                digests[self.name] = [self._hash.hexdigest(), st.st_dev, st.st_ino, self.offset]
        finally:
            os.close(self.fd)


def hashing_xet_get(real_xet_get, digests):
    """file_download.xet_get with the file hashed by a TailHasher while hf_xet writes it (hf_xet's own parallel
    writer stays: its ordered stream API, with the bytes passed through Python, was measured slower and took
    more CPU and memory for the same file)."""

    def xet_get(*, incomplete_path, expected_size=None, **kwargs):
        hasher = TailHasher(incomplete_path, blob_of_partial(incomplete_path), expected_size).start()
        finished = False
        try:
            real_xet_get(incomplete_path=incomplete_path, expected_size=expected_size, **kwargs)
            finished = True
        finally:
            hasher.finish(digests if finished else None)

    return xet_get


class Received:
    """The bytes a download received, as the library counts them for its own (silenced) progress bar of
    transferred bytes - network bytes, for Xet and plain HTTP alike. Counted in the child process that downloads,
    read by the module's process: the counter is shared memory made before the fork, written only by the child
    (under a lock of its own threads) and read without a lock, so a reader never blocks the fork."""

    BAR = "huggingface_hub.snapshot_download.transfer"

    def __init__(self):
        self._value = multiprocessing.get_context("fork").RawValue("q", 0)

    @property
    def bytes(self):
        return self._value.value

    def counting_bars(self):
        """A progress-bar class for snapshot_download (in the child) that adds to the counter; zeroes it, as
        each attempt counts anew (what an earlier one completed is in the cache)."""
        from huggingface_hub.utils import tqdm as hf_tqdm

        value, lock = self._value, threading.Lock()
        value.value = 0
        bar_name = self.BAR

        class CountingBar(hf_tqdm):  # pylint: disable=too-many-ancestors
            def __init__(self, *args, **kwargs):
                self.counted = kwargs.get("name") == bar_name
                super().__init__(*args, **kwargs)

            def update(self, n=1):
                if self.counted and n:
                    with lock:
                        value.value += int(n)
                return super().update(n)

        return CountingBar
