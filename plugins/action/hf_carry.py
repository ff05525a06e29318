# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of justnews.huggingface.hf_carry: carry models to a host as one resumable stream of the blobs
it lacks (documentation: plugins/modules/hf_carry.py)."""

from __future__ import annotations

import getpass
import os
import queue
import re
import shutil
import stat
import tarfile
import tempfile
import threading
import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.justnews.huggingface.plugins.module_utils import _space
from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env
from ansible_collections.justnews.huggingface.plugins.module_utils import _bundle
from ansible_collections.justnews.huggingface.plugins.module_utils import _carry
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _record
from ansible_collections.justnews.huggingface.plugins.module_utils import _store
from ansible_collections.justnews.huggingface.plugins.plugin_utils._progress import Progress, human

# Only the texts of _agent_env are used here (CACHEDIR_TAG), none of its writers: none of its failures reaches this
# module's result.
CONTAINS_FAILURES_OF = ("_agent_env",)
RECEIVER = "justnews.huggingface.hf_receive"
# The modules this action runs on the host, whose failures it passes on (tests/unit: the documented kinds).
RUNS = ("hf_receive",)
COMMON = ("cache_dir", "hf_home", "dir_mode", "owner", "group", "mode", "free_space_margin", "shared_blobs",
          "verify_checksums", "retries", "timeout")
MODEL_KEYS = ("allow_patterns", "ignore_patterns", "link")
VALID_ARGS = frozenset(("models", "source", "bundle", "staging_dir", "chunk_size", "links") + COMMON)


class ControllerSource:
    """The blobs in the controller's cache, behind each seed's snapshot_path (read through _store: a link is
    followed only into the cache's shared store, in the library's form)."""

    def __init__(self, seeds):
        self.where = {}
        for seed in seeds:
            snapshot = seed.get("snapshot_path")
            if not isinstance(snapshot, str) or not os.path.isabs(snapshot):
                raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                      "the controller's result for %s has no snapshot_path: fetch the model into"
                                      " the controller's cache first" % seed_name(seed))
            repo = os.path.dirname(os.path.dirname(os.path.normpath(snapshot)))
            for entry in (seed.get("listing") or {}).values():
                name = _names.blob_name(entry)
                self.where.setdefault(name, (os.path.dirname(repo), os.path.join(repo, "blobs", name)))

    def open(self, blob):
        if blob["name"] not in self.where:
            raise _errors.Failure(_errors.INCOMPLETE, "no controller result lists blob %s, for %s" % (
                blob["name"], _carry.describe(blob["files"])), files=blob["files"])
        cache_dir, path = self.where[blob["name"]]
        try:
            fd = _store.open_blob(cache_dir, path)
        except FileNotFoundError:
            raise _errors.Failure(_errors.INCOMPLETE,
                                  "the controller's cache has no %s, for %s: fetch the model into it again"
                                  % (path, _carry.describe(blob["files"])), files=blob["files"])
        except (_store.StoreRefused, OSError) as exc:
            raise _errors.Failure(_errors.UNSAFE_CACHE,
                                  "the controller's %s is refused (%s), for %s: remove the repository from the"
                                  " controller's cache (hf_snapshot state=absent) and fetch it again"
                                  % (path, exc, _carry.describe(blob["files"])),
                                  files=blob["files"])
        os.set_blocking(fd, True)
        size = os.fstat(fd).st_size
        if size != blob["size"]:
            os.close(fd)
            raise _errors.Failure(_errors.INTEGRITY,
                                  "the controller's %s has %d bytes, not %d, for %s: remove the repository from"
                                  " the controller's cache and fetch it again; nothing of it was sent, nothing"
                                  " was taken into the cache" % (path, size, blob["size"],
                                                                 _carry.describe(blob["files"])), files=blob["files"])
        return _carry.Source(fd, 0, _errors.INTEGRITY, "the controller's %s" % path)

    def close(self):
        pass


class BundleSource:
    """The members of a bundle on the controller: the manifest checked, every member's header checked (name,
    type, size within the file, once each) before any is read; each read member checked whole against the
    manifest (_bundle.check_header, _bundle.MemberCheck)."""

    def __init__(self, path):
        manifest = _bundle.read_manifest(path)
        self.table = _bundle.blob_table(manifest["models"])
        self.path = path
        self.raw = os.fdopen(_bundle.open_regular(path), "rb")
        size = os.fstat(self.raw.fileno()).st_size
        self.members = {}
        try:
            self.tar = tarfile.open(fileobj=self.raw, mode="r:")
            # each header checked as it is read: a member cut short fails by its name, not the next header
            member = self.tar.next()
            while member is not None:
                self.check(member, size)
                member = self.tar.next()
        except (tarfile.TarError, EOFError) as exc:
            self.close()
            raise _errors.Failure(_errors.CORRUPT_BUNDLE,
                                  "%s is not a readable tar archive (%s): copy it again or rebuild it"
                                  % (path, exc))
        except _errors.Failure:
            self.close()
            raise

    def check(self, member, archive_size):
        name = member.name
        if name == _bundle.MANIFEST and not self.members:
            self.members[name] = member
            return
        _bundle.check_header(member, self.table, self.members, archive_size, self.path)
        self.members[name] = member

    def open(self, blob):
        member = self.members.get("blobs/" + blob["name"])
        if member is None or self.table[blob["name"]]["size"] != blob["size"]:
            raise _errors.Failure(_errors.NOT_IN_BUNDLE,
                                  "the bundle %s has no blob %s, which the host needs for %s: build the bundle"
                                  " with the same revision, allow_patterns and ignore_patterns"
                                  % (self.path, blob["name"], _carry.describe(blob["files"])), files=blob["files"])
        # A plain member (check) is its stored bytes: read them where they lie, with pread on the bundle's file,
        # checked whole against the manifest as they are read: size, object id and SHA-256.
        return _carry.Source(self.raw.fileno(), member.offset_data, _errors.CORRUPT_BUNDLE,
                             "the bundle's member %s" % member.name, owned=False,
                             wrap=lambda handle: _bundle.MemberCheck(handle, blob["name"], self.table[blob["name"]],
                                                                     self.path))

    def close(self):
        self.raw.close()


# Folders in memory (tmpfs) where the chunk files may be written, if one has room: a chunk written to disk only to
# be read back by put_file and removed costs the controller a write, and the disk's writeback slows every writer.
MEMORY_FOLDERS = ("/dev/shm",)
DEAD_RUN_RE = re.compile(r"^hf-carry-([0-9]+)-")


def chunk_folder(chunk_size):
    """Where the chunk files are written: a tmpfs with room for four chunks and a quarter of its space left,
    else Ansible's local temporary folder."""
    for folder in MEMORY_FOLDERS:
        try:
            st = os.statvfs(folder)
        except OSError:
            continue
        free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        if os.access(folder, os.W_OK | os.X_OK) and free - 4 * chunk_size > size // 4:
            return folder
    return C.DEFAULT_LOCAL_TMP if os.path.isdir(str(C.DEFAULT_LOCAL_TMP)) else None


