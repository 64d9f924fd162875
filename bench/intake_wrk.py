"""Webhook intake against the bare route, measured with wrk: alternating rounds, distinct signed bodies.

For each database (a fresh SQLite file and/or a fresh PostgreSQL schema) it starts the real
`fbslack serve` (the same server and settings as bench/ingest.py, with the bare route on) and runs
wrk (Debian's package, C, two threads) against 127.0.0.1 only, in rounds that alternate:

    bare, intake, bare, intake, ...    (--rounds of each, --seconds each, after a short warm-up)

* bare: `POST /bench/bare`, which reads the body and answers 200 (the server's ceiling);
* intake: `POST /freshbooks/webhooks/<token>`, the real webhook route.

Both get the same kind of request: a FreshBooks webhook body with its correct signature
(base64 HMAC-SHA256 keyed by the callback's verifier over json.dumps of the form fields).
Every intake request carries a body no other request of the run carries (a distinct object_id):
the app acknowledges a byte-identical repeat without storing it, and that short-cut is not what is
measured. The bodies are computed before the server starts, written to one file per round, and
bench/intake_wrk.lua cycles through them (it reports a wrap-around, which would mean repeats).

Per round it reports: requests/s, non-2xx answers, wrk's latency percentiles (closed loop: queueing,
not a latency target), the server's CPU per request (gunicorn master, web workers and the
background process, summed from /proc: a figure the machine's other load does not change much),
how the connections and the CPU were spread over the web workers (SO_REUSEPORT balance), the load
average and the CPU other processes took. After every intake round the new inbox rows must equal
the 2xx answers (a few more is fine: requests in flight when wrk stopped; fewer is a loss, exit 1).

    .venv/bin/python bench/intake_wrk.py [--db sqlite|postgresql|both] [--rounds 3] [--seconds 10]
        [--connections 32] [--wrk-threads 2] [--event invoice.create] [--json OUT] [--profile DIR]

Bounded: each wrk run has `-d --seconds` and `--timeout`, and is killed if it overruns by 30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _path in (str(REPO), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import ingest as common  # noqa: E402  (bench/ingest.py: server, databases, signing, CPU accounting)

LUA = BENCH / "intake_wrk.lua"
TARGET_RATIO = 0.4
# Bodies per intake round: the most this 2-core VM could answer in --seconds, with a wide margin.
MAX_RATE_PER_S = 12_000


def write_bodies(path: Path, first_id: int, count: int, event: str) -> None:
    """`count` distinct signed webhooks, one a line: "<signature> <form body>"."""
    lines = []
    for object_id in range(first_id, first_id + count):
        fields = [
            ("name", event),
            ("object_id", str(object_id)),
            ("user_id", "1"),
            ("identity_id", "2"),
            ("business_id", "3"),
            ("account_id", common.ACCOUNT_ID),
        ]
        body = urllib.parse.urlencode(fields)
        lines.append(f"{common.sign(fields, common.VERIFIER)} {body}\n")
    path.write_text("".join(lines))


def wrk_run(
    port: int, path: str, bodies: Path, *, seconds: float, connections: int, threads: int
) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",  # never anything else
        "--",
        str(bodies),
        path,
        str(threads),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    for line in proc.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            result["stdout"] = proc.stdout
            return result
    raise RuntimeError(f"wrk printed no summary:\n{proc.stdout}\n{proc.stderr}")


def children(pid: int) -> list[int]:
    return sorted(p for p, (_c, ppid, _cpu) in common.process_cpu().items() if ppid == pid)


def web_workers(master: int) -> list[int]:
    """The gunicorn web workers: the master's children but the background `fbslack worker`."""
    found = []
    for pid in children(master):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"worker" in cmdline and b"connector.cli" in cmdline:
                continue  # the background process
            found.append(pid)
    return found


