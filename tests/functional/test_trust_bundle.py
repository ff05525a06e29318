"""hf_bundle, hf_bundle_info, hf_carry from a bundle, hf_image_root and the bake entry point against hostile input,
through ansible-playbook and the installed collection: size bombs, bundle paths that are not files, an image whose
service user is root, the bake's staging folder and image roots with a symlink on the way. Each test checks the
result and the disk afterwards.

The bundles are written in-process (small files, no Hub needed), the hostile ones with tarfile."""

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile

import pytest

from tools.harness import controller_bin, target_python

REPO = "acme/tiny"
COMMIT = "1" * 40
CONFIG = b'{"hidden_size": 8}\n'
WEIGHTS = bytes(range(256)) * 64
PASSWD = "root:x:0:0:root:/root:/bin/sh\njustnews:x:4321:4322::/opt/justnews:/usr/sbin/nologin\n"
GROUP = "root:x:0:\njustnews:x:4322:\n"


def git_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha(data):
    return hashlib.sha256(data).hexdigest()


CONFIG_BLOB, WEIGHTS_BLOB = git_id(CONFIG), sha(WEIGHTS)


def listing(weights_size=len(WEIGHTS)):
    return {"config.json": {"size": len(CONFIG), "blob_id": CONFIG_BLOB},
            "model.safetensors": {"size": weights_size, "blob_id": git_id(WEIGHTS), "lfs_sha256": WEIGHTS_BLOB}}


def manifest(weights_size=len(WEIGHTS)):
    files = [{"path": "config.json", "blob": CONFIG_BLOB, "size": len(CONFIG), "sha256": sha(CONFIG)},
             {"path": "model.safetensors", "blob": WEIGHTS_BLOB, "size": weights_size, "sha256": WEIGHTS_BLOB}]
    return {"format": "justnews.huggingface.bundle", "format_version": 1,
            "models": [{"repo_id": REPO, "repo_type": "model", "revision": "main", "ref": "main", "commit": COMMIT,
                        "listing": listing(weights_size), "files": files}]}


def member(name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


def write_tar(path, entries, raw_tail=b""):
    """A tar of (TarInfo, bytes) entries; `raw_tail`: header blocks written as they are, before the end marker."""
    with open(path, "wb") as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
            if raw_tail:
                tar.fileobj.write(raw_tail)
                tar.offset += len(raw_tail)
    return path


def manifest_member(data=None):
    return member("manifest.json", json.dumps(data or manifest()).encode())


def good_bundle(path):
    """A sound bundle of acme/tiny, laid out as hf_bundle writes one: the manifest, then the blobs by name."""
    blobs = [member("blobs/" + CONFIG_BLOB, CONFIG), member("blobs/" + WEIGHTS_BLOB, WEIGHTS)]
    return write_tar(path, [manifest_member()] + sorted(blobs, key=lambda entry: entry[0].name))


def pax_sparse(name, stored, realsize):
    """A GNU sparse 1.0 member as GNU tar writes it: the map block, then the stored bytes; PAX headers give the
    name and the real size. tarfile reads it as a regular file of `realsize` bytes, the holes as zeros."""
    body = (b"1\n0\n%d\n" % len(stored)).ljust(512, b"\0") + stored
    info = tarfile.TarInfo("GNUSparseFile.0/blob")
    info.size = len(body)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                        "GNU.sparse.realsize": str(realsize)}
    return info, body


