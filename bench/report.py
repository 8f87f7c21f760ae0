#!/usr/bin/env python3
"""bench/report.py — the statistics and the report of bench/run (stdlib only).

  bench/report.py --samples DIR --rounds N --mode quick|full --stamp STAMP --secs S
                  --conns N --elapsed S --commit C --zmeshd-sha H
                  --load-start "1 5 15" --load-end "1 5 15"
                  [--machine TEXT] [--results FILE [--benchmarks FILE]]

DIR holds what bench/run measured, one number a line in DIR/<path>.<metric> (path: direct,
zmesh, stunnel, haproxy, zmesh_proxy = zmesh with its same-node fast path off, zmesh_w1 and
zmesh_w2 = zmesh with the fast path off and 1 or 2 workers; metric: a key
of METRICS), in round order. Prints the run's
description and the table of medians and ratios; --results writes the whole report (that
and every sample) to FILE; --benchmarks replaces the section of FILE between its markers
with the same table and a link to the results file (FILE is made from a template when
missing). --machine defaults to a description of this machine.

A cell built from fewer samples than it should have (a measurement failed in some rounds)
says so: "4.55 (1 of 2 rounds)", "4.55 (4.52–4.61; 3 of 5 rounds)". Errors (a sample that
is not a number, BENCHMARKS.md without its markers) exit 1 with a message naming the file."""

import argparse
import os
import sys
from collections import namedtuple

# zmesh_proxy: zmeshd with --fast-path off, for the same-node rows only (same-node traffic
# through the proxy's two hops, what the fast path is compared with).
# zmesh_w1, zmesh_w2: zmeshd with the fast path off and --workers 1 or 2, for the 4-stream rows.
PATHS = ("direct", "zmesh", "stunnel", "haproxy", "zmesh_proxy", "zmesh_w1", "zmesh_w2")
HEADERS = {"zmesh_proxy": "zmesh, fast path off", "zmesh_w1": "zmesh, 1 worker", "zmesh_w2": "zmesh, 2 workers"}
WORKERS = ("zmesh_w1", "zmesh_w2")
MAIN_PATHS = PATHS[:4]
PROXIES = ("zmesh", "stunnel", "haproxy")
SAME_NODE = MAIN_PATHS + ("zmesh_proxy",)
PEERS = ("stunnel", "haproxy")  # "best peer" is the better of these for a row

# key: the samples file's suffix; better: "hi" or "lo"; paths: the paths that measure it (a
# cell of any other path does not apply: "—"); once: measured in the last round only, so one
# sample is all there is.
Metric = namedtuple("Metric", "key label better paths once", defaults=(MAIN_PATHS, False))
METRICS = (
    Metric("tput_cross", "Throughput cross-node, 1 stream (Gbit/s)", "hi"),
    Metric("tput_same", "Throughput same-node, 1 stream (Gbit/s)", "hi", SAME_NODE),
    Metric("lat50_cross", "Latency cross-node, RTT p50, 64 B ping-pong (µs)", "lo"),
    Metric("lat99_cross", "Latency cross-node, RTT p99 (µs)", "lo"),
    Metric("lat50_same", "Latency same-node, RTT p50, 64 B ping-pong (µs)", "lo", SAME_NODE),
    Metric("lat99_same", "Latency same-node, RTT p99 (µs)", "lo", SAME_NODE),
    Metric("cps_cross", "New connections cross-node (conn/s, 8 clients)", "hi"),
    Metric("cps_same", "New connections same-node (conn/s, 8 clients)", "hi", ("direct", "zmesh", "zmesh_proxy")),
    Metric("cpum_cross", "CPU cross-node, whole machine (core-s/GB)", "lo"),
    Metric("cpum_floor", "CPU cross-node, the architecture's floor: 3 × direct's + AES-256-GCM both ways "
           "(core-s/GB; compare with zmesh's whole machine above)", "lo", ("direct",)),
    Metric("cpup_cross", "CPU cross-node, proxy processes (core-s/GB)", "lo", PROXIES),
    Metric("cpum_same", "CPU same-node, whole machine (core-s/GB)", "lo", SAME_NODE),
    Metric("cpup_same", "CPU same-node, proxy processes (core-s/GB)", "lo", PROXIES + ("zmesh_proxy",)),
    Metric("tput4_cross", "Throughput cross-node, iperf3 -P 4 (Gbit/s; zmesh with the fast path off)", "hi",
           ("direct",) + WORKERS),
    Metric("tput4_same", "Throughput same-node, iperf3 -P 4 (Gbit/s; zmesh with the fast path off)", "hi",
           ("direct",) + WORKERS),
    Metric("thr0_cross", "CPU cross-node -P 4, zmeshd worker 0's thread (core-s/GB)", "lo", WORKERS),
    Metric("thr1_cross", "CPU cross-node -P 4, zmeshd worker 1's thread (core-s/GB)", "lo", ("zmesh_w2",)),
    Metric("thr0_same", "CPU same-node -P 4, zmeshd worker 0's thread (core-s/GB)", "lo", WORKERS),
    Metric("thr1_same", "CPU same-node -P 4, zmeshd worker 1's thread (core-s/GB)", "lo", ("zmesh_w2",)),
    Metric("rss_idle", "Proxy RSS idle, per process (MiB)", "lo", PROXIES),
    Metric("rss_after", "Proxy RSS after the runs, per process (MiB)", "lo", PROXIES),
    Metric("mem_conn_1000", "zmeshd RSS per open idle connection, 1k open (KiB)", "lo", ("zmesh",), True),
    Metric("mem_conn_10000", "zmeshd RSS per open idle connection, 10k open (KiB)", "lo", ("zmesh",), True),
    Metric("rss_released", "zmeshd RSS 6 s after 10k connections closed, per process (MiB)", "lo", ("zmesh",), True),
)