def forget_dead_runs(where):
    """Remove the chunk folders that runs killed before their cleanup left in `where` (named after their
    process, which is gone; only this user's real folders): in memory they would hold it until a reboot."""
    try:
        names = os.listdir(where or tempfile.gettempdir())
    except OSError:
        return
    for name in names:
        match = DEAD_RUN_RE.match(name)
        if not match:
            continue
        path = os.path.join(where or tempfile.gettempdir(), name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def seed_name(seed):
    item = seed_model(seed)
    return "%s@%s" % (item.get("repo_id") or seed.get("repo_id"), seed.get("commit"))


def seed_model(seed):
    """The model of a seed (the controller's result, or the bundle's entry): its `item`."""
    return seed.get("item") if isinstance(seed.get("item"), dict) else {}


def model_args(seed, links=True):
    """What hf_receive needs of one model, from a seed (the controller's result, or the bundle's entry); without
    `links`, the model's link is left out (a bake links the models itself, to the image's path)."""
    item = seed_model(seed)
    if not item.get("repo_id") or not _names.is_commit(seed.get("commit") or "") or \
            not isinstance(seed.get("listing"), dict):
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "each entry of models needs item.repo_id, a 40-hex commit and a listing; got %s"
                              % seed_name(seed))
    args = {"repo_id": item["repo_id"], "repo_type": item.get("repo_type") or "model", "revision": seed["commit"],
            "ref": seed.get("ref") or "main", "listing": seed["listing"]}
    args.update({k: item[k] for k in MODEL_KEYS if item.get(k) is not None and (links or k != "link")})
    return args


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = VALID_ARGS

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        del tmp
        started = time.monotonic()
        self.calls = 0
        self.stats = {"bytes_sent": 0, "bytes_held": 0, "bytes_total": 0, "chunks_sent": 0, "chunks_total": 0,
                      "blobs_sent": 0}
        try:
            result.update(self.carry(task_vars or {}))
        except _errors.Failure as exc:
            failed = {"failed": True, "msg": exc.msg, "error_kind": exc.kind, "fix": _errors.fix(exc.kind),
                      "corrupt_files": [list(f) for f in exc.extra.get("files", [])], "changed": False}
            seeds = self._task.args.get("models")
            if isinstance(seeds, list) and all(isinstance(seed, dict) for seed in seeds):
                failed["results"] = self.results(seeds, [], failed)
            result.update(self.named(failed))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)  # pylint: disable=protected-access
        elapsed = time.monotonic() - started
        result.update(self.stats, elapsed=round(elapsed, 3), host_calls=self.calls,
                      mean_rate=round(self.stats["bytes_sent"] / elapsed) if elapsed > 0 else 0)
        return result

    # --- the steps ----------------------------------------------------------------------------------------
    def carry(self, task_vars):
        args = self._task.args
        seeds, common, source, links = self.check_args(args)
        models = [model_args(seed, links) for seed in seeds]
        staging = args["staging_dir"]
        chunk_size = self.chunk_size(args)
        uploader = self.uploader()
        probe = self.receive(task_vars, seeds, dict(common, phase="probe", models=models, staging_dir=staging,
                                                    uploader=uploader, chunk_size=chunk_size))
        if probe.get("failed"):
            return probe
        missing = probe["missing_blobs"]
        out = {"results": self.results(seeds, probe["models"]), "missing_blobs": missing,
               "missing_bytes": sum(b["size"] for b in missing), "cachedir_tag": _agent_env.CACHEDIR_TAG}
        plan = _carry.plan_stream(missing, chunk_size) if missing else None
        if plan:
            if probe.get("stream_id") != plan["id"]:
                raise _errors.Failure(_errors.INTERNAL,
                                      "the host names the stream %r, the controller %s: the collection on the"
                                      " controller and the module on the host differ" % (probe.get("stream_id"),
                                                                                         plan["id"]))
            out["stream_dir"] = "%s/%s" % (staging.rstrip("/"), plan["id"])
            self.stats.update(bytes_total=plan["total"], chunks_total=len(plan["chunks"]), blobs_sent=len(missing))
        changed = any(r.get("changed") for r in probe["models"])
        if self._task.check_mode or not (missing or changed):
            return self.finish(out, probe["models"])
        stream = None
        if missing:
            held = probe.get("held_chunks") or []
            try:
                stream = {"chunks": self.send(plan, missing, source, seeds, args, held, out["stream_dir"],
                                              task_vars),
                          "blobs": missing}
            except _errors.Failure as exc:
                # Nothing worth resuming (no chunk there, none sent), or bytes there that failed their check.
                if exc.extra.get("discard") or not (held or self.stats["chunks_sent"]):
                    self.discard(common, staging, plan["id"], task_vars)
                raise
        progress = Progress(task_vars.get("inventory_hostname", "host"), plan["total"] if plan else 0)
        progress.phase = "taking the blobs into the cache"
        progress.sent, progress.held = self.stats["bytes_sent"], self.stats["bytes_held"]
        progress.start()
        try:
            taken = self.receive(task_vars, seeds, dict(common, phase="import", models=models, staging_dir=staging,
                                                        uploader=uploader, stream=stream))
        finally:
            progress.stop()
        if taken.get("failed"):
            return taken
        out["results"] = self.results(seeds, taken["models"])
        return self.finish(out, taken["models"])

    def discard(self, common, staging, stream_id, task_vars):
        """Remove what the host holds of the stream (hf_receive phase=discard): it failed on the controller."""
        try:
            self.calls += 1
            self._execute_module(module_name=RECEIVER, module_args=dict(
                {k: v for k, v in common.items() if k in ("cache_dir", "hf_home")}, phase="discard", models=[],
                staging_dir=staging, stream_id=stream_id), task_vars=task_vars)
        except AnsibleError:  # the failure being reported is the one that matters
            pass

    def finish(self, out, models):
        out["changed"] = any(r.get("changed") for r in models)
        diffs = [r["diff"] for r in models if r.get("changed") and r.get("diff")]
        if diffs:
            out["diff"] = diffs
        return out

    def results(self, seeds, models, failure=None):
        """Per model, in the order of `seeds`: hf_receive's result for it, the model as `item` and its `record`.
        With `failure` (the failed run of hf_receive), the model it names fails with it and the models after it,
        which it did not reach, are left out of `results` but not of `records`."""
        out = []
        for seed, result in zip(seeds, models):
            out.append(dict(result, item=seed_model(seed), record=self.record(seed, result)))
        if failure is not None:
            for seed in seeds[len(models):]:
                result = dict(failure.get("model_result") or {}, failed=True, msg=failure.get("msg"),
                              error_kind=failure.get("error_kind"), fix=failure.get("fix"))
                if self.concerns(failure, seed):
                    out.append(dict(result, item=seed_model(seed), record=self.record(seed, result)))
        return out

    @staticmethod
    def concerns(failure, seed):
        """Whether `failure` is the model's: the one it names, else one of its refused files, else any."""
        if failure.get("model"):
            return failure["model"] == seed_name(seed)
        repos = set(f[0] for f in failure.get("corrupt_files") or [] if f)
        return not repos or seed_model(seed).get("repo_id") in repos

    def record(self, seed, result):
        return _record.build(seed_model(seed), dict(result, listing=result.get("listing") or seed.get("listing")),
                             self._task.args.get("source", "controller"))

    def check_args(self, args):
        seeds = args.get("models")
        if not isinstance(seeds, list) or not all(isinstance(s, dict) for s in seeds):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "models must be a list of the controller's results or the bundle's entries")
        source = args.get("source", "controller")
        if source not in ("controller", "bundle"):
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "source must be controller or bundle, got %r" % (source,))
        if source == "bundle" and not args.get("bundle"):
            raise _errors.Failure(_errors.INVALID_ARGUMENT,
                                  "source is bundle but no bundle is given: set bundle to the bundle file on the"
                                  " controller")
        staging = args.get("staging_dir")
        if not isinstance(staging, str) or not staging.startswith("/"):
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "staging_dir must be an absolute path on the host")
        links = args.get("links", True)
        try:
            links = boolean(links, strict=True)
        except TypeError:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "links must be true or false, got %r" % (links,))
        common = {k: args[k] for k in COMMON if args.get(k) is not None}
        return seeds, common, source, links

    @staticmethod
    def chunk_size(args):
        try:
            size = _space.parse_size(args.get("chunk_size", _carry.DEFAULT_CHUNK))
        except ValueError:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "chunk_size must be bytes or a size such as '64M', got %r"
                                  % (args.get("chunk_size"),))
        _carry.plan_stream([], size)  # the minimum
        return size

    def uploader(self):
        """The user whose connection writes the chunks, when the module runs as another (become)."""
        if not self._play_context.become:
            return None
        user = self._get_remote_user()
        if not user and self._connection.transport in ("local", "ansible.builtin.local"):
            user = getpass.getuser()
        return user or None

    def receive(self, task_vars, seeds, module_args):
        """One run of hf_receive on the host; a failure comes back as this task's result."""
        self.calls += 1
        res = self._execute_module(module_name=RECEIVER, module_args=module_args, task_vars=task_vars)
        if not res.get("failed"):
            return res
        kind = res.get("error_kind") or _errors.OTHER
        failed = {"failed": True, "changed": bool(res.get("changed")), "msg": res.get("msg"), "error_kind": kind,
                  "fix": res.get("fix") or _errors.fix(kind)}
        for key in ("model", "model_result", "corrupt_files", "exception"):
            if key in res:
                failed[key] = res[key]
        failed["results"] = self.results(seeds, res.get("models") or [], failed)
        return self.named(failed)

    @staticmethod
    def named(failed):
        """A failure's msg names the models that failed."""
        failed["msg"] = _record.failed_msg([r["record"] for r in failed.get("results") or []], failed.get("msg"))
        return failed

    def send(self, plan, blobs, source, seeds, args, held, stream_dir, task_vars):
        """Write the stream chunk by chunk on the controller, each blob checked against its id before a byte of it
        is written, and put each chunk the host does not hold yet into the stream's folder on the host (made by
        the probe for this stream, which only the connection's user can write); returns the chunks
        [{name, size, sha256}]. A chunk is put by a thread of its own while the next one is written, so at most
        three chunk files are on the controller's disk at once (one being put, one waiting, one being written)."""
        held = {c["name"]: c for c in held}
        progress = Progress(task_vars.get("inventory_hostname", "host"), plan["total"])
        reader = BundleSource(args["bundle"]) if source == "bundle" else ControllerSource(seeds)
        checker = None
        where = chunk_folder(plan["chunk_size"])
        forget_dead_runs(where)
        folder = tempfile.mkdtemp(prefix="hf-carry-%d-" % os.getpid(), dir=where)

        def put(chunk, path):
            if _carry.held_matches(chunk, held):
                progress.held += chunk["size"]
                self.stats["bytes_held"] += chunk["size"]
                return
            remote = "%s/%s" % (stream_dir, chunk["name"])
            try:
                self._connection.put_file(path, remote)
            except AnsibleError as exc:
                done = human(progress.sent + progress.held)
                raise _errors.Failure(
                    _errors.TRANSIENT,
                    "sending %s (%s of %s sent) to %s failed: %s; the chunks already there are kept, and the"
                    " next run sends only the others" % (chunk["name"], done, human(plan["total"]), remote, exc))
            progress.sent += chunk["size"]
            self.stats["bytes_sent"] += chunk["size"]
            self.stats["chunks_sent"] += 1

        sender = Sender(put)
        done = []
        progress.start()
        try:
            checker = _carry.Prechecker(blobs, reader.open)
            for chunk, path in _carry.write_chunks(plan, blobs, checker, folder):
                sender.send(chunk, path)
                done.append(chunk)
            sender.finish()
            return done
        finally:
            sender.finish(raise_error=False)
            progress.stop()
            if checker is not None:
                checker.close()
            reader.close()
            shutil.rmtree(folder, ignore_errors=True)


class Sender:
    """Puts chunks, one at a time in a thread of its own, while the caller writes the next: `send` hands one
    over (waiting while one is still waiting to be put) and raises the failure of an earlier put; `finish` waits
    for the last and raises a failure. Each chunk's file is removed once put (or skipped)."""

    def __init__(self, put):
        self.put = put
        self.queue = queue.Queue(maxsize=1)
        self.error = None
        self.finished = False
        self.thread = threading.Thread(target=self._run, name="hf-carry-put", daemon=True)
        self.thread.start()

    def _run(self):
        for chunk, path in iter(self.queue.get, None):
            try:
                if self.error is None:
                    self.put(chunk, path)
            except BaseException as exc:  # pylint: disable=broad-except  # raised by send() or finish()
                self.error = exc
            finally:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def send(self, chunk, path):
        if self.error is not None:
            raise self.error
        self.queue.put((chunk, path))

    def finish(self, raise_error=True):
        if not self.finished:
            self.finished = True
            self.queue.put(None)
            self.thread.join()
        if raise_error and self.error is not None:
            raise self.error
