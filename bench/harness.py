"""Benchmark harness: starts nginx, runs every (scenario, client) in its own
worker subprocess for several repetitions, prints Markdown tables of medians
and ratios (httpstream / peer) and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clients import CLIENTS
from bench.nginx import Nginx, NginxError
from bench.worker import SCENARIOS

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SUBJECT = "httpstream"

# clients that take part in each scenario (bare: no HTTP library at all)
SCENARIO_CLIENTS = {
    "seq_small": CLIENTS,
    "conc10_small": CLIENTS,
    "big_download": CLIENTS,
    "early_close": tuple(c for c in CLIENTS if c != "bare"),
    "early_close_small": tuple(c for c in CLIENTS if c != "bare"),
}

COUNTS = {
    "default": {"seq_small": 5000, "conc10_small": 10000},
    "quick": {"seq_small": 1000, "conc10_small": 2000},
}


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


METRICS: dict[str, tuple[Metric, ...]] = {
    "seq_small": (Metric("value", "sequential small GETs, 1 keep-alive conn", "req/s", True),),
    "conc10_small": (Metric("value", "10 concurrent tasks, small GETs, one client", "req/s", True),),
    "big_download": (
        Metric("value", "1 GiB download, 64 KiB chunks", "MB/s", True),
        Metric(
            "peak_rss_mb",
            "peak RSS of the worker during the 1 GiB download",
            "MB",
            False,
        ),
    ),
    "early_close": (
        Metric(
            "value",
            "close a 1 GiB stream after 1 chunk, then 100 GETs: TCP connections opened",
            "conns",
            False,
        ),
        Metric(
            "stream_close_ms",
            "early-closed 1 GiB stream: request + 1 chunk + close",
            "ms",
            False,
        ),
    ),
    "early_close_small": (
        Metric(
            "value",
            "close a 40 KiB stream after 8 KiB, then 100 GETs: TCP connections opened",
            "conns",
            False,
        ),
        Metric(
            "stream_close_ms",
            "early-closed 40 KiB stream: request + 8 KiB + close",
            "ms",
            False,
        ),
    ),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def worker_cmd(client: str, scenario: str, base_url: str, count: int, tag: str) -> list[str]:
    cmd = [sys.executable, "-m", "bench.worker", client, scenario, base_url]
    if count:
        cmd += ["--count", str(count)]
    if scenario.startswith("early_close"):
        cmd += ["--tag", tag]
    return cmd


def run_worker(cmd: list[str], timeout: float, cpu: int | None) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONASYNCIODEBUG", None)
    with subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            if cpu is not None:
                # pinned right after start: imports may run briefly elsewhere,
                # the measured part of the worker runs on `cpu`
                os.sched_setaffinity(proc.pid, {cpu})
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {
                "ok": False,
                "timeout": True,
                "error": f"timeout after {timeout:.0f}s",
            }
        except BaseException:
            proc.kill()
            raise
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    tail = (stderr or stdout).strip()[-500:]
    return {"ok": False, "error": f"worker exit {proc.returncode}, no JSON: {tail}"}


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "conns":
        return f"{v:g}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def _ratio(subject: float | None, peer: float | None) -> str:
    if subject is None or peer is None or peer == 0:
        return "n/a"
    return f"{subject / peer:.2f}"


def summarize(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def render(results: dict[str, Any], scenarios: list[str], command: str, meta: dict[str, Any]) -> str:
    out: list[str] = []
    out.append("# httpstream benchmark\n")
    out.append(f"Command: `{command}`\n")
    out.append(
        f"nginx {meta['nginx']} on 127.0.0.1, Python {meta['python']}, "
        f"{meta['cpus']} CPUs, {meta['reps']} repetitions, "
        f"CPU pinning: {meta['pinning']}. Versions: "
        + ", ".join(f"{c} {v}" for c, v in meta["versions"].items())
        + "\n"
    )
    out.append(
        "Ratio column = httpstream median / peer median. For req/s and MB/s "
        "a ratio > 1 means httpstream is better; for MB (RSS), conns and ms "
        "a ratio < 1 means httpstream is better.\n"
    )
    for sc in scenarios:
        for m in METRICS[sc]:
            out.append(f"## {sc} — {m.unit} ({m.label}; {'higher' if m.higher_is_better else 'lower'} is better)\n")
            rows = results[sc]["clients"]
            subj = rows.get(SUBJECT, {}).get("metrics", {}).get(m.key, {}).get("median")
            out.append(f"| client | median {m.unit} | min | max | runs ok | httpstream / peer |")
            out.append("|---|---:|---:|---:|---:|---:|")
            for client, r in rows.items():
                s = r["metrics"].get(m.key, summarize([]))
                med = s["median"]
                ratio = _ratio(subj, med)  # the subject's own row reads 1.00
                note = f" ({r['note']})" if r.get("note") and med is None else ""
                out.append(
                    f"| {client}{note} | {_fmt(med, m.unit)} | {_fmt(s['min'], m.unit)} | "
                    f"{_fmt(s['max'], m.unit)} | {r['ok_runs']}/{r['runs']} | {ratio} |"
                )
            out.append("")
        example = results[sc].get("worker_cmd")
        if example:
            out.append(f"Worker command: `{example}`\n")
    return "\n".join(out)


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _python_display() -> str:
    """sys.executable, relative to the repo root when it lives inside it."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(REPO_ROOT))
    except ValueError:
        return str(exe)


