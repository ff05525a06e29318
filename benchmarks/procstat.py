"""Every process a command starts, counted: a fresh cgroup v2 per run.

A process's cgroup is inherited by everything it starts and is kept by a process that daemonizes (Ansible's
`async_wrapper` re-parents the download job to init, out of any process tree), so the cgroup's member list is
every process of the run. CPU time is the cgroup's own `cpu.stat` usage_usec (every member, exited ones too).
Memory is the peak, polled every 20 ms, of the sum of Pss over the members (/proc/PID/smaps_rollup): resident
memory with shared pages split between their users, without the page cache of files the run writes (which
cgroup memory.current would count), and of its anonymous part alone (Pss_Anon). A kernel that gives the
cgroup a memory controller also gives memory.peak (page cache included), reported beside it.

Processes whose command line is the launcher's own (the `ansible` CLI and its forked workers) are the
controller: on a fleet they do not run on the host, so their share is reported apart (`controller_*`).
"""

import os
import subprocess
import tempfile
import threading
import time

POLL = 0.02
SETTLE = 120  # seconds to wait, after the launcher exits, for the cgroup's other members (a detached job)


# --- pure parsing (tests/unit/test_fleet_benchmark.py) ---------------------------------------------------------

def parse_flat_keyed(text):
    """cgroup `key value` lines (cpu.stat, memory.stat) as {key: int}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_smaps_rollup(text):
    """/proc/PID/smaps_rollup as {field: bytes} for its `Name:  N kB` lines."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB" and parts[1].isdigit():
            out[parts[0][:-1]] = int(parts[1]) * 1024
    return out


def parse_proc_stat_cpu(text, ticks):
    """CPU seconds (utime + stime) from a /proc/PID/stat line; the command may hold spaces and parentheses."""
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def cgroup2_mount(mounts_text):
    """The mount point of the cgroup v2 hierarchy in /proc/mounts' text, or None."""
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return parts[1]
    return None


class Sample:
    """The running peaks of one run: summed Pss and Pss_Anon over the host's processes and the controller's."""

    def __init__(self):
        self.peak_pss = self.peak_anon = self.peak_controller_pss = 0
        self.processes = set()
        self.controller_cpu = {}

    def add(self, rollups, controller_pids, controller_cpu=None):
        """One poll: rollups {pid: parse_smaps_rollup(...)}; controller_cpu {pid: cpu seconds so far}."""
        host = {pid: r for pid, r in rollups.items() if pid not in controller_pids}
        self.peak_pss = max(self.peak_pss, sum(r.get("Pss", 0) for r in host.values()))
        self.peak_anon = max(self.peak_anon, sum(r.get("Pss_Anon", 0) for r in host.values()))
        self.peak_controller_pss = max(self.peak_controller_pss, sum(
            r.get("Pss", 0) for pid, r in rollups.items() if pid in controller_pids))
        self.processes |= set(rollups)
        for pid, seconds in (controller_cpu or {}).items():
            self.controller_cpu[pid] = max(self.controller_cpu.get(pid, 0), seconds)


# --- the cgroup ------------------------------------------------------------------------------------------------

class CgroupUnavailable(RuntimeError):
    pass


def _read(path):
    with open(path) as f:
        return f.read()


