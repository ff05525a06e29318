# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host's agents are and see, read the one way that hf_doctor and hf_units share.

- systemd: whether it manages the host, a unit's settings (`systemctl show`), its readiness check (from its
  model_cache_units entry and the agents' ports), one GET of a readiness URL and whether its answer means ready;
- the EnvironmentFiles a unit reads (which the JustNews start script re-sources, so that they win over a drop-in):
  each read once per run (EnvFiles), without following a link another user could plant, never a FIFO or a device,
  capped; the environment a unit's process starts with, and which file set each variable;
- a running process's environment (MainPID and its children), read in a child that runs with the unit's user's
  ids, as the kernel lets that user, and where it differs from what is expected;
- commands and children under a deadline: `systemctl`, `journalctl`, a readiness command and every check run as a
  unit's user are killed when it passes;
- token values: known values and anything shaped like a Hub token are masked in every text a module returns.

Nothing here writes to the host. Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import select as _select
import shlex
import signal
import stat
import time
from urllib.error import HTTPError

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.urls import open_url

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _fs

TOKEN_KEYS = ("HF_TOKEN", "HF_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# A Hub token: hf_ and a random run of letters and digits (at least one of each, so that names such as
# hf_snapshot or a folder called hf_models stay readable).
_SECRET_RE = re.compile(r"(?<![A-Za-z0-9])hf_(?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[A-Za-z0-9]{8,}")
SECRET_MIN = 4  # shorter values are not masked: they would blank out ordinary words of the report
ENV_FILE_MAX = 1024 * 1024  # an environment file or the token file; a larger one is not configuration
PROC_MAX = 1024 * 1024  # /proc/<pid>/environ is at most the kernel's ARG_MAX; stat is one line
CHILD_OUTPUT_MAX = 16 * 1024 * 1024
DEFAULT_CHECK_TIMEOUT = 30

# `systemctl is-system-running` answers that mean systemd is PID 1 and can manage units.
BOOTED_STATES = ("running", "degraded", "starting", "initializing", "maintenance")


def mask(text, secrets=()):
    """`text` without any of the known secret values (longest first) nor anything shaped like a Hub token."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return _SECRET_RE.sub("hf_***", text)


class Secrets:
    """The token values a run has seen (given to the module, in the token file, in a unit's settings or in
    a process's environment): every text a result carries is masked with them, whatever their shape."""

    def __init__(self):
        self.values = set()

    def add(self, value):
        if isinstance(value, str) and len(value.strip()) >= SECRET_MIN:
            self.values.add(value.strip())
            if value != value.strip():
                self.values.add(value)

    def add_tokens(self, env):
        for key in TOKEN_KEYS:
            self.add((env or {}).get(key))

    def mask(self, text):
        return mask(text, self.values) if isinstance(text, str) else text


class ChildTimeout:
    """A check run in a child that did not finish in time; `reading` is what it was reading, when known."""

    def __init__(self, seconds, reading=None):
        self.seconds = seconds
        self.reading = reading

    def describe(self):
        return "did not finish within %s s%s; it was killed" % (
            self.seconds, " (it was reading %s)" % self.reading if self.reading else "")


# --- systemd ---------------------------------------------------------------------------------------------------

def parse_show(text):
    """`systemctl show` output -> dict; EnvironmentFiles is a list (one line each), Environment a dict."""
    props = {"EnvironmentFiles": [], "Environment": {}}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "EnvironmentFiles":
            props[key].append(re.sub(r" \(ignore_errors=(yes|no)\)$", "", value))
        elif key == "Environment":
            try:
                words = shlex.split(value)
            except ValueError:
                words = value.split()
            for word in words:
                name, eq, val = word.partition("=")
                if eq:
                    props[key][name] = val
        else:
            props[key] = value
    return props


def show(run_command, name, properties):
    """parse_show of `systemctl show --property=<properties> -- <name>`; _errors.Failure when it fails, of kind
    timeout when it was killed at its deadline."""
    rc, out, err = run_command(["systemctl", "show", "--property=" + properties, "--", name])
    if rc is None:
        raise _errors.Failure(_errors.TIMEOUT, "systemctl show %s" % err)
    if rc != 0:
        raise _errors.Failure(_errors.OTHER, "systemctl show failed: %s" % (err.strip()[:300] or rc))
    return parse_show(out)


def system_state(run_command):
    """(what `systemctl is-system-running` answers, whether that means systemd manages the host)."""
    rc, out, err = run_command(["systemctl", "is-system-running"])
    answer = out.strip()
    if rc is None:
        return "n/a (systemctl %s)" % err, False
    return answer or "n/a", answer.splitlines()[0] in BOOTED_STATES if answer else False


def instance(unit):
    """The instance of a template unit (`memory` of `justnews@memory.service`), else ''."""
    match = re.match(r"^[^@]*@([^.]*)\.", unit)
    return match.group(1) if match else ""


# Agent -> HTTP port, as upstream JustNews' health_check.sh maps them: the default readiness check of
# justnews@<agent>.service is GET http://127.0.0.1:<port>/ready.
AGENT_PORTS = {"mcp_bus": 8000, "chief_editor": 8001, "scout": 8002, "fact_checker": 8003, "analyst": 8004,
               "synthesizer": 8005, "critic": 8006, "memory": 8007, "reasoning": 8008, "newsreader": 8009,
               "analytics": 8011, "archive": 8012, "dashboard": 8013, "gpu_orchestrator": 8014, "crawler": 8015}

# A unit as the role's model_cache_units lists it: its name and its readiness check (ready_check).
UNIT_OPTIONS = dict(
    name=dict(type="str", required=True),
    ready=dict(type="bool", default=True),
    ready_url=dict(type="str"),
    ready_port=dict(type="int"),
    ready_path=dict(type="str", default="/ready"),
    ready_command=dict(type="str"),
)


def unit_entries(values):
    """Units given as names or as model_cache_units entries, as entries with every key of UNIT_OPTIONS;
    _errors.Failure(invalid_argument) naming the first that is neither."""
    entries = []
    for index, value in enumerate(values):
        result = ArgumentSpecValidator(UNIT_OPTIONS).validate({"name": value} if isinstance(value, str) else value) \
            if isinstance(value, (str, dict)) else None
        if result is None or result.error_messages:
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "units[%d] must be a unit name or an entry of"
                                  " model_cache_units (name, ready, ready_url, ready_port, ready_path,"
                                  " ready_command): %s" % (index, "; ".join(result.error_messages) if result
                                                           else "got %s" % type(value).__name__))
        entries.append(result.validated_parameters)
    return entries


def ready_check(unit, agent_ports):
    """(how, target) of a unit's readiness check, from its entry (name, ready, ready_url, ready_port, ready_path,
    ready_command): `none` (ready: false; only active is awaited), `command` (exits 0), `http` (GET answers
    ready) or `unknown` (no URL and no port known for it). The port of `<template>@<agent>.service` comes from
    `agent_ports` by the agent's name."""
    port = unit.get("ready_port") or agent_ports.get(instance(unit["name"])) or ""
    url = unit.get("ready_url") or (
        "http://127.0.0.1:%s%s" % (port, unit.get("ready_path") or "/ready") if str(port) else "")
    target = unit.get("ready_command") or url
    if unit.get("ready") is False:
        return "none", target
    if unit.get("ready_command"):
        return "command", target
    return ("http", url) if url else ("unknown", "")


def ready_answer(status, body):
    """Whether a readiness URL's answer means ready: 200, and `ready` not false when the body is a JSON object."""
    if status != 200:
        return False
    try:
        answer = json.loads(body)
    except (TypeError, ValueError):
        return True
    return not (isinstance(answer, dict) and answer.get("ready", True) is not True)


def http_get(url, timeout, token=None, proxy=False, agent="justnews.huggingface"):
    """(status or None, headers, body or the error's text) of a GET (the body of an error answer too); a
    readiness URL is local, so only a Hub's request goes through the host's proxy."""
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        response = open_url(url, headers=headers, timeout=timeout, use_proxy=proxy, follow_redirects="safe",
                            validate_certs=True, http_agent=agent)
        return response.status, dict(response.headers), response.read(65536).decode("utf-8", "replace")
    except HTTPError as exc:
        try:
            body = exc.read(65536).decode("utf-8", "replace")
        except Exception:  # the status is the answer; a body that cannot be read adds nothing
            body = ""
        return exc.code, dict(exc.headers or {}), body
    except Exception as exc:  # any failure to get an answer is the answer: it is quoted as such
        return None, {}, "%s: %s" % (type(exc).__name__, exc)


def ready_url(http_get, url, timeout):
    """(ready, status or None, body or the error's text) of one GET of a readiness URL (ready_answer)."""
    status, _headers, body = http_get(url, timeout)
    return bool(status) and ready_answer(status, body), status, body


def restarted_since(before, now):
    """Whether a unit runs a new process since `before` (its InvocationID, else its MainPID, changed); True when
    nothing is known of before."""
    if not before:
        return True
    if before.get("invocation_id") and now.get("invocation_id"):
        return before["invocation_id"] != now["invocation_id"]
    return int(before.get("main_pid") or 0) != int(now.get("main_pid") or 0)


# --- environment files -----------------------------------------------------------------------------------------

def _controlled(st):
    """True for a folder whose entries someone other than root may replace."""
    return st.st_uid != 0 or bool(st.st_mode & 0o022)


def _inside(path, top):
    return bool(top) and (path + "/").startswith(os.path.normpath(top).rstrip("/") + "/")


def split_trusted(path, cache_dir=None):
    """(top, rel) for reading `path`: `top` is the deepest folder on the way that only root can change, or
    the cache folder itself; `rel` (possibly one name) is below it and is reached without following links.

    A link in a root-only folder was made by root and is followed; below a folder another user can write (the
    cache, a world-writable folder, one owned by another user) nothing is followed."""
    path = os.path.normpath(os.path.abspath(path))
    if cache_dir and _inside(path, cache_dir):
        top = os.path.normpath(os.path.abspath(cache_dir))
        return top, os.path.relpath(path, top)
    parts = [p for p in path.split("/") if p]
    top = "/"
    for index, part in enumerate(parts[:-1]):
        here = os.path.join(top, part)
        try:
            st = os.lstat(here)
        except OSError:
            return top, "/".join(parts[index:])
        if stat.S_ISLNK(st.st_mode):
            here = os.path.realpath(here)  # root's link (its folder is root's): followed
            try:
                st = os.lstat(here)
            except OSError:
                return top, "/".join(parts[index:])
            if _controlled(st):
                return here, "/".join(parts[index + 1:])
        elif _controlled(st):
            return top, "/".join(parts[index:])
        top = here
    return top, parts[-1] if parts else ""


def _open_config(path, cache_dir=None, limit=ENV_FILE_MAX):
    """A descriptor of a configuration file: never a FIFO, device or oversized file, and no link followed
    below a folder another user controls. FileNotFoundError when absent; _fs.Refused when refused."""
    top, rel = split_trusted(path, cache_dir)
    if "/" in rel or _controlled(os.stat(top)) or (cache_dir and _inside(path, cache_dir)):
        return _fs.open_file(top, rel, limit)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))  # root's folder: root's link
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        raise _fs.Refused(path, "is %s" % _fs.describe(st.st_mode) if not stat.S_ISREG(st.st_mode)
                          else "is %d bytes, more than the %d it may have" % (st.st_size, limit))
    os.set_blocking(fd, True)
    return fd


