"""The fleet benchmark's own logic: ratios against the baseline, the targets it reports, its tables."""

from benchmarks.fleet import MIB, evaluate_targets, format_table, human, ratio, with_ratios

MODEL = 1000


def row(mode, n, run, requests, file_bytes, moved, seconds=10.0):
    return {"mode": mode, "n": n, "run": run, "hub_requests": requests, "hub_bytes": file_bytes + 50,
            "hub_file_bytes": file_bytes, "moved_bytes": moved, "seconds": seconds}


def fleet(controller_bytes=MODEL, warm_requests=0, warm_moved=0):
    return [row("baseline", 5, "cold", 140, 5 * MODEL, 5 * MODEL, 20.0),
            row("baseline", 5, "warm", 5, 0, 0, 10.0),
            row("controller", 5, "cold", 27, controller_bytes, 5 * MODEL, 40.0),
            row("controller", 5, "warm", warm_requests, 0, warm_moved, 5.0)]


def by_name(targets):
    return {name: (met, detail) for name, met, detail in targets}


def test_ratio_against_the_baseline_of_the_same_size_and_run():
    rows = {(r["mode"], r["run"]): r for r in with_ratios(fleet())}
    assert rows[("controller", "cold")]["ratio_hub_requests"] == 27 / 140
    assert rows[("controller", "cold")]["ratio_seconds"] == 2.0
    assert rows[("controller", "warm")]["ratio_seconds"] == 0.5
    assert rows[("baseline", "cold")]["ratio_moved_bytes"] == 1.0
    # nothing to compare with: no ratio rather than a division by zero
    assert rows[("controller", "warm")]["ratio_moved_bytes"] is None
    assert ratio(3, 0) is None


def test_targets_met():
    targets = by_name(evaluate_targets(fleet(), MODEL, throughput=0.97, peak_rss=150 * MIB))
    assert targets["controller: one Hub copy at N=5"][0]
    assert targets["controller: warm pinned run costs nothing at N=5"][0]
    assert targets["module throughput >= 0.95x hf download"] == (True, "0.97x")
    assert targets["module peak memory < 200 MiB"] == (True, "150 MiB")
    # the baseline claims no free warm run: it is reported in the table, not as a target
    assert not any(name.startswith("baseline") for name in targets)


def test_targets_missed():
    targets = by_name(evaluate_targets(fleet(controller_bytes=2 * MODEL, warm_requests=1), MODEL,
                                       throughput=0.9, peak_rss=250 * MIB))
    assert targets["controller: one Hub copy at N=5"] == (False, "2.00 copies (2000 file bytes, model 1000)")
    assert not targets["controller: warm pinned run costs nothing at N=5"][0]
    assert not targets["module throughput >= 0.95x hf download"][0]
    assert not targets["module peak memory < 200 MiB"][0]
    moved = by_name(evaluate_targets(fleet(warm_moved=1), MODEL))
    assert not moved["controller: warm pinned run costs nothing at N=5"][0]


def test_memory_never_observed_is_not_a_pass():
    assert by_name(evaluate_targets([], MODEL, peak_rss=0))["module peak memory < 200 MiB"] == (False, "not observed")


def test_table_and_units():
    text = format_table(("mode", "N"), [("baseline", 10), ("controller", 1)])
    assert text.splitlines() == ["mode         N", "baseline    10", "controller   1"]
    assert human(512) == "512 B"
    assert human(91618897) == "87.4 MiB"
    assert human(2 * 1024 ** 3) == "2 GiB"
