"""Give a hub cache the layout huggingface_hub leaves after Xet downloads, with the library's own code.

After a Xet download the library calls `publish_blob_to_shared_store` for each file: the content moves to
`<cache>/blobs/<2 hex>/<xet hash>` and the repository's `blobs/<etag>` becomes a relative symlink to it. A
cache filled over plain HTTP (LFS) gets the same layout by calling it for each LFS blob, with any 64-hex name
as the Xet hash (here the SHA-256 of the blob's SHA-256). Blobs that already link into the store are reported
as they are, so the same tests run on caches that real Xet downloads filled.
"""

import hashlib
import os
import re
import stat

LFS_BLOB = re.compile(r"^[0-9a-f]{64}$")
TARGET = re.compile(r"^\.\./\.\./blobs/([0-9a-f]{2})/([0-9a-f]{64})$")


def xet_hash_for(etag):
    return hashlib.sha256(etag.encode()).hexdigest()


def store_links(cache_dir, repo_folder):
    """{etag: xet hash} of the repository's blobs that link into the shared store."""
    blobs = os.path.join(str(cache_dir), repo_folder, "blobs")
    out = {}
    for name in sorted(os.listdir(blobs)):
        path = os.path.join(blobs, name)
        if os.path.islink(path):
            match = TARGET.match(os.readlink(path))
            if match:
                out[name] = match.group(2)
    return out


def publish(cache_dir, repo_folder):
    """Move every LFS blob of the repository into the shared store; return {etag: xet hash} of all its links."""
    from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store

    blobs = os.path.join(str(cache_dir), repo_folder, "blobs")
    for name in sorted(os.listdir(blobs)):
        path = os.path.join(blobs, name)
        st = os.lstat(path)
        if LFS_BLOB.match(name) and stat.S_ISREG(st.st_mode):
            assert publish_blob_to_shared_store(blob_path=path, xet_hash=xet_hash_for(name),
                                                cache_dir=str(cache_dir), expected_size=st.st_size), path
    links = store_links(cache_dir, repo_folder)
    assert links, "no LFS blob of %s went into the shared store" % repo_folder
    return links


def entry(cache_dir, xet_hash):
    return os.path.join(str(cache_dir), "blobs", xet_hash[:2], xet_hash)
