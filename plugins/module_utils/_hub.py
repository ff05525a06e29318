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

import email.utils
import errno
import multiprocessing
import time
import traceback

# Outcome kinds. RETRYABLE ones are tried again while retries and time remain.
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
UNREACHABLE = "unreachable"
TRANSIENT = "transient"
TIMEOUT = "timeout"
NOT_FOUND = "repo_not_found"
REVISION_NOT_FOUND = "revision_not_found"
ENTRY_NOT_FOUND = "entry_not_found"
GATED = "gated"
UNAUTHORIZED = "unauthorized"
DISK_FULL = "disk_full"
NOT_WRITABLE = "not_writable"
OTHER = "other"
RETRYABLE = frozenset((RATE_LIMITED, SERVER_ERROR, UNREACHABLE, TRANSIENT))

MAX_BACKOFF = 60.0


class HubFailure(Exception):
    """A network step that failed for good (or ran out of retries or time)."""

    def __init__(self, kind, message, status=None, attempts=1):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.attempts = attempts


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
    """Map a huggingface_hub / httpx / OS exception to (kind, status, retry_after, message)."""
    from huggingface_hub import errors as hf_errors

    message = "%s: %s" % (type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    response = _response_of(exc)
    status = response.status_code if response is not None else None
    retry_after = response.headers.get("Retry-After") if response is not None else None

    chain, cursor = [], exc
    while cursor is not None and len(chain) < 10:
        chain.append(cursor)
        cursor = cursor.__cause__ or cursor.__context__

    def has(cls):
        return any(isinstance(item, cls) for item in chain)

    if has(hf_errors.GatedRepoError):
        kind = GATED
    elif has(hf_errors.RevisionNotFoundError):
        kind = REVISION_NOT_FOUND
    elif has(hf_errors.RepositoryNotFoundError):
        kind = NOT_FOUND
    elif has(hf_errors.RemoteEntryNotFoundError):
        kind = ENTRY_NOT_FOUND
    elif status == 429:
        kind = RATE_LIMITED
    elif status is not None and status >= 500:
        kind = SERVER_ERROR
    elif status in (401, 403):
        kind = UNAUTHORIZED
    elif status == 408:
        kind = TRANSIENT
    elif any(isinstance(item, OSError) and item.errno == errno.ENOSPC for item in chain):
        kind = DISK_FULL
    elif any(isinstance(item, PermissionError) for item in chain):
        kind = NOT_WRITABLE
    elif any(type(item).__name__ in ("ConnectError", "ProxyError") for item in chain):
        kind = UNREACHABLE
    elif any(type(item).__name__ in ("ReadError", "RemoteProtocolError", "ReadTimeout", "ConnectTimeout",
                                     "WriteError", "PoolTimeout", "TimeoutException", "ReadTimeoutError")
             for item in chain) or "Consistency check failed" in str(exc):
        kind = TRANSIENT
    else:
        kind = OTHER
    return kind, status, retry_after, message


def _child(conn, func, args):
    try:
        conn.send(("ok", func(*args)))
    except BaseException as exc:  # report everything; the parent decides
        try:
            kind, status, retry_after, message = classify(exc)
        except Exception:
            kind, status, retry_after, message = OTHER, None, None, traceback.format_exc(limit=1)
        conn.send(("error", (kind, status, retry_after, message)))
    finally:
        conn.close()


def run_with_deadline(func, args, seconds):
    """Run func(*args) in a forked child; kill it if it has not answered within `seconds`."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child, func, args), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(max(0.0, seconds)):
            process.kill()
            process.join(5)
            raise HubFailure(TIMEOUT, "no answer from the Hub within %d seconds" % max(0, round(seconds)))
        try:
            status, payload = parent.recv()
        except EOFError:
            process.join(5)
            raise HubFailure(OTHER, "the download process died (exit code %s)" % process.exitcode)
    finally:
        parent.close()
    process.join(5)
    if status == "ok":
        return payload
    kind, code, retry_after, message = payload
    failure = HubFailure(kind, message, status=code)
    failure.retry_after = retry_after
    raise failure


class Retrier:
    """Retry network steps with exponential backoff, honouring Retry-After, inside one total deadline."""

    def __init__(self, retries, timeout, backoff=1.0, sleep=time.sleep, clock=time.monotonic):
        self.retries = retries
        self.deadline = clock() + timeout
        self.timeout = timeout
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        self.retries_used = 0

    def remaining(self):
        return self.deadline - self.clock()

    def call(self, func, *args):
        attempt = 0
        while True:
            remaining = self.remaining()
            if remaining <= 0:
                raise HubFailure(TIMEOUT, "gave up after the %ds timeout" % self.timeout, attempts=attempt)
            try:
                return run_with_deadline(func, args, remaining)
            except HubFailure as failure:
                attempt += 1
                failure.attempts = attempt
                if failure.kind == TIMEOUT:
                    failure.message = ("no answer from the Hub within the %ds timeout (after %d attempt(s))"
                                       % (self.timeout, attempt))
                    raise
                if failure.kind not in RETRYABLE or attempt > self.retries:
                    raise
                wait = parse_retry_after(getattr(failure, "retry_after", None))
                if wait is None:
                    wait = min(MAX_BACKOFF, self.backoff * (2 ** (attempt - 1)))
                if wait >= self.remaining():
                    failure.message += (" (the Hub asked to wait %ds, beyond the %ds timeout)"
                                        % (round(wait), self.timeout))
                    raise
                self.retries_used += 1
                self.sleep(wait)


# --- Steps run inside the child process (they import huggingface_hub there) ---------------------------

def _api(endpoint, token):
    from huggingface_hub import HfApi
    return HfApi(endpoint=endpoint, token=token, library_name="justnews.huggingface")


def resolve_commit(endpoint, token, repo_id, repo_type, revision):
    info = _api(endpoint, token).repo_info(repo_id=repo_id, repo_type=repo_type, revision=revision)
    return info.sha


def list_tree(endpoint, token, repo_id, repo_type, commit):
    """The repository listing at a commit, in the library's tree-cache format."""
    from huggingface_hub.hf_api import RepoFile
    files = {}
    api = _api(endpoint, token)
    for item in api.list_repo_tree(repo_id=repo_id, repo_type=repo_type, revision=commit, recursive=True):
        if not isinstance(item, RepoFile):
            continue
        entry = {"size": item.size, "blob_id": item.blob_id}
        if item.lfs is not None:
            entry["lfs_sha256"] = item.lfs.sha256
            entry["lfs_size"] = item.lfs.size
        files[item.path] = entry
    return files


def download(endpoint, token, repo_id, repo_type, commit, cache_dir, allow_patterns, ignore_patterns):
    from huggingface_hub import snapshot_download
    return snapshot_download(repo_id=repo_id, repo_type=repo_type, revision=commit, cache_dir=cache_dir,
                             endpoint=endpoint, token=token, allow_patterns=allow_patterns,
                             ignore_patterns=ignore_patterns)
