"""The untapped model inside an instrumented one: the graph reduced to its original outputs.

Benchmarks time a monitored model against the plain one. Both are cut from the same file so
they run the same graph under the same session options: the plain one keeps the outputs the
model had before nnwatch, every node and initializer those outputs need, and no nnwatch
metadata. What only the taps needed (the Identity nodes, the in-graph verdict) goes.
"""

from __future__ import annotations

from typing import Iterable

import onnx


def _names_read(node: onnx.NodeProto) -> set[str]:
    """Every value a node reads, including those its subgraphs (If, Loop, Scan) read from outside."""
    names = {i for i in node.input if i}
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for inner in graph.node:
                names |= _names_read(inner)
    return names


def keep_outputs(model: onnx.ModelProto, outputs: Iterable[str], drop_metadata: Iterable[str] = ()) -> onnx.ModelProto:
    """A copy of ``model`` computing only ``outputs``.

    Parameters
    ----------
    model : onnx.ModelProto
        Any model (not modified).
    outputs : iterable of str
        Names of the graph outputs to keep, all of them existing outputs.
    drop_metadata : iterable of str
        Metadata keys to remove (nnwatch's manifests).

    Returns
    -------
    onnx.ModelProto
        The graph outputs in ``outputs`` (in their order in the model), the nodes they need, the
        initializers those nodes read, and the other metadata.
    """
    keep = set(outputs)
    missing = keep - {o.name for o in model.graph.output}
    if missing:
        raise ValueError(f"not outputs of this model: {sorted(missing)}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    needed = set(keep)
    kept_nodes = []
    for node in reversed(graph.node):  # a valid graph is topologically sorted
        if needed.intersection(node.output):
            kept_nodes.append(node)
            needed |= _names_read(node)
    kept_nodes.reverse()
    outputs_kept = [o for o in graph.output if o.name in keep]
    inits = [i for i in graph.initializer if i.name in needed]
    info = [v for v in graph.value_info if v.name in needed]
    props = [p for p in out.metadata_props if p.key not in set(drop_metadata)]
    for field, items in ((graph.node, kept_nodes), (graph.output, outputs_kept), (graph.initializer, inits),
                         (graph.value_info, info), (out.metadata_props, props)):
        del field[:]
        field.extend(items)
    return out
