# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every way a module of the collection can fail: its error_kind, and the one fix for it.

A module fails through fail(): the result carries `error_kind` (for programs to branch on) and `fix` (for the
operator) beside `msg`, which says what happened and where. The modules spell a kind only through the
constants below, so this file is the whole vocabulary (tests/unit/plugins/module_utils/test_errors.py scans the
plugins for any other).

A fix names the options to change as 'option', followed by the variable of the role
justnews.huggingface.model_cache that sets that option (ROLE_VARIABLES): the same text serves a task that calls
the module and a play that runs the role, which shows the module's `fix` as it is.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

INVALID_ARGUMENT = "invalid_argument"
MISSING_LIBRARY = "missing_library"
CACHE_DIR_INVALID = "cache_dir_invalid"
NOT_WRITABLE = "not_writable"
NOT_ROOT = "not_root"
LOCKED = "locked"
UNSAFE_CACHE = "unsafe_cache"
UNSAFE_LISTING = "unsafe_listing"
INTEGRITY = "integrity"
INCOMPLETE = "incomplete"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
UNREACHABLE = "unreachable"
TRANSIENT = "transient"
TIMEOUT = "timeout"
GATED = "gated"
UNAUTHORIZED = "unauthorized"
REPO_NOT_FOUND = "repo_not_found"
REVISION_NOT_FOUND = "revision_not_found"
ENTRY_NOT_FOUND = "entry_not_found"
DISK_FULL = "disk_full"
NO_SPACE = "no_space"
PARTIAL_FAILURE = "partial_failure"
NOT_IN_BUNDLE = "not_in_bundle"
CORRUPT_BUNDLE = "corrupt_bundle"
UNSAFE_BUNDLE = "unsafe_bundle"
UNSAFE_IMAGE_ROOT = "unsafe_image_root"
UNSAFE_DESTINATION = "unsafe_destination"
PREFLIGHT = "preflight"
NOT_READY = "not_ready"
ENV_OVERRIDDEN = "env_overridden"
INTERNAL = "internal"
OTHER = "other"

# The role variable behind each module option a fix names. The role passes <model_cache_dir>/hub as cache_dir,
# and a model's repo_id, repo_type and revision come from its entry in model_cache_models.
ROLE_VARIABLES = {
    "allow_root": "model_cache_bake_allow_root",
    "cache_dir": "model_cache_dir",
    "dropin_name": "model_cache_dropin_name",
    "endpoint": "model_cache_endpoint",
    "env_conflicts": "model_cache_env_conflicts",
    "free_space_margin": "model_cache_free_space_margin",
    "hf_home": "model_cache_dir",
    "image_root": "model_cache_image_root",
    "owner": "model_cache_owner",
    "path": "model_cache_bundle",
    "ready_timeout": "model_cache_ready_timeout",
    "repo_id": "model_cache_models",
    "repo_type": "model_cache_models",
    "retries": "model_cache_retries",
    "revision": "model_cache_models",
    "timeout": "model_cache_timeout",
    "token": "model_cache_token",
    "token_file": "model_cache_token_file",
    "units": "model_cache_units",
}

