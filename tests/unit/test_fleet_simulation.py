"""The fleet distribution model: bytes per link, Hub requests against the per-IP limits, rollout time."""

import json
import math
from dataclasses import replace

import pytest

from benchmarks import fleet_simulation as sim

FLEET = sim.Fleet()
COPY = FLEET.model_bytes


@pytest.mark.parametrize("hosts", [1, 10, 1000, 5000])
def test_hub_bytes_one_copy_for_the_fleet_modes_and_one_per_host_for_hub(hosts):
    fleet = replace(FLEET, hosts=hosts, sites=min(FLEET.sites, hosts))
    assert sim.simulate(fleet, "controller")["hub_bytes"] == COPY
    assert sim.simulate(fleet, "seed per site")["hub_bytes"] == COPY
    assert sim.simulate(fleet, "p2p")["hub_bytes"] == COPY
    assert sim.simulate(fleet, "hub")["hub_bytes"] == hosts * COPY
    assert sim.simulate(fleet, "hub, site mirror")["hub_bytes"] == fleet.sites * COPY


def test_controller_uplink_carries_one_copy_per_host_and_seed_mode_one_per_site():
    controller = sim.simulate(FLEET, "controller")
    seed = sim.simulate(FLEET, "seed per site")
    assert controller["controller_uplink_bytes"] == FLEET.hosts * COPY
    assert controller["max_site_wan_bytes"] == FLEET.hosts // FLEET.sites * COPY
    assert seed["controller_uplink_bytes"] == FLEET.sites * COPY
    assert seed["max_site_wan_bytes"] == COPY
    assert sim.simulate(FLEET, "p2p")["max_site_wan_bytes"] == COPY
    assert sim.simulate(FLEET, "hub")["controller_uplink_bytes"] == 0


def test_doubling_the_uplink_halves_the_controller_transfer_time():
    wide_wan = replace(FLEET, wan_gbit=1000.0)  # the uplink is the only bottleneck of the batches
    slow = sim.simulate(wide_wan, "controller")["time_by_bottleneck_s"]
    fast = sim.simulate(replace(wide_wan, controller_gbit=2 * wide_wan.controller_gbit),
                        "controller")["time_by_bottleneck_s"]
    assert slow["controller_uplink"] == pytest.approx(FLEET.hosts * COPY / FLEET.uplink)
    assert fast["controller_uplink"] == pytest.approx(slow["controller_uplink"] / 2)