def old_gnu_sparse(name, stored, realsize):
    """An old GNU sparse member (type S), the map and the real size in its header, as raw blocks."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, len(stored)
    buf = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    buf[386:398] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)
    buf[398:410] = tarfile.itn(len(stored), 12, tarfile.GNU_FORMAT)
    buf[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)
    buf[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(buf[:148]) + b" " * 8 + bytes(buf[156:]))[0]
    return bytes(buf) + stored.ljust((len(stored) + 511) // 512 * 512, b"\0")


class Tasks:
    """Independent tasks in one ansible-playbook run (fast); each registered result is returned."""

    def __init__(self, collections, workdir):
        self.collections, self.workdir, self.count, self.output = collections, workdir, 0, ""

    def env(self, extra=None):
        return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                    ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", **(extra or {}))

    def __call__(self, *tasks, check=False, timeout=120, module="hf_bundle"):
        self.count += 1
        out = self.workdir / ("results-%d.json" % self.count)
        steps = [{"name": "step %d" % i, "justnews.huggingface." + module: args, "register": "r%d" % i,
                  "ignore_errors": True} for i, args in enumerate(tasks)]
        steps.append({"name": "save", "ansible.builtin.copy": {
            "content": "{{ [%s] | to_json }}" % ", ".join("r%d" % i for i in range(len(tasks))),
            "dest": str(out)}, "check_mode": False})
        book = self.workdir / ("play-%d.yml" % self.count)
        book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": steps}]))
        cmd = [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=" + target_python(), str(book)] + (["--check"] if check else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env(), cwd=self.workdir,
                              timeout=timeout, check=False)
        self.output = proc.stdout + proc.stderr
        assert out.exists(), self.output
        return json.loads(out.read_text())

    def bake(self, extra, timeout=300, env=None):
        """ansible-playbook justnews.huggingface.bake; (return code, output)."""
        extra = dict({"ansible_python_interpreter": target_python(), "model_cache_controller_python": target_python(),
                      "model_cache_owner": "justnews"}, **extra)
        proc = subprocess.run([controller_bin("ansible-playbook"), "justnews.huggingface.bake", "-e",
                               json.dumps(extra)], capture_output=True, text=True, env=self.env(env),
                              cwd=self.workdir, timeout=timeout, check=False)
        self.output = proc.stdout + proc.stderr
        return proc.returncode, self.output


@pytest.fixture
def tasks(collections_path, tmp_path):
    return Tasks(collections_path, tmp_path)


def listing_of(folder):
    """name -> (kind, sha256 or link target) of everything below `folder`, never following links."""
    found = {}
    for dirpath, dirs, names in os.walk(folder):
        for name in dirs + names:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, folder)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as handle:
                    found[rel] = ("file", sha(handle.read()))
            else:
                found[rel] = (stat.S_IFMT(st.st_mode),)
    return found


MODEL = {"repo_id": REPO, "revision": "main"}


def carry(bundle, host, seeds, **extra):
    """hf_carry of `seeds` (hf_bundle_info's models) from `bundle` into the cache `host`/hub."""
    return dict({"models": seeds, "source": "bundle", "bundle": str(bundle), "cache_dir": str(host / "hub"),
                 "staging_dir": str(host / "incoming"), "free_space_margin": 0}, **extra)


def seeds(weights_size=len(WEIGHTS)):
    """hf_bundle_info's models for acme/tiny, from a manifest that gives the weights `weights_size` bytes."""
    return [{"item": MODEL, "repo_id": REPO, "repo_type": "model", "revision": "main", "commit": COMMIT, "ref": "main",
             "listing": listing(weights_size), "files": ["config.json", "model.safetensors"],
             "bytes": len(CONFIG) + weights_size}]


def untouched(host):
    """Nothing was written for the host: no blob, no staging folder."""
    blobs = host / "hub" / "models--acme--tiny" / "blobs"
    return not (host / "incoming").exists() and (not blobs.exists() or os.listdir(blobs) == [])


# --- hf_bundle_info and hf_carry from a bundle ------------------------------------------------------------------

def test_size_bombs_are_refused_before_a_byte_is_written(tasks, tmp_path):
    blob = "blobs/" + WEIGHTS_BLOB
    config = member("blobs/" + CONFIG_BLOB, CONFIG)
    huge = 300 * 1024 * 1024
    bundles = {
        # a few KiB that would expand to 300 MiB of zeros; the manifest agrees with the member
        "pax-sparse-huge": write_tar(tmp_path / "b1.tar",
                                     [manifest_member(manifest(huge)), config, pax_sparse(blob, b"\1" * 16, huge)]),
        # a sparse member small enough to fit the archive: refused for what it is
        # (the zero blocks after the member make the file as large as a real bundle: only the member is wrong)
        "pax-sparse": write_tar(tmp_path / "b2.tar",
                                [manifest_member(), config, pax_sparse(blob, WEIGHTS[:512], len(WEIGHTS))],
                                raw_tail=b"\0" * len(WEIGHTS)),
        "gnu-sparse": write_tar(tmp_path / "b3.tar", [manifest_member(), config],
                                raw_tail=old_gnu_sparse(blob, WEIGHTS[:512], len(WEIGHTS)) + b"\0" * len(WEIGHTS)),
        # a manifest and listing that agree on a blob of other size than the member's
        "declared-other": write_tar(tmp_path / "b4.tar",
                                    [manifest_member(manifest(len(WEIGHTS) + 4096)), config, member(blob, WEIGHTS)]),
        # a manifest and listing that agree on a 1 TiB blob: the host's probe finds no room for it
        "declared-huge": write_tar(tmp_path / "b5.tar",
                                   [manifest_member(manifest(1 << 40)), config, member(blob, WEIGHTS)]),
        "space": good_bundle(tmp_path / "good.tar"),
    }
    # each manifest agrees with itself; hf_bundle_info reads the members too and refuses all but the sound one
    infos = tasks(*[{"path": str(path), "models": [MODEL]} for path in bundles.values()], module="hf_bundle_info")
    refused = {"pax-sparse-huge": "unsafe_bundle", "pax-sparse": "unsafe_bundle", "gnu-sparse": "unsafe_bundle",
               "declared-other": "corrupt_bundle", "declared-huge": "corrupt_bundle", "space": None}
    for (name, path), info in zip(bundles.items(), infos):
        assert info.get("error_kind") == refused[name], (name, info)
        assert not refused[name] or str(path) in info["msg"]
    hosts = {name: tmp_path / ("host-" + name) for name in bundles}
    # hf_carry refuses them on its own, given the entries of their manifests
    sizes = {"pax-sparse-huge": huge, "declared-other": len(WEIGHTS) + 4096, "declared-huge": 1 << 40}
    # free_space_margin 0 turns the host's free-space check off: these two keep it on
    extra = {"declared-huge": {"free_space_margin": "1M"}, "space": {"free_space_margin": "1000T"}}
    results = tasks(*[carry(path, hosts[name], seeds(sizes.get(name, len(WEIGHTS))), **extra.get(name, {}))
                      for name, path in bundles.items()], module="hf_carry")
    expect = {"pax-sparse-huge": ("unsafe_bundle", "sparse"), "pax-sparse": ("unsafe_bundle", "GNU.sparse"),
              "gnu-sparse": ("unsafe_bundle", "sparse"), "declared-other": ("corrupt_bundle", "manifest says"),
              "declared-huge": ("no_space", "free"), "space": ("no_space", "free")}
    for (name, (kind, words)), result in zip(expect.items(), results):
        assert result.get("failed") and result["error_kind"] == kind, (name, result)
        assert words in result["msg"], (name, result["msg"])
        where = str(bundles[name]) if kind != "no_space" else str(hosts[name] / "hub")
        assert where in result["msg"], (name, result["msg"])
        assert result["bytes_sent"] == 0, (name, result)
        assert untouched(hosts[name]), name  # nothing staged, no partial file, no blob
    assert "model.safetensors" in results[3]["msg"]


def test_a_manifest_that_lies_about_a_git_blobs_sha256_is_refused_and_nothing_is_taken(tasks, tmp_path):
    # config.json is a git blob: its member matches its id, only the manifest's SHA-256 of it is wrong
    lie = manifest()
    lie["models"][0]["files"][0]["sha256"] = sha(b'{"hidden_size": 9}\n')
    blobs = [member("blobs/" + CONFIG_BLOB, CONFIG), member("blobs/" + WEIGHTS_BLOB, WEIGHTS)]
    lying = write_tar(tmp_path / "lying.tar", [manifest_member(lie)] + blobs)
    info, = tasks({"path": str(lying), "models": [MODEL]}, module="hf_bundle_info")
    host = tmp_path / "host"
    # the same entries as the sound bundle's: the manifests differ in that SHA-256 only
    carried, = tasks(carry(lying, host, seeds()), module="hf_carry")
    for result in (info, carried):
        assert result.get("failed") and result["error_kind"] == "integrity", result
        msg = result["msg"]
        assert "blobs/" + CONFIG_BLOB in msg and "(sha256)" in msg and "config.json" in msg, msg
        assert str(lying) in msg and sha(CONFIG) in msg
    assert info["bad_files"] == [{"repo_id": REPO, "path": "config.json"}]
    assert carried["corrupt_files"] == [[REPO, "config.json"]] and carried["bytes_sent"] == 0
    assert untouched(host) and not (host / "hub" / "models--acme--tiny" / "snapshots").exists()
    assert not (host / "hub" / "models--acme--tiny" / "refs").exists()


def test_a_bundle_whose_manifest_lies_is_written_again_not_kept(tasks, tmp_path):
    cache = tmp_path / "build-cache"
    blobs = cache / "models--acme--tiny" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / CONFIG_BLOB).write_bytes(CONFIG)
    (blobs / WEIGHTS_BLOB).write_bytes(WEIGHTS)
    lie = manifest()
    lie["models"][0]["files"][0]["sha256"] = sha(b"not the config")
    path = write_tar(tmp_path / "models.tar", [manifest_member(lie), member("blobs/" + CONFIG_BLOB, CONFIG),
                                               member("blobs/" + WEIGHTS_BLOB, WEIGHTS)])
    # the same models as the bundle holds: only the manifest's SHA-256 of config.json differs
    build = {"path": str(path), "cache_dir": str(cache),
             "snapshots": [{"repo_id": REPO, "revision": "main", "commit": COMMIT, "listing": listing()}]}
    rebuilt, = tasks(build)
    assert rebuilt["changed"] and not rebuilt.get("failed"), rebuilt
    assert any("will be replaced" in w and "(sha256)" in w for w in rebuilt.get("warnings", [])), rebuilt
    info, again = tasks({"path": str(path), "models": [MODEL]}, module="hf_bundle_info") + tasks(build)
    assert not info.get("failed") and not again["changed"], (info, again)


