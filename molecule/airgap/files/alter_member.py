"""Copy a bundle, flipping one byte in the middle of the member that holds FILE of the first model:
alter_member.py SRC DEST FILE. The copy keeps the manifest, so only the member's checksum gives it away."""

import json
import sys
import tarfile

src, dest, path = sys.argv[1:4]
with tarfile.open(src) as tar:
    manifest = json.loads(tar.extractfile("manifest.json").read())
    blob = next(f["blob"] for f in manifest["models"][0]["files"] if f["path"] == path)
    offset = tar.getmember("blobs/" + blob).offset_data
with open(src, "rb") as handle:
    data = bytearray(handle.read())
data[offset] ^= 0xFF
with open(dest, "wb") as handle:
    handle.write(data)
print(blob)