def read_env_file(path, cache_dir=None):
    """KEY=VALUE lines of an EnvironmentFile (or a file a start script sources): {key: value}, None if absent.

    _fs.Refused for a FIFO, a device, a file over ENV_FILE_MAX, or a link below a folder another user controls
    (the cache among them): it is never read."""
    try:
        fd = _open_config(path, cache_dir)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        raw = os.read(fd, ENV_FILE_MAX + 1)
    finally:
        os.close(fd)
    if len(raw) > ENV_FILE_MAX:
        raise _fs.Refused(path, "grew past %d bytes while it was read" % ENV_FILE_MAX)
    lines = raw.decode("utf-8", "replace").splitlines()
    values = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, eq, value = line.partition("=")
        name = name.rstrip()  # KEY = value: systemd takes it too
        if eq and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
    return values


def overriding(paths, keys, read):
    """[(path, {key: value})], in the order of `paths`, for each file that sets one of `keys`; `read(path)` gives
    a file's {key: value} or None. A later file wins over an earlier one and all of them over the unit's
    `Environment=` (its drop-ins), because the start script sources them in this order after systemd."""
    found = []
    for path in paths:
        values = {k: v for k, v in (read(path) or {}).items() if k in keys}
        if values:
            found.append((path, values))
    return found


class EnvFiles:
    """The environment files a run reads, each once (read_env_file): every token value in them joins `secrets`;
    one that is not read (refused, or an error) is None, and `unread[path]` says why."""

    def __init__(self, secrets, cache_dir=None):
        self.secrets = secrets
        self.cache_dir = cache_dir
        self.values = {}
        self.unread = {}
        self.refused = set()  # of unread: those refused (a link, a FIFO, a device, too large)

    def read(self, path):
        if path not in self.values:
            try:
                self.values[path] = read_env_file(path, self.cache_dir)
            except _fs.Refused as exc:
                self.values[path], self.unread[path] = None, "%s; it was not read" % exc
                self.refused.add(path)
            except OSError as exc:
                self.values[path], self.unread[path] = None, "%s cannot be read (%s)" % (path, exc.strerror or exc)
            self.secrets.add_tokens(self.values[path])
        return self.values[path]


