"""The resolver against a real DNS server on loopback (tests/nameserver.py), with a fake
clock for TTLs; then the fetcher resolving through it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest

from crawler import errors
from crawler.dns import (
    FAILURE_TTL,
    LOCALHOST,
    MAX_TTL,
    NEGATIVE_TTL,
    Resolver,
    cares_server,
    tries_for,
)
from crawler.errors import ConfigError
from crawler.fetcher import Fetcher
from crawler.guard import AddressGuard
from crawler.settings import FetchSettings, NetworkSettings, load_settings
from tests import servers as site
from tests.nameserver import NameServer
from tests.servers import SiteFactory

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[NameServer]:
    running = NameServer().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeResolver = Callable[..., Resolver]


@pytest.fixture
async def make_resolver(server: NameServer, clock: FakeClock) -> AsyncIterator[MakeResolver]:
    """Resolvers asking `server`, dated by `clock`; closed at teardown."""
    made: list[Resolver] = []

    def make(timeout: float = 2.0, **kwargs: int) -> Resolver:
        settings = NetworkSettings(dns_servers=(server.address,), dns_timeout=timeout)
        resolver = Resolver(settings, clock=clock, **kwargs)
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        await resolver.aclose()


async def _problem(resolver: Resolver, name: str) -> str:
    with pytest.raises(errors.DnsError) as caught:
        await resolver.resolve(name)
    assert caught.value.reason == "dns"
    return str(caught.value)


# -- answers and their TTL --------------------------------------------------------------------


async def test_an_answer_is_kept_for_its_ttl(
    server: NameServer, clock: FakeClock, make_resolver: MakeResolver
) -> None:
    server.a("a.test", "127.0.0.5", ttl=30)
    resolver = make_resolver()
    assert await resolver.resolve("a.test") == ("127.0.0.5",)
    clock.now += 29
    assert await resolver.resolve("A.Test") == ("127.0.0.5",)  # names are case-insensitive
    assert server.count("a.test") == 1
    server.clear("a.test")
    server.a("a.test", "127.0.0.6", ttl=30)
    clock.now += 1
    assert await resolver.resolve("a.test") == ("127.0.0.6",)
    assert server.count("a.test") == 2


async def test_a_and_aaaa_are_asked_together(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    server.a("both.test", "127.0.0.5")
    server.aaaa("both.test", "::1")
    assert set(await make_resolver().resolve("both.test")) == {"127.0.0.5", "::1"}
    assert (server.count("both.test", "A"), server.count("both.test", "AAAA")) == (1, 1)


async def test_a_cname_chain_is_followed_and_its_shortest_ttl_counts(
    server: NameServer, clock: FakeClock, make_resolver: MakeResolver
) -> None:
    server.cname("www.test", "edge.test", ttl=10)
    server.cname("edge.test", "origin.test", ttl=60)
    server.a("origin.test", "127.0.0.7", ttl=40)
    resolver = make_resolver()
    assert await resolver.resolve("www.test") == ("127.0.0.7",)
    clock.now += 9
    await resolver.resolve("www.test")
    assert server.count("www.test") == 1
    clock.now += 2
    await resolver.resolve("www.test")
    assert server.count("www.test") == 2


async def test_a_long_ttl_is_capped(
    server: NameServer, clock: FakeClock, make_resolver: MakeResolver
) -> None:
    server.a("long.test", "127.0.0.5", ttl=86400)
    resolver = make_resolver()
    await resolver.resolve("long.test")
    clock.now += MAX_TTL - 1
    await resolver.resolve("long.test")
    assert server.count("long.test") == 1
    clock.now += 2
    await resolver.resolve("long.test")
    assert server.count("long.test") == 2


async def test_a_zero_ttl_is_not_kept(server: NameServer, make_resolver: MakeResolver) -> None:
    server.a("zero.test", "127.0.0.5", ttl=0)
    resolver = make_resolver()
    await resolver.resolve("zero.test")
    await resolver.resolve("zero.test")
    assert server.count("zero.test") == 2


async def test_the_cache_is_bounded_least_recently_used_first(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    for name in ("one.test", "two.test", "three.test"):
        server.a(name, "127.0.0.5")
    resolver = make_resolver(cache_size=2)
    await resolver.resolve("one.test")
    await resolver.resolve("two.test")
    await resolver.resolve("one.test")  # two.test is now the least recently used
    await resolver.resolve("three.test")
    await resolver.resolve("one.test")
    assert server.count("one.test") == 1
    await resolver.resolve("two.test")
    assert server.count("two.test") == 2


# -- failures ---------------------------------------------------------------------------------


async def test_nxdomain_is_kept_as_a_negative_answer(
    server: NameServer, clock: FakeClock, make_resolver: MakeResolver
) -> None:
    resolver = make_resolver()
    assert await _problem(resolver, "nx.test") == "cannot resolve nx.test: NXDOMAIN"
    server.a("nx.test", "127.0.0.5")  # created now; the negative answer still holds
    clock.now += NEGATIVE_TTL - 1
    assert await _problem(resolver, "nx.test") == "cannot resolve nx.test: NXDOMAIN"
    assert server.count("nx.test") == 1
    clock.now += 2
    assert await resolver.resolve("nx.test") == ("127.0.0.5",)


@pytest.mark.parametrize(
    ("make_it", "problem"),
    [
        (NameServer.servfail, "SERVFAIL"),
        (NameServer.empty, "no address records"),
    ],
)
async def test_other_failures_are_kept_briefly(
    server: NameServer,
    clock: FakeClock,
    make_resolver: MakeResolver,
    make_it: Callable[[NameServer, str], None],
    problem: str,
) -> None:
    make_it(server, "bad.test")
    resolver = make_resolver()
    assert await _problem(resolver, "bad.test") == f"cannot resolve bad.test: {problem}"
    asked = server.count("bad.test")
    clock.now += FAILURE_TTL - 1
    await _problem(resolver, "bad.test")
    assert server.count("bad.test") == asked
    server.clear("bad.test")
    server.a("bad.test", "127.0.0.5")
    clock.now += 2
    assert await resolver.resolve("bad.test") == ("127.0.0.5",)


async def test_a_name_that_never_answers_times_out_and_is_kept_briefly(
    server: NameServer, clock: FakeClock, make_resolver: MakeResolver
) -> None:
    server.silent("dead.test")
    resolver = make_resolver(timeout=0.5)
    started = time.monotonic()
    assert await _problem(resolver, "dead.test") == "cannot resolve dead.test: timed out after 0.5s"
    assert 0.45 <= time.monotonic() - started < 1.5
    asked = server.count("dead.test")
    with anyio.fail_after(0.1):  # kept: no second wait
        await _problem(resolver, "dead.test")
    assert server.count("dead.test") == asked
    clock.now += FAILURE_TTL + 1
    server.clear("dead.test")
    server.a("dead.test", "127.0.0.5")
    assert await resolver.resolve("dead.test") == ("127.0.0.5",)


async def test_a_slow_answer_within_the_timeout_is_taken(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    server.a("slow.test", "127.0.0.5")
    server.delay("slow.test", 0.6)  # c-ares resends meanwhile, from new ports
    assert await make_resolver(timeout=3.0).resolve("slow.test") == ("127.0.0.5",)


async def test_a_name_answered_in_2s_by_a_server_fast_for_others_resolves_with_defaults(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    """A recursive resolver answers most names at once and uncached ones late. c-ares then
    resends after a wait fitted to the fast answers and takes only the answer to its latest
    send, so a 2 s answer always came just after the next send: lost, and the name failed
    within the default 5 s timeout. A second, patient query after SECOND_AFTER hears it."""
    for i in range(20):
        server.a(f"fast{i}.test", "127.0.0.5", ttl=0)
    for i in range(3):
        server.a(f"slow{i}.test", "127.0.0.6", ttl=0)
        server.delay(f"slow{i}.test", 2.0)
    resolver = make_resolver(timeout=NetworkSettings().dns_timeout)
    for i in range(20):  # c-ares measures the server as fast
        assert await resolver.resolve(f"fast{i}.test") == ("127.0.0.5",)
    for i in range(3):
        assert await resolver.resolve(f"slow{i}.test") == ("127.0.0.6",)


async def test_malformed_and_special_names_are_answered_without_a_query(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    resolver = make_resolver()
    assert await resolver.resolve("localhost") == LOCALHOST
    assert await resolver.resolve("app.localhost.") == LOCALHOST
    assert await resolver.resolve("127.0.0.2") == ("127.0.0.2",)
    assert await resolver.resolve("::FFFF:127.0.0.1") == ("::ffff:7f00:1",)
    assert await _problem(resolver, "x.invalid") == "cannot resolve x.invalid: NXDOMAIN"
    assert "not a valid host name" in await _problem(resolver, "bad..name")
    assert server.queries == []


# -- many lookups -----------------------------------------------------------------------------


async def test_concurrent_lookups_of_one_name_are_one_query(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    server.a("busy.test", "127.0.0.5")
    server.delay("busy.test", 0.1)
    resolver = make_resolver()
    found: list[tuple[str, ...]] = []

    async def look() -> None:
        found.append(await resolver.resolve("busy.test"))

    async def give_up() -> None:
        with anyio.move_on_after(0.01):  # one waiter leaves early: the query goes on
            await resolver.resolve("busy.test")

    async with anyio.create_task_group() as tg:
        tg.start_soon(give_up)
        for _ in range(50):
            tg.start_soon(look)
    assert found == [("127.0.0.5",)] * 50
    assert server.count("busy.test") == 1


async def test_a_late_joiner_shares_the_first_lookups_deadline(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    server.silent("dead.test")
    resolver = make_resolver(timeout=0.6)
    ended: list[float] = []

    async def look(after: float) -> None:
        await anyio.sleep(after)
        with pytest.raises(errors.DnsError, match=r"timed out after 0\.6s"):
            await resolver.resolve("dead.test")
        ended.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(look, 0.0)
        tg.start_soon(look, 0.3)
    assert abs(ended[1] - ended[0]) < 0.2


async def test_names_that_never_answer_do_not_hold_up_another(
    server: NameServer, make_resolver: MakeResolver
) -> None:
    """c-ares sends every query at once, with no queue for a dead one to block."""
    server.silent("*.dead.test")
    for name in ("live1.test", "live2.test", "live3.test"):
        server.a(name, "127.0.0.5")
    resolver = make_resolver(timeout=30.0)  # outlasts the test: all stay in flight
    asked = 0
    all_asked = anyio.Event()

    async def dead(i: int) -> None:
        nonlocal asked
        asked += 1
        if asked == 10_000:
            all_asked.set()  # it runs on into its own lookup before the test task resumes
        await resolver.resolve(f"n{i}.dead.test")

    async with anyio.create_task_group() as tg:
        for i in range(10_000):
            tg.start_soon(dead, i)
        await all_asked.wait()
        for name in ("live1.test", "live2.test", "live3.test"):
            # far below the dead ones' 30 s (a loaded CI machine took over 1 s at times)
            with anyio.fail_after(5.0):
                assert await resolver.resolve(name) == ("127.0.0.5",)
        assert server.count_matching(".dead.test") >= 10_000
        tg.cancel_scope.cancel()


# -- settings ---------------------------------------------------------------------------------


def test_dns_servers_are_given_to_c_ares_with_their_port() -> None:
    assert cares_server("192.0.2.1") == "192.0.2.1:53"
    assert cares_server("192.0.2.1:5353") == "192.0.2.1:5353"
    assert cares_server("2001:db8::1") == "[2001:db8::1]:53"
    assert cares_server("[2001:db8::1]:5353") == "[2001:db8::1]:5353"


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ('network.dns_servers=["dns.example"]', "network.dns_servers"),
        ('network.dns_servers=["192.0.2.1:0"]', "network.dns_servers"),
        ('network.dns_servers=["192.0.2.1:70000"]', "network.dns_servers"),
        ("network.dns_timeout=0", "network.dns_timeout"),
    ],
)
def test_bad_dns_settings_fail_naming_the_key(assignment: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(assignments=[assignment], environ={})


def test_resends_span_the_timeout() -> None:
    for timeout in (0.5, 1.0, 5.0, 30.0, 300.0):
        tries = tries_for(timeout)
        assert 0.25 * (2**tries - 1) >= timeout > 0.25 * (2 ** (tries - 1) - 1) or tries == 2


# -- through the fetcher ----------------------------------------------------------------------


async def test_the_fetcher_resolves_through_the_configured_dns_server(
    server: NameServer, make_site: SiteFactory
) -> None:
    s = make_site("127.0.0.1")
    s.route("*", site.ok(b"hello by name"))
    server.a("name.test", "127.0.0.1")
    server.a("inside.test", "10.1.2.3")
    settings = load_settings(
        assignments=[
            f'network.dns_servers=["{server.address}"]',
            'network.allowed_networks=["127.0.0.0/8"]',
        ],
        environ={},
    )
    resolver = Resolver(settings.network)
    fetcher = Fetcher(
        FetchSettings(),
        AddressGuard(settings.network.allowed_networks),
        resolver=resolver,
    )
    try:
        for path in ("/", "/again"):
            url = f"http://name.test:{s.port}{path}"
            response, _ = await fetcher.fetch(url)
            response.close()
            assert response.peer == "127.0.0.1"
        assert s.hits_for("/")[0].headers["host"] == f"name.test:{s.port}"
        assert server.count("name.test") == 1  # the second fetch reused the answer
        with pytest.raises(errors.BlockedAddress):  # the guard still checks what DNS gave
            await fetcher.fetch(f"http://inside.test:{s.port}/")
        with pytest.raises(errors.DnsError, match=r"cannot resolve nowhere\.test: NXDOMAIN"):
            await fetcher.fetch(f"http://nowhere.test:{s.port}/")
    finally:
        await fetcher.aclose()
        await resolver.aclose()
