"""The web dashboard in a real headless browser (Debian's chromium through chromedriver) against a
real local daemon: sign in with the token, see a job and its live log grow, cancel it, follow an
array's progress; the session cookie's flags, the token in no URL, hostile output shown as text.

`make test` installs chromium (`make browser`); without it this module skips, saying so, except
under CI, where it fails. With HYPERBATCH_SCREENSHOT set, the array's page is saved there as PNG.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_dashboard")]

HOSTILE = '<script>document.title="pwned"</script><img src=x alt="pwned" onerror="document.title=this.alt">'


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser():
    paths = _browser_paths()
    if paths is None:
        message = "no chromium and chromedriver on PATH: `make browser` (as root) installs them"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the dashboard's browser test")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1500", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request's URL
    driver = webdriver.Chrome(options=options, service=Service(paths[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _requested_urls(driver) -> list[str]:
    """Every URL the browser has requested since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _text(driver, css: str) -> str:
    """The text of the first element `css` selects; "" while there is none (or the page is reloading)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def _sign_in(driver, token: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    field.submit()


def test_sign_in_see_a_job_follow_its_log_and_cancel_it(hb, browser):
    from selenium.webdriver.common.by import By

    urls: list[str] = []
    browser.get(hb.url + "/ui/jobs")
    assert browser.find_element(By.ID, "token")  # not signed in: the sign-in form, not the jobs
    _sign_in(browser, "not-the-token")
    assert "not this daemon's" in _text(browser, ".error")
    assert not browser.get_cookies()

    _sign_in(browser, hb.token)
    wait_for(lambda: "Queues" in _text(browser, "h1"), what="the queues page after signing in")
    assert "batch" in _text(browser, "main table")
    (cookie,) = browser.get_cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == ("hyper_session", True, "Strict", "/")
    assert hb.token not in cookie["value"]
    browser.get(hb.url + "/swagger")  # the API's own pages take the session too
    wait_for(lambda: "HyperBatch" in _text(browser, ".swagger-ui .info .title"), what="the Swagger UI")

    job = hb.submit("-N", "ticker", "--", "sh", "-c",
                    f"echo '{HOSTILE}'; i=0; while [ $i -lt 900 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done")
    seq = job.split(".")[0]
    hb.wait_state(job, "RUNNING")
    browser.get(hb.url + "/ui/jobs?state=RUNNING")
    browser.find_element(By.LINK_TEXT, job).click()
    wait_for(lambda: "tick 3" in _text(browser, "#log"), what="the live log")
    first = _text(browser, "#log")
    wait_for(lambda: len(_text(browser, "#log")) > len(first) + 20, what="the live log to grow")

    # The job's output and its command are shown as text: nothing it printed became an element.
    assert _text(browser, "#log").startswith(HOSTILE)
    assert "<script>document.title=" in _text(browser, "table.attributes")  # in the command, JSON-quoted
    assert browser.find_elements(By.CSS_SELECTOR, "#log *, main script, main img") == []
    assert "pwned" not in browser.title

    browser.find_element(By.XPATH, "//button[starts-with(., 'Cancel')]").click()
    alert = browser.switch_to.alert
    assert alert.text == f"Cancel {job}?"
    alert.accept()
    wait_for(lambda: _text(browser, "[data-live-state]") == "CANCELLED", what="the page to show CANCELLED")
    assert hb.job(job)["state"] == "CANCELLED"  # in the store, as qstat reads it
    wait_for(lambda: _text(browser, "button[data-method=DELETE][disabled]") == "Cancel (qdel)",
             what="the cancel button to be disabled")

    urls += _requested_urls(browser)
    assert any(f"/jobs/{seq}/log?" in u for u in urls) and any(u.endswith(f"/ui/jobs/{seq}") or f"/ui/jobs/{job}" in u
                                                               for u in urls)
    assert [u for u in urls if hb.token in u] == []


def test_an_arrays_page_shows_its_progress_and_a_tasks_live_log(hb, browser):
    from selenium.webdriver.common.by import By

    if not browser.get_cookies():  # run alone: sign in first
        browser.get(hb.url + "/")
        _sign_in(browser, hb.token)
        wait_for(lambda: "Queues" in _text(browser, "h1"), what="the queues page after signing in")
    array = hb.submit("-N", "render", "-J", "1-12", "--", "sh", "-c",
                      'echo "frame $PBS_ARRAY_INDEX: start"; for s in 1 2 3 4 5 6; do echo "frame $PBS_ARRAY_INDEX: '
                      'pass $s of 6"; sleep 0.5; done; [ "$PBS_ARRAY_INDEX" != 5 ]')
    seq = array.split("[")[0]

    def some_done() -> bool:
        counts = hb.job(array)["array"]
        return counts["succeeded"] + counts["failed"] >= 2 and counts["running"] >= 1

    wait_for(some_done, timeout=60, what="two tasks done and one running")
    browser.get(f"{hb.url}/ui/jobs/{seq}%5B%5D")
    wait_for(lambda: "pass" in _text(browser, "#log"), what="a running task's live log")
    bar = browser.find_element(By.CSS_SELECTOR, ".progress")
    total, done = int(bar.get_attribute("aria-valuemax")), int(bar.get_attribute("aria-valuenow"))
    assert total == 12 and 2 <= done <= 12
    assert "succeeded" in bar.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.tasks tbody tr")) == 12
    assert "batch" in _text(browser, ".strip")  # the queues' load above the page

    target = os.environ.get("HYPERBATCH_SCREENSHOT")
    if target:
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1200, min(max(height + 120, 900), 1600))
        Path(target).write_bytes(browser.get_screenshot_as_png())
    hb.wait_state(array, ("SUCCEEDED", "FAILED"), timeout=60)

    browser.find_element(By.XPATH, "//button[.='Sign out']").click()
    wait_for(lambda: browser.find_elements(By.ID, "token"), what="the sign-in form after signing out")
    assert browser.get_cookies() == []
    browser.get(f"{hb.url}/ui/jobs/{seq}%5B%5D")
    assert browser.find_elements(By.ID, "token") and "render" not in browser.page_source


def _request(hb, method: str, path: str, headers: dict, body: str | None = None) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection("127.0.0.1", hb.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode()
    finally:
        conn.close()


def test_the_session_cookie_acts_only_from_the_dashboards_own_origin(hb):
    origin = f"http://127.0.0.1:{hb.port}"
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}
    status, headers, _ = _request(hb, "POST", "/ui/signin", form, f"token={hb.token}")
    assert status == 303 and headers["location"] == "/"
    assert headers["set-cookie"].startswith("hyper_session=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in headers["set-cookie"].split(";")}
    cookie = {"Cookie": headers["set-cookie"].split(";")[0]}

    job = hb.submit("-h", "--", "true")
    seq = job.split(".")[0]
    # SameSite=Strict keeps other sites' pages from sending the cookie; should one arrive all the same, a
    # change that names another origin, or none, is refused and changes nothing.
    for bad in ({"Origin": "http://evil.example"}, {}):
        status, _, body = _request(hb, "DELETE", f"/jobs/{seq}", cookie | bad)
        assert (status, json.loads(body)["message"]) == (401, "missing or invalid credentials")
    assert hb.job(job)["state"] == "HELD"
    status, _, _ = _request(hb, "GET", f"/jobs/{seq}", cookie)  # reads need no Origin
    assert status == 200
    status, _, _ = _request(hb, "DELETE", f"/jobs/{seq}", cookie | {"Origin": origin})
    assert status == 200 and hb.job(job)["state"] == "CANCELLED"

    # A sign-in form posted from elsewhere is refused; signing out ends the session.
    status, _, page = _request(hb, "POST", "/ui/signin", form | {"Origin": "http://evil.example"}, f"token={hb.token}")
    assert status == 403 and "another site" in page
    status, headers, _ = _request(hb, "POST", "/ui/signout", cookie | {"Origin": origin})
    assert status == 303 and "Max-Age=0" in headers["set-cookie"]
    status, _, page = _request(hb, "GET", "/", cookie)
    assert status == 401 and 'name="token"' in page


def test_hyper_dashboard_prints_the_local_dashboards_url(hb):
    shown = hb.run("hyper", "dashboard", "--no-browser")
    assert f"{hb.url}/ " in shown.stdout and hb.token not in shown.stdout
    wrong = hb.run("hyper", "dashboard", "--no-browser", "--host", "nowhere", check=False)
    assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1 and "nowhere" in wrong.stderr
