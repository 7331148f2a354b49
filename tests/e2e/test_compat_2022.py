"""2022 workflow files run unchanged, and a newcomer's first commands do not stumble: through
the real `dstack` command, against the local store.

``corpus_2022/`` is a workflow file in the 2022 format written for this suite (every property
and provider of 0.0.12-0.0.14); it validates whole, and the workflows this machine can run
(bash, python) run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import Dstack

CORPUS = Path(__file__).parent / "corpus_2022"


@pytest.fixture
def cli(dstack_home: Path) -> Dstack:
    return Dstack(dstack_home, env={"DSTACK_HOME": str(dstack_home), "FROM_SHELL": "shell-value"})


def corpus_repo(tmp_path: Path) -> Path:
    files = {f".dstack/{p.name}" if p.suffix == ".yaml" else p.name: p.read_text()
             for p in CORPUS.iterdir() if p.is_file()}  # fmt: skip
    return make_repo(tmp_path / "corpus", files)


def test_the_corpus_validates_with_warnings_for_keys_2022_ignored(
    cli: Dstack, tmp_path: Path
) -> None:
    repo = corpus_repo(tmp_path)
    result = cli("workflows", "--json", cwd=repo)
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert {"hello", "prepare", "train", "image", "ide", "lab", "notebook", "ddp", "board"} <= set(
        rows
    )
    assert all(row["error"] is None for row in rows.values())
    assert any("environment: ignored" in w for w in rows["image"]["warnings"])
    assert any("python: ignored" in w for w in rows["image"]["warnings"])
    assert any("commands: ignored" in w for w in rows["lab"]["warnings"])
    assert rows["hello"]["help"].startswith("Prints a greeting")


def test_the_corpus_runs_where_this_machine_allows(cli: Dstack, tmp_path: Path) -> None:
    repo = corpus_repo(tmp_path)
    hello = cli("run", "hello", cwd=repo, timeout=300)
    assert hello.code == 0, hello.err
    # the artifact folder was made before the job; NAME without '=' took the shell's value
    assert "hello [shell-value] []" in hello.out
    assert hello.err.startswith("Run ")  # the run's name comes first
    prepare = cli("run", "prepare", cwd=repo, timeout=300)
    assert prepare.code == 0, prepare.err
    train = cli("run", "train", cwd=repo, timeout=300)
    assert train.code == 0, train.err
    assert "train ['--epochs', '1'] 1,2" in train.out


def test_one_bad_workflow_does_not_block_the_others(cli: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {
        ".dstack/workflows/a.yaml": "workflows:\n  - name: hello\n    commands: [echo hi]\n",
        ".dstack/workflows/b.yaml": "workflows:\n  - name: bad\n    commands: [echo]\n"
                                    "    artifacts: [../out]\n",
    })  # fmt: skip
    result = cli("run", "hello", cwd=repo)
    assert result.code == 0, result.err
    assert "hi" in result.out
    assert "workflow 'bad'" in result.err and "dstack workflows" in result.err
    bad = cli("run", "bad", cwd=repo)
    assert bad.code != 0 and "escapes" in bad.err
    listed = cli("workflows", cwd=repo)
    assert listed.code == 1 and "hello" in listed.out and "'bad'" in listed.err
    missing = cli("run", "b", cwd=repo)
    assert "no workflow 'b' in .dstack/workflows/a.yaml, .dstack/workflows/b.yaml" in missing.err
    assert ".dstack/workflows.yaml" not in missing.err


def test_a_workflow_depending_on_a_bad_one_is_refused(cli: Dstack, tmp_path: Path) -> None:
    text = ("workflows:\n  - name: a\n    commands: [echo]\n    deps: [b]\n"
            "  - name: b\n    commands: 5\n")  # fmt: skip
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    result = cli("run", "a", cwd=repo)
    assert result.code != 0 and "workflow 'b'" in result.err


def test_provider_names_on_the_command_line(cli: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"t.py": "import sys; print('args', sys.argv[1:])\n"})
    bash = cli("run", "bash", "-c", "echo from-bash $((1+2))", cwd=repo)
    assert bash.code == 0, bash.err
    assert "from-bash 3" in bash.out
    python = cli("run", "python", "t.py", "--lr", "0.1", cwd=repo, timeout=300)
    assert python.code == 0, python.err
    assert "args ['--lr', '0.1']" in python.out
    no_file = cli("run", "python", cwd=repo)
    assert no_file.code != 0 and "FILE" in no_file.err
    docker = cli("run", "docker", cwd=repo)
    assert docker.code != 0 and "image" in docker.err


def test_absolute_artifacts_are_saved_and_a_missing_one_warned(cli: Dstack, tmp_path: Path) -> None:
    outside = tmp_path / "cache-outside" / "hub"
    text = (f"workflows:\n  - name: cache\n    commands:\n      - mkdir -p {outside}\n"
            f"      - echo model > {outside}/m.bin\n"
            f"    artifacts: [{outside}, never-made]\n")  # fmt: skip
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    run = cli("run", "cache", cwd=repo)
    assert run.code == 0, run.err
    assert "Warning: artifact never-made: the job wrote nothing there" in run.err
    name = run.err.split("Run ", 1)[1].split()[0]
    listed = cli("artifacts", "list", name, "--json", cwd=repo)
    paths = [row["path"] for row in json.loads(listed.out)]
    assert f"_absolute{outside}/m.bin" in paths


def test_detached_run_prints_its_name_alone_on_stdout(cli: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml":
                     "workflows:\n  - name: w\n    commands: [echo]\n"})  # fmt: skip
    result = cli("run", "w", "-d", cwd=repo)
    assert result.code == 0, result.err
    name = result.out.strip()
    assert name and "\n" not in name and f"Run {name} submitted" in result.err


def test_missing_requirements_is_caught_at_submit(cli: Dstack, tmp_path: Path) -> None:
    text = "workflows:\n  - name: w\n    commands: [echo]\n    requirements: reqs.txt\n"
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    result = cli("run", "w", cwd=repo)
    assert result.code != 0 and "reqs.txt is not in the snapshot" in result.err
    assert "No runs yet" in cli("ps", "-a", cwd=repo).err  # nothing was written


def test_no_remote_warning_once_per_repo(cli: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml":
                     "workflows:\n  - name: w\n    commands: [echo]\n"}, remote=None)  # fmt: skip
    first = cli("run", "w", cwd=repo)
    second = cli("run", "w", cwd=repo)
    assert "no git remote" in first.err
    assert "no git remote" not in second.err


def test_json_everywhere_a_list_is_shown(cli: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml":
                     "workflows:\n  - name: w\n    commands: [echo]\n"})  # fmt: skip
    for args in (["tags", "--json"], ["secrets", "--json"], ["tags", "list", "--json"],
                 ["ps", "--json"], ["workflows", "--json"]):  # fmt: skip
        result = cli(*args, cwd=repo)
        assert result.code == 0, (args, result.err)
        assert isinstance(json.loads(result.out), list)
    refused = cli("run", "--json", "w", cwd=repo)
    assert refused.code == 2 and "--plan" in refused.err


def test_artifacts_download_keeps_edited_files_without_force(cli: Dstack, tmp_path: Path) -> None:
    text = "workflows:\n  - name: w\n    commands: [echo v1 > out/a.txt]\n    artifacts: [out]\n"
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    run = cli("run", "w", cwd=repo)
    name = run.err.split("Run ", 1)[1].split()[0]
    target = tmp_path / "dl"
    assert cli("artifacts", "download", name, "-o", str(target), cwd=repo).code == 0
    (target / "out/a.txt").write_text("my edit\n")
    again = cli("artifacts", "download", name, "-o", str(target), cwd=repo)
    assert again.code != 0 and "--force" in again.err
    assert (target / "out/a.txt").read_text() == "my edit\n"
    outside = cli("artifacts", "download", name, "-o", str(target), "--force", "--repo",
                  "github.com/acme/mnist", cwd=tmp_path)  # fmt: skip
    assert outside.code == 0, outside.err
    assert (target / "out/a.txt").read_text() == "v1\n"
    assert "Downloaded 1 file to" in outside.err


def test_submitted_at_reads_the_same_in_both_ps_forms(cli: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml":
                     "workflows:\n  - name: w\n    commands: [echo]\n"})  # fmt: skip
    name = cli.run_detached("w", cwd=repo)
    listed = json.loads(cli("ps", "-a", "--json", cwd=repo).out)[0]
    single = json.loads(cli("ps", name, "--json", cwd=repo).out)[0]
    assert listed["submitted_at"] == single["submitted_at"]


def test_runs_left_under_the_local_id_are_hinted(cli: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml":
                     "workflows:\n  - name: w\n    commands: [echo]\n"}, remote=None)  # fmt: skip
    assert cli("run", "w", cwd=repo).code == 0
    os.system(f"git -C {repo} remote add origin https://github.com/acme/r.git")
    result = cli("ps", "-a", cwd=repo)
    assert "local/r" in result.err and "--repo local/r" in result.err
    old = cli("ps", "-a", "--repo", "local/r", "--json", cwd=repo)
    assert len(json.loads(old.out)) == 1


def test_sigterm_without_a_terminal_stops_the_run(cli: Dstack, tmp_path: Path) -> None:
    import signal

    from tests.e2e.cli import wait_for

    text = "workflows:\n  - name: w\n    commands: [echo started, sleep 60]\n"
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    proc = cli.popen("run", "w", cwd=repo)
    assert proc.stdout is not None
    wait_for(lambda: b"started" in proc.stdout.readline(), timeout=120, what="the job to start")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert b"stopped" in err or b"stopping" in err


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["ps"],
        ["logs"],
        ["stop"],
        ["rm"],
        ["artifacts", "download"],
        ["tags", "add"],
        ["secrets", "add"],
        ["config"],
        ["workflows"],
        ["infra"],
        ["prune"],
    ],
)
def test_help_follows_click_conventions(cli: Dstack, tmp_path: Path, command: list[str]) -> None:
    result = cli(*command, "--help", cwd=tmp_path)
    assert result.code == 0, result.err
    for python_type in ("<bool>", "<str>", "<int>", "<list", "<Path>"):
        assert python_type not in result.out, (command, python_type)
    assert not re.search(r"\{[A-Z]", result.out)  # usage: RUN or [RUN], not {RUN}
    if command == ["run"]:
        assert "Usage: dstack run [OPTIONS] WORKFLOW [ARGS]..." in result.out
        assert "INTEGER" in result.out and "TEXT" in result.out
    if command[0] in ("logs", "stop", "rm"):
        assert "The run's name" in result.out


def test_the_first_runs_environment_phase_is_shown(cli: Dstack, tmp_path: Path) -> None:
    token = os.urandom(6).hex()  # requirements no environment was built for yet
    repo = make_repo(tmp_path / "r", {
        ".dstack/workflows.yaml": "workflows:\n  - name: w\n    commands: [echo ran]\n"
                                  "    requirements: requirements.txt\n",
        "requirements.txt": f"# {token}\n",
    })  # fmt: skip
    first = cli("run", "w", cwd=repo, timeout=300)
    assert first.code == 0, first.err
    assert "[dstack] building the Python" in first.out
    assert "[dstack] installing requirements" in first.out
    assert first.out.index("building the Python") < first.out.index("ran")
    second = cli("run", "w", cwd=repo, timeout=300)
    assert "building the Python" not in second.out  # reused


def test_memory_units_are_shown_in_the_plan_and_when_nothing_fits(
    cli: Dstack, tmp_path: Path
) -> None:
    text = ("workflows:\n  - name: big\n    commands: [echo]\n    resources: {memory: 64GB}\n"
            "  - name: huge\n    commands: [echo]\n    resources: {memory: 64TB}\n")  # fmt: skip
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    plan = cli("run", "--plan", "big", cwd=repo, timeout=300)
    assert plan.code == 0, plan.err
    assert "64GB+ memory (65,536 MiB)" in plan.out  # binary: 64 GiB, not 2022's 61,035 MiB
    counted = re.search(r"(\d+) AWS resources to create, in (\d+) component", plan.out)
    assert counted is not None
    listed = [line for line in plan.out.splitlines() if line[:2] in ("+ ", "= ")]
    assert int(counted.group(1)) + int(counted.group(2)) == len(listed)
    huge = cli("run", "--plan", "huge", cwd=repo, timeout=300)
    assert huge.code != 0 and "(67,108,864 MiB)" in huge.err


def test_a_missing_bucket_says_how_to_create_it(
    cli: Dstack, tmp_path: Path, moto_server: Any
) -> None:
    result = cli("config", "--backend", "aws", "--bucket", "not-created-yet",
                 "--region", "us-east-1", "--endpoint-url", moto_server.endpoint_url, "-y",
                 cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.code != 0 and "does not exist" in result.err, result.err
    assert "once available" not in result.err
    assert "dstack config --backend aws --bucket not-created-yet --create" in result.err


def test_an_absolute_artifact_as_a_dep_lands_in_the_job_folder_here(
    cli: Dstack, tmp_path: Path
) -> None:
    outside = tmp_path / "env-cache"
    text = (f"workflows:\n  - name: make\n    commands:\n      - mkdir -p {outside}\n"
            f"      - echo cached > {outside}/pkg.txt\n    artifacts: [{outside}]\n"
            f"  - name: use\n    deps: [make]\n    commands:\n"
            f"      - cat _absolute{outside}/pkg.txt\n")  # fmt: skip
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    assert cli("run", "make", cwd=repo).code == 0
    (outside / "pkg.txt").unlink()
    use = cli("run", "use", cwd=repo)
    assert use.code == 0, use.err + use.out
    assert "cached" in use.out
    assert "placed under" in use.out and "instead" in use.out  # the log says where
    assert not (outside / "pkg.txt").exists()  # nothing written outside the job's folder