class Cgroup:
    """A fresh child of the cgroup v2 root, removed by close()."""

    _count = 0

    def __init__(self, prefix="jn-bench"):
        try:
            root = cgroup2_mount(_read("/proc/mounts"))
        except OSError:
            root = None
        if root is None:
            raise CgroupUnavailable("no cgroup v2 hierarchy mounted (see /proc/mounts)")
        Cgroup._count += 1
        self.path = os.path.join(root, "%s-%d-%d" % (prefix, os.getpid(), Cgroup._count))
        try:
            os.mkdir(self.path)
        except OSError as exc:
            raise CgroupUnavailable("cannot make a cgroup under %s (%s): the benchmark counts every process of a "
                                    "run in one, and needs root and a writable cgroup v2 hierarchy" % (root, exc))

    def enter(self):
        """For preexec_fn: move the calling (child) process into the cgroup before it execs."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def pids(self):
        try:
            return [int(p) for p in _read(os.path.join(self.path, "cgroup.procs")).split()]
        except OSError:
            return []

    def cpu_seconds(self):
        return parse_flat_keyed(_read(os.path.join(self.path, "cpu.stat"))).get("usage_usec", 0) / 1e6

    def memory_peak(self):
        """memory.peak (bytes, page cache included) where the kernel gives this cgroup a memory controller."""
        try:
            return int(_read(os.path.join(self.path, "memory.peak")).strip())
        except (OSError, ValueError):
            return None

    def close(self):
        for pid in self.pids():  # a straggler past SETTLE: not ours to keep running
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while True:
            try:
                os.rmdir(self.path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)


def _rollup(pid):
    try:
        return parse_smaps_rollup(_read("/proc/%d/smaps_rollup" % pid))
    except OSError:
        return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return None


def _text(f):
    f.seek(0)
    text = f.read().decode(errors="replace")
    f.close()
    return text


def measured(argv, env=None, controller=False, settle=SETTLE):
    """Run argv in a fresh cgroup until it and every process it started are gone.

    Returns {seconds, cpu_s, peak_pss, peak_anon, controller_pss, controller_cpu_s, host_cpu_s, memory_peak,
    processes, returncode, stdout, stderr, stragglers}. seconds: until the launcher exits (the command's wall
    time as a user sees it); cpu_s: every member's, until the cgroup is empty. controller: the launcher is the
    Ansible CLI; members with its command line are the controller's, the rest the host's.
    """
    group = Cgroup()
    ticks = os.sysconf("SC_CLK_TCK")
    sample, done = Sample(), threading.Event()
    launcher = {"cmd": None}

    def poll():
        while True:
            pids = group.pids()
            rollups, ctl, ctl_cpu = {}, set(), {}
            for pid in pids:
                r = _rollup(pid)
                if r is None:
                    continue
                rollups[pid] = r
                if controller and launcher.get("cmd") is not None and _cmdline(pid) == launcher["cmd"]:
                    ctl.add(pid)
                    try:
                        ctl_cpu[pid] = parse_proc_stat_cpu(_read("/proc/%d/stat" % pid), ticks)
                    except (OSError, IndexError, ValueError):
                        pass
            sample.add(rollups, ctl, ctl_cpu)
            if done.wait(POLL):
                return

    started = time.monotonic()
    try:
        # pylint: disable-next=consider-using-with,subprocess-popen-preexec-fn
        # Output to files, not pipes: a detached member that keeps the launcher's descriptors must not stretch
        # the launcher's wall time.
        outf, errf = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        proc = subprocess.Popen(argv, env=env, stdout=outf, stderr=errf, preexec_fn=group.enter)
        # Popen returns once the child has exec'd: its command line is the launcher's (forked workers keep it)
        launcher["cmd"] = _cmdline(proc.pid)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        proc.wait()
        seconds = time.monotonic() - started
        deadline = time.monotonic() + settle
        while group.pids() and time.monotonic() < deadline:
            time.sleep(POLL)
        stragglers = len(group.pids())
        done.set()
        poller.join()
        cpu = group.cpu_seconds()
        out, err = (_text(f) for f in (outf, errf))
        ctl_cpu = sum(sample.controller_cpu.values())
        return {"seconds": seconds, "cpu_s": cpu, "peak_pss": sample.peak_pss, "peak_anon": sample.peak_anon,
                "controller_pss": sample.peak_controller_pss, "controller_cpu_s": ctl_cpu,
                "host_cpu_s": max(0.0, cpu - ctl_cpu), "memory_peak": group.memory_peak(),
                "processes": len(sample.processes), "returncode": proc.returncode, "stdout": out, "stderr": err,
                "stragglers": stragglers}
    finally:
        done.set()
        group.close()
