"""Choose which layers to tap under a latency budget, measured on this machine and provider.

Tapping, not scoring, sets most of a monitor's overhead (the project's measurements): each exposed
tensor is an extra output to copy and can stop onnxruntime from fusing ops. So the choice is
made from measurements, not by hand:

1. **Cost.** The plain model and, for every candidate layer, the model tapped at that layer
   (plus the classifier's input, always kept) are timed at batch 1, interleaved; a layer's
   cost is its tapped time minus the time with the classifier input alone.
2. **Value, without anomalous data.** Clean inputs are split in two: the first half gives
   each class's per-neuron range at every candidate layer; on the second half and on two
   corruptions generated from it (Gaussian noise at 30% of the data's spread, and a 50/50
   blend of two clean inputs), each layer scores a sample by how far its neurons fall
   outside the predicted class's ranges. A layer's value is the AUROC of clean vs corrupted
   minus 0.5 (zero if below): how well that layer alone tells generic damage from clean data.
3. **Choice.** The classifier input is always tapped (feature detectors need it). The other
   layers of some value are ranked by value per microsecond (a cost below 1 us counts as
   1 us); how many of that ranking to keep is found by timing whole prefixes against the
   plain model (binary search): single costs below the timing noise do not add up to zero.
   What is timed is the monitored batch-1 call: inference with those taps plus the compiled
   coverage pass (profiled on the same clean inputs). Python detectors such as Mahalanobis
   add their own cost on top (``nnwatch bench --per-detector`` shows it).

The measured costs, values, budget and choice are written into the manifest, so ``nnwatch
bench`` can compare the prediction with the full measurement and split tapping from scoring.
"""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..kernels.layout import unpack_layers

RULE = ("cost: batch-1 tapped time minus the classifier-input-only time, interleaved medians; value: AUROC-0.5 of "
        "per-layer range excess, clean vs Gaussian noise (0.3 sd) and 50/50 blends of clean inputs; ranked by value "
        "per microsecond, the longest prefix whose monitored call (compiled detectors) fits the budget")


@dataclass
class TapChoice:
    """What the budgeted selection measured and chose (stored in the manifest)."""

    budget_us: float
    plain_us: float
    base_us: float
    costs_us: dict[str, float]
    values: dict[str, float]
    chosen: list[str]
    predicted_us: float
    provider: str
    machine: str
    rule: str = RULE
    base: list[str] = field(default_factory=list)
    prefixes_us: dict[str, float] = field(default_factory=dict)
    chosen_layers: list[str] = field(default_factory=list)  # `chosen` by layer name, as in costs/values

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


def parse_budget(text: str) -> tuple[str, float]:
    """``"1.05x"`` -> ("ratio", 1.05); ``"2.5ms"`` -> ("ms", 2.5).

    Parameters
    ----------
    text : str
        The budget as given on the command line.

    Returns
    -------
    tuple
        ``(kind, value)``: ``"ratio"`` of a plain call, or ``"ms"`` per monitored call.

    Raises
    ------
    InputError
        Anything else, or a ratio <= 1 / a time <= 0.
    """
    t = text.strip().lower()
    try:
        if t.endswith("x"):
            value = float(t[:-1])
            if 1.0 < value < float("inf"):
                return "ratio", value
        elif t.endswith("ms"):
            value = float(t[:-2])
            if 0 < value < float("inf"):
                return "ms", value
    except ValueError:
        pass
    raise InputError(f"--budget must be a ratio above 1 like 1.05x, or a time like 2.5ms; got {text!r}")


def _time_us(calls: dict, rounds: int) -> dict[str, float]:
    from ..timing import interleaved

    res = interleaved(calls, rounds, warmup=10, budget_s=60)
    return {k: v["p50_ms"] * 1e3 for k, v in res.items()}


