"""The fleet benchmark's own logic: ratios against the baseline, the targets it reports, its tables."""

from benchmarks.fleet import (MB, MIB, OLAH_CHECK_PATH, THROUGHPUT_PLAN, breakdown_text, delivered_file_bytes,
                              evaluate_targets, fleet_table, format_table, human, interleave, marginal_requests,
                              mirror_summary, mirror_table, own_checks, ratio, served_by, summarise,
                              throughput_table, transfer_rates, transfer_table, with_ratios)

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
    targets = by_name(evaluate_targets(fleet(), MODEL, [("Xet", 0.97, 150 * MIB), ("plain HTTP", 1.02, 90 * MIB)]))
    assert targets["controller: one Hub copy at N=5"][0]
    assert targets["controller: warm pinned run costs nothing at N=5"][0]
    assert targets["module throughput >= 0.95x hf download on Xet"] == (True, "0.97x")
    assert targets["module peak memory < 200 MiB on Xet"] == (True, "150 MiB")
    assert targets["module throughput >= 0.95x hf download on plain HTTP"] == (True, "1.02x")
    assert targets["module peak memory < 200 MiB on plain HTTP"] == (True, "90 MiB")
    # the baseline claims no free warm run: it is reported in the table, not as a target
    assert not any(name.startswith("baseline") for name in targets)


def test_targets_missed():
    targets = by_name(evaluate_targets(fleet(controller_bytes=2 * MODEL, warm_requests=1), MODEL,
                                       [("Xet", 0.9, 250 * MIB), ("plain HTTP", 0.96, 100 * MIB)]))
    assert targets["controller: one Hub copy at N=5"] == (False, "2.00 copies (2000 file bytes, model 1000)")
    assert not targets["controller: warm pinned run costs nothing at N=5"][0]
    assert not targets["module throughput >= 0.95x hf download on Xet"][0]
    assert not targets["module peak memory < 200 MiB on Xet"][0]
    # each transport is judged on its own figures
    assert targets["module throughput >= 0.95x hf download on plain HTTP"][0]
    assert targets["module peak memory < 200 MiB on plain HTTP"][0]
    moved = by_name(evaluate_targets(fleet(warm_moved=1), MODEL))
    assert not moved["controller: warm pinned run costs nothing at N=5"][0]


def test_memory_never_observed_or_no_ratio_is_not_a_pass():
    targets = by_name(evaluate_targets([], MODEL, [("Xet", None, 0)]))
    assert targets["module peak memory < 200 MiB on Xet"] == (False, "not observed")
    assert targets["module throughput >= 0.95x hf download on Xet"] == (False, "-")


def test_table_and_units():
    text = format_table(("mode", "N"), [("baseline", 10), ("controller", 1)])
    assert text.splitlines() == ["mode         N", "baseline    10", "controller   1"]
    assert human(512) == "512 B"
    assert human(91618897) == "87.4 MiB"
    assert human(2 * 1024 ** 3) == "2 GiB"


def test_interleave_runs_every_step_on_every_transport_alternating_which_goes_first():
    order = interleave(3, ("xet", "http"))
    assert order == [(0, "xet"), (0, "http"), (1, "http"), (1, "xet"), (2, "xet"), (2, "http")]
    # the target rows keep their module, hf, hf, module order on each transport
    steps = [THROUGHPUT_PLAN[i][0] for i, t in interleave(len(THROUGHPUT_PLAN), ("xet", "http")) if t == "http"]
    assert steps[:4] == ["module", "hf download", "hf download", "module"]


def test_served_by_reads_the_hub_counters():
    size = 2000
    assert served_by({"xet_token": 1, "reconstruction": 1, "xorb": 3}, {"xorb": 500}, size) == "xet"
    assert served_by({"head": 1, "get": 1, "bridge": 1}, {"bridge": size}, size) == "bridge"
    assert served_by({"head": 2, "get": 2}, {"get": size + 38}, size) == "resolver"
    assert served_by({"get": 1}, {"get": 38}, size) == "partial"
    assert served_by({"tree": 1}, {"tree": 300}, size) == "cache"


def tp_run(step, seconds, cold=True, rss=100 * MIB, own=None, via="xet", size=1000 * MIB):
    label = THROUGHPUT_PLAN[step][0]
    return {"step": step, "tool": label, "seconds": seconds, "bytes_per_s": size / seconds if cold else None,
            "peak_rss": rss, "module_elapsed": own, "via": via,
            "hub_bytes": {"tree": 400, "xorb": 4 * MIB - 400} if cold else {}}


