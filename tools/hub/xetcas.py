"""The Xet side of the test Hub: a content-addressed store (CAS) in the shape of xet-core's public spec.

The store's content is made by hf_xet's own upload routine: the Hub runs `hf_xet.upload_files` in a child
process against its own CAS, which receives serialized xorbs (`POST /v1/xorbs/default/<hash>`) and a shard
(`POST /v1/shards`). The shard's file section gives each file's reconstruction terms, its CAS section the xorbs'
chunk counts; the xorbs' chunk headers give the byte offsets that downloads ask for by range. So chunking,
compression and every hash are the real client's, and the real client downloads from the result.

A store lives in a directory that survives restarts (files are named by content), so the multi-GiB test file is
chunked once per machine (about 20 s and its size on disk for the 2 GiB file, whose blocks do not deduplicate;
the Hub reads xorbs from disk by range, so its memory does not grow with the store). Stdlib only; hf_xet is needed only when a file is not in the store yet.
"""

import fcntl
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BOOKEND = b"\xff" * 32
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
ENTRY = 48
HEADER = 48
CHUNK_HEADER = 8


class CasError(ValueError):
    """A malformed upload: the CAS answers 400."""


def hash_hex(raw):
    """xet-core's string form of a 32-byte hash: each 8-byte word little-endian, printed as 16 hex digits."""
    return "".join("%016x" % struct.unpack_from("<Q", raw, i)[0] for i in range(0, 32, 8))


def is_hash(text):
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def parse_shard(data):
    """Files and xorbs described by a serialized shard: ({file_hash: {terms, sha256}}, {xorb_hash: n_chunks})."""
    if len(data) < HEADER + 2 * ENTRY:
        raise CasError("shard too short")
    version, = struct.unpack_from("<Q", data, 32)
    if version != 2:
        raise CasError("shard header version %d, expected 2" % version)
    pos, files, xorbs = HEADER, {}, {}
    while True:
        if pos + ENTRY > len(data):
            raise CasError("shard file section has no bookend")
        if data[pos:pos + 32] == BOOKEND:
            pos += ENTRY
            break
        file_hash = hash_hex(data[pos:pos + 32])
        flags, count = struct.unpack_from("<II", data, pos + 32)
        pos += ENTRY
        terms = []
        for _index in range(count):
            xorb = hash_hex(data[pos:pos + 32])
            _flags, unpacked, start, end = struct.unpack_from("<IIII", data, pos + 32)
            if end <= start:
                raise CasError("empty chunk range in a term of file %s" % file_hash)
            terms.append([xorb, start, end, unpacked])
            pos += ENTRY
        if flags & FLAG_VERIFICATION:
            pos += ENTRY * count
        sha256 = None
        if flags & FLAG_METADATA_EXT:
            sha256 = data[pos:pos + 32].hex()
            pos += ENTRY
        files[file_hash] = {"terms": terms, "sha256": sha256}
    while True:
        if pos + ENTRY > len(data):
            raise CasError("shard CAS section has no bookend")
        if data[pos:pos + 32] == BOOKEND:
            break
        xorb = hash_hex(data[pos:pos + 32])
        _flags, count, _in_cas, _on_disk = struct.unpack_from("<IIII", data, pos + 32)
        xorbs[xorb] = count
        pos += ENTRY * (1 + count)
    return files, xorbs


def chunk_offsets(path, count):
    """Byte offsets of the first `count` chunks of a serialized xorb, plus the end of the last one."""
    offsets = [0]
    with open(path, "rb") as f:
        for _index in range(count):
            header = f.read(CHUNK_HEADER)
            if len(header) != CHUNK_HEADER or header[0] != 0:
                raise CasError("xorb %s: bad chunk header at byte %d" % (path.name, offsets[-1]))
            compressed = int.from_bytes(header[1:4], "little")
            offsets.append(offsets[-1] + CHUNK_HEADER + compressed)
            f.seek(offsets[-1])
    return offsets