def test_hub_mode_crosses_the_anonymous_resolver_limit_where_the_arithmetic_says():
    api, resolver = FLEET.fetch_requests()
    assert (api, resolver) == (2, 26)
    largest = min(500 // api, 3000 // resolver)
    assert largest == 115 == sim.thresholds(FLEET)["hub_max_hosts_per_ip_anonymous"]
    for hosts, hit in ((largest, False), (largest + 1, True)):
        fleet = replace(FLEET, hosts=hosts, sites=1)
        limits = sim.simulate(fleet, "hub")["limits"]["anonymous"]
        assert limits["site"]["hit"] is limits["fleet"]["hit"] is hit
        assert limits["fleet"]["floor_s"] == (300 if hit else 0)
    # 50 hosts per site stay within the anonymous limits; the whole fleet behind one IP does not
    limits = sim.simulate(FLEET, "hub")["limits"]
    assert not limits["anonymous"]["site"]["hit"]
    assert limits["anonymous"]["fleet"]["hit"] and limits["free"]["fleet"]["hit"]
    assert limits["anonymous"]["fleet"]["floor_s"] == (math.ceil(26000 / 3000) - 1) * 300


def test_fleet_modes_never_reach_a_limit_and_p2p_saves_bytes_not_metadata():
    for mode in ("controller", "seed per site"):
        result = sim.simulate(replace(FLEET, egress="fleet"), mode)
        assert (result["hub_api_requests"], result["hub_resolver_requests"]) == FLEET.fetch_requests()
        assert result["rate_limit_floor_s"] == 0
    p2p = sim.simulate(replace(FLEET, egress="fleet"), "p2p")
    assert p2p["hub_resolver_requests"] == FLEET.hosts * 26 and p2p["rate_limit_floor_s"] > 0
    cached = sim.simulate(replace(FLEET, egress="fleet", p2p_metadata="cached"), "p2p")
    assert cached["hub_resolver_requests"] == 26 and cached["rate_limit_floor_s"] == 0


def test_batches_cover_the_fleet_and_the_controller_stops_scaling_at_the_window():
    counts = sim.batches(FLEET)
    assert len(counts) == math.ceil(FLEET.hosts / FLEET.batch_size) == 4
    assert sum(map(sum, counts)) == FLEET.hosts
    limit = sim.thresholds(FLEET)["controller_max_hosts_in_window"]
    assert limit == math.floor(30 * 60 * 10e9 / 8 / COPY)
    inside = sim.simulate(replace(FLEET, hosts=limit), "controller")["controller_uplink_s"]
    outside = sim.simulate(replace(FLEET, hosts=limit + 1), "controller")["controller_uplink_s"]
    assert inside <= 30 * 60 < outside


def test_command_line_prints_the_table_and_writes_the_same_figures_as_json(tmp_path, capsys):
    out = tmp_path / "fleet.json"
    sim.main(["--json", str(out), "--sweep", "10,5000"])
    printed = capsys.readouterr().out
    document = json.loads(out.read_text())
    assert [row["mode"] for row in document["modes"]] == list(sim.MODES)
    assert [row["hosts"] for row in document["sweep"]] == [10, 5000]
    assert document["sweep"][1]["controller_uplink_s"] > 30 * 60 > document["sweep"][0]["controller_uplink_s"]
    for row in document["modes"]:
        assert row["mode"] in printed
        assert "{:,.1f}".format(row["rollout_s"] / 60) in printed


def test_a_site_mirror_sends_the_hub_its_own_fetch_and_the_measured_requests_of_every_host():
    api, resolver = FLEET.fetch_requests()
    per_host = sim.MIRROR_RESOLVER_PER_FILE * FLEET.files
    # the benchmark's measurement: 79.8 resolve HEADs (6 per file) and 14.4 paths-info calls per added host
    assert (per_host, sim.MIRROR_API_PER_HOST) == (78, 14)
    hosts_per_site = FLEET.hosts // FLEET.sites
    mirror = sim.simulate(FLEET, "hub, site mirror")
    assert mirror["busiest_ip_requests"]["site"] == [api + hosts_per_site * sim.MIRROR_API_PER_HOST,
                                                     resolver + hosts_per_site * per_host]
    assert mirror["hub_resolver_requests"] == FLEET.sites * (resolver + hosts_per_site * per_host)
    # the bytes stay one copy per site whatever the requests
    assert mirror["hub_bytes"] == FLEET.sites * COPY
    # 50 hosts per site exceed the anonymous API budget of the site's address (2 + 50 x 14 = 702 > 500)
    assert mirror["limits"]["anonymous"]["site"]["hit"] and mirror["limits"]["anonymous"]["fleet"]["hit"]
    largest = min((500 - api) // sim.MIRROR_API_PER_HOST, (3000 - resolver) // per_host)
    assert largest == 35 == sim.thresholds(FLEET)["mirror_max_hosts_per_site_anonymous"]
    for hosts, hit in ((largest, False), (largest + 1, True)):
        site = sim.simulate(replace(FLEET, hosts=hosts, sites=1), "hub, site mirror")["limits"]["anonymous"]["site"]
        assert site["hit"] is hit
    # a mirror that answered every request itself would cost the Hub one fetch per site, as before
    ideal = sim.simulate(replace(FLEET, mirror_resolver_per_file=0, mirror_api_per_host=0), "hub, site mirror")
    assert (ideal["hub_api_requests"], ideal["hub_resolver_requests"]) == (FLEET.sites * api, FLEET.sites * resolver)
    # a site without hosts has no mirror traffic
    assert FLEET.mirror_requests(0) == (0, 0)
