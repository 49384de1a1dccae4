"""The world in one process: DNS (a thread) and HTTP(S) (the asyncio loop), and its files.

`World.run()` binds everything, writes seeds.txt, ca.pem, crawler.toml and, last, world.json
(ports, DNS address, shape, the world's limit) into `out`, then serves until `stop()` or
SIGINT/SIGTERM. Readers wait for world.json: once it exists, the world answers.
"""

from __future__ import annotations

import asyncio  # noqa: TID251  (the world's server loop: see web.py)
import contextlib
import json
import os
import signal
import socket
import ssl
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trustme

from bench.world.dns import WorldDNS
from bench.world.limit import measure_limit
from bench.world.shape import Ports, Shape, seed_urls, write_uniform_seeds
from bench.world.web import Site, listen_addresses, serve


def bind_all(addresses: list[str], tries: int = 50) -> tuple[int, list[socket.socket]]:
    """Listening TCP sockets on every address, one port for all (chosen by the system)."""
    for _ in range(tries):
        socks: list[socket.socket] = []
        try:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, socks[0].getsockname()[1] if len(socks) > 1 else 0))
                sock.listen(4096)
                sock.setblocking(False)
            return socks[0].getsockname()[1], socks
        except OSError:
            for sock in socks:
                sock.close()
    raise OSError(f"no port free on all of {addresses}")


def tls_context(out: Path) -> ssl.SSLContext:
    """A private CA (written to out/ca.pem) and a *.world.test certificate it signed."""
    ca = trustme.CA()
    cert = ca.issue_cert("*.world.test", "world.test")
    ca.cert_pem.write_to_path(str(out / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])  # no h2: see bench/README.md
    return context


def crawler_toml(dns: str, ca: Path) -> str:
    return (
        "# Written by `python -m bench.world`: what the crawler needs to reach the world.\n"
        "[network]\n"
        f'dns_servers = ["{dns}"]\n'
        'allowed_networks = ["127.0.0.0/8"]\n\n'
        "[fetch]\n"
        f"ca_bundle = {json.dumps(str(ca))}\n"
    )


class World:
    def __init__(
        self, shape: Shape, out: Path, dns_port: int = 0, limit: bool = True, per_host: int = 0
    ) -> None:
        self.shape = shape
        self.per_host = per_host
        self.out = out
        self.limit = limit
        self.dns = WorldDNS(shape, dns_port)
        addresses = listen_addresses(shape)
        http_port, self._http = bind_all(addresses)
        https_port, self._https = bind_all(addresses)
        self.ports = Ports(http=http_port, https=https_port)
        self.site = Site(shape, self.ports)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def write_files(self) -> int:
        """seeds.txt and crawler.toml; the number of seeds."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "world.json").unlink(missing_ok=True)
        toml = crawler_toml(self.dns.address, (self.out / "ca.pem").resolve())
        (self.out / "crawler.toml").write_text(toml, encoding="utf-8")
        if self.per_host:
            seeds = self.out / "seeds.txt"
            return write_uniform_seeds(self.shape, self.ports, self.per_host, seeds)
        urls = seed_urls(self.shape, self.ports)
        (self.out / "seeds.txt").write_text("\n".join(urls) + "\n", encoding="utf-8")
        return len(urls)

    def describe(self, urls: int, limit: float | None) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "dns": self.dns.address,
            "http_port": self.ports.http,
            "https_port": self.ports.https,
            "addresses": listen_addresses(self.shape),
            "urls": urls,
            "shape": asdict(self.shape),
            "limit_requests_per_s": limit,
            "seeds": str((self.out / "seeds.txt").resolve()),
            "config": str((self.out / "crawler.toml").resolve()),
            "ca": str((self.out / "ca.pem").resolve()),
        }

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
                self._loop.add_signal_handler(sig, self._stop.set)
        self.out.mkdir(parents=True, exist_ok=True)
        tls = tls_context(self.out)
        urls = self.write_files()
        self.dns.start()
        server = asyncio.create_task(serve(self.site, self._http, self._https, tls, self._stop))
        await asyncio.sleep(0)
        limit = None
        if self.limit:
            limit = await self._loop.run_in_executor(None, measure_limit, self.shape, self.ports)
        info = self.describe(urls, limit)
        tmp = self.out / "world.json.tmp"
        tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
        tmp.rename(self.out / "world.json")
        print(
            f"world: {self.shape.hosts} hosts, {urls} seeds in {info['seeds']}; "
            f"DNS {info['dns']}; HTTP :{self.ports.http}, HTTPS :{self.ports.https} on "
            f"{info['addresses'][0]}..{info['addresses'][-1]}",
            flush=True,
        )
        if limit is not None:
            print(f"world limit: {limit:.0f} requests/s (bare keep-alive client)", flush=True)
        print(f"crawler config: {info['config']} (Ctrl-C stops the world)", flush=True)
        try:
            await server
        finally:
            self.dns.stop()
            print(f"world: stopped after {self.site.requests} requests", flush=True)
