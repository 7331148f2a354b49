"""End-to-end: jobs write metrics to ``$DSTACK_METRICS``, `dstack metrics` shows them, on both
stores (the ``dstack`` fixture of ``tests/e2e/conftest.py``): from bash and Python, live while
the job runs, across attempts, with bad lines skipped and secrets masked."""

from __future__ import annotations

import json
import secrets as random_secrets
from pathlib import Path

import pytest

from dstack import state
from tests.e2e.cli import FINISHED, Dstack, wait_for
from tests.e2e.conftest import Store
from tests.e2e.test_secrets import objects_holding

WORKFLOWS = """\
workflows:
  - name: bash-metrics
    provider: bash
    commands:
      - bash metrics.sh
  - name: py-metrics
    provider: python
    file: train.py
  - name: live
    provider: bash
    commands:
      - bash live.sh ${{ run.args }}
  - name: bad-lines
    provider: bash
    commands:
      - bash bad.sh
  - name: flaky
    provider: bash
    commands:
      - bash flaky.sh
  - name: secret
    provider: bash
    commands:
      - bash secret.sh
  - name: quiet
    provider: bash
    commands:
      - echo no metrics here
"""

METRICS_SH = """\
for i in 1 2 3; do
  echo "{\\"step\\": $i, \\"loss\\": 0.$((9 - i)), \\"accuracy\\": 0.$((5 + i))}" >> "$DSTACK_METRICS"
done
"""

TRAIN_PY = """\
import json, os

with open(os.environ["DSTACK_METRICS"], "a") as metrics:
    for epoch in range(1, 5):
        metrics.write(json.dumps({"step": epoch, "loss": 1 / epoch}) + "\\n")
print("trained")
"""

# Writes one point, then waits (at most five minutes) for the file the test creates.
LIVE_SH = """\
echo '{"step": 1, "loss": 0.9}' >> "$DSTACK_METRICS"
for i in $(seq 1 6000); do if [ -e "$1" ]; then break; fi; sleep 0.05; done
echo '{"step": 2, "loss": 0.5}' >> "$DSTACK_METRICS"
"""

BAD_SH = """\
echo '{"step": 1, "loss": 0.9}' >> "$DSTACK_METRICS"
echo 'loss is 0.8' >> "$DSTACK_METRICS"
echo '{"step": 2, "loss": "high"}' >> "$DSTACK_METRICS"
head -c 10000000 /dev/zero | tr '\\0' 'x' >> "$DSTACK_METRICS"
echo >> "$DSTACK_METRICS"
echo '{"step": 3, "loss": 0.7}' >> "$DSTACK_METRICS"
echo finished
"""

FLAKY_SH = """\
echo "{\\"step\\": $DSTACK_ATTEMPT, \\"loss\\": 0.$((9 - DSTACK_ATTEMPT))}" >> "$DSTACK_METRICS"
if [ "$DSTACK_ATTEMPT" = 1 ]; then exit 3; fi
"""

SECRET_SH = """\
echo "{\\"loss_$API_KEY\\": 0.5}" >> "$DSTACK_METRICS"
"""


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory(
        {
            ".dstack/workflows.yaml": WORKFLOWS,
            "metrics.sh": METRICS_SH,
            "train.py": TRAIN_PY,
            "live.sh": LIVE_SH,
            "bad.sh": BAD_SH,
            "flaky.sh": FLAKY_SH,
            "secret.sh": SECRET_SH,
        }
    )


REPO_ID = "github.com/acme/mnist"


def last_run(dstack: Dstack, repo: Path) -> str:
    return json.loads(dstack("ps", "-a", "--json", cwd=repo).out)[0]["run"]


def points(dstack: Dstack, repo: Path, run: str) -> list[dict]:
    result = dstack("metrics", run, "--json", cwd=repo)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_bash_and_python_jobs_write_metrics_that_dstack_metrics_shows(
    dstack: Dstack, repo: Path
) -> None:
    ran = dstack("run", "bash-metrics", cwd=repo)
    assert ran.code == 0, ran.err
    assert "warning" not in ran.out
    run = last_run(dstack, repo)
    table = dstack("metrics", run, cwd=repo)
    assert table.code == 0, table.err
    assert table.out.splitlines() == [
        "METRIC    STEP  VALUE  POINTS",
        "accuracy  3     0.8    3",
        "loss      3     0.6    3",
    ]
    every = points(dstack, repo, run)
    assert [(p["job"], p["attempt"], p["step"]) for p in every] == [(0, 1, 1), (0, 1, 2), (0, 1, 3)]
    assert every[0]["values"] == {"loss": 0.8, "accuracy": 0.6}
    assert every[0]["at"].endswith("+00:00")

    ran = dstack("run", "py-metrics", cwd=repo)
    assert ran.code == 0, ran.err
    run = last_run(dstack, repo)
    assert [(p["step"], p["values"]) for p in points(dstack, repo, run)] == [
        (1, {"loss": 1.0}),
        (2, {"loss": 0.5}),
        (3, {"loss": 1 / 3}),
        (4, {"loss": 0.25}),
    ]
    assert "loss    4     0.25   4" in dstack("metrics", run, cwd=repo).out


