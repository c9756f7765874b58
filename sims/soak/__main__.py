"""``python -m sims.soak`` (``make soak``): `sliceai serve` under hostile load, with figures.

Starts ``sliceai serve`` as its own process (mutual TLS on 127.0.0.1, a 64-slice policy,
1 s interval, ``--request-nice 10 --planner-nice -10``: run as root, or the planner keeps
nice 0 and ``serve`` warns), connects one honest controller, lets it warm up, then runs
the hostile load of :mod:`sims.soak.load` at ``--scale`` x the figures of issue #29 (default 10) for
``--minutes`` (default 10) and prints

- plans the honest controller received per second under load (and the longest gap),
- decision p99 (the plans' forecast + solve time; target <= 50 ms at 64 slices) and the
  controller's round trip p99 (batch sent -> next plan, the pacing gap included),
- the server's RSS (with its planner process) growth from the start of the load to its
  end (target < 50 MB),
- the limits hit (``sliceai_limit_hits_total``) and what the hostile callers got.

Exit status 0 when every target holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from sims.pki import Pki, make_pki
from sims.soak.load import IDENTITIES, Honest, Hostile, rss_mb, summary
from sliceai.api.bench import synthetic_policy

SLICES = 64
DECISION_P99_MS = 50.0
RSS_GROWTH_MB = 50.0


def _serve(
    workdir: Path, pki: Pki, model: str, interval: str
) -> tuple[subprocess.Popen[str], str, str]:
    policy = workdir / "soak-policy.yaml"
    policy.write_text(synthetic_policy(SLICES), encoding="utf-8")
    cmd = [
        sys.executable, "-m", "sliceai", "serve",
        "--policy", str(policy), "--db", str(workdir / "soak.db"),
        "--listen", "127.0.0.1:0", "--interval", interval, "--model", model,
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--client-ca", str(pki.ca), "--metrics-port", "0",
        "--request-nice", "10", "--planner-nice", "-10",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    found: dict[str, str] = {}
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if m := re.search(r"listening on (\S+):(\d+)", line):
                found["target"] = f"127.0.0.1:{m.group(2)}"
            if m := re.search(r"metrics on (\S+)", line):
                found["metrics"] = m.group(1)
            if "target" in found and "metrics" in found:
                ready.set()
            if "Traceback" in line or "error" in line.lower():
                print(f"server: {line.rstrip()}", file=sys.stderr)
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(300) or "metrics" not in found:
        proc.kill()
        raise SystemExit("sliceai serve did not start")
    return proc, found["target"], found["metrics"]


def _limit_hits(url: str, pki: Pki) -> dict[str, float]:
    """``sliceai_limit_hits_total`` by limit, scraped as the honest controller (mutual TLS)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    cert, key = pki.client("honest")
    ctx.load_cert_chain(str(cert), str(key))
    text = urllib.request.urlopen(url, timeout=10, context=ctx).read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^sliceai_limit_hits_total\{limit="([^"]+)"\} (\S+)$', text, re.M)
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sims.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="hostile load duration")
    ap.add_argument("--scale", type=float, default=10.0, help="x issue #29's figures")
    ap.add_argument("--warmup", type=float, default=20.0, help="s before the load starts")
    ap.add_argument("--model", default="default", help="serve --model (default: bundled)")
    ap.add_argument("--interval", default="1s", help="serve --interval")
    ap.add_argument(
        "--hostile-nice",
        type=int,
        default=19,
        help="nice increment of the hostile driver's thread (default 19: it stands for callers "
        "on other machines; 0: it competes with the server for this machine's CPU)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sliceai-soak-") as tmp:
        workdir = Path(tmp)
        pki = make_pki(workdir, IDENTITIES)
        proc, target, metrics_url = _serve(workdir, pki, args.model, args.interval)
        names = tuple(f"s{i:03d}" for i in range(SLICES))
        period = float(args.interval.rstrip("s")) if args.interval.endswith("s") else 1.0
        honest = Honest(target, pki, names, period)
        hostile = Hostile(target, pki, args.scale, names, args.hostile_nice)
        try:
            honest.start()
            time.sleep(args.warmup)
            rss_start = rss_mb(proc.pid)
            rss_samples = [rss_start]
            print(
                f"soak: server pid {proc.pid} on {target}, RSS {rss_start:.0f} MB after "
                f"{args.warmup:g} s warm-up; hostile load x{args.scale:g} for {args.minutes:g} min",
                flush=True,
            )
            honest.compute_ms.clear()
            honest.round_trip_s.clear()
            started = time.monotonic()
            hostile.start()
            end = started + 60 * args.minutes
            while (now := time.monotonic()) < end:
                time.sleep(min(30.0, end - now))
                rss_samples.append(rss_mb(proc.pid))
                elapsed = time.monotonic() - started
                print(
                    f"soak: {elapsed:5.0f} s, RSS {rss_samples[-1]:.0f} MB, "
                    f"honest plans {len(honest.plan_times)}",
                    flush=True,
                )
            until = time.monotonic()
            hostile.stop()
            figures = summary(honest, hostile, started, until)
            figures["limit_hits"] = _limit_hits(metrics_url, pki)
        finally:
            honest.stop()
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    figures.update(
        minutes=args.minutes,
        scale=args.scale,
        hostile_nice=args.hostile_nice,
        model=args.model,
        cpus=os.cpu_count(),
        load_avg=os.getloadavg()[0],
        rss_start_mb=rss_start,
        rss_end_mb=rss_samples[-1],
        rss_max_mb=max(rss_samples),
        rss_growth_mb=rss_samples[-1] - rss_start,
        # after the first sample (30 s of load): the pool's threads and buffers are up by then
        rss_steady_growth_mb=rss_samples[-1] - rss_samples[min(1, len(rss_samples) - 1)],
    )
    ok = {
        "controller keeps getting plans": figures["plans_per_s"] > 0.5 / period
        and not figures["honest_errors"],
        f"decision p99 <= {DECISION_P99_MS:g} ms": figures["decision_p99_ms"] <= DECISION_P99_MS,
        f"RSS growth < {RSS_GROWTH_MB:g} MB": figures["rss_growth_mb"] < RSS_GROWTH_MB,
        "limits were hit": sum(figures["limit_hits"].values()) > 0,
    }
    f = figures
    lines = [
        f"soak: {args.minutes:g} min of hostile load x{args.scale:g}, model {args.model}, "
        f"{f['cpus']} CPUs, load average {f['load_avg']:.1f}",
        f"  honest controller: {f['plans_per_s']:.2f} plans/s, longest gap "
        f"{f['longest_plan_gap_s']:.2f} s, errors {len(f['honest_errors'])}",
        f"  decision p99 {f['decision_p99_ms']:.1f} ms ({SLICES} slices), "
        f"round trip p99 {f['round_trip_p99_ms']:.1f} ms",
        f"  server RSS {rss_start:.0f} -> {f['rss_end_mb']:.0f} MB "
        f"(growth {f['rss_growth_mb']:+.1f} MB, {f['rss_steady_growth_mb']:+.1f} MB after the "
        f"first 30 s of load, max {f['rss_max_mb']:.0f} MB)",
        f"  limit hits: {json.dumps(f['limit_hits'], sort_keys=True)}",
        f"  hostile attempts: {json.dumps(f['hostile_attempts'], sort_keys=True)} "
        f"({sum(f['hostile_attempts'].values()) / (60 * args.minutes):.0f}/s, driver at nice "
        f"+{args.hostile_nice})",
    ]
    print("\n" + "\n".join(lines))
    for what, passed in ok.items():
        print(f"  {'PASS' if passed else 'FAIL'} {what}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