def transport_runs(module_s=(10.0, 10.0), hf_s=(8.0, 8.0)):
    return [tp_run(0, module_s[0], own=module_s[0] - 2), tp_run(1, hf_s[0], rss=90 * MIB),
            tp_run(2, hf_s[1], rss=90 * MIB), tp_run(3, module_s[1], rss=120 * MIB, own=module_s[1] - 2),
            tp_run(4, 1.0, cold=False, rss=30 * MIB, own=0.2, via="cache"), tp_run(5, 9.0),
            tp_run(6, 1.5, cold=False, rss=10 * MIB, via="-"), tp_run(7, 8.0, rss=80 * MIB)]


def test_summary_ratio_is_of_the_mean_speeds_and_the_gap_is_explained_by_measured_parts():
    summary = summarise(transport_runs(module_s=(10.0, 20.0), hf_s=(8.0, 8.0)))
    speed_module = (100 + 50) / 2  # MiB/s of each run, then their mean
    assert abs(summary["ratio"] - speed_module / 125) < 1e-9
    assert summary["module_peak_rss"] == 120 * MIB  # the module's rows only, not the hash or the library alone
    assert summary["module_s"] == 15.0 and summary["hf_s"] == 8.0 and summary["gap_s"] == 7.0
    assert summary["module_own_s"] == 13.0
    assert summary["checksum_s"] == 1.5 and summary["warm_s"] == 1.0
    assert summary["no_checksum_ratio"] == 8.0 / 9.0
    assert summary["snapshot_download_ratio"] == 1.0
    assert summary["hub_bytes_per_download"] == 4 * MIB
    text = breakdown_text("Xet", summary)
    assert text.startswith("Xet: the Hub sent 4 MiB per cold download; module 15.0 s (its own elapsed 13.0 s")
    assert "gap +7.0 s" in text and "checksum pass alone 1.5 s" in text and "0.89x hf download" in text


def test_summary_without_the_explaining_rows():
    runs = [r for r in transport_runs() if r["step"] < 4]
    summary = summarise(runs)
    assert summary["ratio"] == 0.8
    assert summary["checksum_s"] is None and summary["no_checksum_ratio"] is None
    assert "checksum pass alone -" in breakdown_text("plain HTTP", summary)


def test_throughput_table_puts_the_transports_side_by_side():
    result = {"transports": {"xet": {"runs": transport_runs()},
                             "http": {"runs": [dict(r, via="resolver") for r in transport_runs(hf_s=(5.0, 5.0))]}}}
    lines = throughput_table(result).splitlines()
    assert lines[0].split() == ["tool", "Xet", "s", "MiB/s", "RSS", "MiB", "via", "plain", "HTTP", "s", "MiB/s",
                                "RSS", "MiB", "via"]
    assert len(lines) == 1 + len(THROUGHPUT_PLAN)
    assert lines[2].split() == ["hf", "download", "8.0", "125", "90", "xet", "5.0", "200", "90", "resolver"]
    # a warm run has no speed
    assert lines[5].split()[-8:] == ["1.0", "-", "30", "cache", "1.0", "-", "30", "resolver"]
    # a transport that did not run is left out, not shown empty
    assert "plain HTTP" not in throughput_table({"transports": {"xet": {"runs": transport_runs()}}})


def test_file_bytes_delivered_count_a_xet_file_by_its_size_per_reconstruction():
    weights, onnx = "a" * 64, "b" * 64
    sizes = {weights: 90000, onnx: 80000}
    stats = {"bytes": {"get": 700, "xorb": 61000, "reconstruction": 900},
             "log": [["HEAD", "/org/m/resolve/c/model.safetensors", 302],
                     ["GET", "/v2/reconstructions/" + weights, 200],
                     ["GET", "/v1/reconstructions/%s?x=1" % onnx, 200],
                     ["GET", "/v2/reconstructions/" + onnx, 429],  # refused: nothing delivered
                     ["GET", "/xorb/default/" + "c" * 64 + "?expires=1&sig=2", 206]]}
    # the resolver's bodies plus one file size per answered reconstruction; xorb bytes are compressed, not counted
    assert delivered_file_bytes(stats, sizes) == 700 + 90000 + 80000
    # a plain LFS Hub: the resolver's and the bridge's bodies alone
    assert delivered_file_bytes({"bytes": {"get": 5000, "bridge": 3000}, "log": []}, {}) == 8000


def walls(n=10, baseline=(60.0, 10.0), hub=(50.0, 12.0), controller=(70.0, 14.0)):
    """Rows of every mode at size n, (cold, warm) wall seconds each."""
    return [row(mode, n, run, 0, 0, 0, seconds)
            for mode, times in (("baseline", baseline), ("hub", hub), ("controller", controller))
            for run, seconds in zip(("cold", "warm"), times)]


