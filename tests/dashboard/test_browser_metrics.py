"""Metrics and Restart in a real headless browser (Debian's Chromium, as ``test_browser``):
the run page's chart growing while the run writes points, the compare view overlaying two
runs picked in the runs table, the metric column, and the Restart button starting a run.

With ``DSTACK_METRICS_SHOT`` set to a path, the charts of the quick start's ``train`` run are
saved there as a PNG (``scripts/metrics-shot`` makes the documentation's picture this way).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.dashboard.conftest import Served, pipeline_repo
from tests.dashboard.test_browser import CHROMIUM, DRIVER, browser, shot, wait_for  # noqa: F401
from tests.e2e.cli import FINISHED, Dstack

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not DRIVER.exists(), reason="no chromedriver at /usr/bin/chromedriver"),
    pytest.mark.parametrize("store", ["local"], indirect=True),
]

REPO = "github.com/acme/mnist"
TRAIN = """\
import json, math, os, pathlib, sys, time

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
lr, steps, hold = float(args.get("--lr", 0.3)), int(args.get("--steps", 40)), args.get("--hold")
for step in range(1, steps + 1):
    if hold and step == 3:  # wait (at most a minute) until the test lets the run go on
        deadline = time.monotonic() + 60
        while not pathlib.Path(hold).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    loss = 2.3 * math.exp(-step * lr / 8) + 0.05 * math.sin(step) + 0.1
    accuracy = 0.95 - 0.85 * math.exp(-step * lr / 6)
    with open(os.environ["DSTACK_METRICS"], "a") as out:
        out.write(json.dumps({"step": step, "loss": loss, "accuracy": accuracy}) + "\\n")
    print(f"step {step}: loss {loss:.3f}", flush=True)
    time.sleep(0.02)
"""
WORKFLOWS = """
workflows:
  - name: train
    provider: python
    file: train.py
