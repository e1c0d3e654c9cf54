"""The dashboard in a real headless Chromium, against real runner processes.

Needs Debian's `chromium` package (`apt-get install -y chromium`) and Playwright for Python
(`pip install playwright`, whose wheel carries the driver; the browser is the system's, so
`playwright install` is never needed). Without either, the test is skipped and says which.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runners import ROOT, pgsched, query, runners, wait_registered, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The screenshots of docs/screenshots/ are refreshed with PGSCHED_SCREENSHOTS=1; otherwise they
# go to the test's temporary folder, so a test run leaves the work tree as it was.
SHOTS = ROOT / "docs" / "screenshots"
APP = ("--app", "tests.apps.basic:ext")

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs Playwright: pip install playwright"
)
pytest.importorskip("uvicorn", reason="the dashboard needs pip install 'pgsched[web]'")
CHROMIUM = CHROMIUM if Path(CHROMIUM).exists() else (shutil.which("chromium") or "")
if not CHROMIUM:
    pytest.skip(
        "the browser test needs Chromium at /usr/bin/chromium: apt-get install -y chromium",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    server: Any
    thread: threading.Thread


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serve ASGI apps with uvicorn in threads on free ports of 127.0.0.1."""
    import uvicorn

    served: list[Served] = []

    def start(app: Any, host: str = "127.0.0.1") -> str:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        end = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < end, "uvicorn did not start"
            time.sleep(0.02)
        served.append(Served(f"http://{host}:{port}", server, thread))
        return served[-1].url

    yield start
    for s in served:
        s.server.should_exit = True
        s.thread.join(10)


