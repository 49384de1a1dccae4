"""The console page (issue 15) in a real browser: Playwright driving Debian's Chromium
against a live `crawler serve` crawling loopback hosts. What the page does is checked at
the servers: a host paused from the page gets no request until unpaused, an exclude pattern
added there skips the queued URLs it matches, a delay set there shows in the gaps."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import servers as site
from tests.crawling import index_lines
from tests.servers import SiteFactory
from tests.service import Service
from tests.waiting import eventually

pytestmark = pytest.mark.slow

TOKEN = "page-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium: scripts/setup installs Debian's `chromium` where apt can")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else []
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.mark.timing  # the server's gaps to within 10 ms: alone, not beside xdist's load
def test_the_console_pauses_excludes_and_slows_hosts_as_the_servers_see(
    tmp_path: Path, make_site: SiteFactory, services: list[Service], browser: Any
) -> None:
    a, b = make_site("127.0.0.2"), make_site("127.0.0.3")
    for s in (a, b):
        s.route("*", site.ok(b"<html>page</html>"))
    host_a, host_b = a.base_url.split("//")[1], b.base_url.split("//")[1]
    data = tmp_path / "crawl"
    svc = Service(
        data,
        "politeness.delay=0.25",
        "politeness.per_host_concurrency=1",
        f'service.token="{TOKEN}"',
    )
    services.append(svc)
    urls = [a.url(f"/public/{i}") for i in range(40)] + [a.url(f"/private/{i}") for i in range(20)]
    urls += [b.url(f"/p{i}") for i in range(60)]
    svc.json("POST", "/seeds", "\n".join(urls).encode(), Authorization=f"Bearer {TOKEN}")

    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    prompts: list[str] = []

    def answer(dialog: Any) -> None:  # the page asks for the token once, for this tab
        prompts.append(dialog.message)
        dialog.accept(TOKEN)

    page.on("dialog", answer)
    page.goto(svc.base + "/")
    row_a = page.locator(f'tr[data-host="{host_a}"]')
    row_b = page.locator(f'tr[data-host="{host_b}"]')
    row_a.wait_for(timeout=10_000)
    row_b.wait_for(timeout=10_000)

    # Pause host a from the page: no request starts there until it is unpaused.
    row_a.locator('button[data-action="pause"]').click()
    page.locator(f'tr[data-host="{host_a}"] button[data-action="unpause"]').wait_for()
    assert len(prompts) == 1  # the first change asked for the token; it is kept for the tab
    time.sleep(0.6)
    held_at, b_at = len(a.hits), len(b.hits)
    time.sleep(1.5)
    assert len(a.hits) == held_at
    assert len(b.hits) > b_at

    # An exclude pattern added in the page: the queued /private/ URLs end skipped.
    page.fill("#exclude-pattern", "/private/")
    page.click("#exclude-form button[type=submit]")
    page.locator("#exclude-result").filter(has_text="skipped").wait_for()
    assert page.locator("#excludes code").all_inner_texts() == ["/private/"]
    private_fetched = {h.path for h in a.hits if h.path.startswith("/private/")}

    # Unpause; set host b's delay in the page: the gaps its server sees follow.
    page.locator(f'tr[data-host="{host_a}"] button[data-action="unpause"]').click()
    eventually(lambda: len(a.hits), 10, "host a again", until=lambda n: n > held_at)
    page.locator(f'tr[data-host="{host_b}"] input[name="delay"]').fill("0.8")
    page.locator(f'tr[data-host="{host_b}"] button[data-action="set-delay"]').click()
    # The click only starts the page's PATCH: the delay holds once the row says so.
    page.locator(f'tr[data-host="{host_b}"]').filter(has_text="operator").wait_for()
    set_at = time.monotonic()
    starts = eventually(
        lambda: [h.started for h in b.hits if h.started > set_at + 0.3],
        20,
        "host b fetched three times after the change",
        until=lambda found: len(found) >= 3,
    )
    assert min(later - earlier for earlier, later in itertools.pairwise(starts)) >= 0.8 - 0.01

    page.wait_for_timeout(2500)  # a few seconds of plots
    shot = tmp_path / "console.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("CONSOLE_SCREENSHOT"):  # to look at it: CONSOLE_SCREENSHOT=path
        shutil.copy(shot, os.environ["CONSOLE_SCREENSHOT"])

    lines = eventually(
        lambda: [line for line in index_lines(data) if "/private/" in line["url"]],
        30,
        "every /private/ URL final",
        until=lambda found: len(found) == 20,
    )
    excluded = {line["url"] for line in lines if line["reason"] == "excluded"}
    assert excluded == {a.url(f"/private/{i}") for i in range(20)} - {
        a.url(p) for p in private_fetched
    }
    assert {h.path for h in a.hits if h.path.startswith("/private/")} == private_fetched