"""


def _points(driver, metric: str) -> int:  # type: ignore[no-untyped-def]
    return int(
        driver.execute_script(
            "const svg = document.querySelector(`svg.chart[data-metric='${arguments[0]}']`);"
            "return svg ? svg.dataset.points : 0;",
            metric,
        )
    )


def test_charts_compare_and_restart_in_the_browser(
    served: Served,
    dstack: Dstack,
    repo_factory,
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS, "train.py": TRAIN})
    driver = browser
    driver.get(f"{served.url}/?token={served.token}")

    # the chart grows while the run writes: two points, held, then all forty
    release = tmp_path / "release"
    first = dstack.run_detached("train", "--hold", str(release), cwd=repo)
    driver.get(f"{served.url}/run?repo={REPO}&run={first}")
    wait_for(lambda: _points(driver, "loss") == 2, 60, "the first two points")
    assert driver.find_element(By.ID, "run-status").text != "done"
    assert _points(driver, "accuracy") == 2
    release.touch()
    wait_for(lambda: _points(driver, "loss") == 40, 60, "every point, without a reload")
    wait_for(lambda: driver.find_element(By.ID, "run-status").text == "done", 60, "done")
    # the page reloads itself once its run has finished: open it afresh rather than race that
    driver.get(f"{served.url}/run?repo={REPO}&run={first}")
    wait_for(lambda: _points(driver, "loss") == 40, 30, "the finished run's chart")
    loss = driver.find_element(By.CSS_SELECTOR, "svg.chart[data-metric='loss']")
    assert re.fullmatch(
        r"last [\d.]+ at step 40", loss.find_element(By.CLASS_NAME, "chart-last").text
    )
    ticks = loss.find_elements(By.CSS_SELECTOR, "text.tick")
    assert len(ticks) >= 6 and "step" in loss.find_element(By.CLASS_NAME, "axis-label").text
    shot(driver, "run-metrics")

    # two runs picked in the runs table, overlaid; the metric column
    second = dstack.run_detached("train", "--lr", "0.6", "--steps", "30", cwd=repo)
    dstack.wait_status(second, repo, lambda s: s in FINISHED)
    driver.get(f"{served.url}/runs?repo={REPO}")
    wait_for(
        lambda: driver.find_element(By.ID, "metric-column").get_attribute("data-loaded") == "1",
        30,
        "the metric column's choices",
    )
    Select(driver.find_element(By.ID, "metric-column")).select_by_value("loss")
    wait_for(lambda: driver.find_element(By.ID, "metric-heading").text == "loss", 30, "column")
    for run in (first, second):
        driver.find_element(By.CSS_SELECTOR, f'tr[data-run="{run}"] input[name=run]').click()
    driver.find_element(By.ID, "compare-button").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#compare-chart svg.chart"), 30, "chart")
    assert f"run={first}" in driver.current_url and f"run={second}" in driver.current_url
    labels = [
        g.get_attribute("data-label")
        for g in driver.find_elements(By.CSS_SELECTOR, "#compare-chart g.series")
    ]
    assert sorted(labels) == sorted([first, second])
    legend = driver.find_element(By.ID, "compare-chart").text
    assert first in legend and second in legend
    shot(driver, "compare")

    # Restart: confirmed, then the new run's page, which says whose code it runs
    driver.get(f"{served.url}/run?repo={REPO}&run={first}")
    driver.find_element(By.ID, "restart").click()
    alert = driver.switch_to.alert
    assert first in alert.text
    alert.accept()
    wait_for(lambda: f"run={first}" not in driver.current_url, 60, "the new run's page")
    wait_for(
        lambda: (
            f"code of {first}, not your working tree"
            in driver.find_element(By.ID, "restarted-from").text
        ),
        30,
        "the line saying whose code the new run runs",
    )
    new = dict(parse_qsl(urlsplit(driver.current_url).query))["run"]
    assert new != first
    assert dstack.wait_status(new, repo, lambda s: s in FINISHED)["status"] == "done"
    wait_for(lambda: _points(driver, "loss") == 40, 60, "the restarted run's chart")
    shot(driver, "run-restarted")


def test_the_quick_start_train_run_is_charted(
    served: Served,
    dstack: Dstack,
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    """The tutorial's `train.py` writes its loss and accuracy per epoch: `dstack run train
    --epochs 12` after `prepare` shows both, a point an epoch."""
    from selenium.webdriver.common.by import By

    repo = pipeline_repo(tmp_path / "moons")
    for workflow, *args in (("prepare", "-t", "moons-data"), ("train", "--epochs", "12")):
        run = dstack.run_detached(workflow, *args, cwd=repo)
        assert (
            dstack.wait_status(run, repo, lambda s: s in FINISHED, timeout=300)["status"] == "done"
        )
    driver = browser
    driver.get(f"{served.url}/run?repo=github.com/acme/moons&run={run}&token={served.token}")
    for metric in ("loss", "accuracy"):
        wait_for(lambda: _points(driver, metric) == 12, 30, f"12 points of {metric}")  # noqa: B023
    if target := os.environ.get("DSTACK_METRICS_SHOT"):  # the charts alone
        charts = driver.find_element(By.ID, "metrics")
        driver.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -40)", charts)
        driver.execute_script("arguments[0].style.width = 'fit-content'", charts)
        charts.screenshot(target)


SERIES = """
return [...document.querySelectorAll(`svg.chart[data-metric='${arguments[0]}'] g.series`)].map(
  (g) => [g.dataset.label, g.querySelector("polyline").getAttribute("stroke"), g.dataset.points]);
"""


def test_attempts_are_lines_of_their_own_and_time_is_the_x_without_steps(
    served: Served,
    browser,  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    """A resumed job's two attempts (as its runner stores them) are two lines of two colours,
    with a legend; a metric written without ``step`` is drawn by seconds."""
    from selenium.webdriver.common.by import By

    from dstack import state
    from dstack.state import StoredPoint
    from dstack.storage import default_storage
    from tests.dashboard.seed import seed_runs

    storage = default_storage()
    seed_runs(storage, "github.com/acme/seeded", 1)
    spec = state.read_job_spec(storage, "github.com/acme/seeded", "seeded-0", 0)
    at = 1_700_000_000.0
    first = [StoredPoint(at + s, s, {"loss": 1 / s, "lr": 0.1}) for s in range(1, 6)]
    second = [StoredPoint(at + 60 + s, s, {"loss": 0.9 / s}) for s in range(4, 9)]
    timed = [StoredPoint(at + 100 + 2 * s, None, {"gpu_util": 50.0 + s}) for s in range(4)]
    state.write_metric_chunk(storage, spec, 1, 0, first)
    state.write_metric_chunk(storage, spec, 2, 0, second + timed)
    driver = browser
    driver.get(f"{served.url}/run?repo=github.com/acme/seeded&run=seeded-0&token={served.token}")
    wait_for(lambda: _points(driver, "gpu_util") == 4, 30, "the charts")
    lines = driver.execute_script(SERIES, "loss")
    assert [(label, points) for label, _, points in lines] == [
        ("attempt 1", "5"),
        ("attempt 2", "5"),
    ]
    assert lines[0][1] != lines[1][1], "both attempts drawn in one colour"
    legend = driver.find_element(By.CSS_SELECTOR, "svg.chart[data-metric='loss']").text
    assert "attempt 1: 0.2" in legend and "attempt 2: 0.1125" in legend
    gpu = driver.find_element(By.CSS_SELECTOR, "svg.chart[data-metric='gpu_util']")
    assert gpu.find_element(By.CLASS_NAME, "axis-label").text == "seconds"
    assert "last 53 at 105 s" in gpu.text  # seconds since the run's first point
