"""`python -m bench.world --hosts 50000 --urls 200000 --out DIR`: build the world and serve it.

Starts DNS and HTTP(S), writes DIR/seeds.txt, DIR/ca.pem, DIR/crawler.toml (pass it to
`crawler run --config`) and DIR/world.json, prints the world's limit, serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.world.box import World
from bench.world.shape import CLASSES, Shape


def parse_shares(items: list[str]) -> dict[str, float]:
    shares = dict(CLASSES)
    for item in items:
        name, _, value = item.partition("=")
        if name not in CLASSES:
            raise SystemExit(f"--share: unknown class {name!r} (one of {', '.join(CLASSES)})")
        shares[name] = float(value)
    return shares


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=50_000)
    p.add_argument("--urls", type=int, default=200_000)
    p.add_argument("--max-per-host", type=int, default=30, help="the largest host's seeds")
    p.add_argument("--hostile-cap", type=int, default=3, help="seeds of a hostile host")
    p.add_argument("--zipf", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--addresses", type=int, default=8, help="listening loopback addresses")
    p.add_argument("--slow-seconds", type=float, default=0.1, help="'slow' first byte")
    p.add_argument("--big-bytes", type=int, default=2 * 1024 * 1024)
    p.add_argument("--share", action="append", default=[], metavar="CLASS=FRACTION")
    p.add_argument("--healthy-only", action="store_true", help="every host healthy (W2)")
    p.add_argument(
        "--seeds-per-host",
        type=int,
        default=0,
        help="W2: this many seeds on every host, no Zipf shape (for millions of URLs)",
    )
    p.add_argument("--dns-port", type=int, default=0)
    p.add_argument("--no-limit", action="store_true", help="skip measuring the world's limit")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    shape = Shape(
        hosts=args.hosts,
        urls=args.urls,
        max_per_host=args.max_per_host,
        hostile_cap=args.hostile_cap,
        zipf=args.zipf,
        seed=args.seed,
        addresses=args.addresses,
        slow_seconds=args.slow_seconds,
        big_bytes=args.big_bytes,
        shares={"healthy": 1.0} if args.healthy_only else parse_shares(args.share),
    )
    World(
        shape, args.out, dns_port=args.dns_port, limit=not args.no_limit,
        per_host=args.seeds_per_host,
    ).run()  # fmt: skip


if __name__ == "__main__":
    main()