def test_wall_time_targets_met_per_size():
    targets = by_name(evaluate_targets(walls(1) + walls(10), MODEL))
    for n in (1, 10):
        assert targets["hub: warm wall time <= 1.5x baseline warm at N=%d" % n][0]
        assert targets["controller: warm wall time <= 1.5x baseline warm at N=%d" % n][0]
    assert targets["controller: cold wall time <= 1.5x hub cold at N=10"] == (
        True, "70.0 s against 50.0 s (1.40x; limit 75.0 s)")
    # only at N=10, not at every size
    assert [name for name in targets if name.startswith("controller: cold wall time")] == [
        "controller: cold wall time <= 1.5x hub cold at N=10"]


def test_wall_time_targets_missed_and_named():
    targets = by_name(evaluate_targets(walls(5, hub=(50.0, 15.1), controller=(75.1, 14.0)), MODEL))
    assert targets["hub: warm wall time <= 1.5x baseline warm at N=5"] == (
        False, "15.1 s against 10.0 s (1.51x; limit 15.0 s)")
    assert targets["controller: warm wall time <= 1.5x baseline warm at N=5"][0]
    # N=10 was not run: the largest N stands in, and the name says so
    name = "controller: cold wall time <= 1.5x hub cold at N=5 (the largest N run; the target is at N=10)"
    assert not targets[name][0]


def test_wall_time_target_without_its_rows_is_a_named_miss_not_an_error():
    rows = [r for r in walls(10) if (r["mode"], r["run"]) not in (("baseline", "warm"), ("hub", "cold"))]
    targets = by_name(evaluate_targets(rows, MODEL))
    assert targets["hub: warm wall time <= 1.5x baseline warm at N=10"] == (False, "not measured: baseline warm")
    assert targets["controller: cold wall time <= 1.5x hub cold at N=10"] == (False, "not measured: hub cold")
    assert not any("wall time" in name for name in by_name(evaluate_targets([], MODEL)))


def test_transfer_rate_end_to_end_against_the_loopback():
    rows = [row("controller", 5, "cold", 27, MODEL, 500 * MB, 50.0), row("controller", 5, "warm", 0, 0, 0, 5.0),
            row("controller", 10, "cold", 27, MODEL, 1000 * MB, 80.0)]
    loops = [{"n": 5, "hosts": 5, "bytes": 500 * MB, "seconds": 2.0},
             {"n": 10, "hosts": 10, "error": "podman exec tar 1: no space"}]
    rates = transfer_rates(rows, loops)
    assert [r["n"] for r in rates] == [5, 10]
    assert rates[0]["bytes_per_s"] == 10 * MB and rates[0]["loopback_bytes_per_s"] == 250 * MB
    assert rates[0]["ratio"] == 0.04
    # a failed loopback gives no limit and no ratio, and the row is still there
    assert rates[1]["loopback_bytes_per_s"] is None and rates[1]["ratio"] is None
    lines = transfer_table(rates).splitlines()
    assert lines[0].split()[:5] == ["N", "moved", "to", "hosts", "play"]
    assert lines[1].split() == ["5", "477", "MiB", "50.0", "10.0", "9.5", "477", "MiB", "2.00", "250.0", "238.4",
                                "0.04x"]
    assert lines[2].split()[-5:] == ["-", "-", "-", "-", "-"]
    assert transfer_rates(rows, [])[0]["loopback"] is None


def mirrored(n=5, cold_bytes=MODEL, cold_requests=None, warm_requests=0, warm_moved=0, cold_s=30.0, warm_s=12.0):
    """Baseline and mirror rows at size n: the hosts' caches gain one copy each on the cold run."""
    cold_requests = 60 + 39 * n if cold_requests is None else cold_requests
    return [row("baseline", n, "cold", 28 * n, n * MODEL, n * MODEL, 20.0),
            row("baseline", n, "warm", n, 0, 0, 10.0),
            dict(row("mirror", n, "cold", cold_requests, cold_bytes, n * MODEL, cold_s), sites=1),
            dict(row("mirror", n, "warm", warm_requests, 0, warm_moved, warm_s), sites=1)]


def test_mirror_targets_one_copy_per_site_and_a_free_warm_run():
    rows = mirrored(5) + mirrored(10, cold_s=50.0, warm_s=14.0)
    targets = by_name(evaluate_targets(rows, MODEL, mirror_sizes=(5, 10)))
    assert targets["mirror: one Hub copy per site at N=5"] == (True, "1.00 copies for 1 site (1000 file bytes, "
                                                                     "model 1000)")
    assert targets["mirror: one Hub copy per site at N=10"][0]
    assert targets["mirror: warm pinned run costs nothing at N=10"][0]
    assert targets["mirror: warm wall time <= 1.5x baseline warm at N=5"] == (
        True, "12.0 s against 10.0 s (1.20x; limit 15.0 s)")
    # sites scale the copies the Hub may send
    two_sites = [dict(r, sites=2) if r["mode"] == "mirror" else r for r in mirrored(10, cold_bytes=2 * MODEL)]
    assert by_name(evaluate_targets(two_sites, MODEL))["mirror: one Hub copy per site at N=10"] == (
        True, "2.00 copies for 2 sites (2000 file bytes, model 1000)")


