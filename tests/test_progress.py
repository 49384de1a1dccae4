"""Progress: totals moved by commits, rates, and the terminal bar."""

from __future__ import annotations

import io

import anyio
import pytest
from rich.console import Console

from crawler.frontier import Counts
from crawler.models import Entry, Outcome, State
from crawler.progress import RATE_WINDOW, Tally, show_bar


def _counts(queued: int, done: int = 0) -> Counts:
    states = {s.value: 0 for s in State}
    states.update(queued=queued, done=done)
    return Counts(total=queued + done, states=states, reasons={}, hosts=[])


def _outcome(key: int, state: State) -> Outcome:
    return Outcome(
        entry=Entry(key, f"http://h.example/{key}", "h.example"), state=state, attempts=1
    )


def test_commits_move_the_totals_and_rates_cover_the_last_minute() -> None:
    now = [100.0]
    tally = Tally(_counts(queued=10, done=5), clock=lambda: now[0])
    batch = [
        _outcome(1, State.DONE),
        _outcome(2, State.FAILED),
        _outcome(3, State.QUEUED),
    ]
    tally.committed(batch, added=4)  # the batch's pages found 4 new URLs
    assert tally.total == 19
    assert tally.states["done"] == 6
    assert tally.states["failed"] == 1
    assert tally.states["queued"] == 10 - 2 + 4
    assert tally.finished == 7
    assert tally.retries == 1
    now[0] += 10
    tally.committed([_outcome(4, State.DONE)], added=0)
    assert tally.rates()["pages_per_second"] == pytest.approx(3 / 10)
    now[0] += RATE_WINDOW + 1
    assert tally.rates()["pages_per_second"] == 0.0
    tally.seeded(5)
    assert tally.summary()["queued"] == 12 - 1 + 5


@pytest.mark.anyio
async def test_the_bar_shows_done_of_known_and_failures() -> None:
    tally = Tally(_counts(queued=4, done=0))
    tally.committed([_outcome(1, State.DONE), _outcome(2, State.FAILED)], added=0)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with anyio.move_on_after(0.3):
        await show_bar(tally, console)
    text = out.getvalue()
    assert "2/4" in text
    assert "failed 1" in text
