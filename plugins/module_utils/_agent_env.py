# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agents' environment on a host: their systemd drop-ins, the root-only token file and the local facts file.

One plan for the three kinds of file: every destination is inspected first (its folder and itself reached
without following a link, read without blocking and with a size cap), and only when none of them is refused is
anything written. A write is a temporary file in the same folder, owner and mode set through its descriptor,
fsync'ed and renamed over the destination. The texts are those of the model_cache role's templates and tasks,
byte for byte, so a host the role set up sees no change.

The token is never put into a result, a diff or a message: the token file's diff shows it masked.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs

READ_LIMIT = 1 << 20
MASK = "********"
UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.(service|socket|target|timer|path|mount|slice|scope)$")
DROPIN_RE = re.compile(r"^[^/]+\.conf$")
UNIT_NAME_MAX = 255
ROOT = 0
DROPIN_MODE = 0o644
TOKEN_MODE = 0o600
FACTS_MODE = 0o644
DIR_MODE = 0o755
TOKEN_HEADER = "# managed by Ansible (justnews.huggingface.model_cache)"
# Values that go into a line of a file, and into which file: a newline or NUL there would start another line.
LINE_VALUES = ("hf_home", "hub_cache", "endpoint", "token", "token_file", "systemd_dir", "facts_file")
_MISSING = object()


class Failure(Exception):
    """A failure of the run, with its error_kind (from _errors)."""

    def __init__(self, msg, kind):
        super().__init__(msg)
        self.msg = msg
        self.kind = kind


def check_params(p):
    """The parameters as the run reads them (hub_cache filled in); raises Failure(invalid_argument) naming the
    option. The token's value is never quoted."""
    for option in LINE_VALUES:
        value = p.get(option)
        if value is not None and ("\n" in value or "\r" in value or "\0" in value):
            raise Failure("%s must not contain a newline or a NUL character: it is written into a line of a file"
                          % option, _errors.INVALID_ARGUMENT)
    if not DROPIN_RE.match(p["dropin_name"]) or "\n" in p["dropin_name"] or "\0" in p["dropin_name"] or \
            p["dropin_name"].startswith(".tmp-"):
        raise Failure("dropin_name must be a file name ending in .conf (systemd reads only those), got %r"
                      % p["dropin_name"], _errors.INVALID_ARGUMENT)
    for unit in p["units"]:
        if not isinstance(unit, str) or len(unit) > UNIT_NAME_MAX or not UNIT_RE.match(unit) or "/" in unit:
            raise Failure("units: %r is not a systemd unit name such as justnews@memory.service (letters, digits,"
                          " ':', '_', '.', '@', '-', then a type such as .service; at most %d characters)"
                          % (unit, UNIT_NAME_MAX), _errors.INVALID_ARGUMENT)
    if len(set(p["units"])) != len(p["units"]):
        raise Failure("units names a unit more than once", _errors.INVALID_ARGUMENT)
    for option in ("systemd_dir", "token_file", "facts_file"):
        if not os.path.isabs(p[option]) or os.path.basename(os.path.normpath(p[option])) in ("", ".", ".."):
            raise Failure("%s must be an absolute path, got %r" % (option, p[option]), _errors.INVALID_ARGUMENT)
    if p["state"] == "present":
        if not p.get("hf_home"):
            raise Failure("hf_home is required with state=present", _errors.INVALID_ARGUMENT)
        if not p.get("hub_cache"):
            p["hub_cache"] = p["hf_home"] + "/hub"  # the role's __model_cache_hub_cache
        for option in ("hf_home", "hub_cache"):
            if not os.path.isabs(p[option]):
                raise Failure("%s must be an absolute path, got %r" % (option, p[option]), _errors.INVALID_ARGUMENT)
    if p.get("now") is not None and not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", p["now"]):
        raise Failure("now must be a UTC time such as 2026-01-31T12:00:00Z, got %r" % p["now"],
                      _errors.INVALID_ARGUMENT)
    models = p.get("models") or []
    for i, model in enumerate(models if not any(m.get("skipped") for m in models) else []):
        if "repo_id" not in model:
            raise Failure("models[%d] must be a model's fetch result with its repo_id" % i, _errors.INVALID_ARGUMENT)
    return p


# --- the texts ---------------------------------------------------------------------------------------------------

