"""Fleet distribution on paper: Hub traffic, link traffic, Hub requests and rollout time per distribution mode.

A fluid model, not a measurement: every figure is computed here from the options below, none is typed in.
Usage, from the repository root:

    .venv/bin/python -m benchmarks.fleet_simulation [--json FILE] [--hosts 1000 --sites 20 ...]

The fleet: --hosts hosts spread evenly over --sites sites. Each site reaches the outside world (the Hub, the
controller, other sites) over one WAN link and has a LAN inside. The controller sits outside every site behind its
own uplink. The model: one large LFS file (--lfs-gb) plus --small-files small files (--small-bytes in all), as a
sentence-transformers repository looks.

Modes (rows of the table):
  hub              every host fetches from the Hub itself, at most --hub-concurrency at once fleet-wide
                   (the role's model_cache_hub_concurrency).
  hub, site mirror the same role mode with model_cache_endpoint pointing at a caching mirror in each site
                   (Olah, the hub_mirror role); each mirror fetches the bytes once from the Hub, but sends the Hub
                   --mirror-resolver-per-file requests per file and --mirror-api-per-host API calls for every
                   host it serves, cached or not (Olah's access checks, measured: MIRROR_RESOLVER_PER_FILE,
                   MIRROR_API_PER_HOST).
  controller       one fetch onto the controller, then every host receives the blobs it lacks over Ansible's own
                   connection: the controller's uplink carries one copy per host.
  seed per site    not built, superseded by site mirrors; modelled for comparison: the controller fetches once
                   and feeds one seed host per site, and each seed feeds its site's hosts over the LAN.
  p2p              a P2P engine such as Dragonfly is the distribution layer (model_cache_endpoint points at it):
                   one Hub copy through a seed peer, one copy over each site's WAN link, a swarm inside the site.

Time model (seconds). Ansible rolls out in batches of --serial hosts and waits for a batch before the next; the
hosts of a batch run in parallel. A phase's time is the slowest of its bottlenecks, each being the bytes a link
must carry divided by its bandwidth (fluid sharing, no protocol overhead). Each batch then adds --verify-s (checksums,
restart, readiness). Store-and-forward steps (the controller's own fetch, feeding the seeds) are phases of their own
before the first batch; P2P pipelines the Hub, the WAN and the LAN, so one batch's time is the slowest of those
stages, and a site's swarm follows the Kumar-Ross bound max(M/u_src, M/d, k*M/(u_src + k*u)) for k downloaders
of upload/download capacity u fed by a source of capacity u_src. The host order is interleaved across sites
(--order grouped puts each site's hosts together, so a batch loads a few sites' WAN links only).

Hub requests: one fetch of a cold revision costs --api-per-fetch API calls (revision lookup, tree listing) and
--resolver-per-file resolver calls per file (HEAD, GET). The Hub's published limits are per IP and per 5-minute
window (anonymous 500 API / 3,000 resolver; free account 1,000 / 5,000; PRO 2,500 / 12,000). Requests leave through
one IP per site (--egress site) or one IP for the whole fleet (--egress fleet). When an IP needs R requests against
a limit L, the rollout waits at least (ceil(R/L) - 1) windows of 300 s: the rate-limit floor, added to the
transfer time because each fetch sends its requests before its bytes, so a host refused with 429 idles until the
window resets. A site mirror sends, per site, one cold fetch of its own and then, for each host of the site,
--mirror-api-per-host API and --mirror-resolver-per-file resolver requests per file (what the benchmark measured
for Olah: it checks every client request with the Hub, even for a file it holds, and a batch of hosts arriving
together on a cold mirror costs more than hosts arriving one at a time). A P2P engine distributes the
file bytes, not the metadata: by default each host's API and resolver requests still reach the Hub
(--p2p-metadata cached models a caching mirror in front that answers them).
"""

import argparse
import json
import math
from dataclasses import asdict, dataclass, fields, replace

