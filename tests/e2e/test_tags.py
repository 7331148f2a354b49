"""End-to-end: tags and deps through the `dstack` CLI, on both stores (``store`` fixture).

Pipelines of workflows, tags made from runs and from uploaded folders, deps on other repos,
`--dep`, and the clear refusals: a missing tag, a tagged run under `rm`, an existing tag.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.cli import FINISHED, Dstack, Result, job_lines

ROOT = Path(__file__).resolve().parents[2]

WORKFLOWS = """\
workflows:
  - name: make
    working_dir: lib
    commands:
      - mkdir -p out && echo "made by $RUN_NAME" > out/made.txt
      - printf '#!/bin/sh\\necho tool ran\\n' > out/tool.sh && chmod +x out/tool.sh
    artifacts:
      - out
  - name: use-made
    deps:
      - tag: made
    commands:
      - cat out/made.txt && ./out/tool.sh
  - name: use-raw
    deps:
      - :raw
    working_dir: sub
    commands:
      - cat raw/a.txt raw/deeper/b.txt && ./raw/run.sh
  - name: use-other-repo
    deps:
      - acme/datasets/mnist
    commands:
      - cat digits/labels.txt
  - name: fail
    commands:
      - exit 4
  - name: slow
    commands:
      - for i in $(seq 1 600); do if [ -e "$RELEASE" ]; then break; fi; sleep 0.05; done
"""


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS, "lib/.keep": "", "sub/.keep": ""})


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    return result


def latest_run(dstack: Dstack, repo: Path) -> str:
    return json.loads(ok(dstack("ps", "-a", "-n", "1", "--json", cwd=repo)).out)[0]["run"]


def tags_json(dstack: Dstack, repo: Path) -> dict[str, dict]:
    return {t["tag"]: t for t in json.loads(ok(dstack("tags", "list", "--json", cwd=repo)).out)}


def run_count(dstack: Dstack, repo: Path) -> int:
    return len(json.loads(ok(dstack("ps", "-a", "--json", cwd=repo)).out))


def test_the_repos_own_three_step_pipeline(dstack: Dstack, repo_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """This repository's `.dstack/workflows.yaml` and tutorial, as the README runs them."""
    files: dict[str, str | bytes] = {
        ".dstack/workflows.yaml": (ROOT / ".dstack/workflows.yaml").read_text()
    }
    for script in ("prepare.py", "train.py", "evaluate.py"):
        files[f"tutorial/{script}"] = (ROOT / "tutorial" / script).read_text()
    repo = repo_factory(files)
    missing = dstack("run", "train", cwd=repo)
    assert missing.code != 0 and "no tag 'moons-data'" in missing.err
    assert "dstack run WORKFLOW -t moons-data" in missing.err

    ok(dstack("run", "prepare", "-t", "moons-data", cwd=repo))
    prepare = latest_run(dstack, repo)
    assert tags_json(dstack, repo)["moons-data"]["run"] == prepare
    trained = ok(dstack("run", "train", cwd=repo))
    assert "no data in data/" not in trained.out  # the tag's data was in place
    assert "epoch 5/5" in trained.out
    train = latest_run(dstack, repo)
    metrics = ok(dstack("metrics", train, cwd=repo)).out.splitlines()  # train.py writes them
    assert [line.split()[:2] + line.split()[3:] for line in metrics] == [
        ["METRIC", "STEP", "POINTS"],
        ["accuracy", "5", "5"],
        ["loss", "5", "5"],
    ]
    evaluated = ok(dstack("run", "evaluate", cwd=repo))
    assert "test accuracy:" in evaluated.out
    evaluate = latest_run(dstack, repo)

    row = dstack.ps_json(evaluate, repo)
    assert [(d["tag"], d["workflow"], d["run"]) for d in row["deps"]] == [
        ("moons-data", "prepare", prepare),
        (None, "train", train),
    ]
    files_out = json.loads(ok(dstack("artifacts", "list", evaluate, "--json", cwd=repo)).out)
    assert [f["path"] for f in files_out] == ["report/metrics.json"]
    text = ok(dstack("ps", evaluate, cwd=repo)).out
    assert f"deps: :moons-data (run {prepare}" in text