def _git_rev() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() or "no commit"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark httpstream against httpx, aiohttp, niquests and a bare "
        "socket baseline, against a private nginx on 127.0.0.1.",
    )
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 3)")
    p.add_argument("--quick", action="store_true", help="fewer requests and repetitions")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of: {','.join(SCENARIOS)}",
    )
    p.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help=f"comma-separated subset of: {','.join(CLIENTS)}",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="per-worker timeout, s")
    p.add_argument("--no-pin", action="store_true", help="do not pin nginx/worker to CPUs")
    p.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        help="results JSON path",
    )
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.clients = [c for c in args.clients.split(",") if c]
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    bad += [c for c in args.clients if c not in CLIENTS]
    if bad:
        p.error(f"unknown scenario/client: {', '.join(bad)}")
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    if args.reps < 1:
        p.error("--reps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    command = shlex.join([_python_display(), "-m", "bench", *raw_argv])
    counts = COUNTS["quick" if args.quick else "default"]
    cpus = len(os.sched_getaffinity(0))
    pin = not args.no_pin and cpus >= 2
    nginx_cpu, worker_cpu = (0, 1) if pin else (None, None)
    if pin:
        allowed = sorted(os.sched_getaffinity(0))
        nginx_cpu, worker_cpu = allowed[0], allowed[1]
    t_start = time.monotonic()
    # SIGTERM -> SystemExit, so the `with Nginx(...)` block still stops nginx
    signal.signal(signal.SIGTERM, _on_sigterm)

    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        sc: {c: [] for c in SCENARIO_CLIENTS[sc] if c in args.clients} for sc in args.scenarios
    }
    examples: dict[str, str] = {}
    versions: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    timed_out: set[tuple[str, str]] = set()

    try:
        with Nginx(cpu=nginx_cpu) as ng:
            base = ng.base_url
            _log(f"[bench] nginx {ng.version} at {base} (tmp {ng.tmp}); warming up /big ...")
            ng.warm_up()
            for client in args.clients:
                res = run_worker(
                    [sys.executable, "-m", "bench.worker", client, "probe", base],
                    60.0,
                    worker_cpu,
                )
                if res.get("ok"):
                    versions[client] = res.get("version", "?")
                else:
                    unavailable[client] = res.get("error", "unavailable")
                    versions[client] = "n/a"
                    _log(f"[bench] {client}: unavailable -> n/a ({unavailable[client]})")
            for rep in range(args.reps):
                for sc in args.scenarios:
                    clients = list(raw[sc])
                    k = rep % len(clients) if clients else 0
                    clients = clients[k:] + clients[:k]  # rotate order across reps
                    for client in clients:
                        if client in unavailable or (client, sc) in timed_out:
                            continue
                        tag = f"{client}-{sc}-{rep}"
                        cmd = worker_cmd(client, sc, base, counts.get(sc, 0), tag)
                        examples.setdefault(
                            sc,
                            shlex.join([_python_display(), *cmd[1:3], "CLIENT", *cmd[4:]]).replace(tag, "TAG"),
                        )
                        t0 = time.monotonic()
                        res = run_worker(cmd, args.timeout, worker_cpu)
                        res["wall_s"] = round(time.monotonic() - t0, 3)
                        res["rep"] = rep
                        if res.get("ok") and sc.startswith("early_close"):
                            res.update(ng.connections_for_tag(tag))
                            res["value"] = res["connections"]
                        raw[sc][client].append(res)
                        if res.get("timeout"):
                            timed_out.add((client, sc))  # don't burn more reps on it
                        shown = res.get("value")
                        _log(
                            f"[bench] rep {rep + 1}/{args.reps} {sc:<18} {client:<10} "
                            + (
                                f"{shown:,.1f} {res.get('unit', '')}"
                                if res.get("ok") and shown is not None
                                else f"FAILED: {res.get('error', '?')[:200]}"
                            )
                        )
    except NginxError as exc:
        _log(f"[bench] ERROR: {exc}")
        return 2

    results: dict[str, Any] = {}
    for sc in args.scenarios:
        results[sc] = {"clients": {}, "worker_cmd": examples.get(sc)}
        for client, runs in raw[sc].items():
            ok = [r for r in runs if r.get("ok")]
            entry: dict[str, Any] = {
                "runs": len(runs),
                "ok_runs": len(ok),
                "metrics": {
                    m.key: summarize([float(r[m.key]) for r in ok if r.get(m.key) is not None]) for m in METRICS[sc]
                },
                "raw": runs,
            }
            if client in unavailable:
                entry["note"] = "unavailable"
                entry["error"] = unavailable[client]
            elif runs and not ok:
                entry["note"] = "failed"
                entry["error"] = runs[-1].get("error")
            results[sc]["clients"][client] = entry

    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": _git_rev(),
        "nginx": ng.version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": cpus,
        "pinning": f"nginx cpu {nginx_cpu}, worker cpu {worker_cpu}" if pin else "off",
        "reps": args.reps,
        "quick": args.quick,
        "counts": counts,
        "versions": versions,
        "unavailable": unavailable,
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }
    report = render(results, args.scenarios, command, meta)
    print(report)
    print(f"Total wall time: {meta['elapsed_s']} s")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "meta": meta, "results": results}
    args.output.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    args.output.with_suffix(".md").write_text(report + "\n")
    _log(f"[bench] wrote {args.output} and {args.output.with_suffix('.md')}")
    return 0
