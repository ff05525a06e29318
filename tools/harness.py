"""What every test, the demo and the benchmark share: the collection as users install it, and which Python
runs the module on the managed host.

Run from the repository root (pytest's `pythonpath` and `python -m` both put it on sys.path).
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def controller_bin(name):
    """An Ansible command of the controller under test: the one installed beside this Python."""
    return str(Path(sys.executable).parent / name)


def target_python():
    """The interpreter that runs the module on the managed host (it has huggingface_hub).

    JUSTNEWS_TARGET_PYTHON lets a controller venv of another ansible-core release drive the project venv's
    Python, as a controller drives a managed host.
    """
    return os.environ.get("JUSTNEWS_TARGET_PYTHON") or sys.executable


def install_collection(root):
    """Build the collection with ansible-galaxy and install the artefact into <root>; return <root>.

    What users install is what is tested: a file missing from the artefact fails the tests that need it.
    """
    root = Path(root)
    dist = root / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    subprocess.run([controller_bin("ansible-galaxy"), "collection", "build", "--force", "--output-path", str(dist),
                    str(REPO)], check=True, capture_output=True, text=True)
    artefact = next(dist.glob("justnews-huggingface-*.tar.gz"))
    subprocess.run([controller_bin("ansible-galaxy"), "collection", "install", "--offline", "--force",
                    "-p", str(root), str(artefact)], check=True, capture_output=True, text=True,
                   env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root)))
    return root


def library_snapshot(cache, revision, repo_id="sentence-transformers/all-MiniLM-L6-v2"):
    """Where huggingface_hub itself, offline, finds a snapshot in `cache` (it raises when anything is missing)."""
    code = ("import huggingface_hub\n"
            "print(huggingface_hub.snapshot_download(%r, revision=%r, cache_dir=%r, local_files_only=True))\n"
            % (repo_id, revision, str(cache)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    proc = subprocess.run([target_python(), "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]
