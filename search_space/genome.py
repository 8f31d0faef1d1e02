"""The graph genome: a typed wrapper around a ``networkx.DiGraph`` of op nodes.

Nodes carry ``op`` plus that op's attributes; an edge's ``slot`` orders a merge's inputs. A genome infers
every node's shape, parameters and FLOPs without building torch modules, validates itself, has a stable
canonical key, and round-trips through node-link JSON.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import networkx as nx

from search_space.errors import GenomeError
from search_space.ops import Shape, get_op, normalize_attrs

FORMAT = "nas-explorer-genome/1"
# Sizes no genome may reach, so that a nonsense attribute (mid_channels=2e10) is a GenomeError before anything is
# built, not a process killed for memory. They bound each node (its output and the maps inside its layer) and the
# parameters, not a whole batch: a genome within them can still outgrow a machine at a large batch size. VGG-16 has
# 138M parameters and its largest map 3.2M values per sample, so real networks fit with room to spare.
MAX_PARAMS = 2**28  # 1 GiB of float32 weights
MAX_NODE_VALUES = 2**26  # 256 MiB of float32 activations per sample, one node's output


@dataclass(frozen=True)
class NodeInfo:
    """What analysis knows about one node: op, normalized attributes, inputs in slot order, shape, cost."""

    name: str
    op: str
    attrs: dict
    inputs: tuple[str, ...]
    shape: Shape
    params: int
    flops: int


def check_size(node: NodeInfo, params_so_far: int, inner_values: int = 0) -> None:
    """GenomeError naming the node where the parameters, one node's output or a map inside its layer
    (``inner_values``, per sample) pass the sizes any genome may have."""
    values = 1
    for size in node.shape:
        values *= size
    if values > MAX_NODE_VALUES:
        raise GenomeError(f"node {node.name!r}: output {list(node.shape)} has {values:,} values per sample, "
                          f"more than the {MAX_NODE_VALUES:,} any node may have")
    if params_so_far > MAX_PARAMS:
        raise GenomeError(f"node {node.name!r}: brings the genome to {params_so_far:,} parameters, "
                          f"more than the {MAX_PARAMS:,} any genome may have")
    if inner_values > MAX_NODE_VALUES:
        raise GenomeError(f"node {node.name!r}: makes a map of {inner_values:,} values per sample inside its "
                          f"layer, more than the {MAX_NODE_VALUES:,} any node may have")


class Genome:
    """A network as a DAG of ops: one ``input`` node, one ``output`` node (the logits)."""

    def __init__(self, graph: nx.DiGraph | None = None):
        self.graph = graph if graph is not None else nx.DiGraph()
        self._info: dict[str, NodeInfo] | None = None

    # -- building ---------------------------------------------------------------------------------
    def add(self, name: str, op: str, inputs: Iterable[str] = (), **attrs: Any) -> str:
        """Adds node ``name`` fed by ``inputs`` (in order) and returns its name, for chaining."""
        if name in self.graph:
            raise GenomeError(f"node {name!r}: defined twice")
        self.graph.add_node(name, op=op, **attrs)
        for slot, source in enumerate(inputs):
            if source not in self.graph:
                raise GenomeError(f"node {name!r}: input {source!r} does not exist")
            self.graph.add_edge(source, name, slot=slot)
        self._info = None
        return name

    def insert_after(self, anchor: str, name: str, op: str, **attrs: Any) -> "Genome":
        """A copy with node ``name`` between ``anchor`` and every node that read it (their slots kept)."""
        if anchor not in self.graph:
            raise GenomeError(f"node {anchor!r}: does not exist, nothing to insert after")
        copy = Genome(self.graph.copy())
        readers = [(target, data.get("slot", 0)) for _, target, data in copy.graph.out_edges(anchor, data=True)]
        copy.graph.remove_edges_from([(anchor, target) for target, _ in readers])
        copy.add(name, op, [anchor], **attrs)
        copy.graph.add_edges_from((name, target, {"slot": slot}) for target, slot in readers)
        return copy

    def chain(self, prev: str, layers: Iterable[tuple[str, str, dict]]) -> str:
        """Adds ``(name, op, attrs)`` nodes one after another from ``prev``; returns the last name."""
        for name, op, attrs in layers:
            prev = self.add(name, op, [prev], **attrs)
        return prev

    # -- analysis ---------------------------------------------------------------------------------
    def validate(self) -> "Genome":
        """Raises GenomeError on the first problem; returns self so calls can chain."""
        self.analyze()
        return self

    def analyze(self) -> dict[str, NodeInfo]:
        """Shapes, parameters and FLOPs of every node, in topological order (cached)."""
        if self._info is None:
            self._info = self._analyze()
        return self._info

    def _analyze(self) -> dict[str, NodeInfo]:
        g = self.graph
        if g.number_of_nodes() == 0:
            raise GenomeError("genome is empty: it needs an 'input' and an 'output' node")
        try:
            cycle = nx.find_cycle(g)
            raise GenomeError(f"node {cycle[0][0]!r}: part of a cycle {' -> '.join(str(e[0]) for e in cycle)}")
        except nx.NetworkXNoCycle:
            pass
        for role in ("input", "output"):
            found = [n for n, d in g.nodes(data=True) if d.get("op") == role]
            if len(found) != 1:
                raise GenomeError(f"genome needs exactly one {role!r} node, found {len(found)}")
        source = self.input_node
        sink = self.output_node
        reachable = nx.descendants(g, source) | {source}
        useful = nx.ancestors(g, sink) | {sink}
        for node in g.nodes:
            if node not in reachable:
                raise GenomeError(f"node {node!r}: dangling, not reachable from the input {source!r}")
            if node not in useful:
                raise GenomeError(f"node {node!r}: dangling, its output never reaches the output node {sink!r}")
        info: dict[str, NodeInfo] = {}
        params = 0
        for node in nx.lexicographical_topological_sort(g, key=str):
            data = dict(g.nodes[node])
            op = get_op(data.pop("op", None), node)
            attrs = normalize_attrs(node, op, data)
            inputs = tuple(sorted(g.predecessors(node), key=lambda p: g.edges[p, node].get("slot", 0)))
            if op.arity == 0 and inputs or op.arity == 1 and len(inputs) != 1 or op.arity == -1 and len(inputs) < 2:
                want = {0: "no inputs", 1: "exactly one input", -1: "two or more inputs"}[op.arity]
                raise GenomeError(f"node {node!r}: op {op.name!r} takes {want}, got {len(inputs)}")
            ins = [info[p].shape for p in inputs]
            shape = op.out_shape(node, attrs, ins)
            info[node] = NodeInfo(node, op.name, attrs, inputs, shape, op.params(attrs, ins, shape),
                                  op.flops(attrs, ins, shape))
            params += info[node].params
            check_size(info[node], params, op.inner_values(attrs, ins, shape))
        return info

    @property
    def input_node(self) -> str:
        return next(n for n, d in self.graph.nodes(data=True) if d.get("op") == "input")

    @property
    def output_node(self) -> str:
        return next(n for n, d in self.graph.nodes(data=True) if d.get("op") == "output")

    @property
    def input_shape(self) -> Shape:
        return self.analyze()[self.input_node].shape

    @property
    def num_classes(self) -> int:
        return self.analyze()[self.output_node].shape[0]

    @property
    def params(self) -> int:
        """Trainable parameters, counted analytically."""
        return sum(i.params for i in self.analyze().values())

    @property
    def flops(self) -> int:
        """Multiply-adds of one sample's forward pass (convs and dense layers)."""
        return sum(i.flops for i in self.analyze().values())

    # -- identity ---------------------------------------------------------------------------------
    def key(self) -> str:
        """Canonical hash: equal for genomes that build the same network, whatever their node names.

        The Weisfeiler-Lehman hash costs milliseconds per call; it is memoized on the graph's JSON, which is
        cheap to write (one trial asks for the key several times: its record, its twins, simulated curves)."""
        graph_json = json.dumps(self.to_dict(), sort_keys=True)
        key = _KEYS.get(graph_json)
        if key is None:
            key = self._wl_key()  # on this genome: its analysis is usually done already
            _remember(graph_json, key)
        return key

    def with_known_key(self, key: str) -> "Genome":
        """This genome, its ``key`` as computed elsewhere (a Ray trial's, by the driver that sampled it): saves
        recomputing the hash. The caller vouches for the key."""
        _remember(json.dumps(self.to_dict(), sort_keys=True), key)
        return self

    def _wl_key(self) -> str:
        info = self.analyze()
        labelled = nx.DiGraph()
        for name, i in info.items():
            labelled.add_node(name, label=json.dumps([i.op, i.attrs], sort_keys=True))
        for source, target, data in self.graph.edges(data=True):
            ordered = info[target].op == "concat"
            labelled.add_edge(source, target, slot=str(data.get("slot", 0) if ordered else 0))
        with warnings.catch_warnings():  # networkx notes that directed hashes changed in 3.5; ours are new
            warnings.simplefilter("ignore", UserWarning)
            return nx.weisfeiler_lehman_graph_hash(labelled, node_attr="label", edge_attr="slot",
                                                   iterations=max(3, len(info)), digest_size=12)

    def summary(self) -> str:
        """A one-line readable key, e.g. ``in40-r8x5-c5s2c64-p1-...-d10``; branches in brackets."""
        info = self.analyze()
        parts = []
        for i in info.values():
            text = get_op(i.op).short(i.attrs)
            if text:
                parts.append(text)
        return "-".join(parts)

    # -- serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Node-link form; node attributes as written (defaults are filled in on analysis)."""
        nodes = [{"id": n, **d} for n, d in self.graph.nodes(data=True)]
        edges = [{"source": s, "target": t, "slot": d.get("slot", 0)} for s, t, d in self.graph.edges(data=True)]
        return {"format": FORMAT, "nodes": nodes, "edges": edges}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any, where: str = "genome") -> "Genome":
        """Builds a genome from node-link data; malformed data is a GenomeError naming ``where``."""
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) \
                or not isinstance(data.get("edges", []), list):
            raise GenomeError(f"{where}: expected an object with 'nodes' and 'edges' lists")
        graph = nx.DiGraph()
        for node in data["nodes"]:
            if not isinstance(node, dict) or "id" not in node or "op" not in node:
                raise GenomeError(f"{where}: every node needs 'id' and 'op', got {node!r}")
            if str(node["id"]) in graph:
                raise GenomeError(f"{where}: node {str(node['id'])!r} is defined twice; node ids must be unique")
            attrs = {k: v for k, v in node.items() if k != "id"}
            graph.add_node(str(node["id"]), **attrs)
        for edge in data.get("edges", []):
            if not isinstance(edge, dict) or str(edge.get("source")) not in graph or str(edge.get("target")) not in graph:
                raise GenomeError(f"{where}: edge {edge!r} must join two existing node ids")
            slot = edge.get("slot", 0)
            if isinstance(slot, bool) or not isinstance(slot, int):
                raise GenomeError(f"{where}: edge {edge['source']!r} -> {edge['target']!r}: 'slot' must be an integer, "
                                  f"got {slot!r}")
            graph.add_edge(str(edge["source"]), str(edge["target"]), slot=slot)
        return cls(graph)

    @classmethod
    def from_json(cls, text: str, where: str = "genome") -> "Genome":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenomeError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise GenomeError(f"{where}: JSON nested too deeply to be a genome") from None
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | Path) -> "Genome":
        """Reads a genome JSON file; a missing or unreadable file is a GenomeError naming it."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GenomeError(f"{path}: cannot read genome file ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise GenomeError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected genome JSON") from None
        return cls.from_json(text, str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    def __repr__(self) -> str:
        return f"Genome({self.graph.number_of_nodes()} nodes)"


_KEYS: dict[str, str] = {}  # Genome.key by the graph's JSON, oldest first
_KEYS_KEPT = 4096


def _remember(graph_json: str, key: str) -> None:
    if graph_json not in _KEYS and len(_KEYS) >= _KEYS_KEPT:
        del _KEYS[next(iter(_KEYS))]  # the oldest
    _KEYS[graph_json] = key