def effective_environment(environment, paths, keys, read):
    """What a unit's process starts with, of `keys`: its Environment= (the unit and its drop-ins), then each
    file of `paths` that sets one (overriding). ({key: value}, {key: [the files that set it, in order]})."""
    effective = dict(environment)
    sources = {}
    for path, values in overriding(paths, keys, read):
        effective.update(values)
        for key in values:
            sources.setdefault(key, []).append(path)
    return effective, sources


def process_differences(as_user, user, pid, expected, secrets, keys=()):
    """Where the process `pid` and its children, read as `user`, differ from `expected`: [(pid, key, shown
    value)]; a ChildTimeout when the read did not finish, None when it could not be done. Every token value seen
    joins `secrets` (`keys`: more variables to read for that)."""
    environ = as_user(user, process_environment, pid, sorted(set(expected) | set(keys)))
    if not environ or isinstance(environ, ChildTimeout):
        return environ or None
    for _pid, env in environ:
        secrets.add_tokens(env)
    return differences(environ, expected)


def shown(key, value):
    """A value as a result may show it: tokens only as <set>/<unset>."""
    if value is None:
        return "<unset>"
    return "<set>" if key in TOKEN_KEYS else value


def matches(expected, actual):
    """Whether a variable's value is what is expected: <set>/<unset> test presence only."""
    if expected == "<set>":
        return actual is not None and actual != ""
    if expected == "<unset>":
        return actual is None
    return actual == expected