def test_run_tag_artifacts_and_the_cache(dstack: Dstack, repo: Path, tmp_path: Path) -> None:
    ok(dstack("run", "make", "-t", "made", cwd=repo))
    maker = latest_run(dstack, repo)
    tag = tags_json(dstack, repo)["made"]
    assert (tag["run"], tag["workflow"], tag["artifacts"], tag["files"]) == (
        maker, "make", ["out"], 2,
    )  # fmt: skip
    listing = ok(dstack("tags", cwd=repo)).out.splitlines()
    assert listing[0].split() == ["TAG", "RUN", "WORKFLOW", "OWNER", "CREATED", "ARTIFACTS"]
    assert listing[1].startswith("made") and maker in listing[1]

    first = ok(dstack("run", "use-made", cwd=repo))
    assert f"made by {maker}" in first.out and "tool ran" in first.out  # executable bit kept
    assert "downloaded 0B" not in first.out
    second = ok(dstack("run", "use-made", cwd=repo))
    assert "downloaded 0B" in second.out  # the machine cache served it

    paths = json.loads(ok(dstack("artifacts", "list", ":made", "--json", cwd=repo)).out)
    assert sorted(f["path"] for f in paths) == ["out/made.txt", "out/tool.sh"]
    target = tmp_path / "download"
    ok(dstack("artifacts", "download", ":made", "-o", str(target), cwd=repo))
    assert (target / "out/made.txt").read_text() == f"made by {maker}\n"


def test_a_tag_from_uploaded_folders(dstack: Dstack, repo: Path) -> None:
    (repo / "raw/deeper").mkdir(parents=True)
    (repo / "raw/a.txt").write_text("alpha\n")
    (repo / "raw/deeper/b.txt").write_text("beta\n")
    (repo / "raw/run.sh").write_text("#!/bin/sh\necho uploaded tool\n")
    (repo / "raw/run.sh").chmod(0o755)
    ok(dstack("tags", "add", "raw", "-a", "raw", cwd=repo))
    shutil.rmtree(repo / "raw")  # the job must get them from the store, not the snapshot
    tag = tags_json(dstack, repo)["raw"]
    assert (tag["run"], tag["workflow"], tag["files"], tag["artifacts"]) == (None, None, 3, ["raw"])
    result = ok(dstack("run", "use-raw", cwd=repo))
    assert job_lines(result.out) == ["alpha", "beta", "uploaded tool"]
    assert any("uploaded files" in line for line in result.out.splitlines() if "deps:" in line)

    refused = dstack("tags", "add", "raw", "-a", "sub", cwd=repo)
    assert refused.code != 0 and "Tag raw exists" in refused.err and "-y" in refused.err
    ok(dstack("tags", "delete", "raw", "-y", cwd=repo))
    before = run_count(dstack, repo)
    failed = dstack("run", "use-raw", cwd=repo)
    assert failed.code != 0
    assert failed.err.strip().splitlines()[-1].startswith("Error: ")
    assert "no tag 'raw'" in failed.err
    assert run_count(dstack, repo) == before  # nothing written


def test_a_dep_on_a_tag_of_another_repo(dstack: Dstack, repo: Path, repo_factory) -> None:  # type: ignore[no-untyped-def]
    missing = dstack("run", "use-other-repo", cwd=repo)
    assert missing.code != 0 and "no repo github.com/acme/datasets in the store" in missing.err
    other = repo_factory(
        {"digits/labels.txt": "0 1 2\n"}, remote="git@github.com:acme/datasets.git"
    )
    ok(dstack("tags", "add", "mnist", "-a", "digits", cwd=other))
    result = ok(dstack("run", "use-other-repo", cwd=repo))
    assert "0 1 2" in result.out
    [dep] = dstack.ps_json(latest_run(dstack, repo), repo)["deps"]
    assert (dep["repo"], dep["tag"]) == ("github.com/acme/datasets", "mnist")
    wrong = dstack("run", "--dep", "acme/datasets/nope", "use-other-repo", cwd=repo)
    assert wrong.code != 0 and "--dep: no tag 'nope' in github.com/acme/datasets" in wrong.err


