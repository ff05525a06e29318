#!/usr/bin/env python3
"""Reach a test host (a container of the tools/hosts images) over SSH, as fleets run Ansible.

The images carry openssh-server, disabled: the containers share the machine's network, so an sshd started
as shipped would take the machine's port 22. `enable` gives one container an sshd of its own on
127.0.0.1:<port> (a port per host), root login with one key only (no password, no PAM), and a host key made
in the container; it returns the Ansible inventory variables that reach it, pipelining on.

    key = keypair(run_dir)                       # <run_dir>/ssh/id_ed25519, made once per run directory
    hostvars = enable("jn-bench-1", 22101, key)  # ansible_connection=ssh, ansible_port=22101, ...

Shell: `ssh.py keypair DIR` prints the key's path; `ssh.py enable CONTAINER PORT KEY` prints the variables
as JSON; `ssh.py disable CONTAINER` stops sshd and removes its settings.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# Ports for test hosts: BASE_PORT + i for host i. Below the kernel's ephemeral range (32768 and up), so a
# client's outgoing connection never holds one.
BASE_PORT = 22100
DROPIN = "/etc/ssh/sshd_config.d/jn-test.conf"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
# Test hosts are made and thrown away per run: their host keys are new each time.
COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"

# Run in the container as root. sshd's first value of an option wins and Debian's sshd_config includes
# sshd_config.d/*.conf at its top, so these settings win over the stock file's (UsePAM yes among them).
_ENABLE = r"""set -eu
systemctl stop ssh.service ssh.socket 2>/dev/null || true
# The machine's loopback is every container's: refuse a port some other process listens on.
python3 - "$PORT" 2>/dev/null <<'PY' || { echo "127.0.0.1:$PORT is taken by another process" >&2; exit 3; }
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
PY
install -d -m 0700 /root/.ssh
printf '%s\n' "$PUBKEY" > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
[ -s HOST_KEY ] || ssh-keygen -q -t ed25519 -N '' -C "$(hostname)" -f HOST_KEY
cat > DROPIN <<EOF
# tools/hosts/ssh.py: sshd for tests, on the machine's loopback only (the containers share its network)
Port $PORT
ListenAddress 127.0.0.1
HostKey HOST_KEY
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
UseDNS no
EOF
systemctl start ssh.service
""".replace("HOST_KEY", HOST_KEY).replace("DROPIN", DROPIN)


def keypair(workdir):
    """The run's key pair: <workdir>/ssh/id_ed25519 (and .pub), made if missing. Returns the private key's path."""
    folder = Path(workdir) / "ssh"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = folder / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "justnews-test", "-f", str(key)],
                       check=True, stdin=subprocess.DEVNULL, timeout=60)
    return key


def inventory_vars(port, private_key):
    """Ansible's variables for a host enabled on `port` with `private_key` (root, pipelining on)."""
    return {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": int(port),
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(private_key),
        "ansible_ssh_common_args": COMMON_ARGS,
        # Ansible's default ssh_args without -C: compressing model weights costs CPU and saves nothing (the
        # setting hf_carry's notes recommend for hosts that receive models), and the raw stream it is compared
        # with (ssh_argv) is not compressed either.
        "ansible_ssh_args": "-o ControlMaster=auto -o ControlPersist=60s",
        "ansible_pipelining": True,
    }


def ssh_argv(port, private_key, *command):
    """argv of the plain ssh client to the host (BatchMode: fail rather than ask)."""
    return (["ssh", "-p", str(port), "-i", str(private_key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "ConnectTimeout=5"] + COMMON_ARGS.split() + ["root@127.0.0.1"] + list(command))


def enable(container, port, private_key, podman="podman", timeout=30):
    """Start sshd in `container` on 127.0.0.1:`port`, root's only authorized key the public half of `private_key`;
    wait until a login works. Returns inventory_vars(port, private_key). Raises RuntimeError naming what failed."""
    port = int(port)
    if not 1024 <= port <= 65535:
        raise ValueError("port %r: a test host's sshd needs an unprivileged port" % port)
    pubkey = Path(str(private_key) + ".pub").read_text().strip()
    proc = subprocess.run([podman, "exec", "-e", "PORT=%d" % port, "-e", "PUBKEY=" + pubkey, container,
                           "sh", "-c", _ENABLE], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError("cannot start sshd in %s on 127.0.0.1:%d: %s" % (container, port,
                                                                            (proc.stderr or proc.stdout).strip()))
    deadline = time.monotonic() + timeout
    while True:
        login = subprocess.run(ssh_argv(port, private_key, "cat", "/etc/hostname"), capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=30, check=False)
        if login.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("sshd of %s on 127.0.0.1:%d does not let root in within %d s: %s"
                               % (container, port, timeout, login.stderr.strip()))
        time.sleep(0.3)
    return inventory_vars(port, private_key)


def disable(container, podman="podman"):
    """Stop the container's sshd and remove its settings (the root key stays, harmless without sshd)."""
    subprocess.run([podman, "exec", container, "sh", "-c",
                    "systemctl stop ssh.service ssh.socket 2>/dev/null; rm -f " + DROPIN],
                   capture_output=True, timeout=60, check=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keypair", help="make <DIR>/ssh/id_ed25519 if missing; print its path")
    p.add_argument("workdir")
    p = sub.add_parser("enable", help="start sshd in CONTAINER on 127.0.0.1:PORT; print inventory variables")
    p.add_argument("container")
    p.add_argument("port", type=int)
    p.add_argument("private_key")
    p.add_argument("--podman", default="podman")
    p = sub.add_parser("disable", help="stop sshd in CONTAINER")
    p.add_argument("container")
    p.add_argument("--podman", default="podman")
    args = parser.parse_args(argv)
    try:
        if args.command == "keypair":
            print(keypair(args.workdir))
        elif args.command == "enable":
            print(json.dumps(enable(args.container, args.port, args.private_key, podman=args.podman)))
        else:
            disable(args.container, podman=args.podman)
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        print("ssh.py: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
