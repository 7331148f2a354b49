"""``${{ run.args }}`` through a real shell, in every kind of quoting: the arguments come out as
data, never run. Each case runs the job script the runner writes (``write_script``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dstack.errors import SpecError
from dstack.models import JobSpec
from dstack.providers import build_jobs
from dstack.providers.base import RunInput
from dstack.runner.prepare import write_script
from tests.providers.test_build_jobs import REPO, workflow


def run_job(tmp_path: Path, commands: list[str], run_args: list[str], **fields: object) -> str:
    spec = build(commands, run_args, **fields)
    script = write_script(spec, tmp_path)
    shell = ["sh"] if spec.image else ["bash", "--noprofile", "--norc"]
    out = subprocess.run(
        [*shell, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    return out.stdout + out.stderr


def build(commands: list[str], run_args: list[str], **fields: object) -> JobSpec:
    if commands:
        fields["commands"] = commands
    return build_jobs(RunInput(workflow(**fields), "wise-owl-1", REPO, run_args, 100.0))[0]


def attacks(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"; touch {m}",
        f"$(touch {m})",
        f"`touch {m}`",
        f"'; touch {m}; '",
        f'"; touch {m}; "',
        f"\\'; touch {m}; #",
        f"a\ntouch {m}",
        f"EOF\ntouch {m}\nEOF",
        f"$'\\x27'; touch {m}",
        f"a[$(touch {m})]",
    ]


CONTEXTS = {
    "plain": ["echo ${{ run.args }}"],
    "single": ["echo '${{ run.args }}'"],
    "double": ['echo "${{ run.args }}"'],
    "command-substitution": ['echo "hello $(echo ${{ run.args }})"'],
    "command-substitution-quoted": ['echo "hello $(echo "${{ run.args }}")"'],
    "backticks": ["echo `echo ${{ run.args }}`"],
    "backticks-in-double": ['echo "`echo ${{ run.args }}`"'],
    "nested": ['echo "$(echo "$(echo \'x\' ${{ run.args }})")"'],
    "param-default": ['echo "${UNSET:-${{ run.args }}}"'],
    "ansi-c": ["echo $'a\\t${{ run.args }}'"],
    "heredoc": ["cat <<EOF", "hello ${{ run.args }} 'q' \"d\"", "EOF"],
    "heredoc-tabs": ["cat <<-EOF", "\thello ${{ run.args }}", "\tEOF"],
    "heredoc-in-one-script": ["cat <<EOF\nhello $(echo ${{ run.args }})\nEOF"],
    "comment": ["echo ok # don't ${{ run.args }}", "echo '${{ run.args }}'"],
    "function": ["f() { printf '%s|' ${{ run.args }}; }", "f"],
    "assignment": ["X=${{ run.args }}", 'echo "$X"'],
    "bash-c": ['bash -c \'printf %s "$1"\' _ "${{ run.args }}"'],
}


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_arguments_never_run_in_any_context(tmp_path: Path, context: str) -> None:
    marker = tmp_path / "pwned"
    for attack in attacks(marker):
        output = run_job(tmp_path, CONTEXTS[context], [attack, "second"])
        assert not marker.exists(), f"{context}: {attack!r} ran: {output}"


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        (["printf '%s|' ${{ run.args }}"], "a b|$(x)|it's|"),
        (['printf %s "${{ run.args }}"'], "a b $(x) it's"),
        (["printf %s '<${{ run.args }}>'"], "<a b $(x) it's>"),
        (['printf %s "$(printf %s ${{ run.args }})"'], "a b$(x)it's"),
        (["printf %s `printf %s ${{ run.args }}`"], "ab$(x)it's"),  # the output is split
        (["cat <<EOF", "[${{ run.args }}]", "EOF"], "[a b $(x) it's]\n"),
        (["f() { printf '%s|' ${{ run.args }}; }", "f one"], "a b|$(x)|it's|"),
    ],
    ids=["plain", "double", "single", "substitution", "backticks", "heredoc", "function"],
)
def test_arguments_arrive_as_given(tmp_path: Path, commands: list[str], expected: str) -> None:
    assert run_job(tmp_path, commands, ["a b", "$(x)", "it's"]) == expected


def test_quoted_heredoc_takes_the_text_as_is(tmp_path: Path) -> None:
    commands = ["cat <<'EOF'", "[${{ run.args }}]", "EOF"]
    assert run_job(tmp_path, commands, ["$(x)", "`y`"]) == "[$(x) `y`]\n"
    with pytest.raises(SpecError, match="line break"):
        build(commands, ["EOF\ntouch /tmp/x"])


def test_arithmetic_takes_whole_numbers_only(tmp_path: Path) -> None:
    assert run_job(tmp_path, ["echo $(( ${{ run.args }} + 1 ))"], ["41"]) == "42\n"
    assert run_job(tmp_path, ["(( ${{ run.args }} > 1 )) && echo big"], ["5"]) == "big\n"
    with pytest.raises(SpecError, match="whole numbers only"):
        build(["echo $(( ${{ run.args }} + 1 ))"], ["a[$(touch /tmp/x)]"])


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_docker_scripts_use_positional_parameters(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    commands = ['echo "hello $(echo ${{ run.args }})"', "printf '%s|' ${{ run.args }}"]
    out = run_job(tmp_path, commands, [f"; touch {marker}", "b c"], provider="docker", image="x")
    assert not marker.exists()
    assert out == f"hello ; touch {marker} b c\n; touch {marker}|b c|"


def test_python_args_are_data_too(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "t.py").write_text("import sys; print(sys.argv[1:])")
    for args_field in ('--x "$(echo ${{ run.args }})"', ["--x", "${{ run.args }}"]):
        spec_args = [f"$(touch {marker})"]
        out = run_job(tmp_path, [], spec_args, provider="python", file="t.py", args=args_field)
        assert not marker.exists(), out
