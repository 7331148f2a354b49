"""Tags and deps across repos as a graph: which run produced a tag, which runs consumed it.

Nodes are runs and tags; edges go from what was produced to what consumed it: run → tag (the
tag points at the run), tag → run (the run's dep named the tag and got what it points at now),
run → run (a workflow dep, or a tag that has moved on since). The graph is read from every
repo's tags and its most recent runs' records, and laid out in layers (:mod:`.layout`) so
that edges run between boxes, for an SVG drawn by the page.

Each box says what it is in lines cut to fit it (the whole text in its tooltip): the name, what
it is ("train · done", "tag · 1 file"), and its repo in full, marked by a colour that the
legend names, since ``local/main`` alone reads like a branch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dstack import state
from dstack.dashboard.layout import Box
from dstack.dashboard.layout import layout as place
from dstack.models import RunRecord, RunSummary, Tag
from dstack.storage.base import Storage

RECENT_RUNS = 200  # runs per repo whose deps are read (one record each)
NODE_WIDTH, NODE_HEIGHT, PADDING = 230, 64, 14
#: widest character of each line's font (13px bold, 11.5px), in pixels, so that a line cut
#: to (width - padding) / this never overflows its box
NAME_CHAR, DETAIL_CHAR = 8.6, 7.2
REPO_COLORS = ("#2f5bd3", "#d9731a", "#1a9a8a", "#b03a8f", "#6b8e23", "#8a5cd6", "#c9362d")


@dataclass
class GraphNode:
    id: str
    kind: str  # "run" or "tag"
    repo_id: str
    name: str
    detail: str = ""
    status: str = ""
    layer: int = 0
    x: int = 0
    y: int = 0
    color: str = ""

    @property
    def title(self) -> str:
        """The box's whole text, for its tooltip."""
        what = "tag :" + self.name if self.kind == "tag" else "run " + self.name
        return f"{what}\n{self.subtitle}\nrepo {self.repo_id}"

    @property
    def subtitle(self) -> str:
        if self.kind == "tag":
            return f"tag · {self.detail}"
        return " · ".join(part for part in (self.detail, self.status) if part)

    @property
    def lines(self) -> tuple[str, str, str]:
        """The three lines the box shows, each cut to fit."""
        name = f":{self.name}" if self.kind == "tag" else self.name
        room = NODE_WIDTH - 2 * PADDING
        return (
            fit(name, int(room / NAME_CHAR)),
            fit(self.subtitle, int(room / DETAIL_CHAR)),
            fit(self.repo_id, int(room / DETAIL_CHAR) - 5, keep_end=True),
        )


@dataclass
class GraphEdge:
    source: str
    target: str
    label: str = ""
    path: str = ""


@dataclass
class Graph:
    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: list[GraphEdge] = field(default_factory=list)
    width: int = 0
    height: int = 0
    repos: dict[str, str] = field(default_factory=dict)  # repo id: its colour

    def node(self, kind: str, repo_id: str, name: str) -> GraphNode:
        node_id = f"{kind}:{repo_id}:{name}"
        if node_id not in self.nodes:
            self.nodes[node_id] = GraphNode(node_id, kind, repo_id, name)
        return self.nodes[node_id]

    def connect(self, source: GraphNode, target: GraphNode, label: str = "") -> None:
        if not any(e.source == source.id and e.target == target.id for e in self.edges):
            self.edges.append(GraphEdge(source.id, target.id, label))


def build(storage: Storage) -> Graph:
    """The graph of every repo of the store."""
    repo_ids = list(state.list_repos(storage))

    def of_repo(repo_id: str) -> tuple[list[Tag], list[tuple[str, RunSummary]]]:
        runs = state.list_runs(storage, repo_id, limit=RECENT_RUNS)
        return state.list_tags(storage, repo_id), [(repo_id, run) for run in runs]

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(of_repo, repo_ids))
        tags = [tag for repo_tags, _ in found for tag in repo_tags]
        pairs = [pair for _, repo_runs in found for pair in repo_runs]
        records = list(pool.map(lambda p: state.read_run(storage, p[0], p[1].run_name), pairs))
    return graph_of(tags, records, {run.run_name: run for _, run in pairs})