def established_per_process(pids: list[int], port: int) -> dict[int, int]:
    """How many ESTABLISHED TCP connections to `port` each process holds (from /proc)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":
                    inodes[fields[9]] = local_port
    counts = {}
    for pid in pids:
        n = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        n += 1
        counts[pid] = n
    return counts


def cpu_of(pids: list[int]) -> dict[int, float]:
    procs = common.process_cpu()
    return {pid: procs[pid][2] for pid in pids if pid in procs}


def sched_of(pid: int) -> tuple[float, float, int, int]:
    """(user s, system s, voluntary, involuntary context switches) of a process and its threads."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
    except OSError:
        return 0.0, 0.0, 0, 0
    voluntary = involuntary = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            task = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
                if ":" in line
            )
            voluntary += int(task["voluntary_ctxt_switches"])
            involuntary += int(task["nonvoluntary_ctxt_switches"])
    return int(fields[11]) / tick, int(fields[12]) / tick, voluntary, involuntary


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_round(
    *,
    name: str,
    server: common.Server,
    inbox: common.Inbox,
    path: str,
    bodies: Path,
    args: argparse.Namespace,
    profile_to: Path | None,
) -> dict[str, Any]:
    master = server.proc.pid
    workers = web_workers(master)
    rows_before = inbox.rows()
    meter = common.CpuMeter(master)
    worker_cpu_before = cpu_of(workers)
    sched_before = {pid: sched_of(pid) for pid in children(master)}
    load_before = loadavg()
    spies: list[subprocess.Popen[bytes]] = []
    if profile_to is not None:
        profile_to.mkdir(parents=True, exist_ok=True)
        py_spy = Path(sys.executable).parent / "py-spy"
        for pid in workers:
            spies.append(
                subprocess.Popen(
                    [
                        str(py_spy),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(max(1, int(args.seconds) - 2)),
                        "--format",
                        "speedscope",
                        "--output",
                        str(profile_to / f"{name}-{pid}.speedscope.json"),
                        *args.py_spy_flags.split(),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    # Connections are counted mid-round, once wrk has opened them all.
    balance: dict[int, int] = {}

    def count_connections() -> None:
        # The most each worker held in a few looks: a connection waiting in a worker's accept
        # queue is not yet in its descriptors.
        for _ in range(5):
            time.sleep(min(0.5, args.seconds / 10))
            for pid, n in established_per_process(workers, server.port).items():
                balance[pid] = max(balance.get(pid, 0), n)

    counter = threading.Thread(target=count_connections, daemon=True)
    counter.start()
    began = time.monotonic()
    wrk_cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = wrk_run(
        server.port,
        path,
        bodies,
        seconds=args.seconds,
        connections=args.connections,
        threads=args.wrk_threads,
    )
    wall = time.monotonic() - began
    counter.join()
    # wrk's own CPU is in "rest" for CpuMeter: it is not our child. Count it apart from /proc: gone.
    wrk_cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (wrk_cpu_after.ru_utime + wrk_cpu_after.ru_stime) - (
        wrk_cpu_before.ru_utime + wrk_cpu_before.ru_stime
    )
    cpu = meter.stop(wrk_cpu)  # wrk is the client; py-spy, when profiling, counts there too
    load_after = loadavg()
    sched = {}
    for pid, before in sched_before.items():
        after = sched_of(pid)
        sched[pid] = [round(a - b, 2) for a, b in zip(after, before, strict=True)]
    worker_cpu = {
        pid: round(cpu_of([pid]).get(pid, 0.0) - worker_cpu_before.get(pid, 0.0), 2) for pid in workers
    }
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
    stored = inbox.rows() - rows_before
    duration_s = result["duration_us"] / 1e6
    errors = result["non_2xx_3xx"] + result["read_errors"] + result["write_errors"] + result["timeouts"]
    acked = result["requests"] - result["non_2xx_3xx"]
    summary: dict[str, Any] = {
        "route": name,
        "requests": result["requests"],
        "acked": acked,
        "per_s": round(acked / duration_s, 1) if duration_s else 0.0,
        "errors": errors,
        "non_2xx": result["non_2xx_3xx"],
        "socket_errors": {
            k: result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        },
        "wrapped": result["wrapped"],
        "p50_ms": round(result["p50_us"] / 1000, 2),
        "p99_ms": round(result["p99_us"] / 1000, 2),
        "max_ms": round(result["max_us"] / 1000, 2),
        "wall_s": round(wall, 2),
        "stored": stored,
        "server_cpu_ms_per_req": round(cpu["server_s"] * 1000 / acked, 3) if acked else None,
        "web_cpu_ms_per_req": round(sum(worker_cpu.values()) * 1000 / acked, 3) if acked else None,
        "cpu": cpu,
        "connections_per_worker": [balance.get(pid, 0) for pid in workers],
        "cpu_s_per_worker": [worker_cpu[pid] for pid in workers],
        "loadavg_1m": [load_before, load_after],
        # per process (web workers, then the background process): user s, system s, context switches
        "sched": {("web" if pid in workers else "background") + f"-{pid}": v for pid, v in sched.items()},
    }
    if name == "intake":
        summary["lost"] = max(0, acked - stored)
        summary["stored_without_ack"] = max(0, stored - acked)
    else:
        summary["lost"] = 0
    return summary


def round_line(r: dict[str, Any]) -> str:
    return (
        f"{r['route']:6s} {r['per_s']:8.1f}/s  non-2xx {r['non_2xx']}  p50 {r['p50_ms']} ms  "
        f"p99 {r['p99_ms']} ms  web CPU {r['web_cpu_ms_per_req']} ms/req  "
        f"server CPU {r['server_cpu_ms_per_req']} ms/req  conns/worker {r['connections_per_worker']}  "
        f"CPU s/worker {r['cpu_s_per_worker']}  others {r['cpu']['other_pct']}% (wrk apart)  "
        f"load {r['loadavg_1m'][0]:.2f}->{r['loadavg_1m'][1]:.2f}"
        + (f"  stored {r['stored']} lost {r['lost']}" if r["route"] == "intake" else "")
    )


def run_leg(kind: str, args: argparse.Namespace, stub: common.FreshBooksStub) -> dict[str, Any]:
    leg: dict[str, Any] = {"db": kind, "rounds": []}
    tmp = Path(tempfile.mkdtemp(prefix=f"fbslack-wrk-{kind}-"))
    began = time.monotonic()
    try:
        per_round = int(MAX_RATE_PER_S * args.seconds)
        files = {}
        for i in range(args.rounds + 1):  # round 0: the warm-up
            files[i] = tmp / f"bodies-{i}.txt"
            write_bodies(files[i], 1_000_000 * (i + 1), per_round if i else per_round // 3, args.event)
        with common.fresh_database(kind, tmp) as url:
            token = common.migrate_and_seed(url)
            inbox = common.Inbox(url)
            port = common.free_port()
            env = common.server_environment(url, port, tmp / "data", stub.url, args.workers, args.threads)
            if args.log_level:
                env["LOG_LEVEL"] = args.log_level
            server = common.Server(env, tmp / "server.log", port)
            try:
                leg["startup_s"] = round(server.wait_healthy(), 2)
                intake_path = f"/freshbooks/webhooks/{token}"
                paths = {"bare": common.BARE_PATH, "intake": intake_path}
                warm = argparse.Namespace(**{**vars(args), "seconds": args.warmup})
                for name in ("bare", "intake"):
                    warmed = run_round(
                        name=name,
                        server=server,
                        inbox=inbox,
                        path=paths[name],
                        bodies=files[0],
                        args=warm,
                        profile_to=None,
                    )
                    print(f"  [{kind}] warm-up {round_line(warmed)}", file=sys.stderr, flush=True)
                # The bare route stores nothing (no digest either), so sending it a round's bodies
                # first does not make them repeats for the intake round that follows.
                for i in range(1, args.rounds + 1):
                    for name in ("bare", "intake"):
                        if name == "intake" or i > 1:
                            pending, _ = inbox.wait_drained(args.drain)
                            if pending:
                                print(f"  [{kind}] {pending} rows still pending", file=sys.stderr)
                        profile_to = args.profile / kind if args.profile and i == 1 else None
                        r = run_round(
                            name=name,
                            server=server,
                            inbox=inbox,
                            path=paths[name],
                            bodies=files[i],
                            args=args,
                            profile_to=profile_to,
                        )
                        r["round"] = i
                        leg["rounds"].append(r)
                        print(f"  [{kind}] round {i} {round_line(r)}", file=sys.stderr, flush=True)
            finally:
                leg["stop"] = server.stop()
            leg["inbox_by_state"] = inbox.by_state()
            inbox.dispose()
            leg["server_log"] = common.scan_server_log(tmp / "server.log")
    finally:
        if args.keep:
            leg["kept_dir"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    bare = [r["per_s"] for r in leg["rounds"] if r["route"] == "bare"]
    intake = [r["per_s"] for r in leg["rounds"] if r["route"] == "intake"]
    leg["bare_mean_per_s"] = round(sum(bare) / len(bare), 1) if bare else None
    leg["intake_mean_per_s"] = round(sum(intake) / len(intake), 1) if intake else None
    leg["ratio"] = (
        round(leg["intake_mean_per_s"] / leg["bare_mean_per_s"], 3) if bare and intake and bare[0] else None
    )
    # Each intake round over the bare round just before it.
    leg["ratio_per_round"] = [round(i / b, 3) if b else None for b, i in zip(bare, intake, strict=False)]
    cpu = {
        name: [r["server_cpu_ms_per_req"] for r in leg["rounds"] if r["route"] == name]
        for name in ("bare", "intake")
    }
    leg["server_cpu_ms_per_req"] = cpu
    leg["lost"] = sum(r["lost"] for r in leg["rounds"])
    leg["wrapped"] = sum(r["wrapped"] for r in leg["rounds"])
    leg["leg_seconds"] = round(time.monotonic() - began, 1)
    return leg


def markdown(results: dict[str, Any]) -> str:
    cfg, mach = results["config"], results["machine"]
    lines = [
        f"### Intake vs bare route, wrk -t{cfg['wrk_threads']} -c{cfg['connections']}, "
        f"{cfg['rounds']} alternating rounds of {cfg['seconds']:g} s, event `{cfg['event']}`, "
        f"{mach['cpus']} CPUs ({mach['cpu_model']})",
        "",
        "| DB | round | route | req/s | non-2xx | p50 ms | p99 ms | server CPU ms/req | web workers ms/req "
        "| conns per worker | CPU s per worker | wrk CPU s | others % | load 1m |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for leg in results["legs"]:
        if "skipped" in leg or "failed" in leg:
            lines.append(f"| {leg['db']} | {leg.get('skipped') or leg.get('failed')} |||||||||||")
            continue
        for r in leg["rounds"]:
            lines.append(
                f"| {leg['db']} | {r['round']} | {r['route']} | {r['per_s']:,.0f} | {r['non_2xx']} | "
                f"{r['p50_ms']} | {r['p99_ms']} | {r['server_cpu_ms_per_req']} | {r['web_cpu_ms_per_req']} | "
                f"{'/'.join(map(str, r['connections_per_worker']))} | "
                f"{'/'.join(map(str, r['cpu_s_per_worker']))} | {r['cpu']['client_s']} | "
                f"{r['cpu']['other_pct']} | "
                f"{r['loadavg_1m'][0]:.2f}-{r['loadavg_1m'][1]:.2f} |"
            )
    lines += ["", "| DB | bare mean req/s | intake mean req/s | ratio | per round | lost | wrapped |"]
    lines.append("|---|---:|---:|---:|---|---:|---:|")
    for leg in results["legs"]:
        if "rounds" not in leg:
            continue
        lines.append(
            f"| {leg['db']} | {leg['bare_mean_per_s']:,.0f} | {leg['intake_mean_per_s']:,.0f} | "
            f"{leg['ratio']} | {' / '.join(map(str, leg['ratio_per_round']))} | {leg['lost']} | "
            f"{leg['wrapped']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Intake vs the bare route through `fbslack serve`, with wrk."
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each route, alternating (3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each round (10)")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds of each route first (3)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk keep-alive connections (32)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--workers", type=int, help="WEB_WORKERS (default: the server's)")
    parser.add_argument("--threads", type=int, help="WEB_THREADS (default: the server's)")
    parser.add_argument("--log-level", help="LOG_LEVEL for the server (default INFO, as bench/ingest.py)")
    parser.add_argument(
        "--drain", type=float, default=15.0, help="max s to let the worker drain between rounds"
    )
    parser.add_argument(
        "--event",
        default="invoice.create",
        help="event sent; client.create is stored as ignored and does not wake the background process",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy each web worker in round 1, speedscope files here"
    )
    parser.add_argument(
        "--py-spy-flags", default="--gil", help="extra py-spy record flags (--gil: CPU in Python, not waits)"
    )
    parser.add_argument("--json", type=Path, help="also write the full results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server.log, bodies)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {
        "benchmark": "intake_wrk",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": common.machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "legs": [],
    }
    previous = signal.getsignal(signal.SIGINT)
    try:
        with common.FreshBooksStub() as stub:
            status = common.run_legs(
                kinds,
                lambda kind: run_leg(kind, args, stub),
                results,
                lambda leg: bool(leg["lost"] or leg["wrapped"]),
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    for leg in results["legs"]:
        for r in leg.get("rounds", []):
            r.pop("stdout", None)
    common.write_results(results, markdown(results), args.json)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
