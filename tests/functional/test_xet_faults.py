"""hf_snapshot against the Xet CAS when it misbehaves: its token route, reconstructions and xorb reads rate
limited, failing, refusing a token, hanging, or a token that expires mid-download. hf_xet makes one attempt in
the module's download process, so the module's own retry layer decides, inside its deadline."""

import hashlib
import time

from tools.hub.hubserver import COMMIT_A, MINILM_REPO

FOLDER = "models--" + MINILM_REPO.replace("/", "--")


def args(hub, cache, **extra):
    base = {"repo_id": MINILM_REPO, "revision": COMMIT_A, "cache_dir": str(cache), "endpoint": hub.url,
            "timeout": 120}
    base.update(extra)
    return base


def weights_ok(hub, cache):
    blob = hub.repos[MINILM_REPO]["commits"][COMMIT_A]["model.safetensors"]
    path = cache / FOLDER / "snapshots" / COMMIT_A / "model.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest() == blob.sha256


def cas_statuses(hub, route):
    return [status for _method, path, status in hub.stats()["log"] if route in path]


def left_behind(cache):
    """What a failed first fetch left that a user could see: no snapshot, ref, listing, partial download or store
    entry. Complete blobs of the repository stay, recorded as pending, and are checked before a later run uses
    them."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if not p.is_dir()
                  and not p.name.endswith((".lock", "CACHEDIR.TAG")) and ".locks" not in p.parts
                  and not (p.parent == cache / FOLDER / "blobs" and not p.name.endswith(".incomplete")))


def test_a_cas_rate_limit_is_waited_out_by_the_module(hub, cache, run):
    hub.set_faults([{"kind": "429", "endpoint": "reconstruction", "count": 1, "retry_after": "1", "reset": 1}])
    result = run(args(hub, cache))
    assert result.get("failed") is not True, run.output
    assert result["retries_used"] == 1 and weights_ok(hub, cache)
    assert cas_statuses(hub, "/reconstructions/")[:1] == [429] and cas_statuses(hub, "/reconstructions/")[-1] == 200


def test_a_rate_limited_token_route_waits_for_the_ratelimit_reset(hub, cache, run):
    # No Retry-After: the RateLimit header's t= says when the window reopens.
    hub.set_faults([{"kind": "429", "endpoint": "xet_token", "count": 1, "reset": 2}])
    started = time.monotonic()
    result = run(args(hub, cache))
    assert result.get("failed") is not True, run.output
    assert result["retries_used"] == 1 and weights_ok(hub, cache)
    assert time.monotonic() - started >= 2


def test_a_refused_cas_token_is_retried_with_a_fresh_one(hub, cache, run):
    hub.set_faults([{"kind": "401", "endpoint": "reconstruction", "count": 1}])
    result = run(args(hub, cache))
    assert result.get("failed") is not True, run.output
    assert result["retries_used"] == 1 and weights_ok(hub, cache)
    assert hub.stats()["requests"]["xet_token"] >= 2  # the retry asked the Hub for a new token


def test_a_token_that_expires_mid_download_is_renewed(hub, cache, run):
    # A one-second token and xorbs served at 30 MB/s: the download outlives its first token.
    hub.set_faults([{"kind": "expire", "endpoint": "xet_token", "count": -1, "value": 1},
                    {"kind": "throttle", "endpoint": "xorb", "count": -1, "value": 30_000_000}])
    result = run(args(hub, cache))
    assert result.get("failed") is not True, run.output
    assert result["retries_used"] == 0 and weights_ok(hub, cache)
    assert hub.stats()["requests"]["xet_token"] >= 2


def test_a_failing_cas_fails_clearly_and_leaves_nothing(hub, cache, run):
    hub.set_faults([{"kind": "503", "endpoint": "xorb", "count": -1}])
    result = run(args(hub, cache, retries=2))
    assert result["failed"] is True and result["error_kind"] == "server_error", result
    assert "503" in result["msg"] and result["retries_used"] == 2
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists() and not (cache / FOLDER / "refs" / "main").exists()
    assert left_behind(cache) == []


def test_a_hung_cas_ends_within_the_timeout_and_leaves_nothing(hub, cache, run):
    hub.set_faults([{"kind": "hang", "endpoint": "reconstruction", "count": -1}])
    started = time.monotonic()
    result = run(args(hub, cache, timeout=8))
    assert result["failed"] is True and result["error_kind"] == "timeout", result
    assert time.monotonic() - started < 8 + 25  # the playbook's own start-up on top of the module's limit
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists()
    assert left_behind(cache) == []
