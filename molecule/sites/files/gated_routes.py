"""A gated repository through a site mirror, as two hosts see it (side_effect.yml).

fetch MIRROR REPO: host A, with its token in HF_TOKEN: the whole repository through the mirror with the real
client (its resolve route), then its LFS files again by the mirror's content-addressed routes, as any client
holding a token may ask for them. Prints what A got: each file's sha256, size and first bytes, the listing's LFS
and Xet hashes, and what the content routes answered A.

ask MIRROR REPO COMMIT LISTING: host B: every route Olah serves a file by, for every file of the listing that A
printed (a file), with no token and with a wrong one. Prints each answer's status, size, sha256 and first bytes:
the verifier compares them with A's files. Standard library only, so that it runs with the host's python3.
"""

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
HEAD_BYTES = 64


def ask(url, method="GET", token=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with OPENER.open(request, timeout=300) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def summary(body):
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "head": body[:HEAD_BYTES].hex()}


def fetch(mirror, repo):
    import huggingface_hub  # pylint: disable=import-outside-toplevel  # host A's venv only
    token = os.environ["HF_TOKEN"]
    snap = huggingface_hub.snapshot_download(repo, revision="main", cache_dir="/tmp/sites-gated-a", token=token,
                                            endpoint=mirror)
    commit = snap.rstrip("/").rsplit("/", 1)[-1]
    files = {}
    for root, _dirs, names in os.walk(snap):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, snap)] = summary(handle.read())
    status, body = ask("%s/api/models/%s/tree/%s?recursive=true" % (mirror, repo, commit), token=token)
    assert status == 200, (status, body[:200])
    listing = [{"path": e["path"], "lfs": (e.get("lfs") or {}).get("oid"), "xet": e.get("xetHash")}
               for e in json.loads(body) if e.get("type") == "file"]
    content_routes = {}
    for entry in listing:
        for path in content_paths(entry):
            content_routes[path] = ask(mirror + path, token=token)[0]
    print(json.dumps({"commit": commit, "files": files, "listing": listing, "content_routes": content_routes}))


def content_paths(entry):
    """Olah's routes that name a file by its content, not by repository and path."""
    paths = []
    if entry["lfs"]:
        sha = entry["lfs"]
        paths.append("/repos/%s/%s/0000/%s" % (sha[:2], sha[2:4], sha))
    if entry["xet"]:
        paths.append("/xet-bridge-us/0000/%s" % entry["xet"])
    return paths


def routes(repo, commit, listing):
    """Every route Olah 0.5.4 serves a file by (olah/server_file_routes.py), for each file of the listing."""
    org, name = repo.split("/")
    paths = ["/repos"]  # Olah's listing of the repositories it holds
    for entry in listing:
        for rev in ("main", commit):
            paths += ["/%s/resolve/%s/%s" % (repo, rev, entry["path"]),
                      "/models/%s/resolve/%s/%s" % (repo, rev, entry["path"])]
        paths += content_paths(entry)
        for digest in filter(None, (entry["lfs"], entry["xet"])):  # the CDN-style routes
            paths += ["/%s/%s/%s" % (org, name, digest), "/models/%s%%2F%s/%s" % (org, name, digest)]
    return paths


def ask_all(mirror, repo, commit, listing_file):
    with open(listing_file, encoding="utf-8") as handle:
        listing = json.load(handle)
    answers = []
    for token in (None, "hf_wrong_token_of_host_b"):
        for path in routes(repo, commit, listing):
            for method in ("HEAD", "GET"):
                status, body = ask(mirror + path, method, token)
                answers.append(dict(summary(body), method=method, path=path, token=bool(token), status=status,
                                    names_repo=repo.encode() in body))
    print(json.dumps(answers))


if __name__ == "__main__":
    if sys.argv[1] == "fetch":
        fetch(*sys.argv[2:4])
    else:
        ask_all(*sys.argv[2:6])