BEGIN = "<!-- bench/run: results begin -->"
END = "<!-- bench/run: results end -->"

BENCHMARKS_TEMPLATE = f"""# Benchmarks

Whole-path numbers for zmesh against plain TCP and two TLS 1.3 mutual-TLS tunnels (stunnel,
haproxy), pod to pod on the lab (`scripts/lab`): two "nodes" and their pods as network
namespaces on one machine. What is measured, how, and how to read it: [bench/README.md](bench/README.md).

Reproduce (root, Debian 12, after `make build`):

```sh
bench/run --quick   # 2 rounds, under 3 minutes on 2 vCPUs
bench/run --full    # 5 rounds, longer runs
```

Each run writes `bench/results/<UTC time>.md` and replaces the section below. Both lab
"nodes", the load generators and the proxies share the machine's CPUs, so these numbers compare
paths with each other on one machine; they are not what a real two-node cluster would see.

{BEGIN}
{END}
"""


class ReportError(Exception):
    pass


def read_samples(directory):
    """{(path, key): [the sample lines as written]} for every known path and metric."""
    samples = {}
    for metric in METRICS:
        for path in PATHS:
            name = os.path.join(directory, f"{path}.{metric.key}")
            try:
                with open(name, encoding="utf-8") as f:
                    lines = [line.strip() for line in f]
            except FileNotFoundError:
                continue
            values = [line for line in lines if line]
            for number, value in enumerate(values, 1):
                try:
                    float(value)
                except ValueError:
                    raise ReportError(f"{name}: sample {number} '{value}' is not a number") from None
            if values:
                samples[(path, metric.key)] = values
    return samples


def fmt(x):
    """About three significant digits; whole numbers from 100 up."""
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def median(values):
    """The middle sample, or the mean of the middle two to 6 significant digits. The rounding
    sheds the binary error of the mean, so a halfway value rounds as its decimal does (0.695
    and 0.714 give 0.7045, shown 0.705, not 0.70449999... shown 0.704); it is also what the
    awk this replaced printed, so tables stay comparable with earlier runs."""
    v = sorted(float(x) for x in values)
    n = len(v)
    return v[n // 2] if n % 2 else float(f"{(v[n // 2 - 1] + v[n // 2]) / 2:.6g}")


def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return "—"
    return f"{numerator / denominator:.2f}×"


def expected_samples(metric, rounds):
    return 1 if metric.once else rounds


def cell(metric, path, values, rounds):
    """A table entry: median (min–max), and "k of n rounds" when samples are missing."""
    if path not in metric.paths:
        return "—"
    if not values:
        return "n/a"
    numbers = [float(v) for v in values]
    notes = []
    if len(numbers) > 1:
        notes.append(f"{fmt(min(numbers))}–{fmt(max(numbers))}")
    if len(numbers) < expected_samples(metric, rounds):
        notes.append(f"{len(numbers)} of {rounds} rounds")
    text = fmt(median(numbers))
    return f"{text} ({'; '.join(notes)})" if notes else text


def short_cells(samples, rounds):
    """(path, key) of every cell built from fewer samples than expected."""
    return [(path, metric.key) for metric in METRICS for path in metric.paths
            if 0 < len(samples.get((path, metric.key), [])) < expected_samples(metric, rounds)]


def header(extra=()):
    names = [HEADERS.get(path, path) for path in PATHS] + list(extra)
    return ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]


def table(samples, rounds):
    lines = header(("zmesh/direct", "zmesh/best peer"))
    for metric in METRICS:
        arrow = "↑" if metric.better == "hi" else "↓"
        medians = {path: median(samples[(path, metric.key)])
                   for path in metric.paths if (path, metric.key) in samples}
        peers = [medians[p] for p in PEERS if p in medians]
        best = (max if metric.better == "hi" else min)(peers) if peers else None
        cells = [cell(metric, path, samples.get((path, metric.key)), rounds) for path in PATHS]
        cells += [ratio(medians.get("zmesh"), medians.get("direct")), ratio(medians.get("zmesh"), best)]
        lines.append(f"| {metric.label} {arrow} | " + " | ".join(cells) + " |")
    return lines


