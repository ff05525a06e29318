# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agents' environment on a host: their systemd drop-ins, the root-only token file and the local facts file.

One plan for the three kinds of file: every destination is inspected first (its folder and itself reached
without following a link, read without blocking and with a size cap), and only when none of them is refused is
anything written. A write is a temporary file in the same folder, owner and mode set through its descriptor,
fsync'ed and renamed over the destination. The texts are those of the model_cache role's templates and tasks,
byte for byte, so a host the role set up sees no change.

The token is never put into a result, a diff or a message: every value the run knows to be a secret (the token,
the values of the token file, and of a drop-in's secret variables such as HF_TOKEN, old or new) is masked in the
diffs of every file and in the messages.

A drop-in replaced with `backup` is kept as a copy (never a link to the live file) in a root-only folder
(`backup_dir`, root 0700, each folder on the way root's and writable by no other user, no link followed), root
0600, for the role's rollback, which puts it back through this module (state restored) and removes it.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import stat
import time

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs
from ansible_collections.justnews.huggingface.plugins.module_utils import _systemd

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
LINE_VALUES = ("hf_home", "hub_cache", "endpoint", "token", "token_file", "systemd_dir", "facts_file",
               "backup_dir")
BACKUP_DIR = "/var/lib/justnews-huggingface/dropin-backups"
BACKUP_MODE = 0o600
BACKUP_DIR_MODE = 0o700
# <unit>_<drop-in name, both cut short>.<16 hex of the drop-in's path>.<pid>.<UTC time>[.<n>]~
BACKUP_RE = re.compile(r"^[^/]*\.(?P<key>[0-9a-f]{16})\.[0-9]+\.[0-9]{8}T[0-9]{6}(\.[0-9]+)?~$")
# Where earlier releases kept a replaced drop-in: a hard link beside it, `<name>.<pid>.<local time>[.<n>]~`,
# readable by everyone; such a leftover of an interrupted run is removed.
LEGACY_BACKUP = r"\.[0-9]+\.[0-9]{4}-[0-9]{2}-[0-9]{2}@[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?~$"
# Variables whose value is a secret, besides the token variables of the Hub's libraries (_systemd.TOKEN_KEYS).
SECRET_NAME_RE = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|(^|_)(API_?)?KEY($|_)", re.IGNORECASE)
_MISSING = object()
# Only _systemd's names and masking are used here: none of its failures can reach hf_agent_env.
CONTAINS_FAILURES_OF = ("_systemd",)


def _invalid(msg):
    return _errors.Failure(_errors.INVALID_ARGUMENT, msg)


def check_params(p):
    """The parameters as the run reads them (hub_cache filled in); raises _errors.Failure(invalid_argument)
    naming the option. The token's value is never quoted."""
    for option in LINE_VALUES:
        value = p.get(option)
        if value is not None and ("\n" in value or "\r" in value or "\0" in value):
            raise _invalid("%s must not contain a newline or a NUL character: it is written into a line of a file"
                           % option)
    if not DROPIN_RE.match(p["dropin_name"]) or "\n" in p["dropin_name"] or "\0" in p["dropin_name"] or \
            p["dropin_name"].startswith(".tmp-"):
        raise _invalid("dropin_name must be a file name ending in .conf (systemd reads only those), got %r"
                       % p["dropin_name"])
    for unit in p["units"]:
        if not isinstance(unit, str) or len(unit) > UNIT_NAME_MAX or not UNIT_RE.match(unit) or "/" in unit:
            raise _invalid("units: %r is not a systemd unit name such as justnews@memory.service (letters, digits,"
                           " ':', '_', '.', '@', '-', then a type such as .service; at most %d characters)"
                           % (unit, UNIT_NAME_MAX))
    if len(set(p["units"])) != len(p["units"]):
        raise _invalid("units names a unit more than once")
    p.setdefault("backup_dir", BACKUP_DIR)
    for option in ("systemd_dir", "token_file", "facts_file", "backup_dir"):
        if not os.path.isabs(p[option]) or os.path.basename(os.path.normpath(p[option])) in ("", ".", ".."):
            raise _invalid("%s must be an absolute path, got %r" % (option, p[option]))
    if p["state"] == "restored":
        p["backups"] = check_backups(p)
    elif p.get("backups"):
        raise _invalid("backups is only read with state=restored")
    if p["state"] == "present":
        if not p.get("hf_home"):
            raise _invalid("hf_home is required with state=present")
        if not p.get("hub_cache"):
            p["hub_cache"] = p["hf_home"] + "/hub"  # the role's __model_cache_hub_cache
        for option in ("hf_home", "hub_cache"):
            if not os.path.isabs(p[option]):
                raise _invalid("%s must be an absolute path, got %r" % (option, p[option]))
    if p.get("now") is not None and not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", p["now"]):
        raise _invalid("now must be a UTC time such as 2026-01-31T12:00:00Z, got %r" % p["now"])
    models = p.get("models") or []
    for i, model in enumerate(models if not any(m.get("skipped") for m in models) else []):
        if "repo_id" not in model:
            raise _invalid("models[%d] must be a model's fetch result with its repo_id" % i)
    return p


def backup_key(path):
    """What names the backups of the drop-in at `path` (so that one is only ever put back where it was taken)."""
    return hashlib.sha256(os.path.normpath(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def dropin_path(p, unit):
    return os.path.normpath(os.path.join(p["systemd_dir"], unit + ".d", p["dropin_name"]))


def check_backups(p):
    """The entries of `backups` (the `dropins` of a run's result) as (unit, backup name or None, mode, created);
    raises _errors.Failure(invalid_argument) naming the entry. A backup must be a file of backup_dir taken from
    that unit's drop-in: nothing else is read or put back."""
    entries = []
    for i, entry in enumerate(p.get("backups") or []):
        if not isinstance(entry, dict) or entry.get("unit") not in p["units"]:
            raise _invalid("backups[%d] must be an entry of the dropins of hf_agent_env's result, for a unit of units"
                           % i)
        unit, dest = entry["unit"], dropin_path(p, entry["unit"])
        if entry.get("dest") and os.path.normpath(entry["dest"]) != dest:
            raise _invalid("backups[%d] is the drop-in %s, not %s: give the same systemd_dir and dropin_name as the"
                           " run that kept it" % (i, entry["dest"], dest))
        name = None
        if entry.get("backup_file"):
            folder, name = os.path.split(os.path.normpath(str(entry["backup_file"])))
            if folder != os.path.normpath(p["backup_dir"]) or _backup_key_of(name) != backup_key(dest):
                raise _invalid("backups[%d]: %s is not a backup of %s in backup_dir %s" % (
                    i, entry["backup_file"], dest, p["backup_dir"]))
        mode = DROPIN_MODE
        if entry.get("backup_mode") is not None:
            try:
                mode = int(str(entry["backup_mode"]), 8) & DROPIN_MODE  # never more open than a drop-in of ours
            except ValueError:
                raise _invalid("backups[%d].backup_mode must be octal such as '0644', got %r"
                               % (i, entry["backup_mode"]))
        entries.append((unit, name, mode, bool(entry.get("created"))))
    if len({e[0] for e in entries}) != len(entries):
        raise _invalid("backups names a unit more than once")
    return entries


# --- secrets ---------------------------------------------------------------------------------------------------

_DIRECTIVE_RE = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9]*\s*=)(.*)$", re.DOTALL)
# A word of a unit file's value: quoted parts, escapes and other characters up to unquoted white space.
_WORD_RE = re.compile(r"(?:\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?|\\.|[^\s\"'\\])+")


def secret_name(name):
    """Whether a variable of this name holds a secret."""
    return name in _systemd.TOKEN_KEYS or bool(SECRET_NAME_RE.search(name))


def _unquote(word):
    out, quote, i = [], None, 0
    while i < len(word):
        char = word[i]
        if char == "\\" and i + 1 < len(word) and quote != "'":
            out.append(word[i + 1])
            i += 2
            continue
        if quote:
            if char == quote:
                quote = None
            else:
                out.append(char)
        elif char in "\"'":
            quote = char
        else:
            out.append(char)
        i += 1
    return "".join(out)


def mask_assignments(text, found=None):
    """A unit file's text with the value of every NAME=value word whose name is a secret's (HF_TOKEN, ...,
    anything named like a token, secret, password or key) replaced by MASK, whatever its quoting, on a directive's
    line (Environment=, ExecStart=, ...) or a continuation line. The values are added to the set `found`."""
    out, continued = [], False
    for line in text.split("\n"):
        match = None if continued or line.lstrip().startswith(("#", ";")) else _DIRECTIVE_RE.match(line)
        prefix, rest = (match.group(1), match.group(2)) if match else ("", line)
        out.append(prefix + _WORD_RE.sub(lambda m: _mask_word(m.group(0), found), rest))
        continued = line.endswith("\\")
    return "\n".join(out)


def _mask_word(raw, found):
    name, eq, value = _unquote(raw).partition("=")
    if not eq or not secret_name(name.strip()):
        return raw
    if found is not None and value:
        found.add(value)
    quote = raw[0] if raw[0] in "\"'" else ""
    return quote + name + "=" + MASK + quote


def token_values(data):
    """The values of a token file's lines (all of them are secrets)."""
    values = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        _name, eq, value = line.partition("=")
        if eq and not line.lstrip().startswith("#"):
            values.append(_unquote(value.strip()))
    return values


class Secrets:
    """Every secret value the run has seen: the token, the token file's values old and new, and the values of
    secret variables in the drop-ins old and new. Masked, whatever their shape, in diffs and messages."""

    def __init__(self, token=""):
        self.token = token or ""
        self.values = set()

    def add(self, value):
        if isinstance(value, str) and len(value.strip()) >= _systemd.SECRET_MIN:
            self.values.update({value, value.strip()})

    def mask(self, text):
        if self.token:
            text = text.replace(self.token, MASK)
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return _systemd.mask(text)  # and anything shaped like a Hub token


# --- the texts ---------------------------------------------------------------------------------------------------

# Variables the drop-in sets or that would redirect the agents' cache, endpoint or token. An EnvironmentFile of a
# unit that sets one of them wins over the drop-in (the JustNews start script re-sources those files), so hf_units
# and hf_doctor report them.
MANAGED_ENV = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT") + _systemd.TOKEN_KEYS + (
    "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE", "SENTENCE_TRANSFORMERS_HOME")


def expected_env(hf_home, hub_cache, offline, endpoint, token_set):
    """What the agents' processes see once they run with dropin_text's drop-in (hub_cache defaults as in
    check_params): "<set>"/"<unset>" test presence only, for the token, whose value never leaves the host."""
    env = {"HF_HOME": hf_home, "HF_HUB_CACHE": hub_cache or hf_home + "/hub",
           "HF_HUB_OFFLINE": "1" if offline else "<unset>", "HF_TOKEN": "<set>" if token_set else "<unset>"}
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def dropin_text(unit, hf_home, hub_cache, offline, endpoint, token, token_file):
    """The drop-in of `unit`: the hub cache, offline mode, endpoint and the token file to read; never the token."""
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
    """The root-only token file that the drop-in reads with EnvironmentFile=-."""
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


def _count(value):
    """A count of a model's record (an int, or none)."""
    return int(value or 0)


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
    """The local facts (ansible_local.justnews_huggingface): per model its commit, files and bytes, and when a run last fetched and
    verified it (kept from the previous entry of the same repo_id unless it was fetched or its commit moved)."""
    entries = []
    for m in models:
        old = next((o for o in previous if o.get("repo_id") == m.get("repo_id")), {})
        commit = m.get("commit")
        fetched = bool(m.get("changed")) and (_count(m.get("downloaded_bytes")) > 0
                                              or m.get("previous_commit", _MISSING) != commit)
        moved = fetched or old.get("commit") != commit
        entries.append({
            "repo_id": m.get("repo_id"),
            "revision": m.get("revision"),
            "commit": commit,
            "files": _count(m.get("files")),
            "bytes": _count(m.get("bytes")),
            "link": m.get("link"),
            "source": m.get("source"),
            "last_fetched": now if moved else old.get("last_fetched"),
            "last_verified": now if moved else old.get("last_verified"),
        })
    return {"cache_dir": hub_cache, "models": entries}


def facts_text(facts):
    """Ansible's to_nice_json, and the newline of the task's content."""
    return (json.dumps(facts, indent=4, sort_keys=True, separators=(",", ": ")) + "\n").encode("utf-8")


def options():
    """The argument spec of what the agents' environment is: hf_agent_env's options, and those of the
    `environment` that hf_units' settle and verify are given, so that all three read the same values."""
    return dict(
        units=dict(type="list", elements="str", default=[]),
        dropin_name=dict(type="str", default="60-hf-cache.conf"),
        systemd_dir=dict(type="path", default="/etc/systemd/system"),
        hf_home=dict(type="path"),
        hub_cache=dict(type="path"),
        offline=dict(type="bool", default=True),
        endpoint=dict(type="str", default=""),
        token=dict(type="str", default="", no_log=True),
        token_file=dict(type="path", default="/etc/justnews/huggingface-token.env"),
        backup=dict(type="bool", default=True),
        backup_dir=dict(type="path", default=BACKUP_DIR),
        facts_file=dict(type="path", default="/etc/ansible/facts.d/justnews_huggingface.fact"),
    )


# The defaults of hf_agent_env's options that check() may be given without (the role passes the others).
CHECK_DEFAULTS = dict(state="present", models=None, now=None, backups=None,
                      **{name: spec.get("default") for name, spec in options().items()})


def check(params):
    """Whether hf_agent_env given `params` would change anything: (changed, result), decided by its own run in
    check mode (nothing is written). Raises _errors.Failure as that run would."""
    p = dict(CHECK_DEFAULTS)
    p.update((k, v) for k, v in params.items() if v is not None)
    check_params(p)
    result, _diffs = AgentEnv(p, check_mode=True).run()
    return result["changed"], result


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
        self.stale = []  # backups an earlier release left beside a drop-in

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
                if self.unit is not None:
                    legacy = re.compile("^" + re.escape(self.name) + LEGACY_BACKUP)
                    self.stale = sorted(n for n in os.listdir(dir_fd) if legacy.match(n))
                if remove_dir and self.want is None:
                    left = [n for n in os.listdir(dir_fd) if n != self.name and n not in self.stale]
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

    @property
    def keeps_backup(self):
        """Whether the run keeps the previous text for a rollback: a drop-in whose text changes."""
        return self.backup and self.action == "replace"

    def secrets(self, found):
        """Add the secret values of this file, before and after, to the set `found`."""
        for data in (self.current, self.want):
            if data is None:
                continue
            if self.masked:
                found.update(token_values(data))
            else:
                mask_assignments(data.decode("utf-8", "replace"), found)

    def _shown(self, data, size, secrets):
        if data is None:
            return "(%d bytes, not shown)\n" % size if size is not None else ""
        text = mask_token_text(data) if self.masked else mask_assignments(data.decode("utf-8", "replace"))
        return secrets.mask(text)

    def diff(self, secrets):
        """The diff entry of this file, None when it does not change; every secret value masked."""
        if self.action is None:
            return None
        size = self.st.st_size if self.st is not None else None
        before = self._shown(self.current, size, secrets) if self.exists else ""
        after = self._shown(self.want, len(self.want), secrets) if self.want is not None else ""
        entry = {"before_header": self.path if self.exists else "%s (absent)" % self.path,
                 "after_header": self.path if self.want is not None else "%s (absent)" % self.path,
                 "before": before, "after": after}
        if self.action == "attrs":
            entry["before_header"] = "%s (mode %04o, owner %d:%d)" % (
                self.path, stat.S_IMODE(self.st.st_mode), self.st.st_uid, self.st.st_gid)
            entry["after_header"] = "%s (mode %04o, owner %d:%d)" % (self.path, self.mode, ROOT, ROOT)
        return entry

    def apply(self, uid, gid, backups=None):
        """Make it so; the folder (and the ones above it) made root 0755 when missing. With `backups`, the
        previous text of a drop-in whose text changes is kept there first."""
        self._remove_stale()
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
            if backups is not None and self.keeps_backup:
                self.backup_file = backups.keep(self.path, self.unit, self.current)
            try:
                _fs.replace_at(dir_fd, self.name, self.want, self.mode, uid, gid)
            except BaseException:
                if self.backup_file:
                    backups.discard(self.backup_file)
                    self.backup_file = None
                raise
        finally:
            os.close(dir_fd)

    def _remove_stale(self):
        """Remove the backups an earlier release left beside the drop-in (regular files only)."""
        if not self.stale:
            return
        dir_fd, _made = _fs.open_dir_path(self.dir_path)
        try:
            for name in self.stale:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    _fs.discard_at(dir_fd, name)
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


# --- the backups of replaced drop-ins ----------------------------------------------------------------------

def open_private_dir(path, create=False):
    """A descriptor of the root-only folder `path` (root, 0700), None when it is missing and not `create`d.

    Every folder on the way is opened without following a link and must be root's and writable by no other
    user (a sticky folder such as /tmp excepted: no other user can rename or remove root's folder in it);
    `path` itself must be root's with no permission for group or others. A missing folder is made root's, 0755
    on the way and 0700 last. Raises _fs.Refused naming the folder that fails."""
    parts = [part for part in os.path.normpath(path).split("/") if part]
    fd = os.open("/", _fs.DIR_FLAGS)
    where = "/"
    try:
        for index, part in enumerate(parts):
            _judge_folder(fd, where, last=False)
            where = os.path.join(where, part)
            try:
                nxt = _open_or_make(fd, part, create, BACKUP_DIR_MODE if index == len(parts) - 1 else DIR_MODE)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    try:
                        what = _fs.describe(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                    except OSError:
                        what = "not a directory"
                    raise _fs.Refused(where, "is %s, not a directory; never followed" % what)
                raise
            os.close(fd)
            fd = nxt
            if fd is None:
                return None
        _judge_folder(fd, where, last=True)
        return fd
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


def _judge_folder(fd, where, last):
    st = os.fstat(fd)
    if st.st_uid != ROOT:
        raise _fs.Refused(where, "belongs to uid %d: the folder of drop-in backups and every folder above it must"
                                 " be root's" % st.st_uid)
    if last and stat.S_IMODE(st.st_mode) & 0o077:
        raise _fs.Refused(where, "has mode %04o: the folder of drop-in backups must be root's with mode 0700"
                          % stat.S_IMODE(st.st_mode))
    if not last and st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise _fs.Refused(where, "is writable by other users (mode %04o): no folder above the drop-in backups may"
                                 " be" % stat.S_IMODE(st.st_mode))


def _open_or_make(dir_fd, name, create, mode):
    """The folder `name` of `dir_fd`, never followed; when missing, None, or with `create` made with `mode`."""
    try:
        return os.open(name, _fs.DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            return None
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:  # made meanwhile: judged like any folder found there
        return os.open(name, _fs.DIR_FLAGS, dir_fd=dir_fd)
    fd = os.open(name, _fs.DIR_FLAGS, dir_fd=dir_fd)
    os.fchmod(fd, mode)
    return fd


def _backup_key_of(name):
    match = BACKUP_RE.match(name)
    return match.group("key") if match else None


class Backups:
    """The root-only folder that keeps the previous text of replaced drop-ins for a rollback: one copy (root,
    0600, never a link to the live file) per drop-in, the latest; older ones of the same drop-in removed."""

    def __init__(self, path):
        self.path = os.path.normpath(path)

    def check(self):
        """Raise _fs.Refused when the folder (or one above it) is not safe, before anything is written."""
        fd = open_private_dir(self.path)
        if fd is not None:
            os.close(fd)

    def keep(self, dest, unit, data):
        """Keep `data`, the text of the drop-in `dest` before this run, and return the backup's path."""
        key = backup_key(dest)
        label = re.sub(r"[^A-Za-z0-9@:_.\-]", "_", "%s_%s" % (unit, os.path.basename(dest)))[:120]
        base = "%s.%s.%d.%s" % (label, key, os.getpid(), time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
        fd = open_private_dir(self.path, create=True)
        try:
            older = [n for n in os.listdir(fd) if _backup_key_of(n) == key]
            for attempt in range(100):
                name = "%s%s~" % (base, ".%d" % attempt if attempt else "")
                if name not in older:
                    break
            else:
                raise FileExistsError(errno.EEXIST, "no free backup name", os.path.join(self.path, base))
            _fs.replace_at(fd, name, data, BACKUP_MODE, ROOT, ROOT)
            for old in older:
                _fs.discard_at(fd, old)
            return os.path.join(self.path, name)
        finally:
            os.close(fd)

    def read(self, name):
        """The text of the backup `name`: a regular file of root's with one link, at most READ_LIMIT bytes.
        FileNotFoundError when it (or the folder) is not there; _fs.Refused otherwise."""
        where = os.path.join(self.path, name)
        fd = open_private_dir(self.path)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such folder", self.path)
        try:
            found = _fs.read_at(fd, name, READ_LIMIT, where=where)
        finally:
            os.close(fd)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", where)
        data, st = found
        if data is None or st.st_uid != ROOT or st.st_nlink != 1:
            raise _fs.Refused(where, "is not a backup this module kept (owner uid %d, %d links, %d bytes)"
                              % (st.st_uid, st.st_nlink, st.st_size))
        return data

    def discard(self, path):
        fd = open_private_dir(self.path)
        if fd is None:
            return
        try:
            _fs.discard_at(fd, os.path.basename(path))
        finally:
            os.close(fd)


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
        self.secrets = Secrets(self.token)
        self.backups = Backups(p.get("backup_dir") or BACKUP_DIR)

    def mask(self, text):
        return self.secrets.mask(text)

    def apply(self, target, backups=None, then=None):
        """Write `target` (and run `then`), a failure of either as an _errors.Failure."""
        try:
            target.apply(self.uid, self.gid, backups)
            if then is not None:
                then()
        except _fs.Refused as exc:
            raise _errors.Failure(_errors.UNSAFE_DESTINATION, self.mask(
                "the %s %s (it changed while the module ran)" % (target.label, exc)))
        except OSError as exc:
            raise _errors.Failure(_os_kind(exc), self.mask(
                "the %s %s could not be written: %s" % (target.label, target.path, exc)))

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
        if self.p["state"] == "restored":
            return self.restore()
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
            target = Target("drop-in of %s" % unit, dropin_path(p, unit), want, DROPIN_MODE, unit=unit,
                            backup=p["backup"])
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
                raise _errors.Failure(_os_kind(exc), self.mask(
                    "the %s %s could not be read: %s" % (target.label, target.path, exc)))
            if target is not facts:
                found = set()
                target.secrets(found)
                for value in found:
                    self.secrets.add(value)
            if target.keeps_backup and target.current is None:
                refused.append("the %s %s is %d bytes, more than the %d a drop-in may have: it is neither read nor"
                               " kept for a rollback" % (target.label, target.path, target.st.st_size, READ_LIMIT))
        if any(t.keeps_backup for t in dropins):
            try:
                self.backups.check()
            except _fs.Refused as exc:
                refused.append("the folder of drop-in backups (backup_dir): %s" % exc)
        if refused:
            raise _errors.Failure(_errors.UNSAFE_DESTINATION,
                                  self.mask("Nothing was written: %s." % "; ".join(refused)))

        if not self.check_mode:
            for target in targets:
                self.apply(target, self.backups)
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
                entry["backup_mode"] = "%04o" % stat.S_IMODE(target.st.st_mode)
            if not self.present:
                entry["removed"] = target.action == "remove"
                entry["dir_removed"] = target.dir_removed
            units.append(entry)
        facts_result = {"path": p["facts_file"], "changed": bool(facts is not None and facts.changed)}
        if facts_skip:
            facts_result["skipped"] = facts_skip
        stale = [os.path.join(t.dir_path, n) for t in dropins for n in t.stale]
        result = {
            "changed": any(t.changed for t in targets) or any(t.dir_removed for t in dropins) or bool(stale),
            "dropins": units,
            "removed_backups": stale,
            "changed_units": [t.unit for t in dropins if t.changed],
            "token_file": {"path": p["token_file"], "changed": token.changed,
                           "state": "present" if token.want is not None else "absent"},
            "token_changed": token.changed,
            "facts": facts_result,
            "facts_changed": facts_result["changed"],
        }
        diffs = [d for d in (t.diff(self.secrets) for t in targets) if d is not None]
        return result, diffs

    def restore(self):
        """state restored: each drop-in of `backups` put back as it was before the run that kept it (its backup
        written over it, root's, with its permission bits up to 0644, then removed), or removed when that run
        made the first; every backup and drop-in inspected before anything is written."""
        p = self.p
        plan, refused = [], []
        for unit, name, mode, created in p["backups"]:
            if name is None and not created:
                continue  # that run changed the drop-in's owner or mode only: nothing to put back
            want = None
            if name is not None:
                try:
                    want = self.backups.read(name)
                except FileNotFoundError:
                    raise _invalid("the backup %s of the drop-in of %s is not there (put back or removed already?):"
                                   " nothing was restored" % (os.path.join(self.backups.path, name), unit))
                except _fs.Refused as exc:
                    refused.append("the backup of the drop-in of %s: %s" % (unit, exc))
                    continue
                except OSError as exc:
                    raise _errors.Failure(_os_kind(exc), "the backup %s could not be read: %s"
                                          % (os.path.join(self.backups.path, name), exc))
            target = Target("drop-in of %s" % unit, dropin_path(p, unit), want, mode, unit=unit)
            try:
                target.inspect()
                target.stale = []  # left to the next run with state present
            except _fs.Refused as exc:
                refused.append("the %s %s" % (target.label, exc))
                continue
            except OSError as exc:
                raise _errors.Failure(_os_kind(exc),
                                      "the %s %s could not be read: %s" % (target.label, target.path, exc))
            found = set()
            target.secrets(found)
            for value in found:
                self.secrets.add(value)
            plan.append((target, name))
        if refused:
            raise _errors.Failure(_errors.UNSAFE_DESTINATION,
                                  self.mask("Nothing was restored: %s." % "; ".join(refused)))
        if not self.check_mode:
            for target, name in plan:
                self.apply(target, then=None if name is None else functools.partial(self.backups.discard, name))
        units = [{"unit": t.unit, "dest": t.path, "changed": t.changed, "created": False,
                  "restored": name is not None, "removed": t.action == "remove"} for t, name in plan]
        token_there = os.path.lexists(p["token_file"])
        result = {
            "changed": any(t.changed for t, _name in plan),
            "dropins": units,
            "changed_units": [t.unit for t, _name in plan if t.changed],
            "token_file": {"path": p["token_file"], "changed": False,
                           "state": "present" if token_there else "absent"},
            "token_changed": False,
            "facts": {"path": p["facts_file"], "changed": False, "skipped": "state restored"},
            "removed_backups": [],
            "facts_changed": False,
        }
        diffs = [d for d in (t.diff(self.secrets) for t, _name in plan) if d is not None]
        return result, diffs

    def message(self, result):
        if self.p["state"] == "restored":
            restored = [d["unit"] for d in result["dropins"] if d["changed"]]
            verb = "Would put back" if self.check_mode else "Put back"
            return "%s the previous drop-ins of %s." % (verb, ", ".join(restored)) if restored \
                else "Nothing to put back."
        changed = []
        if result["facts_changed"]:
            changed.append("the facts file")
        if result["token_changed"]:
            changed.append("the token file")
        if result["changed_units"]:
            changed.append("the drop-ins of %s" % ", ".join(result["changed_units"]))
        verb = "would change" if self.check_mode else "changed"
        text = "%s %s." % (verb.capitalize(), ", ".join(changed)) if changed else "Nothing to change."
        if result["removed_backups"]:
            text += " %s %d drop-in backup(s) an earlier release left readable beside the drop-ins." % (
                "Would remove" if self.check_mode else "Removed", len(result["removed_backups"]))
        return text


# The CACHEDIR.TAG that huggingface_hub writes into a cache it downloads into: written where the models arrive
# by another way (the controller's or a bundle's blobs, a bake), so that every source leaves the same tree.
CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by huggingface_hub.\n"
                "# For information about cache directory tags, see:\n"
                "#\thttps://bford.info/cachedir/\n")