WINDOW_S = 300
LIMITS = {"anonymous": (500, 3000), "free": (1000, 5000), "pro": (2500, 12000)}
MODES = ("hub", "hub, site mirror", "controller", "seed per site", "p2p")
GB = 1e9
# What a site mirror (Olah 0.5.4, deployed by the hub_mirror role) sends the Hub for each host that fetches a
# revision through it, on top of the mirror's own one cold fetch per site: Olah checks every client HEAD and GET
# with upstream resolve HEADs, even when the file is cached, and asks the Hub's paths-info API again for callers
# that arrive while its metadata cache is still cold. Measured by `.venv/bin/python -m benchmarks.fleet
# --only-fleet --sizes 5,10 --mirror-sizes 5,10` (2026-12-06; the prefetch playbook through one Olah, hosts at
# once, model_cache_read_timeout 60) for all-MiniLM-L6-v2 (13 files): between N = 5 and N = 10 the cold runs' Hub
# requests grew by 94.2 per added host, 79.8 resolve HEADs (6.1 per file) and 14.4 paths-info calls. Hosts that
# arrive one at a time cost less (39 HEADs and no API call per fresh client, the Olah evaluation of 2026-11-27):
# these figures are for a rollout batch, the role's way. To update: the benchmark prints the requests per added
# host; its JSON's mirror rows hold them by kind (`hub_by_kind`: head is resolver, the others API).
MIRROR_RESOLVER_PER_FILE = 6
MIRROR_API_PER_HOST = 14


@dataclass(frozen=True)
class Fleet:  # pylint: disable=too-many-instance-attributes
    """Every input of the model; the defaults are the documented fleet."""

    hosts: int = 1000
    sites: int = 20
    lfs_gb: float = 2.0
    small_files: int = 12
    small_bytes: int = 1_200_000
    controller_gbit: float = 10.0
    wan_gbit: float = 1.0
    lan_gbit: float = 10.0
    hub_mb_s: float = 50.0
    hub_concurrency: int = 20
    serial: str = "25%"
    verify_s: float = 10.0
    order: str = "interleaved"
    egress: str = "site"
    tier: str = "anonymous"
    api_per_fetch: int = 2
    resolver_per_file: int = 2
    p2p_metadata: str = "hub"
    mirror_api_per_host: int = MIRROR_API_PER_HOST
    mirror_resolver_per_file: int = MIRROR_RESOLVER_PER_FILE
    window_min: float = 30.0

    @property
    def model_bytes(self):
        """Bytes of one copy of the model."""
        return round(self.lfs_gb * GB) + self.small_bytes

    @property
    def files(self):
        """Files in the repository revision."""
        return 1 + self.small_files

    @property
    def uplink(self):
        """Controller (and central seed peer) uplink, bytes per second."""
        return self.controller_gbit * GB / 8

    @property
    def wan(self):
        """One site's WAN link, bytes per second."""
        return self.wan_gbit * GB / 8

    @property
    def lan(self):
        """One host's LAN port, bytes per second."""
        return self.lan_gbit * GB / 8

    @property
    def hub_rate(self):
        """What the Hub serves one download, bytes per second."""
        return self.hub_mb_s * 1e6

    @property
    def batch_size(self):
        """Hosts per batch, as Ansible reads `serial` (an integer or a percentage, at least 1)."""
        if self.serial.endswith("%"):
            return max(1, int(self.hosts * float(self.serial[:-1]) / 100))
        return max(1, min(self.hosts, int(self.serial)))

    def fetch_requests(self):
        """(API, resolver) requests of one cold fetch of the revision."""
        return self.api_per_fetch, self.resolver_per_file * self.files

    def mirror_requests(self, hosts):
        """(API, resolver) requests a site mirror sends the Hub for `hosts` hosts of its site: its own cold fetch,
        then each host's requests it checks with the Hub (none for a site without hosts)."""
        if not hosts:
            return 0, 0
        api, resolver = self.fetch_requests()
        return (api + hosts * self.mirror_api_per_host,
                resolver + hosts * self.mirror_resolver_per_file * self.files)