def forger(target: str) -> Any:
    """Another site's page that posts a form to the dashboard as soon as it loads."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    html = f"""<!doctype html><form id="f" method="post" action="{target}">
    <input name="csrf" value="guessed"></form>
    <script>document.getElementById('f').submit()</script>"""

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse(html)

    return Starlette(routes=[Route("/", page)])


def shot(page: Any, name: str, folder: Path) -> None:
    target = SHOTS if os.environ.get("PGSCHED_SCREENSHOTS") == "1" else folder
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / name), full_page=True)


def test_operator_finds_a_job_runs_it_watches_it_finish_and_pauses_it(
    dsn: str, tmp_path: Path, serve: Any
) -> None:
    from pgsched.web import Credentials, create_app

    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    # tick-every-two: its code schedule, one added from the CLI, and one inserted by SQL with a
    # bad expression, which the runner below marks as unable to fire
    added = pgsched(
        "schedules", "add", "tick-every-two", "tenant-42", "0 30 9 * * 1-5",
        "--timezone", "Europe/Berlin", "-p", "tenant=42", "-p", "region=eu", dsn=dsn,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    query(
        dsn,
        "INSERT INTO pgsched.schedules (job_name, key, cron, params) "
        "VALUES ('tick-every-two', 'tenant-7', '0 61 * * * *', '{\"tenant\": 7}')",
    )
    with runners(dsn, tmp_path) as procs:
        wait_registered(dsn, 1, procs)
        wait_until(
            lambda: query(dsn, "SELECT error FROM pgsched.schedules WHERE key = 'tenant-7'")[0][
                "error"
            ],
            what="the runner to mark the bad schedule",
            procs=procs,
        )
        wait_until(
            lambda: query(
                dsn,
                "SELECT count(*) >= 4 AS ok FROM pgsched.runs "
                "WHERE job_name = 'tick-every-second' AND status = 'succeeded'",
            )[0]["ok"],
            what="a few ticks",
            procs=procs,
        )
        query(dsn, "INSERT INTO pgsched.runs (job_name) VALUES ('raises')")
        wait_until(
            lambda: query(dsn, "SELECT id FROM pgsched.runs WHERE status = 'failed'"),
            what="the failing run",
            procs=procs,
        )
        base = serve(create_app(dsn, credentials=Credentials("ada", "s3cret"), lease_timeout=3))
        readonly = serve(create_app(dsn, credentials=None, lease_timeout=3))
        evil = serve(forger(f"{base}/jobs/echo-params/pause"), host="localhost")
        evil_too = serve(forger(f"{readonly}/jobs/echo-params/pause"), host="localhost")

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                ctx = browser.new_context(
                    http_credentials={"username": "ada", "password": "s3cret"},
                    viewport={"width": 1360, "height": 900},
                )
                page = ctx.new_page()
                page.set_default_timeout(30_000)

                page.goto(base + "/")
                page.wait_for_selector("text=live runners")
                warning = page.locator("#schedule-errors")
                assert "1 schedule cannot fire" in warning.inner_text()
                shot(page, "overview.png", tmp_path)

                # the warning leads to the job, whose page shows all three schedules
                warning.locator("a", has_text="tick-every-two").click()
                page.wait_for_url("**/jobs/tick-every-two#schedules")
                keys = page.locator("#schedules tr[data-schedule]")
                keys.first.wait_for()
                assert [keys.nth(i).get_attribute("data-schedule") for i in range(3)] == [
                    "default",
                    "tenant-7",
                    "tenant-42",
                ]
                broken = page.locator("tr[data-schedule='tenant-7']")
                assert broken.locator(".state").inner_text() == "error"
                error = page.locator("#schedules tr.schedule-error .alert").inner_text()
                assert "'0 61 * * * *'" in error and "delete the row" in error  # in full
                tenant = page.locator("tr[data-schedule='tenant-42']")
                assert '{"region": "eu", "tenant": 42}' in tenant.inner_text()
                assert "CE" in tenant.locator("td.t").inner_text()  # Berlin time, CET or CEST
                page.wait_for_selector("#chart .uplot")
                shot(page, "job-schedules.png", tmp_path)

                # find the job through the search, and see its tick strip and its schedules
                page.locator("header.top nav a", has_text="Jobs").click()
                page.locator("tr[data-job='tick-every-two'] .strip a.tick").first.wait_for()
                two = page.locator("tr[data-job='tick-every-two']")
                assert two.locator("td.schedules").inner_text() == "3 1 error"
                assert page.locator("tr[data-job] .badge").count() == 1
                shot(page, "jobs.png", tmp_path)
                two.locator(".badge", has_text="1 error").click()
                page.wait_for_selector("#schedules tr.schedule-error")
                page.locator("header.top nav a", has_text="Jobs").click()
                page.fill("input[name=q]", "every-second")
                page.click("button:has-text('Filter')")
                row = page.locator("tr[data-job='tick-every-second']")
                row.locator(".strip a.tick.f-on_time").first.wait_for()
                assert page.locator("tr[data-job]").count() == 1
                row.locator("a", has_text="tick-every-second").click()
                page.wait_for_selector("#chart .uplot")
                shot(page, "job-detail.png", tmp_path)

                # run now, with params, and watch it finish without a reload
                page.goto(base + "/jobs/echo-params")
                page.evaluate("window.__still_here = true")
                page.fill("textarea[name=params]", '{"tenant": 42}')
                page.click("button[name=run]")
                page.wait_for_selector("#flash :text('requested')")
                page.locator("#runs .status.s-succeeded").first.wait_for()
                assert page.evaluate("window.__still_here") is True
                (run,) = query(
                    dsn,
                    "SELECT params, requested_by FROM pgsched.runs WHERE job_name = 'echo-params'",
                )
                assert run == {"params": {"tenant": 42}, "requested_by": "ada"}

                # pause it
                page.click("button[name=pause]")
                page.wait_for_selector("h1 .state.st-paused")
                assert page.evaluate("window.__still_here") is True
                assert query(dsn, "SELECT paused FROM pgsched.jobs WHERE name = 'echo-params'")[0][
                    "paused"
                ]
                page.click("button[name=resume]")
                page.wait_for_selector("h1 .state.st-enabled")

                (failed,) = query(dsn, "SELECT id FROM pgsched.runs WHERE status = 'failed'")
                page.goto(f"{base}/runs/{failed['id']}")
                page.wait_for_selector("pre.tb")
                shot(page, "run-detail.png", tmp_path)

                # another site's page posting to the dashboard is refused
                with page.expect_response(lambda r: r.url.endswith("/pause")) as refused:
                    page.goto(evil + "/")
                assert refused.value.status == 403
                assert not query(dsn, "SELECT paused FROM pgsched.jobs WHERE name = 'echo-params'")[
                    0
                ]["paused"]
                ctx.close()

                # without credentials: read-only, no action offered
                anon = browser.new_page()
                anon.goto(readonly + "/jobs/echo-params")
                anon.wait_for_selector("text=read-only")
                assert anon.locator("button").filter(has_text="Run now").count() == 0
                assert anon.locator("button[name=pause]").count() == 0
                with anon.expect_response(lambda r: r.url.endswith("/pause")) as forged:
                    anon.goto(evil_too + "/")
                assert forged.value.status == 403
            finally:
                browser.close()
    actions = query(dsn, "SELECT actor, action FROM pgsched.actions ORDER BY id")
    assert [a["action"] for a in actions] == ["run", "pause", "resume"]