def test_dep_flag_replaces_the_files_deps(dstack: Dstack, repo: Path) -> None:
    ok(dstack("run", "make", "-t", "made", cwd=repo))
    ok(dstack("run", "make", cwd=repo))
    newest = latest_run(dstack, repo)
    (repo / "raw").mkdir()
    (repo / "raw/a.txt").write_text("alpha\n")
    ok(dstack("tags", "add", "other", "-a", "raw", cwd=repo))
    result = ok(dstack("run", "--dep", "make", "--dep", ":other", "use-made", cwd=repo))
    assert f"made by {newest}" in result.out  # the latest make, not the tagged one
    deps = dstack.ps_json(latest_run(dstack, repo), repo)["deps"]
    assert [(d["workflow"], d["tag"], d["run"]) for d in deps] == [
        ("make", None, newest),
        (None, "other", None),
    ]
    malformed = dstack("run", "--dep", "a/b", "use-made", cwd=repo)
    assert malformed.code != 0 and "--dep:" in malformed.err and "owner/repo/TAG" in malformed.err


def test_a_tagged_run_survives_rm(dstack: Dstack, repo: Path) -> None:
    ok(dstack("run", "make", "-t", "made", cwd=repo))
    maker = latest_run(dstack, repo)
    refused = dstack("rm", maker, "-y", cwd=repo)
    assert refused.code != 0
    assert f"run {maker} is tagged made" in refused.err and "dstack tags delete made" in refused.err
    everything = ok(dstack("rm", "-a", "-y", cwd=repo))
    assert f"{maker}: kept, tagged made" in everything.err
    ok(dstack("run", "use-made", cwd=repo))  # the tag still works
    ok(dstack("tags", "delete", "made", "-y", cwd=repo))
    ok(dstack("rm", maker, "-y", cwd=repo))
    assert maker not in ok(dstack("ps", "-a", cwd=repo)).out


def test_tagging_refusals(dstack: Dstack, repo: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    slow = dstack.run_detached("slow", cwd=repo, options=("-e", f"RELEASE={release}"))
    dstack.wait_status(slow, repo, lambda s: s == "running")
    busy = dstack("tags", "add", "early", slow, cwd=repo)
    assert busy.code != 0 and f"run {slow} is running" in busy.err
    release.touch()
    dstack.wait_status(slow, repo, lambda s: s in FINISHED)

    failed = dstack("run", "fail", "-t", "never", cwd=repo)
    assert failed.code == 4
    assert "never" not in tags_json(dstack, repo)
    bad = dstack("run", "make", "-t", "no/slash", cwd=repo)
    assert bad.code != 0 and "invalid tag name 'no/slash'" in bad.err

    ok(dstack("tags", "add", "slow", slow, cwd=repo))
    before = run_count(dstack, repo)
    exists = dstack("run", "make", "-t", "slow", cwd=repo)  # no terminal to ask in
    assert exists.code != 0 and "-t slow: the tag exists" in exists.err
    assert run_count(dstack, repo) == before
    ok(dstack("run", "make", cwd=repo))
    ok(dstack("tags", "add", "slow", latest_run(dstack, repo), "-y", cwd=repo))
    assert tags_json(dstack, repo)["slow"]["workflow"] == "make"


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_run_t_on_an_existing_tag_asks_in_a_terminal(dstack: Dstack, repo: Path) -> None:
    import pexpect

    from tests.e2e.cli import DSTACK

    ok(dstack("run", "make", "-t", "made", cwd=repo))
    first = latest_run(dstack, repo)

    def answer(reply: str) -> int:
        child = pexpect.spawn(
            DSTACK[0], [*DSTACK[1:], "run", "make", "-t", "made"], cwd=str(repo),
            env=dstack.env, timeout=60, encoding="utf-8",
        )  # fmt: skip
        child.expect(rf"Tag made exists \(run {first} \(make\)\)\. Move it to this run when it")
        child.sendline(reply)
        child.expect(pexpect.EOF)
        child.close()
        return int(child.exitstatus or 0)

    assert answer("n") == 1
    assert tags_json(dstack, repo)["made"]["run"] == first
    assert answer("y") == 0
    second = latest_run(dstack, repo)
    assert second != first and tags_json(dstack, repo)["made"]["run"] == second
