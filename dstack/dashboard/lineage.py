"""Tags and deps across repos as a graph: which run produced a tag, which runs consumed it.

Nodes are runs and tags; edges go from what was produced to what consumed it: run → tag (the
tag points at the run), tag → run (the run's dep named the tag and got what it points at now),
run → run (a workflow dep, or a tag that has moved on since). The graph is read from every
repo's tags and its most recent runs' records, and laid out in columns (longest path from a
source), ordered within a column by where their inputs sit, for an SVG drawn by the page.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dstack import state
from dstack.models import RunRecord, RunSummary, Tag
from dstack.storage.base import Storage

RECENT_RUNS = 200  # runs per repo whose deps are read (one record each)
NODE_WIDTH, NODE_HEIGHT, GAP_X, GAP_Y, MARGIN = 220, 52, 90, 22, 16
TOP = 40  # room above the first row for arcs that skip a column


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
        node.detail = "uploaded files" if tag.run_name is None else f"{tag.files} files"
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
    """Columns by longest path from a source; rows ordered by the mean row of the inputs."""
    inputs: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for edge in graph.edges:
        inputs[edge.target].append(edge.source)
    for _ in range(len(graph.nodes)):  # relax until stable (the graph has no cycles)
        changed = False
        for key, node in graph.nodes.items():
            layer = max((graph.nodes[s].layer + 1 for s in inputs[key]), default=0)
            if layer != node.layer:
                node.layer, changed = layer, True
        if not changed:
            break
    columns: dict[int, list[GraphNode]] = {}
    for node in sorted(graph.nodes.values(), key=lambda n: (n.repo_id, n.id)):
        columns.setdefault(node.layer, []).append(node)
    rows: dict[str, float] = {}
    for layer in sorted(columns):
        column = columns[layer]
        column.sort(key=lambda n: _mean([rows[s] for s in inputs[n.id]], default=len(rows)))
        for row, node in enumerate(column):
            rows[node.id] = row
            node.x = MARGIN + layer * (NODE_WIDTH + GAP_X)
            node.y = MARGIN + TOP + row * (NODE_HEIGHT + GAP_Y)
    for edge in graph.edges:
        a, b = graph.nodes[edge.source], graph.nodes[edge.target]
        x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT // 2
        x2, y2 = b.x, b.y + NODE_HEIGHT // 2
        bend = max((x2 - x1) // 2, 30)
        if b.layer - a.layer > 1:  # over the columns between: arc above the nodes in its way
            lift = NODE_HEIGHT + GAP_Y // 2
            edge.path = f"M{x1},{y1} C{x1 + 60},{y1 - lift} {x2 - 60},{y2 - lift} {x2},{y2}"
        else:
            edge.path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    graph.width = max((n.x + NODE_WIDTH for n in graph.nodes.values()), default=0) + MARGIN
    graph.height = max((n.y + NODE_HEIGHT for n in graph.nodes.values()), default=0) + MARGIN


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


def _mean(values: list[float], *, default: float) -> float:
    return sum(values) / len(values) if values else default