def samples_table(samples):
    """Every sample as written, in round order."""
    lines = header()
    for metric in METRICS:
        cells = [", ".join(samples.get((path, metric.key), ["—"])) for path in PATHS]
        lines.append(f"| {metric.label} | " + " | ".join(cells) + " |")
    return lines


def describe_machine():
    model, mem_kib = "unknown CPU", 0
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return f"{len(os.sched_getaffinity(0))} vCPU ({model}), {mem_kib / 1048576:.0f} GiB, Linux {os.uname().release}"


def summary(run, samples):
    """The run's description and the table: what BENCHMARKS.md and stdout get."""
    lines = [
        f"- Run {run.stamp} (UTC), `bench/run --{run.mode}`: {run.rounds} interleaved rounds, "
        f"iperf3/sockperf {run.secs} s each, {run.conns} connections per rate run; took {run.elapsed} s.",
        f"- Machine: {run.machine}; zmesh {run.commit}, zmeshd sha256 {run.zmeshd_sha}.",
        f"- Load average (1/5/15 min) at start {run.load_start}, at end {run.load_end}: "
        "anything else running shares these CPUs.",
        "- Cells: median (min–max over rounds). ↑ higher is better, ↓ lower is better. "
        "Ratios are of medians; best peer = the better of stunnel and haproxy for that row.",
    ]
    scaling = workers_scaling(samples)
    if scaling:
        lines.append(f"- 2 workers ÷ 1 worker, iperf3 -P 4 through the proxy: {scaling}.")
    if short_cells(samples, run.rounds):
        lines.append(f"- Cells marked \"k of {run.rounds} rounds\" are built from fewer samples: the measurement "
                     "failed in the other rounds (bench/run's log says why).")
    return lines + [""] + table(samples, run.rounds)


def workers_scaling(samples):
    """The 4-stream throughput with 2 workers over that with 1 ("cross-node 1.52×, same-node
    1.31×"); empty when neither was measured."""
    parts = []
    for key, name in (("tput4_cross", "cross-node"), ("tput4_same", "same-node")):
        one, two = samples.get(("zmesh_w1", key)), samples.get(("zmesh_w2", key))
        if one and two:
            parts.append(f"{name} {ratio(median(two), median(one))}")
    return ", ".join(parts)


def results_file(run, samples):
    return ([f"# zmesh benchmarks, {run.stamp}", ""] + summary(run, samples)
            + ["", "## Every sample (round order)", ""] + samples_table(samples)
            + ["", "What each row means and the caveats: [bench/README.md](../README.md)."])


def splice(text, section):
    """text with the lines between its BEGIN and END markers replaced by section."""
    lines = text.split("\n")
    if BEGIN not in lines or END not in lines[lines.index(BEGIN):]:
        raise ReportError(f"no '{BEGIN}' ... '{END}' lines to put the results between")
    begin = lines.index(BEGIN)
    end = lines.index(END, begin)
    return "\n".join(lines[:begin + 1] + [""] + section + [""] + lines[end:])


def write_whole(name, text):
    tmp = f"{name}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, name)


def update_benchmarks(name, results, run, samples):
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = BENCHMARKS_TEMPLATE
    link = os.path.relpath(results, os.path.dirname(os.path.abspath(name)))
    try:
        text = splice(text, [f"Latest: [{link}]({link}).", ""] + summary(run, samples))
    except ReportError as e:
        raise ReportError(f"{name}: {e}") from None
    write_whole(name, text)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/report.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", required=True, metavar="DIR")
    p.add_argument("--rounds", required=True, type=int)
    p.add_argument("--mode", required=True, choices=("quick", "full"))
    p.add_argument("--stamp", required=True)
    p.add_argument("--secs", required=True, type=int)
    p.add_argument("--conns", required=True, type=int)
    p.add_argument("--elapsed", required=True, type=int)
    p.add_argument("--commit", required=True)
    p.add_argument("--zmeshd-sha", required=True)
    p.add_argument("--load-start", required=True)
    p.add_argument("--load-end", required=True)
    p.add_argument("--machine")
    p.add_argument("--results", metavar="FILE")
    p.add_argument("--benchmarks", metavar="FILE", help="needs --results (its link)")
    run = p.parse_args(argv)
    if run.benchmarks and not run.results:
        p.error("--benchmarks needs --results: BENCHMARKS.md links to the results file")
    if run.rounds < 1:
        p.error("--rounds must be at least 1")
    return run


def main(argv):
    run = parse_args(argv)
    try:
        run.machine = run.machine or describe_machine()
        samples = read_samples(run.samples)
        if run.results:
            write_whole(run.results, "\n".join(results_file(run, samples)) + "\n")
        if run.benchmarks:
            update_benchmarks(run.benchmarks, run.results, run, samples)
    except (ReportError, OSError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    print("\n" + "\n".join(summary(run, samples)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
