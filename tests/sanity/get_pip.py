"""Offline stand-in for the get-pip.py that ansible-test downloads to bootstrap its sanity venvs.

Copied to ~/.ansible/test/cache/get_pip_<version>.py by .ci/run: pip comes from ensurepip, and the requested
packages from the machine's configured package index.
"""
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
env = dict(os.environ)
# ensurepip's way of ignoring pip configuration must not hide the machine's index settings.
if env.get("PIP_CONFIG_FILE") == os.devnull:
    del env["PIP_CONFIG_FILE"]
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env))
