"""Benchmark harness: starts nginx, runs every (scenario, client) in its own
worker subprocess for several repetitions, prints Markdown tables of medians
and ratios (httpstream / peer) and writes bench/results/latest.json.

The ``h2_*`` scenarios run against nginx's second server block (TLS with a
per-run trustme certificate, HTTP/2 by ALPN), the ``h3_*`` scenarios against a
private caddy (HTTP/3 over QUIC, bench/caddy.py), the ``*_duplex_echo``
scenarios against a private hypercorn echo server (bench/echo.py); see
bench/README.md.  Each server is started only when a selected scenario needs
it.

``--baseline TREE`` adds the client ``httpstream-baseline``: httpstream
imported from another source tree (e.g. a git worktree of the starting
commit), run in the same repetitions, interleaved with the current one; the
report then opens with the ratio httpstream / httpstream-baseline per
scenario and metric.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench.caddy import Caddy, CaddyError
from bench.clients import BASELINE, CLIENTS, H2_CLIENTS, H3_CLIENTS, is_httpstream
from bench.echo import EchoError, EchoServer
from bench.nginx import Nginx, NginxError
from bench.worker import DUPLEX_SCENARIOS, H2_SCENARIOS, H3_SCENARIOS, SCENARIOS

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SUBJECT = "httpstream"

# plain HTTP/1.1 clients (bare-aioquic speaks HTTP/3 only)
H1_CLIENTS = tuple(c for c in CLIENTS if c != "bare-aioquic")
# clients that take part in each scenario (bare: no HTTP library at all)
SCENARIO_CLIENTS = {
    "seq_small": H1_CLIENTS,
    "conc10_small": H1_CLIENTS,
    "big_download": H1_CLIENTS,
    "early_close": tuple(c for c in H1_CLIENTS if c != "bare"),
    "early_close_small": tuple(c for c in H1_CLIENTS if c != "bare"),
    # HTTP/2 over TLS; aiohttp (HTTP/1.1 only) joins h2_conc100 over TLS
    # HTTP/1.1 as a reference point
    "h2_conc100": (*H2_CLIENTS, "aiohttp"),
    "h2_big": H2_CLIENTS,
    "h2_early_close": H2_CLIENTS,
    # HTTP/3 against caddy; bare-aioquic is aioquic alone (the floor)
    "h3_conc100": H3_CLIENTS,
    "h3_big": H3_CLIENTS,
    # fallback from a blackholed Alt-Svc: niquests (Alt-Svc discovery too) as
    # the reference
    "h3_fallback": ("httpstream", BASELINE, "niquests"),
    # full duplex against hypercorn: the clients that can stream a request
    # body (httpx and the baseline httpstream are expected to stall: they
    # read the response only after the whole upload); aiohttp over TLS is
    # HTTP/1.1, a reference
    "h1_duplex_echo": ("httpstream", BASELINE, "httpx", "aiohttp"),
    "h2_duplex_echo": ("httpstream", BASELINE, "httpx", "aiohttp"),
}

# how a client is shown in a scenario's tables when it is not what the
# scenario's name says
LABELS = {
    ("h2_conc100", "aiohttp"): "aiohttp (HTTP/1.1 over TLS, reference)",
    ("h3_conc100", "bare-aioquic"): "bare-aioquic (baseline)",
    ("h3_big", "bare-aioquic"): "bare-aioquic (baseline)",
    ("h2_duplex_echo", "aiohttp"): "aiohttp (HTTP/1.1 over TLS, reference)",
}

# targets for httpstream: (scenario, metric key) -> (peer or None for the
# absolute value, ">=" or "<", threshold)
TARGETS: dict[tuple[str, str], tuple[str | None, str, float]] = {
    ("h3_big", "value"): ("bare-aioquic", ">=", 3.0),
    ("h3_fallback", "value"): (None, "<", 1000.0),
}

# requests (duplex: 64 KiB chunks, 4096 = 256 MiB)
COUNTS = {
    "default": {
        "seq_small": 5000,
        "conc10_small": 10000,
        "h2_conc100": 20000,
        "h3_conc100": 5000,
        "h1_duplex_echo": 4096,
        "h2_duplex_echo": 4096,
    },
    "quick": {
        "seq_small": 1000,
        "conc10_small": 2000,
        "h2_conc100": 4000,
        "h3_conc100": 1000,
        "h1_duplex_echo": 1024,
        "h2_duplex_echo": 1024,
    },
}

# per-worker time limit for scenarios where a peer is known to stall, or that
# are short by design (min with --timeout)
SCENARIO_TIMEOUTS = {"h2_early_close": 30.0, "h3_fallback": 30.0, "h1_duplex_echo": 150.0, "h2_duplex_echo": 150.0}


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
    "h2_conc100": (
        Metric("value", "100 concurrent small GETs per round over TLS, HTTP/2 multiplexed", "req/s", True),
        Metric("connections", "connections that served the run (nginx $connection)", "conns", False),
    ),
    "h2_big": (
        Metric("value", "1 GiB download over TLS HTTP/2, 64 KiB chunks", "MB/s", True),
        Metric("peak_rss_mb", "peak RSS of the worker during the 1 GiB HTTP/2 download", "MB", False),
    ),
    "h2_early_close": (
        Metric(
            "value",
            "GET, then a 1 GiB HTTP/2 stream closed after 1 chunk, then 100 GETs: connections opened (1 = all on one)",
            "conns",
            False,
        ),
        Metric("first_followup_ms", "latency of the first GET after the early close", "ms", False),
        Metric("stream_close_ms", "early-closed 1 GiB stream: request + 1 chunk + close", "ms", False),
        Metric("followup_100_ms", "the 100 follow-up GETs, in total", "ms", False),
    ),
    "h3_conc100": (
        Metric("value", "100 concurrent small GETs per round over HTTP/3 (caddy)", "req/s", True),
        Metric("connections", "QUIC connections that served the run (client UDP ports in caddy's log)", "conns", False),
        Metric("max_round_ms", "the slowest round of 100 concurrent GETs", "ms", False),
    ),
    "h3_big": (
        Metric("value", "256 MiB download over HTTP/3 (caddy), 64 KiB chunks", "MB/s", True),
        Metric("peak_rss_mb", "peak RSS of the worker during the 256 MiB HTTP/3 download", "MB", False),
    ),
    "h3_fallback": (
        Metric(
            "value",
            "2nd GET after Alt-Svc named a blackholed UDP port: QUIC attempt, then back to TCP "
            "(first HTTP/3 attempt of the process)",
            "ms",
            False,
        ),
        Metric(
            "fallback_warm_ms",
            "the same with a second, fresh client in the same process (QUIC modules already imported)",
            "ms",
            False,
        ),
        Metric("third_ms", "3rd GET (the alternative is known to be broken: plain TCP)", "ms", False),
        Metric("first_ms", "1st GET (TCP, learns the Alt-Svc entry)", "ms", False),
    ),
    "h1_duplex_echo": (
        Metric(
            "value",
            "full-duplex echo over HTTP/1.1 chunked (hypercorn): bytes echoed / wall time, 64 KiB chunks up",
            "MB/s",
            True,
        ),
        Metric("peak_rss_mb", "peak RSS of the worker during the echo", "MB", False),
    ),
    "h2_duplex_echo": (
        Metric(
            "value",
            "full-duplex echo over TLS HTTP/2 (hypercorn): bytes echoed / wall time, 64 KiB chunks up",
            "MB/s",
            True,
        ),
        Metric("peak_rss_mb", "peak RSS of the worker during the echo", "MB", False),
    ),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def worker_cmd(
    client: str,
    scenario: str,
    base_url: str,
    count: int,
    tag: str,
    ca_path: str | None = None,
    baseline: Path | None = None,
) -> list[str]:
    cmd = [sys.executable, "-m", "bench.worker", client, scenario, base_url]
    if count:
        cmd += ["--count", str(count)]
    if scenario.startswith("early_close") or scenario in H2_SCENARIOS or scenario in H3_SCENARIOS:
        cmd += ["--tag", tag]
    if (scenario in H2_SCENARIOS or scenario in H3_SCENARIOS or scenario == "h2_duplex_echo") and ca_path:
        cmd += ["--ca", ca_path]
    if client == BASELINE and baseline is not None:
        cmd += ["--httpstream-path", str(baseline)]
    return cmd


def run_worker(cmd: list[str], timeout: float, cpu: int | None, baseline: Path | None = None) -> dict[str, Any]:
    """Run one worker; ``baseline``: the tree of httpstream-baseline, first
    on PYTHONPATH (the worker also puts it first on sys.path, ahead of the
    cwd that ``-m`` adds: both trees have a ``bench`` and an ``httpstream``)."""
    env = dict(os.environ)
    paths = (str(baseline) if baseline else "", str(REPO_ROOT), env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
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
                "killed": True,
                "error": f"timeout after {timeout:.0f}s (worker killed)",
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
    servers = [f"{name} {meta[name]}" for name in ("nginx", "caddy", "hypercorn") if meta.get(name)]
    out.append(
        f"{' and '.join(servers) or 'no server'} on 127.0.0.1, Python {meta['python']}, "
        f"{meta['cpus']} CPUs, {meta['reps']} repetitions, "
        f"CPU pinning: {meta['pinning']}. Versions: "
        + ", ".join(f"{c} {v}" for c, v in meta["versions"].items())
        + ". Load average (1/5/15 min) at start "
        + "/".join(f"{x:.2f}" for x in meta["loadavg_start"])
        + ", at end "
        + "/".join(f"{x:.2f}" for x in meta["loadavg_end"])
        + ".\n"
    )
    sources = meta.get("sources") or {}
    if sources:
        out.append(
            "httpstream sources: "
            + "; ".join(f"{c}: `{f}` ({meta.get('source_revs', {}).get(c, '?')})" for c, f in sources.items())
            + ".\n"
        )
    out.append(
        "Ratio column = httpstream median / peer median. For req/s and MB/s "
        "a ratio > 1 means httpstream is better; for MB (RSS), conns and ms "
        "a ratio < 1 means httpstream is better.\n"
    )
    if any(BASELINE in results[sc]["clients"] for sc in scenarios):
        out.extend(_render_baseline(results, scenarios))
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
                    f"| {LABELS.get((sc, client), client)}{note} | {_fmt(med, m.unit)} | {_fmt(s['min'], m.unit)} | "
                    f"{_fmt(s['max'], m.unit)} | {r['ok_runs']}/{r['runs']} | {ratio} |"
                )
            out.append("")
            target = _render_target(sc, m, rows)
            if target:
                out.append(target + "\n")
        if sc in H2_SCENARIOS:
            out.extend(_render_h2_details(sc, results[sc]["clients"]))
        elif sc == "h3_fallback":
            out.extend(_render_fallback_details(sc, results[sc]["clients"]))
        elif sc in H3_SCENARIOS:
            out.extend(_render_h2_details(sc, results[sc]["clients"], server="caddy `proto`"))
        elif sc in DUPLEX_SCENARIOS:
            out.extend(_render_duplex_details(sc, results[sc]["clients"]))
        example = results[sc].get("worker_cmd")
        if example:
            out.append(f"Worker command: `{example}`\n")
    return "\n".join(out)


# a change of httpstream against httpstream-baseline beyond this is flagged
BASELINE_TOLERANCE = 0.05


def _render_baseline(results: dict[str, Any], scenarios: list[str]) -> list[str]:
    """httpstream / httpstream-baseline per scenario and metric (medians)."""
    out = [
        f"## httpstream / {BASELINE} (medians, same run)\n",
        f"| scenario | metric | unit | httpstream | {BASELINE} | ratio | change |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for sc in scenarios:
        rows = results[sc]["clients"]
        if BASELINE not in rows:
            continue
        for m in METRICS[sc]:
            cur, base = (rows.get(c, {}).get("metrics", {}).get(m.key, {}).get("median") for c in (SUBJECT, BASELINE))
            if cur is None or base is None or base == 0:
                notes = [f"{c}: {rows[c]['note']}" for c in (SUBJECT, BASELINE) if rows.get(c, {}).get("note")]
                change = "n/a" + (f" ({', '.join(notes)})" if notes else "")
            else:
                r = cur / base
                worse = (1.0 - r) if m.higher_is_better else (r - 1.0)
                if abs(worse) < 0.0005:
                    change = "same"
                else:
                    change = f"{abs(worse) * 100:.1f}% {'worse' if worse > 0 else 'better'}"
                if worse > BASELINE_TOLERANCE:
                    change = f"**{change}**"
            key = "" if m.key == "value" else f" ({m.key})"
            out.append(
                f"| {sc} | {m.label}{key} | {m.unit} | {_fmt(cur, m.unit)} | {_fmt(base, m.unit)} | "
                f"{_ratio(cur, base)} | {change} |"
            )
    out.append("")
    out.append(
        f"For req/s and MB/s a ratio > 1 means httpstream is faster than {BASELINE}; for ms, MB and "
        f"conns a ratio < 1 means it is better. Changes worse than {BASELINE_TOLERANCE:.0%} are in bold.\n"
    )
    return out


def _render_duplex_details(sc: str, rows: dict[str, Any]) -> list[str]:
    """Per client: protocol, how much of the upload was handed over when the
    response head and the first echoed byte arrived, timeouts."""
    out = [
        f"### {sc} — full duplex (all runs)\n",
        "| client | protocol (client) | MiB uploaded at response head | MiB uploaded at first echoed byte "
        "| full duplex | timed out | note |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for client, r in rows.items():
        runs = r["raw"]
        label = LABELS.get((sc, client), client)
        if not runs:
            out.append(f"| {label} | n/a | n/a | n/a | n/a | 0/0 | {r.get('note', '')} |")
            continue
        protos = [str(x["protocol"]) for x in runs if x.get("protocol")]
        duplex = _counts(["yes" if x["full_duplex"] else "no" for x in runs if "full_duplex" in x])
        heads = [x["sent_at_head_mib"] for x in runs if x.get("sent_at_head_mib") is not None]
        firsts = [x["sent_at_first_byte_mib"] for x in runs if x.get("sent_at_first_byte_mib") is not None]
        timeouts = sum(1 for x in runs if x.get("timeout"))
        errors = {str(x.get("error", ""))[:220] for x in runs if not x.get("ok")}
        med = statistics.median
        out.append(
            f"| {label} | {_counts(protos)} | {f'{med(heads):.1f}' if heads else 'n/a'} | "
            f"{f'{med(firsts):.1f}' if firsts else 'n/a'} | {duplex} | {timeouts}/{len(runs)} | "
            + "; ".join(sorted(e.replace("|", "/") for e in errors if e))
            + " |"
        )
    out.append("")
    out.append(
        "Full duplex: the head and the first echoed bytes arrive while the upload is still going (a few MiB "
        "uploaded at most). A client that sends the whole body before it reads the response stalls once the "
        "buffers and flow-control windows on the way are full: no byte moves for 10 s and the run counts as "
        "timed out. Over HTTP/2 hypercorn keeps buffering the echo while the client's window is closed, so "
        'such a client gets through instead: "not full duplex", its MB/s is left out of the tables '
        "(`half_duplex_mb_s` in the JSON). Either way its remaining reps are skipped.\n"
    )
    return out


def _counts(values: list[str]) -> str:
    seen: dict[str, int] = {}
    for v in values:
        seen[v] = seen.get(v, 0) + 1
    return ", ".join(f"{k} x{n}" if len(values) > 1 else k for k, n in seen.items()) or "n/a"


def _render_target(sc: str, m: Metric, rows: dict[str, Any]) -> str:
    """One line: httpstream's target for this metric, met or missed (medians)."""
    target = TARGETS.get((sc, m.key))
    if target is None:
        return ""
    peer, op, threshold = target
    subj = rows.get(SUBJECT, {}).get("metrics", {}).get(m.key, {}).get("median")
    if peer is None:
        what, value, shown = f"httpstream median {op} {threshold:g} {m.unit}", subj, f"{_fmt(subj, m.unit)} {m.unit}"
    else:
        base = rows.get(peer, {}).get("metrics", {}).get(m.key, {}).get("median")
        value = subj / base if subj is not None and base else None
        what, shown = f"httpstream / {peer} {op} {threshold:g}", "n/a" if value is None else f"{value:.2f}"
    if value is None:
        verdict = "n/a"
    else:
        verdict = "met" if (value >= threshold if op == ">=" else value < threshold) else "**missed**"
    return f"Target: {what}: {shown} — {verdict}."


