"""Secret values never reach the store: the streaming masker, and the log sink that uses it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dstack import state
from dstack.models import JobSpec, RepoSnapshot
from dstack.runner.logs import LogSink
from dstack.runner.masking import MASK, Masker
from dstack.storage.local import LocalStorage


def stream(masker: Masker, pieces: list[bytes]) -> bytes:
    return b"".join(masker.feed(piece) for piece in pieces) + masker.flush()


def test_a_value_is_masked_wherever_it_is() -> None:
    masker = Masker(["s3cr3t"])
    assert stream(masker, [b"token=s3cr3t\nagain s3cr3t."]) == b"token=***\nagain ***."


def test_a_value_split_across_writes_is_still_masked() -> None:
    masker = Masker(["s3cr3t"])
    assert masker.feed(b"token=s3c") == b"token="  # the start of the value is held back
    assert masker.feed(b"r3") == b""
    assert masker.feed(b"t and more") == MASK + b" and more"


def test_output_that_cannot_start_a_value_is_not_held() -> None:
    masker = Masker(["s3cr3t"])
    assert masker.feed(b"epoch 1 done\n") == b"epoch 1 done\n"
    assert masker.feed(b"loss: s") == b"loss: "  # could be the start: held
    assert masker.feed(b"mall\n") == b"small\n"  # it was not: released


def test_what_is_held_at_the_end_is_released_masked() -> None:
    masker = Masker(["abcdef", "cd"])
    assert masker.feed(b"xxabcd") == b"xx"  # "abcd" could become "abcdef"
    assert masker.flush() == b"ab" + MASK  # it did not; "cd" is still a value


def test_longest_value_wins_at_the_same_place() -> None:
    masker = Masker(["ab", "abc"])
    assert stream(masker, [b"ab", b"c ab!"]) == MASK + b" " + MASK + b"!"


def test_leftmost_value_wins_when_they_overlap() -> None:
    masker = Masker(["Xa", "abc"])
    assert stream(masker, [b"Xab", b"c"]) == MASK + b"bc"


def test_values_are_bytes_of_their_utf8_text() -> None:
    masker = Masker(["пароль"])
    data = "мой пароль!".encode()
    assert stream(masker, [data[:9], data[9:]]) == "мой ".encode() + MASK + b"!"


def test_no_values_means_no_change_and_no_holding() -> None:
    masker = Masker([""])
    assert not masker.active
    assert masker.feed(b"abc") == b"abc"


@pytest.mark.parametrize("seed", range(20))
def test_any_split_gives_the_same_output_as_the_whole(seed: int) -> None:
    rng = random.Random(seed)
    values = ["hunter2", "hunter2hunter", "s3", "xyzzy-token-0042"]
    alphabet = ["hunter", "2", "s", "3", "xyzzy-", "token-0042", " ", "\n", "a"]
    text = "".join(rng.choice(alphabet) for _ in range(300)).encode()
    whole = stream(Masker(values), [text])
    cuts = sorted(rng.sample(range(1, len(text)), 40))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert stream(Masker(values), pieces) == whole
    for value in values:
        assert value.encode() not in whole


def spec() -> JobSpec:
    repo = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
    return JobSpec(run_name="calm-cat-1", workflow="train", provider="bash", repo=repo)


def test_the_log_sink_stores_no_byte_of_a_secret_split_across_writes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    job = spec()
    sink = LogSink(storage, job).start()
    sink.mask(["hunter2"])
    for piece in (b"password: hun", b"te", b"r2\n", b"bye hunter"):
        sink.write(piece)
        sink.flush()  # every piece is its own chunk
    assert sink.close()
    prefix = state.logs_prefix(job.repo.repo_id, job.run_name, 0)
    chunks = [storage.get(info.key) for info in storage.list_objects(prefix)]
    assert b"".join(chunks) == b"password: ***\nbye hunter"
    assert all(b"hunter2" not in chunk for chunk in chunks)


def test_large_values_split_anywhere_are_masked() -> None:
    rng = random.Random(3)
    values = ["".join(rng.choice("abcdef") for _ in range(n)) for n in (5, 300, 4096, 100_000)]
    text = b"".join(b"x" * rng.randint(0, 50) + v.encode() for v in values * 3) + b"end"
    pieces, at = [], 0
    while at < len(text):
        step = rng.randint(1, 70_000)
        pieces.append(text[at : at + step])
        at += step
    out = stream(Masker(values), pieces)
    assert not any(v.encode() in out for v in values) and out.count(MASK) == 12
    assert out.endswith(b"end")


# ---- values with escape sequences inside: matched on the text as displayed -------------------

COLOURED = b"using token tok-\x1b[1;36m12345\x1b[0m-xyz\n"


def _displayed(data: bytes) -> bytes:
    import re

    return re.sub(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[ -/]*[0-~])", b"", data)


def test_a_value_coloured_inside_is_masked_and_the_colours_kept() -> None:
    masked = stream(Masker(["tok-12345-xyz"]), [COLOURED])
    assert masked == b"using token ***\x1b[1;36m\x1b[0m\n"
    assert b"12345" not in masked


@pytest.mark.parametrize("seed", range(20))
def test_a_coloured_value_split_anywhere_is_masked(seed: int) -> None:
    rng = random.Random(seed)
    data = COLOURED * 3 + b"\x1b]8;;https://x.example/tok-12345-xyz\x07link\x1b]8;;\x07 tail"
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    masked = stream(Masker(["tok-12345-xyz"]), pieces)
    assert b"12345" not in _displayed(masked)
    assert b"tok-12345-xyz" not in masked  # the hyperlink's address too
    assert masked.count(MASK) == 4
    assert masked.endswith(b"link\x1b]8;;\x07 tail")


def test_colours_without_values_pass_unchanged_and_unheld() -> None:
    masker = Masker(["s3cr3t"])
    data = b"\x1b[32mepoch 1\x1b[0m done\n"
    assert masker.feed(data) == data