# {option} is written out by fix() as 'option' (role variable). One text per kind, true for every module that
# returns the kind: what is particular to one failure (the path, the repository, the member) is in `msg`.
_TEXTS = {
    INVALID_ARGUMENT: "correct the option that the message names (through the role: the model's entry in"
                      " model_cache_models, or the model_cache_ variable that sets the option)",
    MISSING_LIBRARY: "install the Python requirements of the collection (requirements.txt: huggingface_hub, hf_xet)"
                     " for the interpreter that runs the module, or point ansible_python_interpreter at one that"
                     " has them (the role: model_cache_python on the hosts, model_cache_controller_python on the"
                     " controller or in the execution environment)",
    CACHE_DIR_INVALID: "point {cache_dir} at a directory, or move away the file that stands where it should be",
    NOT_WRITABLE: "run with become: true, or make the path that the message names writable: its owner, a"
                  " read-write mount, no immutable flag (chattr -i)",
    NOT_ROOT: "run the task with become: true",
    LOCKED: "another run holds the repository's lock: let it finish and run again, or raise {timeout} to wait"
            " longer",
    UNSAFE_CACHE: "inspect {cache_dir}: remove the link or special file that the message names by hand (rm removes"
                  " a link itself, never its target), or the whole repository with"
                  " justnews.huggingface.hf_snapshot state=absent, then run again",
    UNSAFE_LISTING: "nothing was written: stop using {endpoint} until it (or a proxy before it) is checked - it sent"
                    " a name that leads outside the cache or contradicts its own listing",
    INTEGRITY: "run again - the file that failed its size or checksum was not kept; if it repeats, check {endpoint}"
               " and any proxy before it, or the cache or bundle the file came from",
    INCOMPLETE: "fetch what is missing first: run without 'offline', copy every file of missing_blobs into"
                " 'blobs_from', or fetch the model into the build cache with justnews.huggingface.hf_snapshot",
    RATE_LIMITED: "run again later, pin {revision} to a commit, pass a token in {token} for an account's higher"
                  " limits, or raise {retries} and {timeout}; through the role, let fewer hosts fetch at once"
                  " (model_cache_hub_concurrency)",
    SERVER_ERROR: "run again later, or set {endpoint} to another Hub or mirror",
    UNREACHABLE: "check {endpoint} and the host's DNS, firewall and proxy (HTTPS_PROXY, NO_PROXY); from"
                 " huggingface.co the Xet hosts (*.xethub.hf.co) must be reachable too",
    TRANSIENT: "run again, or raise {retries}: the connection kept dropping",
    TIMEOUT: "raise {timeout}, or check that {endpoint} answers and the host's bandwidth",
    GATED: "accept the repository's terms on the Hub with your account, and pass that account's token in {token}"
           " or HF_TOKEN",
    UNAUTHORIZED: "pass a valid token with read access to the repository in {token} or HF_TOKEN",
    REPO_NOT_FOUND: "check {repo_id} and its repo_type; a private repository also answers 'not found' unless"
                    " {token} gives access to it",
    REVISION_NOT_FOUND: "check {revision}: a branch, tag or 40-hex commit of the repository",
    ENTRY_NOT_FOUND: "the endpoint lists a file that it cannot serve, as an incomplete mirror does: check {endpoint},"
                     " or leave the file out with allow_patterns/ignore_patterns",
    DISK_FULL: "free space on the filesystem that the message names, or move {cache_dir} to a larger one",
    NO_SPACE: "nothing was written: free space there (justnews.huggingface.hf_prune removes old revisions),"
              " choose another {cache_dir}, or lower {free_space_margin}; 0 turns the check off",
    PARTIAL_FAILURE: "make the path that the message names removable (chattr -i, a writable mount), then run"
                     " justnews.huggingface.hf_prune again: it settles the repository's .hf_prune.trash first",
    NOT_IN_BUNDLE: "build the bundle {path} again with the models, revisions and patterns the hosts need"
                   " (playbook justnews.huggingface.bundle)",
    CORRUPT_BUNDLE: "nothing was taken from it: copy the bundle {path} again from where it was built, or build it"
                    " again",
    UNSAFE_BUNDLE: "nothing was taken from it: build the bundle {path} again, and find out where this file came"
                   " from",
    UNSAFE_IMAGE_ROOT: "nothing was written: make each component on the way a directory inside {image_root}, give"
                       " the service user {owner} ids other than 0 in the image, or set {allow_root} when an"
                       " image whose agents run as root is meant",
    UNSAFE_DESTINATION: "nothing was written to it: move away the symlink, directory or special file that the message"
                        " names (rm removes a link itself, never its target) so that a regular file can take its"
                        " place, or choose another {token_file}, {dropin_name} or 'facts_file', then run again",
    PREFLIGHT: "nothing was changed: fix each numbered problem of the message as it says (each names the variable,"
               " the unit or the file to change), then run again",
    NOT_READY: "read the unit's state and last journal lines in the message: fix what keeps the agent from"
               " starting or loading its model, or its readiness check in {units}; raise {ready_timeout} for an"
               " agent that needs longer",
    ENV_OVERRIDDEN: "remove each variable that the message names from the file that sets it (an EnvironmentFile"
                    " the start script re-sources, a later drop-in or the start script), then restart the unit;"
                    " with {env_conflicts} warn, a value that an EnvironmentFile sets is reported, not failed",
    INTERNAL: "run again with -vvv and report the message and the host",
    OTHER: "correct the cause that the message names and run again; -vvv shows more detail",
}


class _Options(dict):
    def __missing__(self, name):
        variable = ROLE_VARIABLES.get(name)
        return "'%s' (%s)" % (name, variable) if variable else "'%s'" % name


FIXES = {kind: text.format_map(_Options()) for kind, text in _TEXTS.items()}
KINDS = frozenset(FIXES)


def fix(kind):
    """The fix for `kind`; a kind outside the vocabulary (a bug, which the unit tests rule out) gets OTHER's."""
    return FIXES.get(kind, FIXES[OTHER])


def fail(module, kind, msg, **result):
    """End the run as failed: `msg` says what happened and where, `error_kind` and `fix` go beside it."""
    result.update(error_kind=kind, fix=fix(kind))
    result.setdefault("changed", False)
    module.fail_json(msg=msg, **result)


class Failure(Exception):
    """The one exception of the collection: an error kind of this module, the message, and extra result keys."""

    def __init__(self, kind, msg, **extra):
        super().__init__(msg)
        self.kind = kind
        self.msg = msg
        self.extra = extra