def layer_values(tapped_model: bytes, x: np.ndarray, providers: Sequence[str] | str, seed: int = 0) -> dict[str, float]:
    """AUROC - 0.5 of each tapped layer's range excess, clean vs generated corruptions.

    Parameters
    ----------
    tapped_model : bytes
        The model instrumented at every candidate layer.
    x : numpy.ndarray
        Clean inputs (at least 40).
    providers : str or sequence
        onnxruntime providers.
    seed : int
        Split and corruption seed.

    Returns
    -------
    dict
        layer name -> value in [0, 0.5].
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    half = len(x) // 2
    fit, test = x[order[:half]], x[order[half:]]
    spread = float(np.std(test)) or 1.0
    noisy = test + rng.normal(0, 0.3 * spread, test.shape)
    blend = 0.5 * test + 0.5 * test[rng.permutation(len(test))]
    if np.issubdtype(test.dtype, np.integer):  # stay in the input's range (no wrap-around)
        info = np.iinfo(test.dtype)
        noisy, blend = (np.clip(np.rint(a), info.min, info.max) for a in (noisy, blend))
    generated = {"Gaussian noise": noisy.astype(test.dtype), "blend of two": blend.astype(test.dtype)}
    aurocs = layer_aurocs(tapped_model, fit, test, generated, providers)
    return {layer: max(float(np.mean(list(by_set.values()))) - 0.5, 0.0) for layer, by_set in aurocs.items()}


def layer_aurocs(tapped_model: bytes, fit: np.ndarray, clean: np.ndarray, anomalous: dict[str, np.ndarray],
                 providers: Sequence[str] | str) -> dict[str, dict[str, float]]:
    """Per tapped layer and set: AUROC of the layer's range excess, ``clean`` vs each anomalous set.

    A sample's excess at a layer is the mean over its neurons of the distance outside the
    predicted class's range (fitted on ``fit``; the global range for classes with fewer
    than 5 samples there), in units of the neuron's global range.

    Parameters
    ----------
    tapped_model : bytes
        Instrumented model.
    fit, clean : numpy.ndarray
        Inputs that fit the ranges; clean inputs scored (the negatives).
    anomalous : dict
        name -> inputs (the positives).
    providers : str or sequence
        onnxruntime providers.

    Returns
    -------
    dict
        layer -> set name -> AUROC.
    """
    from ..monitor.runner import Runner
    from .metrics import auroc

    runner = Runner(tapped_model, providers=providers)

    def activations(batch: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        preds, per_layer = [], [[] for _ in runner.manifest.taps]
        for lo in range(0, len(batch), 64):
            chunk = runner.check_input(batch[lo : lo + 64])
            ws = runner.workspace(len(chunk))
            runner.run(chunk, ws)
            preds.append(ws.logits.argmax(1))
            for i, layer in enumerate(unpack_layers(ws.buf, len(chunk), runner.offsets)):
                per_layer[i].append(layer.copy())
        return np.concatenate(preds), [np.concatenate(p) for p in per_layer]

    fit_pred, fit_layers = activations(fit)
    negatives = activations(clean)
    positives = {name: activations(x) for name, x in anomalous.items()}
    out: dict[str, dict[str, float]] = {}
    for i, tap in enumerate(runner.manifest.taps):
        a = fit_layers[i]
        glo, ghi = a.min(axis=0), a.max(axis=0)
        lo = np.tile(glo, (runner.n_classes, 1))
        hi = np.tile(ghi, (runner.n_classes, 1))
        for c in np.unique(fit_pred):
            rows = a[fit_pred == c]
            if len(rows) >= 5:
                lo[c], hi[c] = rows.min(axis=0), rows.max(axis=0)
        unit = np.maximum(ghi - glo, 1e-12)

        def excess(pred: np.ndarray, acts: np.ndarray) -> np.ndarray:
            dist = np.maximum(lo[pred] - acts, 0) + np.maximum(acts - hi[pred], 0)
            return np.nan_to_num(dist / unit, nan=1e6, posinf=1e6).mean(axis=1)

        neg = excess(negatives[0], negatives[1][i])
        out[tap.layer] = {name: auroc(neg, excess(p, layers[i])) for name, (p, layers) in positives.items()}
    return out


def choose_taps(source: Any, x: np.ndarray, budget: tuple[str, float], candidates: list[str], penultimate: str | None,
                instrument_options: dict, providers: Sequence[str] | str = "cpu", threads: int | None = 1,
                rounds: int = 300) -> TapChoice:
    """Measure every candidate tap's cost and value and choose the set that fits the budget.

    Parameters
    ----------
    source : bytes
        The original (untapped) model.
    x : numpy.ndarray
        Clean inputs (>= 40) for the value estimate; the first one times the calls.
    budget : tuple
        Output of :func:`parse_budget`.
    candidates : list of str
        Tensors ``layers="auto"`` would tap (the classifier input among them, if found).
    penultimate : str or None
        The classifier input (always kept).
    instrument_options : dict
        ``reduction`` and ``reduce_in_graph`` passed to :func:`~nnwatch.export.instrument.instrument`.
    providers : str or sequence
        onnxruntime providers to measure on.
    threads : int or None
        Intra-op threads.
    rounds : int
        Timed rounds per variant.

    Returns
    -------
    TapChoice
        Measurements and choice.

    Raises
    ------
    InputError
        Too few inputs, or a budget even the classifier input alone exceeds (the message
        gives the cheapest achievable).
    """
    import onnxruntime as ort

    from ..export.instrument import instrument
    from ..monitor.detectors import COMPILED
    from ..monitor.monitor import Monitor
    from ..monitor.profiling import build_profile
    from ..monitor.providers import resolve_providers
    from ..monitor.runner import Runner, session_options
    from .overhead import plain_iobinding_call

    if len(x) < 40:
        raise InputError(f"--budget needs at least 40 clean inputs in --data to judge layers, got {len(x)}")
    chosen_providers = resolve_providers(providers)
    others = [c for c in candidates if c != penultimate]
    base_layers = [penultimate] if penultimate else []

    def tapped(layers: list[str]) -> bytes:
        return instrument(source, layers=layers, include_penultimate=False, **instrument_options)[0].SerializeToString()

    sample = x[:1]
    plain = ort.InferenceSession(source, session_options(threads), providers=chosen_providers)
    calls, runners = {}, {}
    for name, layers in [("base", base_layers)] + [(c, base_layers + [c]) for c in others]:
        if not layers:
            continue
        runner = Runner(tapped(layers), providers=chosen_providers, threads=threads)
        arr = runner.check_input(sample)
        ws = runner.workspace(1)
        runners[name] = runner
        calls[name] = lambda r=runner, a=arr, w=ws: r.run(a, w)
    if not runners:
        raise InputError("--budget found no classifier input and no activation to tap in this model; "
                         "instrument it with --layers NAME,... instead")
    first = next(iter(runners.values()))
    calls["plain"] = plain_iobinding_call(plain, first.check_input(sample))
    times = _time_us(calls, rounds)
    plain_us = times["plain"]
    base_us = times.get("base", plain_us)
    layer_of = {}
    for c in others:
        layer_of[c] = runners[c].manifest.taps[-1].layer
    costs = {layer_of[c]: max(times[c] - base_us, 0.0) for c in others}
    limit = plain_us * budget[1] if budget[0] == "ratio" else budget[1] * 1e3
    order = {c: i for i, c in enumerate(candidates)}
    measured: dict[int, float] = {}
    ranked: list[str] = []

    def prefix_us(k: int) -> float:
        # The whole monitored call: inference with these taps plus the compiled coverage pass.
        if k not in measured:
            layers = base_layers + sorted(ranked[:k], key=order.get)
            if not layers:  # no classifier input found and nothing chosen: nothing to monitor yet
                measured[k] = plain_us
                return plain_us
            runner = Runner(tapped(layers), providers=chosen_providers, threads=threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                profile = build_profile(runner, np.asarray(x[:200]), batch_size=32)
                mon = Monitor(runner, profile, detectors=COMPILED, min_signature_samples=1)
            mon.warmup((1,))
            t = _time_us({"plain": calls["plain"], "monitored": lambda: mon.score(sample, _record=False)}, rounds)
            measured[k] = t["monitored"] / t["plain"] * plain_us
        return measured[k]

    base_monitored = prefix_us(0)
    if base_monitored > limit:
        plain_note = (f"; the plain call alone ({plain_us:.1f} us) is already over {limit:.1f} us"
                      if plain_us > limit else "")
        raise InputError(f"budget {budget[1]}{'x' if budget[0] == 'ratio' else ' ms'} cannot be met here: "
                         f"the cheapest monitored call, with the classifier input alone, measures {base_monitored:.1f} us "
                         f"({base_monitored / plain_us:.3f}x of the plain {plain_us:.1f} us){plain_note}")
    values = layer_values(tapped(base_layers + others), np.asarray(x), chosen_providers) if others else {}
    # One tap alone often costs less than the timing noise, yet forty together do not add up to
    # zero: so the greedy order comes from the single measurements, and how far down that order
    # to go is decided by timing whole prefixes (binary search, assuming more taps never cost less).
    floor = 1.0  # us: a tap measured at or below the noise still counts
    ranked += [c for c in sorted(others, key=lambda c: -values[layer_of[c]] / max(costs[layer_of[c]], floor))
               if values[layer_of[c]] > 0]

    low, high = 0, len(ranked)  # invariant: prefix `low` fits
    while low < high:
        mid = (low + high + 1) // 2
        if prefix_us(mid) <= limit:
            low = mid
        else:
            high = mid - 1
    chosen = sorted(ranked[:low], key=order.get)
    if not chosen and not base_layers:
        raise InputError("--budget: no classifier input was found and no layer fits the budget "
                         f"({budget[1]}{'x' if budget[0] == 'ratio' else ' ms'}); the cheapest single layer costs "
                         f"{min(costs.values(), default=0.0):.1f} us; loosen the budget or pass --layers")
    return TapChoice(budget_us=limit, plain_us=plain_us, base_us=base_us, costs_us=costs, values=values,
                     chosen=chosen, predicted_us=measured[low], provider=chosen_providers[0],
                     machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                     base=base_layers, prefixes_us={str(k): v for k, v in sorted(measured.items())},
                     chosen_layers=[layer_of[c] for c in chosen])


def instrument_within_budget(src: Any, dst: Any, x: np.ndarray, budget: str, reduction: str = "mean",
                             reduce_in_graph: bool = True, providers: Sequence[str] | str = "cpu",
                             threads: int | None = 1, rounds: int = 300,
                             preprocess: Any = None) -> tuple[Any, TapChoice]:
    """``nnwatch instrument --budget``: choose the taps, then instrument with them.

    Parameters
    ----------
    src, dst : path
        Original model; where to write the instrumented one.
    x : numpy.ndarray
        Clean inputs (>= 40).
    budget : str
        ``"1.05x"`` (of the plain batch-1 IOBinding call) or ``"2.5ms"``.
    reduction, reduce_in_graph : str, bool
        As for :func:`~nnwatch.export.instrument.instrument`.
    providers, threads, rounds
        Where and how long to measure.
    preprocess : str, dict, Preprocess or None
        The declared preprocessing of recorded frames, recorded in the model.

    Returns
    -------
    tuple
        ``(TapManifest written, TapChoice)``.
    """
    from ..export.instrument import instrument, load_onnx, save_onnx

    parsed = parse_budget(budget)
    model, _ = load_onnx(src)
    data = model.SerializeToString()
    options = {"reduction": reduction, "reduce_in_graph": reduce_in_graph}
    _, auto = instrument(data, layers="auto", **options)
    penult = next((t.source for t in auto.taps if t.layer == auto.penultimate), None)
    choice = choose_taps(data, x, parsed, [t.source for t in auto.taps], penult, options, providers, threads, rounds)
    in_graph_order = [t.source for t in auto.taps if t.source in set(choice.base + choice.chosen)]
    final, manifest = instrument(src, layers=in_graph_order, include_penultimate=True,
                                 selection=choice.to_dict(), preprocess=preprocess, **options)
    save_onnx(final, dst)
    return manifest, choice