def dropin_text(unit, hf_home, hub_cache, offline, endpoint, token, token_file):
    """templates/hf-cache.conf.j2 of the role, rendered as Ansible's template module renders it."""
    lines = ["# managed by Ansible (justnews.huggingface.model_cache): local changes are overwritten.",
             "# Points %s at the pre-fetched Hugging Face cache." % unit]
    if token:
        lines.append("# The token is read from %s (root-only); it is never written here." % token_file)
    lines += ["[Service]", 'Environment="HF_HOME=%s"' % hf_home, 'Environment="HF_HUB_CACHE=%s"' % hub_cache]
    if offline:
        lines.append('Environment="HF_HUB_OFFLINE=1"')
    lines.append('Environment="HF_HUB_DISABLE_TELEMETRY=1"')
    if endpoint:
        lines.append('Environment="HF_ENDPOINT=%s"' % endpoint)
    if token:
        lines.append("EnvironmentFile=-%s" % token_file)
    return ("\n".join(lines) + "\n").encode("utf-8")


def token_text(token):
    """The token file of tasks/token.yml."""
    return ("%s\nHF_TOKEN=%s\nHF_HUB_TOKEN=%s\n" % (TOKEN_HEADER, token, token)).encode("utf-8")


def mask_token_text(data):
    """A token file as a diff may show it: every value after '=' masked, any other line but the header too."""
    if data is None:
        return None
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line == TOKEN_HEADER or not line.strip():
            out.append(line)
        elif "=" in line and re.match(r"^\s*(export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            out.append(line.split("=", 1)[0] + "=" + MASK)
        else:
            out.append(MASK)
    return "\n".join(out) + ("\n" if out else "")


def _jinja_int(value):
    """Jinja's int filter: the number, else the float's integer part, else 0."""
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return 0


def previous_models(data):
    """The models of a previous facts file's bytes; [] when there is none or it is not JSON."""
    if data is None:
        return []
    try:
        facts = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return []
    models = facts.get("models") if isinstance(facts, dict) else None
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def facts_data(hub_cache, models, previous, now):
    """The facts of tasks/facts.yml: per model its commit, files and bytes, and when a run last fetched and
    verified it (kept from the previous entry of the same repo_id unless it was fetched or its commit moved)."""
    entries = []
    for m in models:
        old = next((o for o in previous if o.get("repo_id") == m.get("repo_id")), {})
        commit = m.get("commit")
        fetched = bool(m.get("changed")) and (_jinja_int(m.get("downloaded_bytes")) > 0
                                              or m.get("previous_commit", _MISSING) != commit)
        moved = fetched or old.get("commit") != commit
        entries.append({
            "repo_id": m.get("repo_id"),
            "revision": m.get("revision"),
            "commit": commit,
            "files": _jinja_int(m.get("files")),
            "bytes": _jinja_int(m.get("bytes")),
            "link": m.get("link"),
            "source": m.get("source"),
            "last_fetched": now if moved else old.get("last_fetched"),
            "last_verified": now if moved else old.get("last_verified"),
        })
    return {"cache_dir": hub_cache, "models": entries}


def facts_text(facts):
    """Ansible's to_nice_json, and the newline of the task's content."""
    return (json.dumps(facts, indent=4, sort_keys=True, separators=(",", ": ")) + "\n").encode("utf-8")


# --- the plan ------------------------------------------------------------------------------------------------

class Target:
    """One file the run manages: what it should hold (None: absent), and what is there now."""

    def __init__(self, label, path, want, mode, unit=None, masked=False, backup=False):
        self.label = label
        self.path = os.path.normpath(path)
        self.dir_path, self.name = os.path.split(self.path)
        self.want = want
        self.mode = mode
        self.unit = unit
        self.masked = masked
        self.backup = backup
        self.dir_exists = False
        self.exists = False
        self.current = None
        self.st = None
        self.action = None  # None, "create", "replace", "attrs" or "remove"
        self.dir_removable = False
        self.backup_file = None
        self.dir_removed = False

    def inspect(self, remove_dir=False):
        """What is there, reached without following a link; raises _fs.Refused naming the path."""
        try:
            dir_fd, _made = _fs.open_dir_path(self.dir_path)
        except (FileNotFoundError, NotADirectoryError):
            self.dir_exists = False
        else:
            self.dir_exists = True
            try:
                found = _fs.read_at(dir_fd, self.name, READ_LIMIT, where=self.path)
                if found is not None:
                    self.exists = True
                    self.current, self.st = found
                if remove_dir and self.want is None:
                    left = [n for n in os.listdir(dir_fd) if n != self.name]
                    self.dir_removable = not left
            finally:
                os.close(dir_fd)
        self.action = self.decide()

    def decide(self):
        """What the file needs: None, create, replace, attrs (owner or mode only) or remove."""
        if self.want is None:
            return "remove" if self.exists else None
        if not self.exists:
            return "create"
        if self.current != self.want:
            return "replace"
        if stat.S_IMODE(self.st.st_mode) != self.mode or (self.st.st_uid, self.st.st_gid) != (ROOT, ROOT):
            return "attrs"
        return None

    @property
    def changed(self):
        return self.action is not None

    def _shown(self, data, size):
        if data is None:
            return "(%d bytes, not shown)\n" % size if size is not None else ""
        if self.masked:
            return mask_token_text(data)
        return data.decode("utf-8", "replace")

    def diff(self):
        """The diff entry of this file, None when it does not change."""
        if self.action is None:
            return None
        size = self.st.st_size if self.st is not None else None
        before = self._shown(self.current, size) if self.exists else ""
        after = self._shown(self.want, len(self.want)) if self.want is not None else ""
        entry = {"before_header": self.path if self.exists else "%s (absent)" % self.path,
                 "after_header": self.path if self.want is not None else "%s (absent)" % self.path,
                 "before": before, "after": after}
        if self.action == "attrs":
            entry["before_header"] = "%s (mode %04o, owner %d:%d)" % (
                self.path, stat.S_IMODE(self.st.st_mode), self.st.st_uid, self.st.st_gid)
            entry["after_header"] = "%s (mode %04o, owner %d:%d)" % (self.path, self.mode, ROOT, ROOT)
        return entry

    def apply(self, uid, gid):
        """Make it so; the folder (and the ones above it) made root 0755 when missing."""
        if self.action is None and not (self.want is None and self.dir_removable):
            return
        if self.want is None:
            self._remove()
            return
        dir_fd, _made = _fs.open_dir_path(self.dir_path, create=True, mode=DIR_MODE, uid=uid, gid=gid)
        try:
            if self.action == "attrs":
                _fs.set_attrs_at(dir_fd, self.name, self.mode, uid, gid, where=self.path)
                return
            if self.action == "replace" and self.backup:
                self.backup_file = _backup(dir_fd, self.dir_path, self.name)
            try:
                _fs.replace_at(dir_fd, self.name, self.want, self.mode, uid, gid)
            except BaseException:
                if self.backup_file:
                    _unlink_quietly(dir_fd, os.path.basename(self.backup_file))
                    self.backup_file = None
                raise
        finally:
            os.close(dir_fd)

    def _remove(self):
        try:
            dir_fd, _made = _fs.open_dir_path(self.dir_path)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if self.action == "remove":
                st = os.stat(self.name, dir_fd=dir_fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise _fs.Refused(self.path, "is %s; not removed" % _fs.describe(st.st_mode))
                try:
                    os.unlink(self.name, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
        finally:
            os.close(dir_fd)
        if self.dir_removable:
            parent, name = os.path.split(self.dir_path)
            parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(name, dir_fd=parent_fd)
                    self.dir_removed = True
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    raise
            finally:
                os.close(parent_fd)


def _backup(dir_fd, dir_path, name):
    """Keep the file `name` as `<name>.<pid>.<time>~` beside it (the name Ansible's backup gives, which systemd
    does not read): a hard link to it, so the rename that follows leaves it as it was. Returns its path."""
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S~", time.localtime())
    base = "%s.%s.%s" % (name, os.getpid(), stamp)
    for attempt in range(100):
        backup = base if not attempt else "%s.%d~" % (base[:-1], attempt)
        try:
            os.link(name, backup, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            return os.path.join(dir_path, backup)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free backup name", os.path.join(dir_path, base))


def _unlink_quietly(dir_fd, name):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _os_kind(exc):
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return _errors.NOT_WRITABLE
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _errors.DISK_FULL
    return _errors.OTHER


class AgentEnv:
    """The run: plan, inspect everything, then (unless check mode) write."""

    def __init__(self, p, check_mode=False, uid=ROOT, gid=ROOT):
        self.p = p
        self.check_mode = check_mode
        self.uid, self.gid = uid, gid
        self.present = p["state"] == "present"
        self.token = p.get("token") or ""

    def mask(self, text):
        return text.replace(self.token, MASK) if self.token else text

    def _facts_target(self):
        p = self.p
        if not self.present:
            return Target("facts file", p["facts_file"], None, FACTS_MODE), None
        models = p.get("models")
        if models is None:
            return None, "models not given"
        if any(m.get("skipped") for m in models):
            return None, "a model was skipped"
        target = Target("facts file", p["facts_file"], b"", FACTS_MODE)
        return target, None

    def run(self):
        p = self.p
        facts, facts_skip = self._facts_target()
        token_want = token_text(self.token) if self.present and self.token else None
        targets = []
        if facts is not None:
            targets.append(facts)
        token = Target("token file", p["token_file"], token_want, TOKEN_MODE, masked=True)
        targets.append(token)
        dropins = []
        for unit in p["units"]:
            want = None
            if self.present:
                want = dropin_text(unit, p["hf_home"], p["hub_cache"], p["offline"], p["endpoint"], self.token,
                                   p["token_file"])
            target = Target("drop-in of %s" % unit, os.path.join(p["systemd_dir"], unit + ".d", p["dropin_name"]),
                            want, DROPIN_MODE, unit=unit, backup=p["backup"])
            dropins.append(target)
            targets.append(target)

        refused = []
        for target in targets:
            try:
                if target is facts and self.present:
                    facts.want = None  # read what is there first, then work out what it should hold
                    facts.inspect()
                    data = facts_data(p["hub_cache"], p["models"], previous_models(facts.current),
                                      p.get("now") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                    facts.want = facts_text(data)
                    facts.action = facts.decide()
                else:
                    target.inspect(remove_dir=target.unit is not None)
            except _fs.Refused as exc:
                refused.append("the %s %s" % (target.label, exc))
            except OSError as exc:
                raise Failure(self.mask("the %s %s could not be read: %s" % (target.label, target.path, exc)),
                              _os_kind(exc))
        if refused:
            raise Failure(self.mask("Nothing was written: %s." % "; ".join(refused)), _errors.UNSAFE_DESTINATION)

        if not self.check_mode:
            for target in targets:
                try:
                    target.apply(self.uid, self.gid)
                except _fs.Refused as exc:
                    raise Failure(self.mask("the %s %s (it changed while the module ran)" % (target.label, exc)),
                                  _errors.UNSAFE_DESTINATION)
                except OSError as exc:
                    raise Failure(self.mask("the %s %s could not be written: %s" % (target.label, target.path, exc)),
                                  _os_kind(exc))
        else:
            for target in dropins:
                target.dir_removed = target.dir_removable and target.want is None
        return self._result(facts, facts_skip, token, dropins, targets)

    def _result(self, facts, facts_skip, token, dropins, targets):
        p = self.p
        units = []
        for target in dropins:
            entry = {"unit": target.unit, "dest": target.path, "changed": target.changed,
                     "created": target.action == "create"}
            if target.backup_file:
                entry["backup_file"] = target.backup_file
            if not self.present:
                entry["removed"] = target.action == "remove"
                entry["dir_removed"] = target.dir_removed
            units.append(entry)
        facts_result = {"path": p["facts_file"], "changed": bool(facts is not None and facts.changed)}
        if facts_skip:
            facts_result["skipped"] = facts_skip
        result = {
            "changed": any(t.changed for t in targets) or any(t.dir_removed for t in dropins),
            "dropins": units,
            "changed_units": [t.unit for t in dropins if t.changed],
            "token_file": {"path": p["token_file"], "changed": token.changed,
                           "state": "present" if token.want is not None else "absent"},
            "token_changed": token.changed,
            "facts": facts_result,
            "facts_changed": facts_result["changed"],
        }
        diffs = [d for d in (t.diff() for t in targets) if d is not None]
        return result, diffs

    def message(self, result):
        changed = []
        if result["facts_changed"]:
            changed.append("the facts file")
        if result["token_changed"]:
            changed.append("the token file")
        if result["changed_units"]:
            changed.append("the drop-ins of %s" % ", ".join(result["changed_units"]))
        verb = "would change" if self.check_mode else "changed"
        return "%s %s." % (verb.capitalize(), ", ".join(changed)) if changed else "Nothing to change."