def graph_of(tags: list[Tag], runs: list[RunRecord], summaries: dict[str, RunSummary]) -> Graph:
    graph = Graph()
    current = {(t.repo_id, t.name): t for t in tags}
    for tag in tags:
        node = graph.node("tag", tag.repo_id, tag.name)
        files = f"{tag.files} file" + ("" if tag.files == 1 else "s")
        node.detail = "uploaded files" if tag.run_name is None else files
        if tag.run_name is not None:
            graph.connect(
                _run_node(graph, tag.repo_id, tag.run_name, tag.workflow, summaries), node
            )
    for run in runs:
        consumer = _run_node(graph, run.repo_id, run.run_name, run.workflow, summaries)
        for dep in run.deps:
            held = current.get((dep.repo_id, dep.tag)) if dep.tag else None
            if held is not None and (held.run_name, held.upload_id) == (
                dep.run_name,
                dep.upload_id,
            ):
                graph.connect(graph.node("tag", dep.repo_id, held.name), consumer)
            elif dep.run_name is not None:
                producer = _run_node(graph, dep.repo_id, dep.run_name, dep.workflow, summaries)
                graph.connect(producer, consumer, f"was :{dep.tag}" if dep.tag else "")
    used = {e.source for e in graph.edges} | {e.target for e in graph.edges}
    graph.nodes = {k: n for k, n in graph.nodes.items() if k in used or n.kind == "tag"}
    layout(graph)
    return graph


def focus(graph: Graph, node_id: str) -> Graph:
    """Only what is connected to ``node_id`` (upstream and downstream), laid out again."""
    keep, todo = {node_id}, [node_id]
    while todo:
        current = todo.pop()
        for edge in graph.edges:
            for a, b in ((edge.source, edge.target), (edge.target, edge.source)):
                if a == current and b not in keep:
                    keep.add(b)
                    todo.append(b)
    sub = Graph(
        nodes={k: n for k, n in graph.nodes.items() if k in keep},
        edges=[e for e in graph.edges if e.source in keep and e.target in keep],
    )
    layout(sub)
    return sub


def layout(graph: Graph) -> None:
    """Place the nodes and route the edges (:func:`.layout.layout`); colour the repos."""
    boxes = [Box(key, NODE_WIDTH, NODE_HEIGHT) for key in graph.nodes]
    routes, graph.width, graph.height = place(
        boxes, [(edge.source, edge.target) for edge in graph.edges]
    )
    for box in boxes:
        node = graph.nodes[box.id]
        node.layer, node.x, node.y = box.layer, round(box.x), round(box.y)
    for edge, route in zip(graph.edges, routes, strict=True):
        edge.path = route.path
    repo_ids = sorted({node.repo_id for node in graph.nodes.values()})
    graph.repos = {r: REPO_COLORS[i % len(REPO_COLORS)] for i, r in enumerate(repo_ids)}
    for node in graph.nodes.values():
        node.color = graph.repos[node.repo_id]


def fit(text: str, room: int, *, keep_end: bool = False) -> str:
    """``text`` in at most ``room`` characters, cut with "…" (at the start if ``keep_end``:
    a repo id says most at its end)."""
    if len(text) <= room:
        return text
    return "…" + text[-(room - 1) :] if keep_end else text[: room - 1] + "…"


def _run_node(
    graph: Graph,
    repo_id: str,
    run_name: str,
    workflow: str | None,
    summaries: dict[str, RunSummary],
) -> GraphNode:
    node = graph.node("run", repo_id, run_name)
    summary = summaries.get(run_name)
    node.detail = workflow or (summary.workflow if summary else "") or node.detail
    if summary is not None:
        node.status = summary.status.value
    return node