def differences(environ, expected):
    """[(pid, key, shown value)] where a process (process_environment's pairs) differs from `expected`."""
    return [(pid, key, shown(key, value)) for pid, env in environ for key, value in sorted(env.items())
            if key in expected and not matches(expected[key], value)]


# --- the cache as a unit's user will see it --------------------------------------------------------------------

def credentials(unit_groups=()):
    """Run as a unit's user (run_as): the ids and group names it runs with - its uid, its groups from the user
    database (as systemd gives them), and the unit's own Group=/SupplementaryGroups= (`unit_groups`)."""
    gids = [os.getegid()] + [g for g in os.getgroups() if g != os.getegid()]
    names = []
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    for name in unit_groups:
        if name and name not in names:
            names.append(name)
    return {"uid": os.geteuid(), "user": pwd.getpwuid(os.geteuid()).pw_name, "group": names[0], "groups": names}


def reads(uid, user, groups, owner, group, dir_mode, file_mode):
    """Whether a process (uid, user name, group names) can list folders and read files that are owner:group
    with these modes: the owner's bits for the owner, the group's for a member, the others' for anyone else;
    root reads everything."""
    if uid == 0 or user == "root":
        return True
    shift = 6 if user == owner else 3 if group in groups else 0
    return (dir_mode >> shift) & 5 == 5 and (file_mode >> shift) & 4 == 4


# --- run with a unit's user ids (in a child process) -----------------------------------------------------------

_PROGRESS = [None]  # in a run_as child: the pipe that tells the parent what the child is reading


def note(what):
    """Tell the parent (when in a run_as child) what is about to be read, so that a timeout can name it."""
    if _PROGRESS[0] is not None:
        _send(_PROGRESS[0], {"reading": what})


def _send(fd, message):
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(fd, data):]