class XetStore:
    """Xorbs, chunk offsets and file reconstructions on disk, keyed by their Xet hashes."""

    def __init__(self, root):
        self.root = Path(root)
        for sub in ("xorbs", "files", "keys", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._offsets = {}

    # --- what the CAS answers --------------------------------------------------------------------------------

    def xorb_path(self, xorb):
        return self.root / "xorbs" / xorb

    def offsets(self, xorb):
        if xorb not in self._offsets:
            self._offsets[xorb] = json.loads((self.root / "xorbs" / (xorb + ".offsets")).read_text())
        return self._offsets[xorb]

    def file(self, file_hash):
        """{terms, sha256, size} of a file, or None."""
        if not is_hash(file_hash):
            return None
        path = self.root / "files" / (file_hash + ".json")
        return json.loads(path.read_text()) if path.exists() else None

    def reconstruction(self, file_hash, start=0, end=None):
        """Terms covering bytes [start, end) of a file and the offset into the first, as the spec's v1 answer
        needs them: (offset_into_first_range, [(xorb, chunk_start, chunk_end, unpacked)], {xorb: [fetch]})."""
        record = self.file(file_hash)
        terms, pos, offset = [], 0, 0
        end = record["size"] if end is None else min(end, record["size"])
        for term in record["terms"]:
            term_end = pos + term[3]
            if term_end > start and pos < end:
                if not terms:
                    offset = start - pos
                terms.append(term)
            pos = term_end
        fetch = {}
        for xorb, first, last, _unpacked in terms:
            ranges = fetch.setdefault(xorb, [])
            if not any(a <= first and last <= b for a, b in ranges):
                ranges.append((first, last))
        return offset, terms, fetch

    # --- what uploads write ----------------------------------------------------------------------------------

    def put_xorb(self, xorb, body):
        if not is_hash(xorb):
            raise CasError("xorb hash %r is not 64 lowercase hex digits" % xorb)
        target = self.xorb_path(xorb)
        if target.exists():
            return False
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, target)
        return True

    def put_shard(self, body):
        files, xorbs = parse_shard(body)
        for xorb, count in xorbs.items():
            if not self.xorb_path(xorb).exists():
                raise CasError("shard names xorb %s, which was never uploaded" % xorb)
            offsets = chunk_offsets(self.xorb_path(xorb), count)
            _atomic_text(self.root / "xorbs" / (xorb + ".offsets"), json.dumps(offsets))
        for file_hash, record in files.items():
            for xorb, _first, last, _unpacked in record["terms"]:
                if not (self.root / "xorbs" / (xorb + ".offsets")).exists():
                    raise CasError("file %s uses xorb %s, which no shard describes" % (file_hash, xorb))
            record["size"] = sum(term[3] for term in record["terms"])
            _atomic_text(self.root / "files" / (file_hash + ".json"), json.dumps(record))
        return len(files)

    # --- content keys: what the Hub knows a file by, mapped to its Xet hash -----------------------------------

    def lookup(self, key):
        path = self.root / "keys" / key
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        return record if self.file(record["xet_hash"]) is not None else None

    def remember(self, key, xet_hash, sha256, size):
        _atomic_text(self.root / "keys" / key, json.dumps({"xet_hash": xet_hash, "sha256": sha256, "size": size}))

    def prepare(self, wanted, cas_url, token):
        """Upload each (key, blob) of `wanted` not yet in the store through hf_xet, one child process for all.

        Serialised across processes by a lock: parallel test workers share one store directory.
        """
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            missing = [(key, blob) for key, blob in wanted if self.lookup(key) is None]
            if not missing:
                return
            temps, paths = [], []
            try:
                for key, blob in missing:
                    if blob.path:
                        paths.append(blob.path)
                        continue
                    fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=key + ".")
                    with os.fdopen(fd, "wb") as f:
                        for piece in blob.chunks():
                            f.write(piece)
                    temps.append(tmp)
                    paths.append(tmp)
                env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                           HF_XET_CACHE=str(self.root / "tmp" / "client"))
                proc = subprocess.run([sys.executable, os.path.abspath(__file__), "upload", cas_url, token, *paths],
                                      capture_output=True, text=True, env=env, timeout=1800, check=False)
                if proc.returncode != 0:
                    raise RuntimeError("hf_xet upload into the test CAS failed:\n" + proc.stderr[-4000:])
                for (key, blob), info in zip(missing, json.loads(proc.stdout.strip().splitlines()[-1])):
                    if info["size"] != blob.size:
                        raise RuntimeError("hf_xet uploaded %d bytes of %s, not %d" % (info["size"], key, blob.size))
                    self.remember(key, info["hash"], info["sha256"], info["size"])
            finally:
                for tmp in temps:
                    os.unlink(tmp)


def _atomic_text(path, text):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _upload(cas_url, token, paths):
    """Child process: hf_xet's own chunking, compression, hashing, xorb and shard upload."""
    import warnings

    import hf_xet

    warnings.simplefilter("ignore")
    infos = hf_xet.upload_files(list(paths), cas_url, (token, int(time.time()) + 3600), None, None, "model")
    print(json.dumps([{"hash": i.hash, "sha256": i.sha256, "size": i.file_size} for i in infos]))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "upload":
        _upload(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit("usage: xetcas.py upload CAS_URL TOKEN FILE...")