def test_mirror_targets_missed():
    rows = mirrored(5, cold_bytes=5 * MODEL, warm_requests=3) + mirrored(10, warm_moved=1)
    targets = by_name(evaluate_targets(rows, MODEL, mirror_sizes=(5, 10)))
    # a mirror the hosts bypassed (Xet on) costs one copy per host
    assert targets["mirror: one Hub copy per site at N=5"] == (False, "5.00 copies for 1 site (5000 file bytes, "
                                                                      "model 1000)")
    assert not targets["mirror: warm pinned run costs nothing at N=5"][0]
    assert not targets["mirror: warm pinned run costs nothing at N=10"][0]


def test_a_mirror_size_that_did_not_run_is_a_named_miss_and_other_sizes_are_not_judged():
    rows = walls(1) + mirrored(5)
    targets = by_name(evaluate_targets(rows, MODEL, mirror_sizes=(5, 10)))
    assert targets["mirror: one Hub copy per site at N=10"] == (False, "not measured: mirror cold")
    assert targets["mirror: one Hub copy per site at N=5"][0]
    # the mirror runs at its sizes only: no wall-time target where it was not meant to run
    assert "mirror: warm wall time <= 1.5x baseline warm at N=1" not in targets
    assert "mirror: warm wall time <= 1.5x baseline warm at N=5" in targets
    # without mirror sizes and rows, no mirror target at all
    assert not any(name.startswith("mirror") for name in by_name(evaluate_targets(walls(10), MODEL)))


def test_mirror_summary_and_table():
    rows = with_ratios(mirrored(5) + mirrored(10, cold_s=50.0))
    deploys = [{"n": 5, "boot_s": 6.0, "seconds": 61.5}, {"n": 10, "error": "the mirror's play failed"}]
    summary = mirror_summary(rows, deploys, MODEL)
    assert [(m["n"], m["run"]) for m in summary] == [(5, "cold"), (5, "warm"), (10, "cold"), (10, "warm")]
    cold5, warm5, cold10 = summary[0], summary[1], summary[2]
    assert cold5["deploy_s"] == 61.5 and warm5["deploy_s"] is None and cold10["deploy_s"] is None
    assert cold5["hub_requests"] == 255 and cold5["hub_requests_per_host"] == 51.0
    assert cold5["copies_per_site"] == 1.0 and cold5["over_mirror_bytes"] == 5 * MODEL
    assert cold5["baseline_s"] == 20.0 and cold5["ratio_seconds"] == 1.5
    assert cold10["ratio_seconds"] == 2.5
    lines = mirror_table(summary).splitlines()
    assert lines[0].split()[:5] == ["N", "run", "deploy", "s", "Hub"]
    assert lines[1].split() == ["5", "cold", "61.5", "255", "51.0", "1000", "B", "1.00", "4.88", "KiB", "30.0",
                                "20.0", "1.50x"]
    assert lines[3].split()[2] == "-"
    # a mirror row without its baseline has no ratio
    alone = mirror_summary([r for r in rows if r["mode"] == "mirror"], [], MODEL)
    assert alone[0]["baseline_s"] is None and mirror_table(alone).splitlines()[1].split()[-2:] == ["-", "-"]
    # the fleet table places the mirror after the other modes of its size
    order = [line.split()[0] for line in fleet_table(rows).splitlines()[1:5]]
    assert order == ["baseline", "baseline", "mirror", "mirror"]


def test_marginal_requests_cancel_the_mirrors_own_fetch():
    rows = mirrored(5) + mirrored(10) + mirrored(1, cold_requests=99)
    # 60 for the mirror's own fetch of the revision at every size, 39 per host
    assert marginal_requests(rows) == [(1, 5, (255 - 99) / 4), (5, 10, 39.0)]
    assert marginal_requests(mirrored(5)) == []


def test_olahs_own_connection_check_is_counted_apart():
    stats = {"log": [["HEAD", OLAH_CHECK_PATH + "resolve/main/.gitattributes", 404],
                     ["HEAD", "/sentence-transformers/all-MiniLM-L6-v2/resolve/c/config.json", 200],
                     ["GET", "/api/models/sentence-transformers/all-MiniLM-L6-v2/revision/c", 200]]}
    assert own_checks(stats) == 1
    assert own_checks({"log": []}) == 0 and own_checks({}) == 0
