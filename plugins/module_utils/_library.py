# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The huggingface_hub the modules are tested with, and the parts of it they rely on beyond its documented API.

The modules turn off the library's own retries (keyword defaults of its private HTTP helpers), check the Hub's
headers before the library acts on them (by wrapping file_download.get_hf_file_metadata), count the bytes it
receives (its progress bars) and put blobs into its shared store (a private helper). A release that renamed or
reshaped one of those would fail deep in a download with an AttributeError or, worse, quietly retry on its own;
check() finds that before anything is done and names the installed release and the tested range.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys

# The release range of huggingface_hub the collection is tested with: requirements.txt (the controller's and the
# execution environment's), which requirements/target.txt (the hosts' venv, model_cache_pip_packages) pins within.
TESTED_RANGE = ">=2.4.0,<2.5"

# (module, attribute, what must hold): a keyword argument with a default, parameters, dataclass fields, or only
# that the attribute exists.
REQUIRED = (
    ("huggingface_hub.utils._http", "_http_backoff_base", ("keyword default", ("max_retries",))),
    ("huggingface_hub.utils._http", "http_backoff", ("keyword default", ("max_retries",))),
    ("huggingface_hub.utils._http", "http_stream_backoff", ("keyword default", ("max_retries",))),
    ("huggingface_hub.file_download", "http_get", ("keyword default", ("_nb_retries",))),
    ("huggingface_hub.file_download", "get_hf_file_metadata", ("parameter", ("url",))),
    ("huggingface_hub.file_download", "HfFileMetadata", ("field", ("commit_hash", "etag"))),
    ("huggingface_hub.utils._shared_blobs", "publish_blob_to_shared_store",
     ("parameter", ("blob_path", "xet_hash", "cache_dir", "expected_size", "replace_existing"))),
    ("huggingface_hub", "snapshot_download",
     ("parameter", ("repo_id", "repo_type", "revision", "cache_dir", "endpoint", "token", "allow_patterns",
                    "ignore_patterns", "tqdm_class"))),
    ("huggingface_hub.constants", "HF_HUB_DISABLE_SHARED_BLOBS", None),
    ("huggingface_hub.constants", "HF_HUB_DISABLE_XET", None),
    ("huggingface_hub.utils", "filter_repo_objects", None),
    ("huggingface_hub.utils", "parse_ratelimit_headers", None),
    ("huggingface_hub.utils", "tqdm", None),
    ("huggingface_hub.hf_api", "HfApi", None),
    ("huggingface_hub.hf_api", "RepoFile", None),
    ("huggingface_hub.errors", "GatedRepoError", None),
    ("huggingface_hub.errors", "RepositoryNotFoundError", None),
    ("huggingface_hub.errors", "RevisionNotFoundError", None),
    ("huggingface_hub.errors", "RemoteEntryNotFoundError", None),
)


def installed_version():
    """The installed huggingface_hub's version, as its distribution (else the package) gives it."""
    try:
        from importlib.metadata import version  # pylint: disable=import-outside-toplevel

        return version("huggingface_hub")
    except Exception:  # pylint: disable=broad-except
        module = sys.modules.get("huggingface_hub")
        return getattr(module, "__version__", "of an unknown version")


def _lacks(value, condition):
    """What `value` lacks of `condition`, as text; None when it has it all."""
    if condition is None:
        return None
    what, names = condition
    if what == "field":
        have = {f.name for f in dataclasses.fields(value)} if dataclasses.is_dataclass(value) else set()
    else:
        try:
            target = inspect.unwrap(value)
            if what == "keyword default":
                have = set(target.__kwdefaults__ or ())
            else:
                have = set(inspect.signature(target).parameters)
        except (TypeError, ValueError, AttributeError):
            have = set()
    missing = [name for name in names if name not in have]
    return "has no %s %s" % (what, ", ".join(missing)) if missing else None


def problems():
    """What the installed huggingface_hub lacks of REQUIRED, one text per part; empty when it has everything."""
    found = []
    for module_name, attribute, condition in REQUIRED:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            found.append("%s cannot be imported (%s)" % (module_name, exc))
            continue
        if not hasattr(module, attribute):
            found.append("%s.%s is missing" % (module_name, attribute))
            continue
        lack = _lacks(getattr(module, attribute), condition)
        if lack:
            found.append("%s.%s %s" % (module_name, attribute, lack))
    return found


def check():
    """None when the installed huggingface_hub has every part the modules use, else the message that names the
    parts it lacks, its version and the tested range."""
    found = problems()
    if not found:
        return None
    return ("huggingface_hub %s (for %s) lacks what the modules rely on: %s. The collection is tested with"
            " huggingface_hub %s (requirements.txt): install a release in that range (the role's"
            " model_cache_pip_packages pins one)." % (installed_version(), sys.executable, "; ".join(found),
                                                      TESTED_RANGE))
