"""End to end in a real headless browser: Debian's Chromium driven by Selenium.

The runs page of the README's pipeline, a live log followed to its last line, an artifact
downloaded and compared byte for byte, a run stopped through its confirmation, the lineage
picture, and a cloud run's infrastructure page (its plan: the golden offline plan, recorded
for a local run as a stand-in for one that ran on AWS). A screenshot of every page is kept
under ``out/screenshots/`` (ignored by git). Skipped when Chromium or its driver is absent.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.conftest import ROOT, Served, pipeline_repo, run_pipeline
from tests.e2e.cli import FINISHED, Dstack

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = ROOT / "out" / "screenshots"
REPO_ID = "github.com/acme/moons"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not DRIVER.exists(), reason="no chromedriver at /usr/bin/chromedriver"),
    pytest.mark.parametrize("store", ["local"], indirect=True),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

EXTRA = """
  - name: ticking
    help: Prints a numbered line every 0.4 s, then a last one.
    commands:
      - for i in $(seq 1 12); do echo "tick $i"; sleep 0.4; done
      - echo "the very last line"
  - name: forever
    commands:
      - echo waiting
      - for i in $(seq 1 1200); do sleep 0.1; done
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="dstack-chromium-")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": 1400, "height": min(max(height, 600), 3000), "deviceScaleFactor": 1,
               "mobile": False}  # fmt: skip
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the whole page
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def wait_for(predicate, timeout: float = 30, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_pipeline_in_the_browser(
    served: Served, dstack: Dstack, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    repo = pipeline_repo(tmp_path / "moons")
    (repo / ".dstack" / "workflows.yaml").write_text(
        (repo / ".dstack" / "workflows.yaml").read_text() + EXTRA
    )
    names = run_pipeline(dstack, repo)
    driver = browser

    # the printed URL: token in the address, then a cookie
    driver.get(f"{served.url}/?token={served.token}")
    assert "token=" not in driver.current_url
    assert REPO_ID in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "repos")

    # the runs page: the pipeline's three runs, newest first, the tag on prepare
    driver.find_element(By.LINK_TEXT, REPO_ID).click()
    rows = driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    assert [r.get_attribute("data-run") for r in rows] == [
        names["evaluate"],
        names["train"],
        names["prepare"],
    ]
    assert "moons-data" in rows[2].text and "done" in rows[2].text
    shot(driver, "runs")

    # a live log: a new run, followed until its last line
    ticking = dstack.run_detached("ticking", cwd=repo)
    driver.get(f"{served.url}/run?repo={REPO_ID}&run={ticking}")
    log = driver.find_element(By.ID, "log-0")
    wait_for(lambda: "tick 3" in log.text, 60, "the first lines")
    assert "the very last line" not in log.text  # seen while it runs, not after
    wait_for(
        lambda: "the very last line" in driver.find_element(By.ID, "log-0").text,
        60,
        "the last line",
    )
    text = driver.find_element(By.ID, "log-0").text
    assert [f"tick {i}" in text for i in range(1, 13)] == [True] * 12
    wait_for(lambda: driver.find_element(By.ID, "run-status").text == "done", 30, "done")
    shot(driver, "run-log")

    # download the train run's checkpoint and compare its bytes with the store's
    driver.get(f"{served.url}/run?repo={REPO_ID}&run={names['train']}")
    link = driver.find_element(By.CSS_SELECTOR, "li.file a")
    path = link.get_attribute("data-path")
    shot(driver, "run-artifacts")
    link.click()
    target = driver.downloads / path.rsplit("/", 1)[-1]
    wait_for(target.exists, 30, "the download")
    from dstack.storage import default_storage

    key = f"repos/{REPO_ID}/runs/{names['train']}/jobs/0/artifacts/{path}"
    wait_for(lambda: target.read_bytes() == default_storage().get(key), 10, "the whole file")

    # the lineage picture: nodes of the three runs and the tag; a node opens its run
    driver.get(f"{served.url}/lineage")
    nodes = {
        a.get_attribute("data-node") for a in driver.find_elements(By.CSS_SELECTOR, "svg a.node")
    }
    assert {f"run:{REPO_ID}:{n}" for n in names.values()} | {f"tag:{REPO_ID}:moons-data"} <= nodes
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg path.edge")) >= 4
    shot(driver, "lineage")
    driver.find_element(
        By.CSS_SELECTOR, f'svg a[data-node="run:{REPO_ID}:{names["train"]}"]'
    ).click()
    wait_for(lambda: names["train"] in driver.find_element(By.TAG_NAME, "h1").text, 10, "the run")

    # the runs table follows a run that changes while it is open (no reload of the page)
    watched = dstack.run_detached("forever", cwd=repo)
    dstack.wait_status(watched, repo, lambda s: s == "running")
    driver.get(f"{served.url}/runs?repo={REPO_ID}")
    row = f'#runs-table tr[data-run="{watched}"]'
    assert "running" in driver.find_element(By.CSS_SELECTOR, row).text
    driver.execute_script("window.stillTheSamePage = true")
    assert dstack("stop", watched, "-y", cwd=repo).code == 0  # from a terminal elsewhere
    wait_for(lambda: "stopped" in driver.find_element(By.CSS_SELECTOR, row).text, 30, "stopped")
    assert driver.execute_script("return window.stillTheSamePage") is True

    # stop a run: the confirmation is asked, and the run ends stopped
    forever = dstack.run_detached("forever", cwd=repo)
    dstack.wait_status(forever, repo, lambda s: s == "running")
    driver.get(f"{served.url}/run?repo={REPO_ID}&run={forever}")
    wait_for(lambda: "waiting" in driver.find_element(By.ID, "log-0").text, 30, "its output")
    driver.find_element(By.ID, "stop").click()
    alert = driver.switch_to.alert
    assert forever in alert.text
    alert.accept()
    row = dstack.wait_status(forever, repo, lambda s: s in FINISHED, timeout=60)
    assert row["status"] == "stopped"
    wait_for(
        lambda: driver.find_element(By.ID, "run-status").text == "stopped", 30, "stopped shown"
    )
    shot(driver, "run-stopped")


def test_infra_page(served: Served, dstack: Dstack, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    """The plan recorded for a cloud run, as a table (the record written here stands in for
    the one an AWS run's compute writes before it creates anything)."""
    from selenium.webdriver.common.by import By

    from dstack import state
    from dstack.models import InfraRecord
    from dstack.storage import default_storage

    repo = pipeline_repo(tmp_path / "moons")
    run = dstack.run_detached("prepare", cwd=repo)
    dstack.wait_status(run, repo, lambda s: s in FINISHED, timeout=300)
    plan = json.loads((ROOT / "tests" / "golden" / "plan_train.json").read_text())
    storage = default_storage()
    for kind, extra in (("plan", {"resources": plan["resources"], "summary": {"create": 6}}),
                        ("up", {"outputs": {"instance_ids": ["i-0abc123"], "security_group": "sg-0def"}}),
                        ("destroy", {"summary": {"delete": 6}})):  # fmt: skip
        record = InfraRecord(kind=kind, stack=run, backend_url=plan["backend_url"], at=time.time(),
                             by="ada@laptop", **extra)  # fmt: skip
        state.write_infra_record(storage, REPO_ID, run, record)
    driver = browser
    driver.get(f"{served.url}/infra?repo={REPO_ID}&run={run}&token={served.token}")
    table = driver.find_element(By.CSS_SELECTOR, "table.plan").text
    assert "g5.xlarge" in table and "spot" in table and "required" in table
    assert "aws:ec2/securityGroup:SecurityGroup" in table
    assert "i-0abc123" in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "infra")


LAYOUT_PROBLEMS = """
const problems = [];
const boxes = [...document.querySelectorAll("svg#lineage a.node")].map((node) => {
  const rect = node.querySelector("rect.box");
  const box = { id: node.dataset.node, x: rect.x.baseVal.value, y: rect.y.baseVal.value,
                w: rect.width.baseVal.value, h: rect.height.baseVal.value };
  for (const text of node.querySelectorAll("text")) {
    const right = text.x.baseVal[0].value + text.getComputedTextLength();
    if (right > box.x + box.w - 4) problems.push(`text overflows ${box.id}: ${text.textContent}`);
  }
  return box;
});
for (const path of document.querySelectorAll("svg#lineage path.edge")) {
  const length = path.getTotalLength();
  for (let at = 3; at < length - 3; at += 2) {
    const p = path.getPointAtLength(at);
    const hit = boxes.find((b) => p.x > b.x + 1 && p.x < b.x + b.w - 1 && p.y > b.y + 1 && p.y < b.y + b.h - 1);
    if (hit) { problems.push(`an edge crosses ${hit.id} at ${p.x},${p.y}`); break; }
  }
}
return problems;
"""


def test_lineage_of_several_repos_is_legible(served: Served, browser) -> None:  # type: ignore[no-untyped-def]
    """Three repos' runs and tags: no edge crosses a box, no text leaves its box, counts are
    in the singular when they are one, and each box names its repo in full (``local/main``
    is said to be a repo)."""
    from selenium.webdriver.common.by import By

    from dstack.storage import default_storage
    from tests.dashboard.seed import seed_lineage

    made = seed_lineage(default_storage())
    driver = browser
    driver.get(f"{served.url}/lineage?token={served.token}")
    driver.execute_script("document.querySelector('main').style.maxWidth = 'none'")
    shot(driver, "lineage-repos")
    assert driver.execute_script(LAYOUT_PROBLEMS) == []
    svg = driver.find_element(By.ID, "lineage").text
    assert "1 file" in svg and "1 files" not in svg
    serve = driver.find_element(By.CSS_SELECTOR, f'a[data-node="run:local/main:{made["serve"]}"]')
    assert "repo local/main" in serve.text
    assert "local/main" in driver.find_element(By.ID, "repos").text


def test_the_login_file_signs_the_browser_in(dstack_home: Path, store, browser) -> None:  # type: ignore[no-untyped-def]
    """What `dstack dashboard` opens: its login file, in a real browser, lands on the repos
    page signed in (the SameSite cookie set by a post from a file), the token never in the
    address bar."""
    import os
    import subprocess
    import sys

    from selenium.webdriver.common.by import By

    env = {**os.environ, "DSTACK_HOME": str(dstack_home), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dstack", "dashboard", "--port", "0", "--no-browser"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        token = url.split("?token=", 1)[1]
        said = ""
        while "file://" not in said:  # the lines before "Press Ctrl+C to stop" name it
            said = proc.stderr.readline()  # type: ignore[union-attr]
            assert said and "Ctrl+C" not in said, "no login file was printed"
        login = "file://" + said.split("file://", 1)[1].split()[0]
        browser.get(login)
        wait_for(lambda: browser.find_element(By.TAG_NAME, "h1").text == "Repos", 30, "the repos")
        assert browser.current_url.startswith(url.split("?")[0])
        assert token not in browser.current_url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