def test_a_bundle_path_that_is_not_a_file_is_refused_at_once(tasks, tmp_path):
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.tar"
    folder.mkdir()
    good = good_bundle(tmp_path / "real.tar")
    link = tmp_path / "link.tar"
    link.symlink_to(good)
    paths = [str(fifo), "/dev/zero", "/dev/tty", str(folder), str(link)]
    seeds = tasks({"path": str(good), "models": [MODEL]}, module="hf_bundle_info")[0]["models"]
    build = {"cache_dir": str(tmp_path / "cache"),
             "snapshots": [{"repo_id": REPO, "commit": COMMIT, "listing": listing()}]}
    hosts = [tmp_path / ("host-%d" % i) for i in range(len(paths))]
    # a module waiting on the FIFO or a device would run into the timeout
    results = (tasks(*[carry(p, h, seeds) for p, h in zip(paths, hosts)], module="hf_carry", timeout=120)
               + tasks(*[{"path": p} for p in paths], module="hf_bundle_info", timeout=120)
               + tasks(*[dict(build, path=p) for p in paths], timeout=120))
    for path, result in zip(paths * 3, results):
        assert result.get("failed") and result["error_kind"] == "invalid_argument", (path, result)
        assert path in result["msg"], result["msg"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir() and os.path.islink(link)
    assert stat.S_ISCHR(os.stat("/dev/zero").st_mode)
    assert all(untouched(h) for h in hosts)
    assert sorted(os.listdir(folder)) == []


# --- hf_image_root -----------------------------------------------------------------------------------------

def image(tmp_path, passwd=PASSWD, group=GROUP):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text(group)
    return root


def test_an_image_whose_service_user_is_root_is_refused(tasks, tmp_path):
    root = image(tmp_path, PASSWD + "evil:x:0:4322::/:/bin/sh\nbadid:x:12x:4322::/:/bin/sh\n",
                 GROUP + "wheel:x:0:\n")
    base = {"image_root": str(root), "dirs": [{"path": "/var/cache/hf", "owner": "service", "mode": "0750"}]}
    results = tasks(dict(base, owner="evil"), dict(base, owner="justnews", group="wheel"),
                    dict(base, owner="badid"), dict(base, owner="root"), module="hf_image_root")
    uid0, gid0, badid, root_user = results
    for result in (uid0, gid0, root_user):
        assert result.get("failed") and result["error_kind"] == "unsafe_image_root", result
        assert "allow_root" in result["msg"]
    assert str(root / "etc" / "passwd") + " line 3" in uid0["msg"] and "uid 0" in uid0["msg"]
    assert str(root / "etc" / "group") + " line 3" in gid0["msg"] and "gid 0" in gid0["msg"]
    assert badid.get("failed") and badid["error_kind"] == "invalid_argument", badid
    assert str(root / "etc" / "passwd") + " line 4" in badid["msg"] and "12x" in badid["msg"]
    assert sorted(os.listdir(root)) == ["etc"]  # nothing written
    # said explicitly, root is accepted
    allowed = tasks(dict(base, owner="evil", allow_root=True), module="hf_image_root")[0]
    assert not allowed.get("failed") and allowed["uid"] == 0, allowed
    assert (root / "var" / "cache" / "hf").stat().st_uid == 0


def test_passwd_behind_a_symlink_or_fifo_is_refused(tasks, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text(PASSWD)
    root = image(tmp_path)
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(outside / "passwd")
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    os.mkfifo(other / "etc" / "passwd")
    base = {"owner": "justnews", "dirs": [{"path": "/var/cache/hf"}]}
    link, fifo = tasks(dict(base, image_root=str(root)), dict(base, image_root=str(other)), timeout=90,
                       module="hf_image_root")
    assert link.get("failed") and link["error_kind"] == "unsafe_image_root" and "symlink" in link["msg"], link
    assert str(root / "etc" / "passwd") in link["msg"]
    assert fifo.get("failed") and fifo["error_kind"] == "unsafe_image_root" and "FIFO" in fifo["msg"], fifo
    assert not (root / "var").exists() and not (other / "var").exists()
    assert (outside / "passwd").read_text() == PASSWD


def test_writes_into_an_image_root_refuse_a_symlinked_component(tasks, tmp_path):
    root = image(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "etc" / "systemd").symlink_to(outside)
    (root / "opt").symlink_to(outside)
    (root / "var").symlink_to(outside)
    base = {"image_root": str(root), "owner": "justnews"}
    results = tasks(dict(base, files=[{"path": "/etc/systemd/system/a.service.d/60.conf", "content": "x"}]),
                    dict(base, links=[{"path": "/opt/models/tiny", "src": "/var/cache/hf/hub/x"}]),
                    dict(base, dirs=[{"path": "/var/cache/hf", "owner": "service", "mode": "0750"}]),
                    module="hf_image_root")
    for result, component in zip(results, ("etc/systemd", "opt", "var")):
        assert result.get("failed") and result["error_kind"] == "unsafe_image_root", result
        assert str(root / component) in result["msg"] and "symlink" in result["msg"]
    assert os.listdir(outside) == []


# --- bake ----------------------------------------------------------------------------------------------------

def bake_vars(root, bundle, **extra):
    return dict({"model_cache_image_root": str(root), "model_cache_source": "bundle",
                 "model_cache_bundle": str(bundle),
                 "model_cache_models": [{"repo_id": REPO, "revision": "main", "link": "/opt/models/tiny"}]}, **extra)


def test_bake_stages_outside_the_image_root_and_removes_it(tasks, tmp_path):
    bundle = good_bundle(tmp_path / "good.tar")
    root = image(tmp_path)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    # the role's root-only folder of the build machine, moved here so that the test writes nowhere else
    staging = tmp_path / "build-machine" / "bake-incoming"
    rc, output = tasks.bake(bake_vars(root, bundle, __model_cache_bake_staging_dir=str(staging)),
                            env={"TMPDIR": str(tmpdir)})
    assert rc == 0, output
    home = root / "var" / "cache" / "hf"
    repo = home / "hub" / "models--acme--tiny"
    assert (repo / "refs" / "main").read_text() == COMMIT
    assert (repo / "snapshots" / COMMIT / "model.safetensors").read_bytes() == WEIGHTS
    assert sorted(os.listdir(home)) == ["hub"]  # nothing staged in the image
    assert sorted(os.listdir(repo)) == ["blobs", "refs", "snapshots", "trees"]
    assert os.listdir(staging.parent) == []  # the staging folder is gone
    assert not [n for n in os.listdir(tmpdir) if n.startswith("hf-carry")]
    for path in (repo, repo / "blobs", repo / "snapshots" / COMMIT):
        assert (path.stat().st_uid, path.stat().st_gid, oct(path.stat().st_mode & 0o777)) == (4321, 4322, "0o750")
    blob = repo / "blobs" / WEIGHTS_BLOB
    assert (blob.stat().st_uid, blob.stat().st_gid, oct(blob.stat().st_mode & 0o777)) == (4321, 4322, "0o640")
    # a second bake finds nothing missing and writes nothing
    rc, output = tasks.bake(bake_vars(root, bundle, __model_cache_bake_staging_dir=str(staging)))
    assert rc == 0 and "Carry the models" in output, output
    assert not staging.exists()
    assert "changed=0" in output.split("PLAY RECAP")[-1], output
    assert os.readlink(root / "opt" / "models" / "tiny") == "/var/cache/hf/hub/models--acme--tiny/snapshots/" + COMMIT
    assert (root / "opt" / "models" / "tiny").lstat().st_uid == 4321
    assert (home / "hub" / "CACHEDIR.TAG").stat().st_uid == 0
    dropin = root / "etc" / "systemd" / "system" / "justnews@memory.service.d" / "60-hf-cache.conf"
    assert "HF_HUB_OFFLINE=1" in dropin.read_text() and dropin.stat().st_uid == 0
    assert (home.stat().st_uid, home.stat().st_gid, oct(home.stat().st_mode & 0o777)) == (4321, 4322, "0o750")


def test_bake_refuses_an_image_whose_service_user_is_root_or_with_a_symlink(tasks, tmp_path):
    bundle = good_bundle(tmp_path / "good.tar")
    root = image(tmp_path, PASSWD.replace("4321", "0"))
    rc, output = tasks.bake(bake_vars(root, bundle))
    assert rc != 0 and "unsafe_image_root" in output and "uid 0" in output, output
    assert sorted(os.listdir(root)) == ["etc"]
    # a component of the image that leads outside
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "passwd").write_text(PASSWD)
    (other / "etc" / "group").write_text(GROUP)
    outside = tmp_path / "outside"
    outside.mkdir()
    (other / "var").symlink_to(outside)
    rc, output = tasks.bake(bake_vars(other, bundle))
    assert rc != 0 and "unsafe_image_root" in output and str(other / "var") in output, output
    assert os.listdir(outside) == [] and sorted(os.listdir(other)) == ["etc", "var"]
