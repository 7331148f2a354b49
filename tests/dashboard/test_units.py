"""The dashboard's pieces without a server: colors, repo ids from keys, the zip stream, the
lineage graph and the plan table. (``Storage.read_chunks`` is in the storage conformance suite.)"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from dstack.dashboard.ansi import MAX_SEQUENCE, AnsiToHtml
from dstack.dashboard.files import find_file, in_folder, tree, zip_stream
from dstack.dashboard.infra import key_inputs
from dstack.dashboard.lineage import graph_of
from dstack.models import Dependency, Owner, RepoSnapshot, RunRecord, Tag
from dstack.services.artifacts import ArtifactFile
from dstack.state.repos import list_repos, repo_of_key
from dstack.storage.local import LocalStorage


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"plain <b> & text\n"], "plain &lt;b&gt; &amp; text\n"),
        ([b"\x1b[31mred\x1b[0m ok"], '<span class="fg1">red</span> ok'),
        ([b"\x1b[1;3", b"2mbold green\x1b[m"], '<span class="bold fg2">bold green</span>'),
        ([b"\x1b[38;5;196mx"], '<span style="color:#ff0000">x</span>'),
        ([b"\x1b[38;2;1;2;3mx"], '<span style="color:#010203">x</span>'),
        ([b"a\x1b[2Kb\x1b]0;title\x07c"], "abc"),
        ([b"caf\xc3", b"\xa9\r\n"], "caf\u00e9\n"),
        ([b"a\x1b]0;t", b"itle\x1b", b"\\b"], "ab"),  # an OSC split across chunks
        ([b"x\x1b]0;unterminated\nnext line\n"], "x\nnext line\n"),  # a newline ends it
        ([b"\x1b]8;;" + b"u" * 5000 + b"\x07end"], "u" * (5003 - MAX_SEQUENCE) + "end"),
        (
            [b"\x1b[34mblue ", b"still blue"],
            '<span class="fg4">blue </span><span class="fg4">still blue</span>',
        ),
    ],
)
def test_ansi_to_html(chunks: list[bytes], expected: str) -> None:
    converter = AnsiToHtml()
    assert "".join(converter.feed(chunk) for chunk in chunks) == expected


def test_an_unterminated_osc_hides_nothing_after_it() -> None:
    """``printf 'starting\\n\\033]0;t'`` then a big log, fed in the store's chunk sizes:
    every later line is shown (3edfc6c showed only ``starting``)."""
    converter = AnsiToHtml()
    lines = b"".join(b"line %d of the training log\n" % i for i in range(200_000))  # ~5 MB
    data = b"starting\n\x1b]0;t" + lines
    shown = "".join(converter.feed(data[i : i + 65536]) for i in range(0, len(data), 65536))
    # the OSC ends at the first newline: its line is the title, as far as the page goes
    assert shown.startswith("starting\n\nline 1 of")
    assert shown.endswith("line 199999 of the training log\n")
    assert shown.count("\n") == 200_001


@pytest.mark.parametrize(
    ("key", "repo"),
    [
        ("repos/github.com/acme/mnist/heads/123;run;0;done;1;w;o;", "github.com/acme/mnist"),
        ("repos/local/mnist/runs/r-1/run.json", "local/mnist"),
        ("repos/gitlab.com/a/b/c/tags/t.json", "gitlab.com/a/b/c"),
        ("repos/github.com/acme/runs/heads/1;r;0;done;1;w;o;", "github.com/acme/runs"),
        ("repos/github.com/acme/mnist/tagdata/t/u1/data/x.csv", "github.com/acme/mnist"),
        ("repos/github.com/acme/mnist/unknown/x", None),
    ],
)
def test_repo_of_key(key: str, repo: str | None) -> None:
    assert repo_of_key(key) == repo


def test_list_repos_one_request_each(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for repo in ("github.com/acme/mnist-v2", "github.com/acme/mnist", "local/x"):
        for i in range(3):
            storage.put(f"repos/{repo}/runs/r{i}/run.json", b"{}")
        storage.put(f"repos/{repo}/tags/t.json", b"{}")
    storage.put("codes/abc.tar.gz", b"")
    calls = []
    original = storage.list_objects

    def counted(prefix: str, *, after: str | None = None):  # type: ignore[no-untyped-def]
        calls.append(after)
        return original(prefix, after=after)

    storage.list_objects = counted  # type: ignore[method-assign]
    assert sorted(list_repos(storage)) == [
        "github.com/acme/mnist",
        "github.com/acme/mnist-v2",
        "local/x",
    ]
    assert len(calls) == 4  # one per repo, and one that finds nothing more


def _files() -> list[ArtifactFile]:
    return [
        ArtifactFile(0, "model/checkpoint.bin", 10, "k1"),
        ArtifactFile(0, "model/logs/a.txt", 3, "k2"),
        ArtifactFile(0, "report.md", 5, "k3"),
    ]


def test_tree_and_lookup() -> None:
    root = tree(_files(), multi_job=False)
    assert (root.files, root.size) == (3, 18)
    model = root.children["model"]
    assert (model.files, model.size) == (2, 13) and not model.is_file
    assert [c.name for c in model.sorted_children()] == ["logs", "checkpoint.bin"]
    assert find_file(_files(), "model/../report.md", False) is None
    assert find_file(_files(), "report.md", False).key == "k3"  # type: ignore[union-attr]
    assert [f.key for f in in_folder(_files(), "model", False)] == ["k1", "k2"]
    assert in_folder(_files(), "mod", False) == []
    assert tree(_files(), multi_job=True).children.keys() == {"job-0"}


def test_zip_is_streamed_chunk_by_chunk(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    big = os.urandom(3 * (1 << 20) + 17)
    storage.put("a/model/big.bin", big)
    storage.put("a/model/small.txt", b"hello")
    files = [
        ArtifactFile(0, "model/big.bin", len(big), "a/model/big.bin"),
        ArtifactFile(0, "model/small.txt", 5, "a/model/small.txt"),
    ]
    parts = list(zip_stream(storage, files, "model", multi_job=False))
    assert len(parts) > 3  # produced while reading, not at the end
    assert max(len(p) for p in parts) < len(big)  # never the whole file in one piece
    archive = zipfile.ZipFile(io.BytesIO(b"".join(parts)))
    assert archive.testzip() is None
    assert archive.read("model/big.bin") == big and archive.read("model/small.txt") == b"hello"


def _run(name: str, repo: str, workflow: str, deps: list[Dependency]) -> RunRecord:
    snapshot = RepoSnapshot(repo_id=repo, code_key="codes/x")
    return RunRecord(run_name=name, repo_id=repo, workflow=workflow, provider="bash",
                     submitted_at=1.0, owner=Owner(), repo=snapshot, deps=deps)  # fmt: skip


def test_lineage_across_repos_and_a_moved_tag() -> None:
    tag = Tag(name="data", repo_id="github.com/a/data", run_name="prep-2", workflow="prep",
              owner=Owner(), created_at=1.0)  # fmt: skip
    runs = [
        _run("prep-2", "github.com/a/data", "prep", []),
        _run("train-1", "github.com/a/model", "train",
             [Dependency(repo_id="github.com/a/data", run_name="prep-2", tag="data")]),
        _run("old-1", "github.com/a/model", "train",
             [Dependency(repo_id="github.com/a/data", run_name="prep-1", tag="data")]),
        _run("eval-1", "github.com/a/model", "eval",
             [Dependency(repo_id="github.com/a/model", run_name="train-1", workflow="train")]),
    ]  # fmt: skip
    graph = graph_of([tag], runs, {})
    edges = {(e.source.split(":")[-1], e.target.split(":")[-1], e.label) for e in graph.edges}
    assert edges == {
        ("prep-2", "data", ""),
        ("data", "train-1", ""),
        ("prep-1", "old-1", "was :data"),
        ("train-1", "eval-1", ""),
    }
    layers = {n.name: n.layer for n in graph.nodes.values()}
    assert layers["prep-2"] < layers["data"] < layers["train-1"] < layers["eval-1"]
    assert all(e.path.startswith("M") for e in graph.edges)


def test_plan_key_inputs() -> None:
    instance = key_inputs("aws:ec2/instance:Instance", {
        "instanceType": "g5.xlarge", "instanceMarketOptions": {"marketType": "spot"},
        "rootBlockDevice": {"volumeSize": 100, "volumeType": "gp3", "encrypted": True},
        "metadataOptions": {"httpTokens": "required"},
    })  # fmt: skip
    assert ("instance type", "g5.xlarge") in instance and ("market", "spot") in instance
    group = key_inputs("aws:ec2/securityGroup:SecurityGroup", {"ingress": []})
    assert group == [("ingress", "none")]
    policy = key_inputs("aws:iam/rolePolicy:RolePolicy", {
        "policy": '{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:x/*"}]}'
    })  # fmt: skip
    assert policy == [("IAM scope", "Allow s3:GetObject on arn:x/*")]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.parametrize("seed", range(12))
def test_layered_layout_keeps_edges_and_boxes_apart(seed: int) -> None:
    """Random graphs shaped like lineage (edges go forward in time): boxes of a column never
    overlap, each edge runs through a column only at a waypoint clear of every box there, and
    curves only in the gaps between columns."""
    import random

    from dstack.dashboard.layout import Box, Spacing, layout

    chance = random.Random(seed)
    count = chance.randint(2, 18)
    edges = sorted(
        {(f"n{a}", f"n{b}") for a in range(count) for b in range(a + 1, count)
         if chance.random() < 0.18}
    )  # fmt: skip
    boxes = [Box(f"n{i}", 200, 60) for i in range(count)]
    gaps = Spacing()
    routes, width, height = layout(boxes, list(edges), gaps)
    by_id = {box.id: box for box in boxes}
    columns: dict[float, list[Box]] = {}
    for box in boxes:
        assert box.x >= 0 and box.x + box.width <= width and 0 <= box.y <= height - box.height
        columns.setdefault(box.x, []).append(box)
    for column in columns.values():
        for i, a in enumerate(column):
            for b in column[i + 1 :]:
                assert not _overlap((a.y, a.y + a.height), (b.y, b.y + b.height))
    for route in routes:
        source, target = by_id[route.source], by_id[route.target]
        assert source.layer < target.layer
        assert route.points[0] == (source.x + source.width, source.y + source.height / 2)
        assert route.points[-1] == (target.x, target.y + target.height / 2)
        inner = route.points[1:-1]
        for (x1, y1), (x2, y2) in zip(inner[::2], inner[1::2], strict=True):
            assert y1 == y2 and x2 - x1 == 200  # straight through one column
            for box in boxes:
                if box.x == x1:
                    lane = (y1 - gaps.waypoint / 2, y1 + gaps.waypoint / 2)
                    assert not _overlap(lane, (box.y, box.y + box.height)), (route, box)


def test_lineage_lines_fit_and_say_the_repo() -> None:
    tag = Tag(name="a-very-long-tag-name-for-moons-data-2026-12", repo_id="github.com/acme/moons-preprocessing-pipeline",
              run_name="prep-2", workflow="prep", owner=Owner(), created_at=1.0, files=1)  # fmt: skip
    graph = graph_of([tag], [_run("prep-2", tag.repo_id, "prep", [])], {})
    node = graph.nodes[f"tag:{tag.repo_id}:{tag.name}"]
    name, subtitle, repo = node.lines
    assert subtitle == "tag · 1 file"
    assert name.endswith("…") and len(name) * 8.6 <= 230 - 2 * 14
    assert repo.startswith("…") and repo.endswith("preprocessing-pipeline")
    assert tag.repo_id in node.title and tag.name in node.title
    assert graph.repos == {tag.repo_id: node.color}
