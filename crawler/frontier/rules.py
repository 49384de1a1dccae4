"""What both frontier backends decide the same way, apart from their SQL: the numbered
migration files, a claim's fair shares over hosts, the max_pages_per_host cap, and what a
commit adds to the visit counts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path

from crawler.errors import StorageError
from crawler.frontier.values import Finished, NewURL

# Which finished URLs a recrawl visits again (the SQL of both backends): those fetched, and
# those that failed or were skipped after an earlier visit got an answer (a page down for a
# while is not dropped from the schedule). `recrawl_at_for` is the same rule for a commit.
ELIGIBLE = "(state = 'done' OR (state IN ('failed', 'skipped') AND digest IS NOT NULL))"

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# (hosts, URLs of each at most, URLs in all at most) -> (host, key) of ready URLs
Pick = Callable[[list[str], int, int], Awaitable[list[tuple[str, int]]]]


def migrations_dir(engine: str) -> Path:
    """Where `engine`'s numbered SQL files are: inside the wheel, or at the top of a
    checkout (`migrations/sqlite`, `migrations/postgres`)."""
    packaged = Path(str(resources.files("crawler"))) / "_migrations" / engine
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations" / engine


def migrations(engine: str) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of each numbered migration, in order."""
    found = []
    for path in sorted(migrations_dir(engine).glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    if not found:
        raise StorageError(f"no SQL migrations found in {migrations_dir(engine)}")
    return found


async def pick_shares(
    pick: Pick, hosts: list[str], per_host: int, limit: int
) -> list[tuple[str, int]]:
    """(host, key) of ready URLs: first a fair share of the batch each, then what is left
    of it to the hosts that had more."""
    share = min(per_host, max(1, -(-limit // len(hosts))))
    picked = await pick(hosts, share, limit)
    counts = Counter(host for host, _ in picked)
    full = [host for host in hosts if counts[host] >= share]
    if len(picked) < limit and share < per_host and full:
        # The first `share` of each of these hosts come again: ask for that many more.
        more = await pick(full, per_host, limit + share * len(full))
        again = {key for _, key in picked}
        picked += [(host, key) for host, key in more if key not in again]
    return picked


async def choose(
    pick: Pick, hosts: list[str], per_host: int, room: Mapping[str, int], limit: int
) -> tuple[list[int], str | None]:
    """A claim's keys over `hosts` (their fair shares, within each host's room) and the
    host that filled the batch, if one did (`pick_shares`, then `take`)."""
    picked = await pick_shares(pick, hosts, per_host, limit)
    return take(picked, per_host, room, limit)


def take(
    picked: list[tuple[str, int]], per_host: int, room: Mapping[str, int], limit: int
) -> tuple[list[int], str | None]:
    """The keys to lease, within each host's room (or `per_host`), and the host that filled
    the batch (where the next claim goes on), if one did."""
    keys: list[int] = []
    taken: Counter[str] = Counter()
    for host, key in picked:
        if taken[host] < room.get(host, per_host):
            taken[host] += 1
            keys.append(key)
            if len(keys) >= limit:
                return keys, host
    return keys, None


def capped(fresh: dict[int, NewURL], totals: Mapping[str, int], cap: int) -> None:
    """Drop from `fresh` (new URLs by key, in insert order) those past `cap` URLs for their
    host, counting the `totals` already in the frontier."""
    room = {host: cap - total for host, total in totals.items()}
    for key, u in list(fresh.items()):
        left = room.get(u.host, cap)
        if left > 0:
            room[u.host] = left - 1
        else:
            del fresh[key]


def visit_counts(applied: Iterable[Finished]) -> dict[str, int]:
    """What completions the frontier took add to `Counts.visits` (kinds not added left out)."""
    counts: Counter[str] = Counter()
    for f in applied:
        if f.visited:
            counts["visits"] += 1
            if f.revisit is not None:
                counts[f.revisit] += 1
    return dict(counts)
