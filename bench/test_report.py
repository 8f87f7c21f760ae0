#!/usr/bin/env python3
"""Tests of bench/report.py on synthetic samples: no root, no lab. Run directly
(python3 bench/test_report.py) or through ctest (bench_report)."""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ left in bench/
import report  # noqa: E402

RUN_ARGS = ["--mode", "quick", "--stamp", "2026-01-02T030405Z", "--secs", "3", "--conns", "1000",
            "--elapsed", "150", "--commit", "abc1234", "--zmeshd-sha", "0123456789ab",
            "--load-start", "0.50 0.40 0.30", "--load-end", "1.00 0.90 0.80", "--machine", "2 vCPU (test)"]


class Scratch(unittest.TestCase):
    """A samples directory and a repository-like tree per test."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.samples = os.path.join(self.tmp.name, "samples")
        self.results = os.path.join(self.tmp.name, "bench", "results", "2026-01-02T030405Z.md")
        self.benchmarks = os.path.join(self.tmp.name, "BENCHMARKS.md")
        os.makedirs(self.samples)
        os.makedirs(os.path.dirname(self.results))

    def write(self, path, key, *values):
        with open(os.path.join(self.samples, f"{path}.{key}"), "w", encoding="utf-8") as f:
            f.write("".join(f"{v}\n" for v in values))

    def run_report(self, rounds, *extra):
        """(exit code, stdout, stderr) of report.py as bench/run calls it."""
        p = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), "--samples", self.samples,
                            "--rounds", str(rounds), *RUN_ARGS, *extra], capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    def row(self, text, label):
        """The cells of the table row whose label starts with label."""
        for line in text.splitlines():
            if line.startswith(f"| {label}"):
                return [c.strip() for c in line.strip().strip("|").split("|")][1:]
        self.fail(f"no row '{label}' in:\n{text}")


class Statistics(Scratch):
    def test_median_of_odd_and_even_counts(self):
        self.write("direct", "tput_cross", 16.2, 15.1, 15.7)           # odd: the middle one
        self.write("zmesh", "tput_cross", 5.143, 5.332)                # even: the mean
        self.write("stunnel", "tput_cross", 4.0, 1.0, 3.0, 2.0)        # unsorted, even
        # --rounds 1: no cell counts as short here (FewerSamples tests that).
        cells = self.row("\n".join(report.table(report.read_samples(self.samples), 1)), "Throughput cross")
        self.assertEqual(cells[0], "15.7 (15.1–16.2)")
        self.assertEqual(cells[1], "5.24 (5.14–5.33)")
        self.assertEqual(cells[2], "2.50 (1.00–4.00)")

    def test_halfway_median_rounds_as_its_decimal(self):
        # (0.695 + 0.714) / 2 is 0.70449999... in binary; the report shows 0.705, as bench/run did.
        self.assertEqual(report.fmt(report.median(["0.695", "0.714"])), "0.705")

    def test_format_keeps_about_three_digits(self):
        cases = [(11906.5, "11906"), (151.27, "151"), (69.44, "69.4"), (5.237, "5.24"), (0.5283, "0.528"),
                 (-3.25, "-3.25"), (0, "0.000")]
        for value, shown in cases:
            self.assertEqual(report.fmt(value), shown, value)

    def test_ratios_use_medians_and_the_better_peer(self):
        for path, values in {"direct": (10, 12), "zmesh": (5, 6), "stunnel": (2, 2), "haproxy": (4, 4)}.items():
            self.write(path, "tput_cross", *values)                    # higher is better
            self.write(path, "lat50_cross", *values)                   # lower is better
        table = "\n".join(report.table(report.read_samples(self.samples), 2))
        self.assertEqual(self.row(table, "Throughput cross")[7:], ["0.50×", "1.38×"])  # 5.5/11, 5.5/4 (haproxy)
        self.assertEqual(self.row(table, "Latency cross-node, RTT p50")[7:], ["0.50×", "2.75×"])  # 5.5/2 (stunnel)

    def test_ratio_without_a_denominator_is_a_dash(self):
        self.write("zmesh", "cps_cross", 3000, 3000)
        self.write("direct", "cps_cross", 0, 0)
        self.write("zmesh", "cpup_cross", 2.0, 2.0)
        table = "\n".join(report.table(report.read_samples(self.samples), 2))
        self.assertEqual(self.row(table, "New connections cross")[7:], ["—", "—"])      # direct 0, no peers
        self.assertEqual(self.row(table, "CPU cross-node, proxy")[7:], ["—", "—"])  # direct has no proxy

    def test_workers_scaling_is_two_workers_over_one(self):
        self.write("zmesh_w1", "tput4_cross", 4.0, 6.0)
        self.write("zmesh_w2", "tput4_cross", 7.5, 7.5)
        self.write("zmesh_w1", "thr0_cross", 1.0, 1.0)
        self.assertEqual(report.workers_scaling(report.read_samples(self.samples)), "cross-node 1.50×")
        table = "\n".join(report.table(report.read_samples(self.samples), 2))
        self.assertEqual(self.row(table, "Throughput cross-node, iperf3 -P 4")[:7],
                         ["n/a", "—", "—", "—", "—", "5.00 (4.00–6.00)", "7.50 (7.50–7.50)"])
        self.assertEqual(self.row(table, "CPU cross-node -P 4, zmeshd worker 1")[5:7], ["—", "n/a"])
        self.assertEqual(report.workers_scaling({}), "")

    def test_not_applicable_and_no_sample(self):
        self.write("zmesh", "mem_conn_1000", 11.4)
        table = "\n".join(report.table(report.read_samples(self.samples), 2))
        # direct has no proxy process: does not apply; zmesh's runs failed: no sample.
        self.assertEqual(self.row(table, "CPU cross-node, proxy"), ["—", "n/a", "n/a", "n/a", "—", "—", "—", "—", "—"])
        self.assertEqual(self.row(table, "Throughput cross"), ["n/a", "n/a", "n/a", "n/a", "—", "—", "—", "—", "—"])
        # Measured once, zmesh only.
        self.assertEqual(self.row(table, "zmeshd RSS per open idle connection, 1k"),
                         ["—", "11.4", "—", "—", "—", "—", "—", "—", "—"])

    def test_a_sample_that_is_not_a_number_is_an_error(self):
        self.write("zmesh", "tput_cross", "5.1", "oops")
        code, _, err = self.run_report(2)
        self.assertEqual(code, 1)
        self.assertIn("zmesh.tput_cross: sample 2 'oops' is not a number", err)


class FewerSamples(Scratch):
    def test_a_cell_with_fewer_samples_than_rounds_says_so(self):
        self.write("direct", "tput_cross", 15.0, 16.0, 17.0)
        self.write("haproxy", "tput_cross", 4.55)
        self.write("stunnel", "tput_cross", 3.0, 4.0)
        rows = report.summary(self.run_args(3), report.read_samples(self.samples))
        cells = self.row("\n".join(rows), "Throughput cross")
        self.assertEqual(cells[0], "16.0 (15.0–17.0)")
        self.assertEqual(cells[2], "3.50 (3.00–4.00; 2 of 3 rounds)")
        self.assertEqual(cells[3], "4.55 (1 of 3 rounds)")
        self.assertIn('- Cells marked "k of 3 rounds" are built from fewer samples: the measurement failed '
                      "in the other rounds (bench/run's log says why).", rows)

    def test_complete_cells_and_once_only_rows_have_no_marker(self):
        self.write("direct", "tput_cross", 15.0, 16.0)
        self.write("zmesh", "mem_conn_10000", 12.6)                    # measured in the last round only
        self.write("zmesh", "rss_released", 69.4)
        rows = report.summary(self.run_args(2), report.read_samples(self.samples))
        text = "\n".join(rows)
        self.assertNotIn(" of 2 rounds", text)
        self.assertFalse([line for line in rows if line.startswith("- Cells marked")])
        self.assertEqual(self.row(text, "zmeshd RSS 6 s")[1], "69.4")

    def run_args(self, rounds):
        return report.parse_args(["--samples", self.samples, "--rounds", str(rounds), *RUN_ARGS])


class Files(Scratch):
    BEFORE = "# Benchmarks\n\nIntro text.\n\n"
    AFTER = "\n## Where zmesh stands\n\nHand-written analysis.\n"

    def full_samples(self):
        for path in report.PATHS:
            for metric in report.METRICS:
                if path in metric.paths:
                    self.write(path, metric.key, *([1.5] if metric.once else [1.0, 2.0]))

    def test_stdout_results_file_and_every_sample(self):
        self.full_samples()
        self.write("stunnel", "rss_idle", "9.8", "9.80")
        code, out, err = self.run_report(2, "--results", self.results)
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith("\n- Run 2026-01-02T030405Z (UTC), `bench/run --quick`: 2 interleaved "
                                       "rounds, iperf3/sockperf 3 s each, 1000 connections per rate run; took 150 s.\n"
                                       "- Machine: 2 vCPU (test); zmesh abc1234, zmeshd sha256 0123456789ab.\n"
                                       "- Load average (1/5/15 min) at start 0.50 0.40 0.30, at end "
                                       "1.00 0.90 0.80"), out)
        self.assertTrue(out.endswith("| — | — |\n\n"), out[-40:])
        with open(self.results, encoding="utf-8") as f:
            results = f.read()
        self.assertTrue(results.startswith("# zmesh benchmarks, 2026-01-02T030405Z\n\n- Run "))
        self.assertIn(out.strip() + "\n\n## Every sample (round order)\n\n"
                      "| metric | direct | zmesh | stunnel | haproxy | zmesh, fast path off | zmesh, 1 worker | "
                      "zmesh, 2 workers |\n|---|---|---|---|---|---|---|---|\n",
                      results)
        # Samples as recorded, in round order.
        self.assertIn("| Proxy RSS idle, per process (MiB) | — | 1.0, 2.0 | 9.8, 9.80 | 1.0, 2.0 | — | — | — |\n", results)
        self.assertTrue(results.endswith("\n\nWhat each row means and the caveats: [bench/README.md](../README.md).\n"))

    def test_benchmarks_section_is_replaced_and_the_rest_kept(self):
        self.full_samples()
        with open(self.benchmarks, "w", encoding="utf-8") as f:
            f.write(f"{self.BEFORE}{report.BEGIN}\n\nLatest: old.\n\n| old table |\n\n{report.END}\n{self.AFTER}")
        code, out, err = self.run_report(2, "--results", self.results, "--benchmarks", self.benchmarks)
        self.assertEqual(code, 0, err)
        with open(self.benchmarks, encoding="utf-8") as f:
            text = f.read()
        link = "bench/results/2026-01-02T030405Z.md"
        self.assertEqual(text, f"{self.BEFORE}{report.BEGIN}\n\nLatest: [{link}]({link}).\n\n"
                               f"{out.strip()}\n\n{report.END}\n{self.AFTER}")

    def test_missing_benchmarks_file_is_made_from_the_template(self):
        self.full_samples()
        code, _, err = self.run_report(2, "--results", self.results, "--benchmarks", self.benchmarks)
        self.assertEqual(code, 0, err)
        with open(self.benchmarks, encoding="utf-8") as f:
            text = f.read()
        self.assertTrue(text.startswith("# Benchmarks\n\nWhole-path numbers for zmesh"))
        self.assertIn(f"{report.BEGIN}\n\nLatest: [bench/results/2026-01-02T030405Z.md]", text)
        self.assertTrue(text.endswith(f"| — | — |\n\n{report.END}\n"))

    def test_benchmarks_without_markers_is_left_alone(self):
        self.full_samples()
        for broken in (f"{self.BEFORE}{self.AFTER}", f"{self.BEFORE}{report.BEGIN}\n{self.AFTER}",
                       f"{self.BEFORE}{report.END}\n{report.BEGIN}\n{self.AFTER}"):
            with open(self.benchmarks, "w", encoding="utf-8") as f:
                f.write(broken)
            code, _, err = self.run_report(2, "--results", self.results, "--benchmarks", self.benchmarks)
            self.assertEqual(code, 1)
            self.assertIn("results begin -->' ... '<!-- bench/run: results end -->' lines", err)
            with open(self.benchmarks, encoding="utf-8") as f:
                self.assertEqual(f.read(), broken)


if __name__ == "__main__":
    unittest.main()