def _read_proc(path, limit=PROC_MAX):
    note(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _fs.Refused(path, "is not a regular file")
        chunks, left = [], limit
        while left > 0:
            data = os.read(fd, min(left, 65536))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def process_environment(pid, keys):
    """[(pid, {key: value or None})] for the process and its descendants (reads of /proc capped)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_read_proc("/proc/%s/stat" % entry, 4096).decode("ascii", "replace")
                           .rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo, seen = [], [pid], set()
    while todo and len(found) < 1000:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(children.get(current, []))
        try:
            raw = _read_proc("/proc/%d/environ" % current).split(b"\0")
        except OSError:
            continue
        env = dict(item.decode("utf-8", "replace").split("=", 1) for item in raw if b"=" in item)
        found.append((current, {key: env.get(key) for key in keys}))
    return found


def collect_child(pid, read_fd, timeout, clock=time.monotonic):
    """Read a run_as child's messages until it closes its pipe or `timeout` seconds pass, then reap it (killing
    it past the deadline). The child's result; None when it failed; ChildTimeout when it ran too long."""
    deadline = clock() + timeout
    buf, reading, result, done, timed_out, size = b"", None, None, False, False, 0
    poller = _select.poll()  # not select(): it cannot wait on a descriptor numbered 1024 or more
    poller.register(read_fd, _select.POLLIN | _select.POLLHUP | _select.POLLERR)
    try:
        while True:
            left = deadline - clock()
            if left <= 0:
                timed_out = True
                break
            ready = poller.poll(max(1, int(left * 1000)))
            if not ready:
                timed_out = True
                break
            data = os.read(read_fd, 65536)
            if not data:
                break
            size += len(data)
            if size > CHILD_OUTPUT_MAX:
                _fs.wait_child(pid, 0)
                return None
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    message = json.loads(line.decode())
                except ValueError:
                    continue
                if "reading" in message:
                    reading = message["reading"]
                elif "result" in message:
                    result, done = message["result"], True
    finally:
        os.close(read_fd)
    status = _fs.wait_child(pid, 0 if timed_out else max(deadline, time.monotonic() + 1))
    if timed_out or status is None:
        return ChildTimeout(timeout, reading)
    return result if status == 0 and done else None


def run_as(user, func, *args, timeout=DEFAULT_CHECK_TIMEOUT):
    """Run func(*args) in a child with the user's uid, gid and groups; return its JSON result (None: failed),
    or a ChildTimeout when it did not finish within `timeout` seconds (the child is then killed)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            if (os.geteuid(), os.getegid()) != (entry.pw_uid, entry.pw_gid) or os.geteuid() == 0:
                os.initgroups(user, entry.pw_gid)
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
            _PROGRESS[0] = write_fd
            _send(write_fd, {"result": func(*args)})
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write_fd)
    return collect_child(pid, read_fd, timeout)


# The command runs under coreutils' timeout, which puts it in a process group of its own and kills that whole group
# (children a check left behind included) with SIGKILL at the deadline, itself with it; through sh, only to give
# the command /dev/null as its input, never the module's (a pty of the connection, which a command could wait on).
_BOUNDED = ("--signal=KILL", "--")
_NO_INPUT = ("/bin/sh", "-c", 'exec "$@" < /dev/null', "sh")


def run_command(module, argv, timeout=DEFAULT_CHECK_TIMEOUT, clock=time.monotonic):
    """(rc, stdout, stderr) of argv, run by the module's run_command (no shell, no expansion); rc None when the
    command did not finish within `timeout` seconds (its process group is then killed), 126 or 127 when it cannot
    be started."""
    bound = module.get_bin_path("timeout")
    if bound is None:
        return 127, "", "%s: not run: coreutils' timeout, which bounds every check, is missing" % argv[0]
    started = clock()
    try:
        rc, out, err = module.run_command([bound] + list(_BOUNDED) + ["%.3f" % max(timeout, 0.001)] + list(_NO_INPUT)
                                          + list(argv), encoding=None, expand_user_and_vars=False,
                                          handle_exceptions=False)
    except OSError as exc:
        return 127, "", "%s: %s" % (argv[0], exc.strerror or exc)
    if rc in (-signal.SIGKILL, 128 + signal.SIGKILL, 124) and clock() - started >= timeout:
        return None, "", "did not finish within %s s; it was killed" % timeout
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def journal_tail(run_command, unit, lines, width=1000):
    """The last `lines` lines of the unit's journal (as `journalctl -u` prints them, each cut at `width`
    characters), or one line saying why there are none."""
    rc, out, err = run_command(["journalctl", "--no-pager", "--quiet", "-o", "short-iso", "-n", str(lines),
                                "-u", unit])
    if rc is None:
        return ["(journalctl %s)" % err]
    if rc != 0:
        return ["(journalctl failed: %s)" % (err.strip()[:300] or rc)]
    return [line[:width] for line in out.splitlines()] or ["-- No entries --"]