def site_of(fleet):
    """Site index of every host, in inventory order."""
    if fleet.order == "grouped":
        return [index * fleet.sites // fleet.hosts for index in range(fleet.hosts)]
    return [index % fleet.sites for index in range(fleet.hosts)]


def batches(fleet):
    """Per batch, the number of hosts of each site in it."""
    sites = site_of(fleet)
    size = fleet.batch_size
    result = []
    for start in range(0, fleet.hosts, size):
        counts = [0] * fleet.sites
        for site in sites[start:start + size]:
            counts[site] += 1
        result.append(counts)
    return result


def site_sizes(fleet):
    """Hosts per site."""
    counts = [0] * fleet.sites
    for site in site_of(fleet):
        counts[site] += 1
    return counts


def rate_limit(api, resolver, tier):
    """Whether (API, resolver) requests behind one IP exceed the tier's 5-minute limits, and the wait they force."""
    api_limit, resolver_limit = LIMITS[tier]
    windows = max(math.ceil(api / api_limit), math.ceil(resolver / resolver_limit), 1)
    over = []
    if api > api_limit:
        over.append("API %.1fx" % (api / api_limit))
    if resolver > resolver_limit:
        over.append("res %.1fx" % (resolver / resolver_limit))
    return {"hit": bool(over), "over": ", ".join(over) or "ok", "floor_s": (windows - 1) * WINDOW_S}


class Clock:
    """Adds phases; a phase lasts as long as its slowest term. Remembers which term cost the most time overall."""

    def __init__(self):
        self.seconds = 0.0
        self.by_term = {}

    def phase(self, **terms):
        """Add one phase (terms in seconds) and return its length."""
        name, seconds = max(terms.items(), key=lambda item: item[1])
        self.seconds += seconds
        self.by_term[name] = self.by_term.get(name, 0.0) + seconds
        return seconds

    def bottleneck(self):
        """The term that cost the most time."""
        return max(self.by_term.items(), key=lambda item: item[1])[0].replace("_", " ")


def _hub(fleet, clock):
    size = fleet.model_bytes
    for counts in batches(fleet):
        hosts = sum(counts)
        clock.phase(hub_throttle=hosts * size / (min(fleet.hub_concurrency, hosts) * fleet.hub_rate),
                    site_wan=max(counts) * size / fleet.wan, host_lan=size / fleet.lan)
        clock.phase(verify=fleet.verify_s)
    return {"hub_fetches": [fleet.hosts], "per_site_fetches": site_sizes(fleet), "hub_bytes": fleet.hosts * size,
            "controller_uplink_bytes": 0, "site_wan_bytes": [n * size for n in site_sizes(fleet)]}


def _site_mirror(fleet, clock):
    size = fleet.model_bytes
    clock.phase(hub_download=size / fleet.hub_rate, site_wan=size / fleet.wan)
    for counts in batches(fleet):
        hosts = sum(counts)
        clock.phase(hub_throttle=hosts * size / (min(fleet.hub_concurrency, hosts) * fleet.lan),
                    mirror_lan=max(counts) * size / fleet.lan)
        clock.phase(verify=fleet.verify_s)
    return {"site_requests": [fleet.mirror_requests(n) for n in site_sizes(fleet)], "hub_bytes": fleet.sites * size,
            "controller_uplink_bytes": 0, "site_wan_bytes": [size] * fleet.sites}


def _controller(fleet, clock):
    size = fleet.model_bytes
    clock.phase(hub_download=size / min(fleet.hub_rate, fleet.uplink))
    clock.phase(verify=fleet.verify_s)
    for counts in batches(fleet):
        clock.phase(controller_uplink=sum(counts) * size / fleet.uplink,
                    site_wan=max(counts) * size / fleet.wan, host_lan=size / fleet.lan)
        clock.phase(verify=fleet.verify_s)
    return {"hub_fetches": [1], "per_site_fetches": [0] * fleet.sites, "hub_bytes": size,
            "controller_uplink_bytes": fleet.hosts * size, "site_wan_bytes": [n * size for n in site_sizes(fleet)]}


def _seed(fleet, clock):
    size = fleet.model_bytes
    clock.phase(hub_download=size / min(fleet.hub_rate, fleet.uplink))
    clock.phase(verify=fleet.verify_s)
    clock.phase(controller_uplink=fleet.sites * size / fleet.uplink, site_wan=size / fleet.wan)
    clock.phase(verify=fleet.verify_s)
    seeded = [False] * fleet.sites
    for counts in batches(fleet):
        receivers = []
        for site, count in enumerate(counts):
            if count and not seeded[site]:  # the seed is the site's first host in inventory order
                seeded[site] = True
                count -= 1
            receivers.append(count)
        clock.phase(seed_lan=max(receivers) * size / fleet.lan, host_lan=size / fleet.lan if any(receivers) else 0)
        clock.phase(verify=fleet.verify_s)
    return {"hub_fetches": [1], "per_site_fetches": [0] * fleet.sites, "hub_bytes": size,
            "controller_uplink_bytes": fleet.sites * size, "site_wan_bytes": [size] * fleet.sites}


def _p2p(fleet, clock):
    size = fleet.model_bytes
    holders = [0] * fleet.sites
    first = True
    for counts in batches(fleet):
        terms = {"hub_download": size / fleet.hub_rate if first else 0.0, "seed_peer_uplink": 0.0,
                 "site_wan": 0.0, "lan_swarm": 0.0}
        new_sites = 0
        for site, count in enumerate(counts):
            if not count:
                continue
            if holders[site]:
                source, source_term = holders[site] * fleet.lan, "lan_swarm"
            else:
                source, source_term = fleet.wan, "site_wan"
                new_sites += 1
            terms[source_term] = max(terms[source_term], size / source)
            swarm = max(size / fleet.lan, count * size / (source + count * fleet.lan))
            terms["lan_swarm"] = max(terms["lan_swarm"], swarm)
            holders[site] += count
        terms["seed_peer_uplink"] = new_sites * size / fleet.uplink
        first = False
        clock.phase(**terms)
        clock.phase(verify=fleet.verify_s)
    if fleet.p2p_metadata == "hub":
        fetches, per_site = [fleet.hosts], site_sizes(fleet)
    else:
        fetches, per_site = [1], [0] * fleet.sites
    return {"hub_fetches": fetches, "per_site_fetches": per_site, "hub_bytes": size,
            "controller_uplink_bytes": 0, "site_wan_bytes": [size] * fleet.sites}


_MODELS = {"hub": _hub, "hub, site mirror": _site_mirror, "controller": _controller, "seed per site": _seed,
           "p2p": _p2p}


def simulate(fleet, mode):
    """One mode on one fleet: bytes per link, Hub requests and limits, rollout time."""
    clock = Clock()
    result = _MODELS[mode](fleet, clock)
    if "site_requests" in result:  # (API, resolver) per site, as a site mirror sends them
        per_site = result.pop("site_requests")
        site = max(per_site, key=lambda pair: (pair[1], pair[0]))
        total = (sum(pair[0] for pair in per_site), sum(pair[1] for pair in per_site))
    else:  # whole cold fetches, each costing fetch_requests()
        api, resolver = fleet.fetch_requests()
        fetches = sum(result.pop("hub_fetches"))
        busiest_site = max(result.pop("per_site_fetches"))
        if mode in ("controller", "seed per site") or (mode == "p2p" and fleet.p2p_metadata != "hub"):
            busiest_site = 1  # the single fetch leaves through one address, wherever the fetching machine is
        site, total = (busiest_site * api, busiest_site * resolver), (fetches * api, fetches * resolver)
    limits = {}
    for tier in LIMITS:
        limits[tier] = {"site": rate_limit(site[0], site[1], tier), "fleet": rate_limit(total[0], total[1], tier)}
    chosen = limits[fleet.tier][fleet.egress]
    wan = result.pop("site_wan_bytes")
    result.update({
        "mode": mode,
        "max_site_wan_bytes": max(wan),
        "hub_api_requests": total[0],
        "hub_resolver_requests": total[1],
        "busiest_ip_requests": {"site": list(site), "fleet": list(total)},
        "limits": limits,
        "transfer_and_verify_s": clock.seconds,
        "rate_limit_floor_s": chosen["floor_s"],
        "rollout_s": clock.seconds + chosen["floor_s"],
        "rollout_by_egress_s": {egress: clock.seconds + limits[fleet.tier][egress]["floor_s"]
                                for egress in ("site", "fleet")},
        "time_by_bottleneck_s": dict(clock.by_term),
        "bottleneck": "Hub rate limit" if chosen["floor_s"] > clock.seconds else clock.bottleneck(),
        "controller_uplink_s": result["controller_uplink_bytes"] / fleet.uplink,
    })
    return result


def thresholds(fleet):
    """Fleet sizes where things break, from the arithmetic alone."""
    api, resolver = fleet.fetch_requests()
    window = fleet.window_min * 60
    out = {"controller_max_hosts_in_window": math.floor(window * fleet.uplink / fleet.model_bytes),
           "seed_max_sites_in_window": math.floor(window * fleet.uplink / fleet.model_bytes),
           "seed_max_hosts_per_site_in_window": math.floor(window * fleet.lan / fleet.model_bytes) + 1}
    per_host = (fleet.mirror_api_per_host, fleet.mirror_resolver_per_file * fleet.files)
    for tier, (api_limit, resolver_limit) in LIMITS.items():
        # hub mode: the largest number of hosts behind one IP that stays within both limits
        out["hub_max_hosts_per_ip_" + tier] = min(api_limit // api if api else math.inf,
                                                  resolver_limit // resolver if resolver else math.inf)
        # a site mirror: its own fetch, then the largest number of the site's hosts within both limits
        out["mirror_max_hosts_per_site_" + tier] = min(
            (limit - own) // cost if cost else math.inf
            for limit, own, cost in ((api_limit, api, per_host[0]), (resolver_limit, resolver, per_host[1])))
    return out


def sweep(fleet, sizes):
    """Rollout time of each mode for several fleet sizes (sites = min(--sites, hosts))."""
    rows = []
    for hosts in sizes:
        sized = replace(fleet, hosts=hosts, sites=min(fleet.sites, hosts))
        results = {mode: simulate(sized, mode) for mode in MODES}
        rows.append({"hosts": hosts, "sites": sized.sites,
                     "rollout_s": {mode: results[mode]["rollout_s"] for mode in MODES},
                     "controller_uplink_s": results["controller"]["controller_uplink_s"],
                     "seed_controller_uplink_s": results["seed per site"]["controller_uplink_s"]})
    return rows


def _gb(value):
    return "{:,.1f}".format(value / GB)


def _min(seconds):
    return "{:,.1f}".format(seconds / 60)


def report(fleet, results, sweep_rows, limits):
    """Print the table, the sweep and the thresholds."""
    api_limit, resolver_limit = LIMITS[fleet.tier]
    print("Fleet: %d hosts in %d sites, model %s GB in %d files; controller uplink %g Gbit/s, site WAN %g Gbit/s, "
          "LAN %g Gbit/s," % (fleet.hosts, fleet.sites, _gb(fleet.model_bytes), fleet.files, fleet.controller_gbit,
                              fleet.wan_gbit, fleet.lan_gbit))
    print("Hub %g MB/s per download, hub concurrency %d, serial %s (%d hosts), verify %g s per batch, order %s."
          % (fleet.hub_mb_s, fleet.hub_concurrency, fleet.serial, fleet.batch_size, fleet.verify_s, fleet.order))
    print("Limits: %s, %d API / %d resolver per IP per 5 min; rollout time with egress through one IP per %s."
          % (fleet.tier, api_limit, resolver_limit, fleet.egress))
    print()
    header = ("mode", "Hub GB", "uplink GB", "WAN GB", "Hub API", "resolver", "limit @site IP", "limit @fleet IP",
              "min @site", "min @fleet", "bound by")
    line = "%-16s %7s %9s %6s %7s %8s %14s %17s %9s %10s  %s"
    print(line % header)
    for res in results:
        chosen = res["limits"][fleet.tier]
        print(line % (res["mode"], _gb(res["hub_bytes"]), _gb(res["controller_uplink_bytes"]),
                      _gb(res["max_site_wan_bytes"]), "{:,}".format(res["hub_api_requests"]),
                      "{:,}".format(res["hub_resolver_requests"]), chosen["site"]["over"],
                      chosen["fleet"]["over"], _min(res["rollout_by_egress_s"]["site"]),
                      _min(res["rollout_by_egress_s"]["fleet"]), res["bottleneck"]))
    print("(Hub GB: over the Hub link; uplink GB: the controller's uplink; WAN GB: the busiest site's WAN link; "
          "min: rollout minutes")
    print(" with one public IP per site or for the whole fleet; bound by: the bottleneck at --egress %s;"
          % fleet.egress)
    print(" seed per site: not built, superseded by site mirrors, modelled for comparison.)")
    print()
    print("Sweep (rollout minutes; sites = min(%d, hosts); controller uplink minutes against a %g-minute window):"
          % (fleet.sites, fleet.window_min))
    line = "%7s %8s %17s %11s %15s %14s %8s %18s"
    print(line % ("hosts", "hub", "hub, site mirror", "controller", "ctl uplink min", "seed per site", "p2p",
                  "controller in window"))
    for row in sweep_rows:
        times = row["rollout_s"]
        fits = "yes" if row["controller_uplink_s"] <= fleet.window_min * 60 else "NO"
        print(line % ("{:,}".format(row["hosts"]), _min(times["hub"]), _min(times["hub, site mirror"]),
                      _min(times["controller"]), _min(row["controller_uplink_s"]), _min(times["seed per site"]),
                      _min(times["p2p"]), fits))
    print()
    print("controller: the uplink alone needs more than %g minutes above %s hosts (one copy per host)."
          % (fleet.window_min, "{:,}".format(limits["controller_max_hosts_in_window"])))
    print("seed per site (not built, superseded by site mirrors): the uplink fits %s sites and each seed's LAN port "
          "%s hosts per site in %g minutes."
          % ("{:,}".format(limits["seed_max_sites_in_window"]),
             "{:,}".format(limits["seed_max_hosts_per_site_in_window"]), fleet.window_min))
    print("hub: more than %s / %s / %s hosts behind one IP exceed the anonymous / free / PRO limits in one window."
          % tuple("{:,}".format(limits["hub_max_hosts_per_ip_" + tier]) for tier in ("anonymous", "free", "pro")))
    print("hub, site mirror: more than %s / %s / %s hosts per site exceed them in one window (the mirror's fetch, "
          "then %d API and %d resolver requests per host)."
          % (tuple("{:,}".format(limits["mirror_max_hosts_per_site_" + tier]) for tier in ("anonymous", "free", "pro"))
             + (fleet.mirror_api_per_host, fleet.mirror_resolver_per_file * fleet.files)))


def parse_args(argv=None):
    """Command line: every input of the model, with the defaults of Fleet."""
    defaults = Fleet()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--json", metavar="FILE", help="also write the results as JSON")
    add("--hosts", type=int, default=defaults.hosts, help="hosts in the fleet (%(default)s)")
    add("--sites", type=int, default=defaults.sites, help="sites, each with one WAN link (%(default)s)")
    add("--lfs-gb", type=float, default=defaults.lfs_gb, help="size of the LFS weights file, GB (%(default)s)")
    add("--small-files", type=int, default=defaults.small_files, help="small files besides it (%(default)s)")
    add("--small-bytes", type=int, default=defaults.small_bytes, help="bytes of all small files (%(default)s)")
    add("--controller-gbit", type=float, default=defaults.controller_gbit,
        help="controller (and P2P seed peer) uplink, Gbit/s (%(default)s)")
    add("--wan-gbit", type=float, default=defaults.wan_gbit, help="each site's WAN link, Gbit/s (%(default)s)")
    add("--lan-gbit", type=float, default=defaults.lan_gbit, help="each host's LAN port, Gbit/s (%(default)s)")
    add("--hub-mb-s", type=float, default=defaults.hub_mb_s, help="Hub throughput per download, MB/s (%(default)s)")
    add("--hub-concurrency", type=int, default=defaults.hub_concurrency,
        help="simultaneous fetches fleet-wide in the hub modes, model_cache_hub_concurrency (%(default)s)")
    add("--serial", default=defaults.serial, help="rollout batch, hosts or percentage (%(default)s)")
    add("--verify-s", type=float, default=defaults.verify_s,
        help="per batch: checksums, restart, readiness, seconds (%(default)s)")
    add("--order", choices=("interleaved", "grouped"), default=defaults.order,
        help="inventory order of hosts across sites (%(default)s)")
    add("--egress", choices=("site", "fleet"), default=defaults.egress,
        help="one public IP per site or for the whole fleet, for the rollout time (%(default)s)")
    add("--tier", choices=tuple(LIMITS), default=defaults.tier, help="Hub account tier (%(default)s)")
    add("--api-per-fetch", type=int, default=defaults.api_per_fetch,
        help="API requests of one cold fetch: revision lookup and tree listing (%(default)s)")
    add("--resolver-per-file", type=int, default=defaults.resolver_per_file,
        help="resolver requests per file of one cold fetch: HEAD and GET (%(default)s)")
    add("--p2p-metadata", choices=("hub", "cached"), default=defaults.p2p_metadata,
        help="in p2p mode, whether each host's metadata requests reach the Hub (%(default)s)")
    add("--mirror-api-per-host", type=int, default=defaults.mirror_api_per_host,
        help="API requests a site mirror sends the Hub per host it serves, measured (%(default)s)")
    add("--mirror-resolver-per-file", type=int, default=defaults.mirror_resolver_per_file,
        help="resolver requests a site mirror sends the Hub per host and file, cached or not, measured "
             "(%(default)s)")
    add("--window-min", type=float, default=defaults.window_min, help="rollout window, minutes (%(default)s)")
    add("--sweep", default="10,100,1000,5000", help="fleet sizes of the sweep (%(default)s)")
    args = parser.parse_args(argv)
    if args.hosts < 1 or not 1 <= args.sites <= args.hosts:
        parser.error("need 1 <= --sites <= --hosts")
    return args, Fleet(**{field.name: getattr(args, field.name) for field in fields(Fleet)})


def main(argv=None):
    """Run the model with the command line's inputs."""
    args, fleet = parse_args(argv)
    results = [simulate(fleet, mode) for mode in MODES]
    sweep_rows = sweep(fleet, [int(size) for size in args.sweep.split(",") if size.strip()])
    limits = thresholds(fleet)
    report(fleet, results, sweep_rows, limits)
    if args.json:
        document = {"parameters": dict(asdict(fleet), model_bytes=fleet.model_bytes, files=fleet.files,
                                       batch_size=fleet.batch_size),
                    "modes": results, "sweep": sweep_rows, "thresholds": limits}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)


if __name__ == "__main__":
    main()