def _render_fallback_details(sc: str, rows: dict[str, Any]) -> list[str]:
    """Per client: the protocol of each GET (cold client, then warm client),
    what caddy logged, whether QUIC packets reached the blackhole."""
    out = [
        f"### {sc} — protocols (all runs)\n",
        "| client | GETs 1/2/3 (client) | GETs 1/2/3, 2nd client | caddy `proto` | TCP connections per run "
        "| QUIC packets at the blackhole | timed out | note |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for client, r in rows.items():
        runs = r["raw"]
        label = LABELS.get((sc, client), client)
        if not runs:
            out.append(f"| {label} | n/a | n/a | n/a | n/a | n/a | 0/0 | {r.get('note', '')} |")
            continue
        cold = _counts([" / ".join(x.get("protocols") or []) for x in runs if x.get("protocols")])
        warm = _counts([" / ".join(x.get("protocols_warm") or []) for x in runs if x.get("protocols_warm")])
        server_protos: dict[str, int] = {}
        for x in runs:
            for proto, n in (x.get("server_protocols") or {}).items():
                server_protos[proto] = server_protos.get(proto, 0) + n
        conns = [str(x["connections"]) for x in runs if x.get("connections") is not None]
        reached = _counts(["yes" if x["blackhole_hit"] else "no" for x in runs if "blackhole_hit" in x])
        timeouts = sum(1 for x in runs if x.get("timeout"))
        errors = {str(x.get("error", ""))[:160] for x in runs if not x.get("ok")}
        out.append(
            f"| {label} | {cold} | {warm} | "
            + (", ".join(f"{k}: {n:,} req" for k, n in server_protos.items()) or "n/a")
            + f" | {', '.join(conns) or 'n/a'} | {reached} | {timeouts}/{len(runs)} | "
            + "; ".join(sorted(e.replace("|", "/") for e in errors if e))
            + " |"
        )
    out.append("")
    return out


def _render_h2_details(sc: str, rows: dict[str, Any], server: str = "nginx $server_protocol") -> list[str]:
    """Per client, over all runs: the protocol the client reports, what the
    server logged (nginx $server_protocol, caddy proto), the connections
    used, timeouts and errors."""
    out = [
        f"### {sc} — protocol and connections (all runs)\n",
        f"| client | protocol (client) | {server} | connections per run | timed out | note |",
        "|---|---|---|---|---:|---|",
    ]
    for client, r in rows.items():
        runs = r["raw"]
        if not runs:
            out.append(f"| {LABELS.get((sc, client), client)} | n/a | n/a | n/a | 0/0 | {r.get('note', '')} |")
            continue
        client_protos = [str(x["protocol"]) for x in runs if x.get("protocol")]
        server_protos: dict[str, int] = {}
        for x in runs:
            for proto, n in (x.get("server_protocols") or {}).items():
                server_protos[proto] = server_protos.get(proto, 0) + n
        conns = [str(x["connections"]) for x in runs if x.get("connections") is not None]
        timeouts = sum(1 for x in runs if x.get("timeout"))
        errors = {str(x.get("error", ""))[:160] for x in runs if not x.get("ok")}
        out.append(
            f"| {LABELS.get((sc, client), client)} | {_counts(client_protos)} | "
            + (", ".join(f"{k}: {n:,} req" for k, n in server_protos.items()) or "n/a")
            + f" | {', '.join(conns) or 'n/a'} | {timeouts}/{len(runs)} | "
            + "; ".join(sorted(e.replace("|", "/") for e in errors if e))
            + " |"
        )
    out.append("")
    return out


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _python_display() -> str:
    """sys.executable, relative to the repo root when it lives inside it."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(REPO_ROOT))
    except ValueError:
        return str(exe)


def _git_rev(tree: Path = REPO_ROOT) -> str:
    """Short commit of ``tree``, with "+ uncommitted changes" when its
    httpstream/ differs from it."""
    rev = _git(tree, "rev-parse", "--short", "HEAD") or "no commit"
    if _git(tree, "status", "--porcelain", "--", "httpstream"):
        rev += " + uncommitted changes in httpstream/"
    return rev


def _git(tree: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


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
        default=None,
        help=f"comma-separated subset of: {','.join(CLIENTS)} (default: all; {BASELINE} only with --baseline)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="TREE",
        help=f"source tree (e.g. a git worktree of another commit) whose httpstream the {BASELINE} client runs",
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
    if args.clients is None:
        args.clients = [c for c in CLIENTS if c != BASELINE or args.baseline is not None]
    else:
        args.clients = [c for c in args.clients.split(",") if c]
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    bad += [c for c in args.clients if c not in CLIENTS]
    if bad:
        p.error(f"unknown scenario/client: {', '.join(bad)}")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "httpstream" / "__init__.py").is_file():
            p.error(f"--baseline {args.baseline}: no httpstream/__init__.py there")
        if args.baseline == REPO_ROOT:
            p.error("--baseline names this tree itself")
    if BASELINE in args.clients and args.baseline is None:
        p.error(f"client {BASELINE} needs --baseline TREE")
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
    load_start = os.getloadavg()
    git_rev = _git_rev()  # at the start: the tree may change during a long run
    # SIGTERM -> SystemExit, so the `with Nginx(...)` block still stops nginx
    signal.signal(signal.SIGTERM, _on_sigterm)

    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        sc: {c: [] for c in SCENARIO_CLIENTS[sc] if c in args.clients} for sc in args.scenarios
    }
    examples: dict[str, str] = {}
    versions: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    timed_out: set[tuple[str, str]] = set()

    need_nginx = any(sc not in H3_SCENARIOS and sc not in DUPLEX_SCENARIOS for sc in args.scenarios)
    need_caddy = any(sc in H3_SCENARIOS for sc in args.scenarios)
    need_echo = any(sc in DUPLEX_SCENARIOS for sc in args.scenarios)
    ng: Nginx | None = None
    cd: Caddy | None = None
    ec: EchoServer | None = None
    sources: dict[str, str] = {}
    try:
        with contextlib.ExitStack() as servers:
            if need_nginx:
                ng = servers.enter_context(Nginx(cpu=nginx_cpu, h2=any(sc in H2_SCENARIOS for sc in args.scenarios)))
                _log(
                    f"[bench] nginx {ng.version} at {ng.base_url}"
                    + (f" and {ng.h2_base_url} (TLS, h2)" if ng.h2 else "")
                    + f" (tmp {ng.tmp}); warming up /big ..."
                )
                ng.warm_up()
            if need_caddy:
                # on the same CPU as nginx (only one of them is busy at a time)
                cd = servers.enter_context(Caddy(cpu=nginx_cpu))
                _log(
                    f"[bench] caddy {cd.version} at {cd.base_url} (h1, h2, h3) and {cd.fallback_url} "
                    f"(h1, Alt-Svc h3 -> blackholed UDP port {cd.blackhole_port}) (tmp {cd.tmp}); warming up /big ..."
                )
                cd.warm_up()
            if need_echo:
                ec = servers.enter_context(EchoServer(cpu=nginx_cpu))
                _log(
                    f"[bench] hypercorn {ec.version} echo server at {ec.base_url} (HTTP/1.1) and "
                    f"{ec.tls_base_url} (TLS, h2) (tmp {ec.tmp})"
                )
            for client in args.clients:
                res = run_worker(
                    worker_cmd(client, "probe", "-", 0, "", baseline=args.baseline),
                    60.0,
                    worker_cpu,
                    args.baseline if client == BASELINE else None,
                )
                if res.get("ok") and is_httpstream(client):
                    # the package each httpstream client really imported
                    src = str(res.get("httpstream_file") or "?")
                    sources[client] = src
                    in_baseline = args.baseline is not None and Path(src).resolve().is_relative_to(args.baseline)
                    if in_baseline != (client == BASELINE):
                        res = {"ok": False, "error": f"imported httpstream from {src} (wrong tree)"}
                if res.get("ok"):
                    versions[client] = res.get("version", "?")
                    if client in sources:
                        _log(f"[bench] {client}: httpstream from {sources[client]}")
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
                        h2 = sc in H2_SCENARIOS
                        h3 = sc in H3_SCENARIOS
                        if sc in DUPLEX_SCENARIOS:
                            assert ec is not None
                            base = ec.tls_base_url if sc == "h2_duplex_echo" else ec.base_url
                            ca = str(ec.ca_path)
                        elif h3:
                            assert cd is not None
                            base = cd.fallback_url if sc == "h3_fallback" else cd.base_url
                            ca = str(cd.ca_path)
                            caddy_log = "fallback" if sc == "h3_fallback" else "h3"
                        else:
                            assert ng is not None
                            base = ng.h2_base_url if h2 else ng.base_url
                            ca = str(ng.ca_path) if ng.ca_path else None
                        cmd = worker_cmd(client, sc, base, counts.get(sc, 0), tag, ca, args.baseline)
                        if client != BASELINE:
                            examples.setdefault(
                                sc,
                                shlex.join([_python_display(), *cmd[1:3], "CLIENT", *cmd[4:]]).replace(tag, "TAG"),
                            )
                        log_offset = 0
                        blackhole_before = None
                        if h2:
                            assert ng is not None
                            log_offset = ng.h2_log_offset()
                        elif h3:
                            assert cd is not None
                            log_offset = cd.log_offset(caddy_log)
                            blackhole_before = cd.blackhole_counters()
                        t0 = time.monotonic()
                        res = run_worker(
                            cmd,
                            min(args.timeout, SCENARIO_TIMEOUTS.get(sc, args.timeout)),
                            worker_cpu,
                            args.baseline if client == BASELINE else None,
                        )
                        res["wall_s"] = round(time.monotonic() - t0, 3)
                        res["rep"] = rep
                        if res.get("ok") and sc.startswith("early_close"):
                            assert ng is not None
                            res.update(ng.connections_for_tag(tag))
                            res["value"] = res["connections"]
                        if h2 and (res.get("ok") or res.get("timeout")):
                            # also for a stalled run: which connections it used
                            assert ng is not None
                            res.update(ng.h2_log_for_tag(tag, log_offset, res.get("requests_sent", 10**9)))
                            if sc == "h2_early_close" and res.get("ok"):
                                res["value"] = res["connections"]
                        if h3 and (res.get("ok") or res.get("timeout")):
                            assert cd is not None
                            res.update(
                                cd.log_for_tag(caddy_log, tag, log_offset, res.get("requests_sent", 10**9), settle=1.0)
                            )
                            after = cd.blackhole_counters()
                            if blackhole_before is not None and after is not None:
                                res["blackhole_rx_queue_delta"] = after[0] - blackhole_before[0]
                                res["blackhole_drops_delta"] = after[1] - blackhole_before[1]
                                res["blackhole_hit"] = after != blackhole_before
                        raw[sc][client].append(res)
                        if res.get("killed") or (
                            sc in DUPLEX_SCENARIOS and (res.get("timeout") or res.get("half_duplex"))
                        ):
                            timed_out.add((client, sc))  # don't burn more reps on it (a deadlock)
                        shown = res.get("value")
                        _log(
                            f"[bench] rep {rep + 1}/{args.reps} {sc:<18} {client:<19} "
                            + (
                                f"{shown:,.1f} {res.get('unit', '')}"
                                if res.get("ok") and shown is not None
                                else ("n/a: " if res.get("timeout") or res.get("half_duplex") else "FAILED: ")
                                + str(res.get("error", "?"))[:200]
                            )
                        )
    except (NginxError, CaddyError, EchoError) as exc:
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
                if all(r.get("timeout") for r in runs):
                    entry["note"] = "timed out"
                elif all(r.get("half_duplex") for r in runs):
                    entry["note"] = "not full duplex"
                else:
                    entry["note"] = "failed"
                entry["error"] = runs[-1].get("error")
            results[sc]["clients"][client] = entry

    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_rev,
        "nginx": ng.version if ng is not None else None,
        "caddy": cd.version if cd is not None else None,
        "hypercorn": ec.version if ec is not None else None,
        # httpstream.__file__ of each httpstream client, and the commit of its tree
        "sources": sources,
        "source_revs": {c: _git_rev(args.baseline) if c == BASELINE and args.baseline else git_rev for c in sources},
        "baseline": str(args.baseline) if args.baseline else None,
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
        # other work on the machine shows up directly in the numbers
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
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
