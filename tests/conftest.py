"""Shared fixtures: the local test Hub (tools/hub) for the real huggingface_hub client, and the collection
as users install it."""

import os
import secrets

import pytest

from tools.harness import install_collection
from tools.hub.hubserver import HubServer

# Set before any test imports huggingface_hub: several of its settings are read at import time.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """One local Hub per session, with a random token for the gated repo (`hub.token`). Its LFS files are in
    Xet storage, as on huggingface.co: the real client downloads them from its CAS (`hub.cas_url`).

    HF_ENDPOINT is exported for subprocesses; in-process calls should pass `endpoint=hub.url`, because
    huggingface_hub reads HF_ENDPOINT when first imported.
    """
    token = "hf_test_" + secrets.token_hex(8)
    server = HubServer(token=token).start()
    server.token = token
    saved = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HOME")}
    os.environ["HF_ENDPOINT"] = server.url
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))  # keeps any user token file out of play
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def hub_lfs():
    """A second Hub that serves LFS files from its resolver (plain LFS, no Xet): mirrors that strip Xet, and
    Hubs before the migration. Pass `endpoint=hub_lfs.url` explicitly."""
    token = "hf_test_" + secrets.token_hex(8)
    server = HubServer(token=token, xet=False).start()
    server.token = token
    yield server
    server.stop()


@pytest.fixture(params=["xet", "lfs"])
def any_hub(request):
    """Each transport in turn: the test runs against the Xet Hub and against the plain-LFS Hub."""
    return request.getfixturevalue("hub" if request.param == "xet" else "hub_lfs")


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory):
    """A collections path holding justnews.huggingface as users get it: the built artefact, installed."""
    return str(install_collection(tmp_path_factory.mktemp("collections")))


@pytest.fixture(autouse=True)
def _hub_clean(request):
    """Each test that uses a Hub starts with no faults and zeroed statistics, and leaves none behind: the next
    test's module-scoped fixtures (caches filled once per module) are set up before this fixture runs again."""
    used = [request.getfixturevalue(name) for name in ("hub", "hub_lfs") if name in request.fixturenames]
    for server in used:
        server.reset()
    yield
    for server in used:
        server.reset()
