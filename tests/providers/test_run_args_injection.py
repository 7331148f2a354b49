"""``${{ run.args }}`` through a real shell, in every kind of quoting and every place bash
evaluates a value: the arguments come out as data, or are refused at submit, never run. Each
case runs the job script the runner writes (``write_script``); a fuzz test crosses many
generated arguments with every context (``dstack.providers.shellargs``: the rule is safe by
construction, the fuzz checks it against real bash)."""

from __future__ import annotations

import random
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
    """The job's output, or ``REFUSED`` when the arguments are refused at submit."""
    try:
        spec = build(commands, run_args, **fields)
    except SpecError:
        return REFUSED
    script = write_script(spec, tmp_path)
    shell = ["sh"] if spec.image else ["bash", "--noprofile", "--norc"]
    out = subprocess.run(
        [*shell, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    return out.stdout + out.stderr


REFUSED = "<refused at submit>"


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
    # where bash evaluates a value as arithmetic (a subscript in it runs its $( ))
    "test-arith": ["[[ ${{ run.args }} -gt 0 ]]"],
    "let": ['let "n = ${{ run.args }} * 2"'],
    "declare-i": ["declare -i e=${{ run.args }}"],
    "subscript": ["arr=(a b); echo ${arr[${{ run.args }}]}"],
    "substring": ["s=abcdef; echo ${s:${{ run.args }}}"],
    "old-arith": ["echo $[ ${{ run.args }} + 1 ]"],
    "printf-v": ['printf -v "${{ run.args }}" %s x'],
    "unset": ['unset "${{ run.args }}"'],
    "test-v": ['[[ -v "${{ run.args }}" ]]'],
    "for-arith": ["for (( i = 0; i < ${{ run.args }}; i++ )); do :; done"],
    # where a lexer falls out of step with bash
    "ansi-delimiter": ["cat <<$'EOF'", "EOF", "echo ${{ run.args }}", "EOF"],
    "heredoc-in-backticks": ["x=`cat <<'EOF'", "EOF", "`; echo ${{ run.args }}", "EOF"],
    "comment-in-backticks": ["x=`echo a # '`; echo ${{ run.args }}", "echo b '`"],
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
        (["printf '%s|' ${{ run.args }}"], "a b|(x)|it's|"),
        (['printf %s "${{ run.args }}"'], "a b (x) it's"),
        (["printf %s '<${{ run.args }}>'"], "<a b (x) it's>"),
        (['printf %s "$(printf %s ${{ run.args }})"'], "a b(x)it's"),
        (["printf %s `printf %s ${{ run.args }}`"], "ab(x)it's"),  # the output is split
        (["cat <<EOF", "[${{ run.args }}]", "EOF"], "[a b (x) it's]\n"),
        (["f() { printf '%s|' ${{ run.args }}; }", "f one"], "a b|(x)|it's|"),
    ],
    ids=["plain", "double", "single", "substitution", "backticks", "heredoc", "function"],
)
def test_arguments_arrive_as_given(tmp_path: Path, commands: list[str], expected: str) -> None:
    assert run_job(tmp_path, commands, ["a b", "(x)", "it's"]) == expected


@pytest.mark.parametrize("arg", ["a[0]", "$HOME", "`id`", "x$"])
def test_an_argument_bash_could_evaluate_is_refused_in_one_line(arg: str) -> None:
    with pytest.raises(SpecError) as refused:
        build(["echo ${{ run.args }}"], ["fine", arg])
    assert "bash could evaluate" in str(refused.value) and "\n" not in str(refused.value)
    assert build(["echo hi"], [arg]).args == [arg]  # unused, an argument is only data


def test_a_quoted_heredoc_takes_no_arguments() -> None:
    with pytest.raises(SpecError, match="quoted here-document"):
        build(["cat <<'EOF'", "[${{ run.args }}]", "EOF"], ["x"])


def test_arithmetic_takes_whole_numbers_only(tmp_path: Path) -> None:
    assert run_job(tmp_path, ["echo $(( ${{ run.args }} + 1 ))"], ["41"]) == "42\n"
    assert run_job(tmp_path, ["(( ${{ run.args }} > 1 )) && echo big"], ["5"]) == "big\n"
    with pytest.raises(SpecError, match="whole numbers only"):
        build(["echo $(( ${{ run.args }} + 1 ))"], ["a(1)"])


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
        for spec_args in ([f"$(touch {marker})"], [f"; touch {marker}"]):
            out = run_job(tmp_path, [], spec_args, provider="python", file="t.py", args=args_field)
            assert not marker.exists(), out


# ----------------------------------------------------------------------------------- fuzz

_PIECES = [
    "a", "0", "7", " ", ";", "|", "&", "(", ")", "<", ">", "'", '"', "\\", "\n", "#", "{", "}",
    "[", "]", "$", "`", "*", "?", "~", "!", "=", "-", "EOF", "$(", "${", "$((", "a[", "]+1",
]  # fmt: skip


def _fuzzed_args(rng: random.Random, marker: Path) -> list[str]:
    payloads = [f"touch {marker}", f"touch${{IFS}}{marker}"]
    shapes = [
        lambda p: f"a[$({p})]", lambda p: f"x; {p}", lambda p: f"$({p})", lambda p: f"`{p}`",
        lambda p: f"EOF\n{p}\nEOF", lambda p: f"'; {p}; '", lambda p: f"\"; {p}; \"",
        lambda p: f"x[`{p}`]", lambda p: f"1 ]]; {p}; [[ 1", lambda p: f"0 )); {p}; (( 0",
    ]  # fmt: skip
    args = [shape(rng.choice(payloads)) for shape in shapes]
    for _ in range(6):
        junk = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 8)))
        args.append(junk + f";{rng.choice(payloads)}")
    return args


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_no_argument_runs_in_any_context(tmp_path: Path, seed: int) -> None:
    """Many generated arguments, one at a time and in pairs, in every context: real bash never
    runs any of them (the marker file never appears)."""
    rng = random.Random(seed)
    marker = tmp_path / "pwned"
    ran = 0
    for context in sorted(CONTEXTS):
        for arg in _fuzzed_args(rng, marker):
            output = run_job(tmp_path, CONTEXTS[context], [arg, rng.choice(["1", "b c"])])
            ran += output != REFUSED
            assert not marker.exists(), f"{context}: {arg!r} ran: {output}"
    assert ran  # some arguments were not refused, and were run as data


@pytest.mark.parametrize(
    ("line", "seen"),
    [
        ("python t.py ${{ run.args }}", "python t.py --lr 0.1 'a b'"),
        ('echo "got ${{ run.args }}"', 'echo "got --lr 0.1 a b"'),
        ("echo 'got ${{ run.args }}'", "echo 'got --lr 0.1 a b'"),
        ("echo $'got ${{ run.args }}'", "echo $'got --lr 0.1 a b'"),
        ("cat <<EOF\n${{ run.args }}\nEOF", "cat <<EOF\n--lr 0.1 a b\nEOF"),
    ],
)
def test_a_command_is_shown_with_the_arguments_in_place(line: str, seen: str) -> None:
    """What the run page shows: each context's reference replaced by the arguments."""
    from dstack.providers.shellargs import shown, substitute_script

    args = ["--lr", "0.1", "a b"]
    script = substitute_script([line], run_name="r", args=args)
    assert "DSTACK_RUN_ARGS" in script[0]
    assert shown(script, args) == [seen]
