"""The dashboard shows what runs spent: a Cost column in the runs table (``-`` for a local run,
``+`` while a cloud run runs) and the cost on a run's page, from the same records as `ps`."""

from __future__ import annotations

import re
import time

import pytest

from tests.cloud_spend_records import HOUR, REPO, cloud_run, ran
from tests.dashboard.conftest import Served
from tests.e2e.conftest import Store

local_only = pytest.mark.parametrize("store", ["local"], indirect=True)


def cost_cells(text: str) -> dict[str, str]:
    rows = re.findall(r'<tr data-run="([^"]+)">(.*?)</tr>', text, re.S)
    found = {}
    for name, row in rows:
        cell = re.search(r'<td class="cost"[^>]*>([^<]*)</td>', row)
        assert cell is not None, row
        found[name] = cell.group(1)
    return found


@local_only
def test_runs_table_and_run_page_show_the_cost(served: Served, store: Store) -> None:
    storage = store.storage()
    now = time.time()
    _, spec = cloud_run(storage, "done-run-1", submitted_at=now - 3 * HOUR, price=3.06)
    ran(storage, spec, now - 3 * HOUR, now - HOUR)
    _, spec = cloud_run(storage, "live-run-1", submitted_at=now - HOUR, price=1.0)
    ran(storage, spec, now - HOUR, None)
    _, spec = cloud_run(storage, "here-run-1", submitted_at=now - HOUR / 2, compute="local")
    ran(storage, spec, now - HOUR / 2, now - HOUR / 4)

    page = served.get("/runs", repo=REPO.repo_id)
    assert page.status == 200 and "<th>Cost</th>" in page.text
    cells = cost_cells(page.text)
    assert cells["done-run-1"] == "$6.12" and cells["here-run-1"] == "-"
    assert re.fullmatch(r"\$1\.0\d\+", cells["live-run-1"])  # an hour so far, still counting

    detail = served.get("/run", repo=REPO.repo_id, run="done-run-1")
    cost = re.search(r'id="run-cost">(.*?)</dd>', detail.text, re.S)
    assert cost is not None and cost.group(1).startswith("$6.12 ")
    assert "until its stack is destroyed" in cost.group(1)
    local = served.get("/run", repo=REPO.repo_id, run="here-run-1")
    assert re.search(r'id="run-cost">- <span class="muted">\(it ran on this machine\)', local.text)