def test_points_are_visible_while_the_job_still_runs(
    dstack: Dstack, repo: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    run = dstack.run_detached("live", str(go), cwd=repo)
    try:
        wait_for(lambda: len(points(dstack, repo, run)) == 1, timeout=120, what="the first point")
        assert dstack.peek_status(run, repo) == "running"  # the job waits for `go`
        shown = dstack("metrics", run, cwd=repo)
        assert "loss    1     0.9    1" in shown.out
    finally:
        go.touch()
    dstack.wait_status(run, repo, lambda s: s in FINISHED)
    assert [p["step"] for p in points(dstack, repo, run)] == [1, 2]


def test_bad_lines_are_skipped_with_one_warning_and_the_run_succeeds(
    dstack: Dstack, repo: Path
) -> None:
    ran = dstack("run", "bad-lines", cwd=repo)
    assert ran.code == 0, ran.err
    warnings = [line for line in ran.out.splitlines() if "warning" in line]
    assert warnings == [
        "[dstack] warning: metrics: skipped 3 line(s) of $DSTACK_METRICS that are not metric "
        "points; the first, line 2: not JSON"
    ]
    assert "finished" in ran.job_lines
    run = last_run(dstack, repo)
    assert dstack.ps_json(run, repo)["status"] == "done"
    assert [p["step"] for p in points(dstack, repo, run)] == [1, 3]
    logs = dstack("logs", run, cwd=repo)
    assert logs.out.count("[dstack] warning: metrics:") == 1


def test_a_retried_job_continues_the_series(dstack: Dstack, repo: Path) -> None:
    ran = dstack("run", "--retry", "error:1", "flaky", cwd=repo)
    assert ran.code == 0, ran.err
    run = last_run(dstack, repo)
    every = points(dstack, repo, run)
    assert [(p["attempt"], p["step"], p["values"]) for p in every] == [
        (1, 1, {"loss": 0.8}),
        (2, 2, {"loss": 0.7}),
    ]
    assert "loss    2     0.7    2" in dstack("metrics", run, cwd=repo).out


def test_a_secret_in_a_metric_name_is_masked(dstack: Dstack, repo: Path, store: Store) -> None:
    value = "tk-" + random_secrets.token_hex(12)
    assert dstack("secrets", "add", "API_KEY", value, cwd=repo).code == 0
    ran = dstack("run", "secret", cwd=repo)
    assert ran.code == 0, ran.err
    run = last_run(dstack, repo)
    assert [p["values"] for p in points(dstack, repo, run)] == [{"loss_***": 0.5}]
    assert "loss_***" in dstack("metrics", run, cwd=repo).out
    assert objects_holding(dstack, store, value.encode()) == [state.secret_key(REPO_ID, "API_KEY")]


def test_no_metrics_and_an_unknown_run_are_said_plainly(dstack: Dstack, repo: Path) -> None:
    assert dstack("run", "quiet", cwd=repo).code == 0
    run = last_run(dstack, repo)
    empty = dstack("metrics", run, cwd=repo)
    assert empty.code == 0 and empty.out == ""
    assert empty.err.startswith(f"Run {run} wrote no metrics: ")  # it is done: not "yet"
    assert json.loads(dstack("metrics", run, "--json", cwd=repo).out) == []
    unknown = dstack("metrics", "no-such-run", cwd=repo)
    assert unknown.code == 1
    assert unknown.err.splitlines() == [
        f"Error: no run named 'no-such-run' in {REPO_ID}; see `dstack ps -a`"
    ]
    typo = run.replace("-", "_", 1)  # a name one keystroke off
    for command in ("metrics", "logs", "ps"):
        mistyped = dstack(command, typo, cwd=repo)
        assert mistyped.code == 1
        assert mistyped.err.splitlines() == [
            f"Error: no run named {typo!r} in {REPO_ID}; see `dstack ps -a`; did you mean {run}?"
        ], command
