"""The dashboard (``/ui/``) and the API viewer (``/docs``) in a real headless Chromium against
the real platform (``faas up``'s processes, real containers): sign in, see the nodes, invoke
a function from the form and see its result and output, follow a job's output live, cancel a
running call. No page may break its Content-Security-Policy or throw.

``FAAS_DASHBOARD_SCREENSHOTS=docs/img`` saves a screenshot of each page (the README's)."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from selenium.webdriver.common.by import By

from faas_cli.up import Platform
from tests.e2e.browser import Page, start_browser
from tests.e2e.platform_harness import base_url, poll_json, running_platform, session
from tests.functions import DICE, targz_bytes

pytestmark = pytest.mark.e2e

RUNTIME = {
    "name": "py",
    "image": "faas-python",
    "path": "/app",
    "dependencies": "pip install -r requirements.txt",
    "run": "python3 test.py",
}
# The command protocol: stdout is the result, stderr the call's output.
SLEEPY = {
    "test.py": "import sys, time\nprint('sleeping', file=sys.stderr, flush=True)\ntime.sleep(3600)\n",
    "requirements.txt": "",
}
# A job whose output comes a line a second: seen while it runs, not only at its end.
TICKS = ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 1; done"]


@pytest.fixture(scope="module")
async def platform(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path_factory.mktemp("dashboard")) as p:
        async with session(p) as http:
            async with http.post("/registerRuntime", json=RUNTIME) as r:
                assert r.status == 200, await r.text()
            for name, files in (("dice", DICE), ("sleepy", SLEEPY)):
                form = aiohttp.FormData()
                form.add_field("module", targz_bytes(files), filename=f"{name}.tar.gz")
                async with http.post(f"/registerFunction/py/{name}", data=form) as r:
                    assert r.status == 200, await r.text()
        yield p


@pytest.fixture(scope="module")
def page(platform: Platform) -> Iterator[Page]:
    driver = start_browser()
    try:
        yield Page(driver, base_url(platform))
    finally:
        driver.quit()


@pytest.fixture
async def signed_in(page: Page, platform: Platform) -> AsyncIterator[Page]:
    token = platform.admin_token()
    assert token
    await asyncio.to_thread(page.sign_in, token)
    yield page
    problems = await asyncio.to_thread(page.script_problems)
    assert not problems, problems


def node_id(platform: Platform) -> str:
    return platform.cfg.extra_env["FAAS_AGENT_NODE_ID"]


async def test_sign_in_and_see_the_nodes(page: Page, platform: Platform) -> None:
    token = platform.admin_token()
    assert token

    def scenario() -> None:
        page.driver.get(f"{page.base}/ui/")
        page.wait(lambda: page.find("#signin").is_displayed())
        # A wrong token is refused, and the page says why.
        page.find("#token").send_keys("faas_not-a-token")
        page.find("#signin-form button").click()
        page.wait_text("#signin-error", "invalid token")
        page.sign_in(token)
        # Never in the URL; kept in this tab's session storage.
        assert token not in page.driver.current_url
        assert page.driver.execute_script("return sessionStorage.getItem('faas.token')") == token
        page.wait_text("#nodes-table", node_id(platform), "live")
        page.wait_text("#figures", "live nodes")
        page.wait(lambda: page.driver.find_elements(By.CSS_SELECTOR, "#chart-rate canvas"))
        # Signing out forgets the token.
        page.find("#signout").click()
        page.wait(lambda: page.find("#signin").is_displayed())
        assert page.driver.execute_script("return sessionStorage.getItem('faas.token')") is None

    await asyncio.to_thread(scenario)
    assert not await asyncio.to_thread(page.script_problems)


async def test_invoke_a_function_from_the_form(signed_in: Page, platform: Platform) -> None:
    page = signed_in

    def scenario() -> None:
        page.open("functions")
        page.wait_text("#functions-table", "dice", "sleepy")
        page.wait_text("#runtimes-table", "faas-python")
        page.screenshot("functions")
        page.find("#functions-table a[href='#/functions/dice']").click()
        page.wait_text("#function", "py", "kept: 1")
        params = page.find("#invoke-params")
        params.clear()
        params.send_keys('{"roll": "4d6"}')
        page.find("#invoke-button").click()
        page.wait_text("#invoke-status", "DONE", timeout=120)
        result = json.loads(page.wait_text("#invoke-result pre", "["))
        assert len(result) == 4 and all(1 <= r <= 6 for r in result), result
        # The function's output (dice prints its params to stderr).
        page.wait_text("#invoke-logs", "rolling", "4d6")
        page.screenshot("invoke")

    await asyncio.to_thread(scenario)
    async with session(platform) as http:
        calls = await poll_json(http, "/v1/calls?function=dice", lambda s, b: s == 200 and b["items"])
    assert calls["items"][0]["status"] == "DONE"

    def the_call_listed_and_shown() -> None:
        page.open("calls")
        page.wait_text("#calls-table", "dice", "DONE")
        page.find("#filter-status").send_keys("DONE")
        page.find("#filter-function").send_keys("dice")
        page.find("#calls-filter button").click()
        page.wait_text("#calls-table", "dice")
        page.screenshot("calls")
        page.find(f"#calls-table a[href='#/calls/{calls['items'][0]['id']}']").click()
        page.wait_text("#call", "DONE", "dice")
        page.wait_text("#call-logs", "rolling")
        assert not page.find("#cancel-call").is_displayed()  # it has ended
        page.screenshot("call")

    await asyncio.to_thread(the_call_listed_and_shown)


async def test_follow_a_jobs_output_live(signed_in: Page) -> None:
    page = signed_in

    def scenario() -> None:
        page.open("jobs")
        page.find("#job-name").clear()
        page.find("#job-name").send_keys("ticks")
        page.find("#job-image").send_keys("faas-python")
        page.find("#job-command").send_keys(json.dumps(TICKS))
        page.find("#job-submit").click()
        page.wait(lambda: "#/jobs/j" in page.driver.current_url)
        # The first lines show while the job still runs: they came live.
        page.wait_text("#job-logs", "tick 2", timeout=120)
        assert "tick 8" not in page.text("#job-logs")
        page.screenshot("job")
        page.wait_text("#job", "FINISHED")
        page.wait_text("#job-logs", "tick 1", "tick 8")
        assert not page.find("#cancel-job").is_displayed()
        page.open("jobs")
        page.wait_text("#jobs-table", "ticks", "FINISHED")
        page.screenshot("jobs")

    await asyncio.to_thread(scenario)


async def test_tokens_and_docs(signed_in: Page) -> None:
    page = signed_in

    def scenario() -> None:
        page.open("tokens")
        page.wait_text("#tokens-table", "admin")
        page.find("#token-name").send_keys("ci")
        page.find("#token-role").send_keys("read")
        page.find("#token-form button").click()
        issued = page.wait_text("#token-issued", "faas_")
        assert "shown this once" in issued
        page.wait_text("#tokens-table", "ci", "read")
        # Not even a throwaway platform's token in a picture of the docs.
        page.driver.execute_script("document.querySelector('.token-once').textContent = 'faas_' + '•'.repeat(43)")
        page.screenshot("tokens")
        page.driver.get(f"{page.base}/docs")
        page.wait_text("#swagger-ui", "/v1/stats", "/v1/functions/{name}/invoke")
        page.screenshot("docs")

    await asyncio.to_thread(scenario)


async def test_cancel_a_running_call(signed_in: Page, platform: Platform) -> None:
    page = signed_in
    async with session(platform) as http:
        async with http.post("/v1/functions/sleepy/invoke?async=true", json={}) as r:
            assert r.status == 202, await r.text()
            call_id = (await r.json())["id"]

    def scenario() -> None:
        page.open(f"calls/{call_id}")
        page.wait_text("#call", "RUNNING", timeout=120)
        page.wait_text("#call-logs", "sleeping")
        page.find("#cancel-call").click()
        page.wait_text("#call", "CANCELLED")
        assert not page.find("#cancel-call").is_displayed()

    await asyncio.to_thread(scenario)


async def test_the_overview_charts_the_calls_and_lists_the_errors(signed_in: Page, platform: Platform) -> None:
    page = signed_in
    async with session(platform) as http:
        for params in ({"roll": "2d6"}, {"roll": "3d6"}, {"roll": "4d6"}, {"roll": "not dice"}):
            async with http.post("/v1/functions/dice/invoke", json=params) as r:
                assert r.status == 200, await r.text()
                last = await r.json()
    assert last["status"] == "ERROR", last  # "not dice" does not split on "d"

    def scenario() -> None:
        page.open("overview")
        page.wait_text("#errors-table", "dice", "ERROR", f"#{last['number']}")
        page.wait(lambda: page.text("#fig-rate b") not in ("", "0.00") and page.text("#fig-failed b") != "0")
        assert page.text("#fig-p50 b").endswith("ms") or page.text("#fig-p50 b").endswith(" s")
        page.screenshot("overview")
        page.find(f"#errors-table a[href='#/calls/{last['id']}']").click()
        page.wait_text("#call-outcome", "Error", "ValueError")

    await asyncio.to_thread(scenario)
