"""Why an input was flagged: the fused verdict's members, and the neurons furthest outside the profile.

For each flagged input (and only those: explaining costs nothing for the inputs that pass):

- ``members``: with the fused verdict deciding, each member's evidence ``e_k`` (its conformal
  ``-log p`` against the member half, :func:`nnwatch.kernels.fusion.member_evidences`), whether
  it is among the strongest half the fused statistic adds up, and its share of that statistic
  (0 for the others), largest first;
- ``neurons``: the few neurons furthest outside the predicted class's profile range, in the
  unit ``nb_excess`` measures (:func:`nnwatch.profile.signature.class_ranges`: the class range's
  width), with the layer, the neuron's index in it, its value and the class's range;
- ``layers``: per layer, the share of its neurons outside the class's range (``nbc`` of that
  layer alone), largest first;
- ``summary``: one line of the above, for CSV and logs.

A non-finite input is explained as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels.fusion import FusionTables, kept_members, member_evidences
from ..profile.schema import Profile
from ..profile.signature import class_ranges, signature_rows

TOP_NEURONS = 5
TOP_LAYERS = 3


class Explainer:
    """Builds explanations for one monitor's flagged rows (the signature ranges are read per row).

    Parameters
    ----------
    profile : Profile
        The monitor's profile.
    layer_names : sequence of str
        Tapped layers in buffer order.
    offsets : numpy.ndarray
        int64 ``(L + 1,)`` layer offsets of the activation buffer.
    min_signature_samples : int
        Classes with fewer trusted samples are compared with the global signature.
    fusion : tuple or None
        ``(FusionTables, member names)`` when the fused verdict decides.
    """

    def __init__(self, profile: Profile, layer_names: list[str], offsets: np.ndarray, min_signature_samples: int,
                 fusion: tuple[FusionTables, list[str]] | None = None) -> None:
        self.profile = profile
        self.layer_names = list(layer_names)
        self.offsets = np.asarray(offsets, np.int64)
        self.rows = signature_rows(profile, min_signature_samples)
        self.fusion = fusion
        self.layer_of = np.repeat(np.arange(len(self.layer_names)), np.diff(self.offsets))

    def explain_rows(self, rows: np.ndarray, pred: np.ndarray, buf: np.ndarray, score_matrix: np.ndarray,
                     nonfinite: np.ndarray, members: bool = True) -> list[dict[str, Any]]:
        """Explanations of the given batch rows.

        Parameters
        ----------
        rows : numpy.ndarray
            int indices of the flagged rows.
        pred : numpy.ndarray
            int64 ``(B,)`` predicted classes.
        buf : numpy.ndarray
            float32 ``(B * N,)`` activations of the batch.
        score_matrix : numpy.ndarray
            float64 ``(B, D)`` the monitor's scores.
        nonfinite : numpy.ndarray
            bool ``(B,)`` input held NaN/Inf.
        members : bool
            Explain the fused verdict's members (when it decided the flags).

        Returns
        -------
        list of dict
            One per row, in ``rows`` order.
        """
        n = int(self.offsets[-1])
        acts = buf.reshape(-1, n)
        evidence = None
        if members and self.fusion is not None and len(rows):
            tables, _ = self.fusion
            evidence = member_evidences(score_matrix[rows], pred[rows], tables)
        out = []
        for i, b in enumerate(np.asarray(rows, np.int64).tolist()):
            entry: dict[str, Any] = {"class": int(pred[b])}
            if nonfinite[b]:
                entry["summary"] = "the input holds NaN or Inf"
                out.append(entry)
                continue
            parts = []
            if evidence is not None:
                e = evidence[i]
                names = self.fusion[1]
                order = np.argsort(-e, kind="stable")
                counted = order[: kept_members(len(e))]  # the statistic adds the strongest half
                share = np.zeros(len(e))
                infinite = counted[np.isinf(e[counted])]
                if len(infinite):  # infinite evidence: those members share it all
                    share[infinite] = 1.0 / len(infinite)
                elif e[counted].sum() > 0:
                    share[counted] = e[counted] / e[counted].sum()
                entry["members"] = [{"detector": names[k], "evidence": float(e[k]), "counted": bool(r < len(counted)),
                                     "share": float(share[k])} for r, k in enumerate(order.tolist())]
                top = entry["members"][0]
                parts.append(f"{top['detector']} {top['share']:.0%} of the evidence")
            lo, hi, unit = class_ranges(self.profile, self.rows[[int(pred[b])]])
            lo, hi, unit = lo[0], hi[0], unit[0]
            v = acts[b]
            excess = (np.maximum(lo.astype(np.float64) - v, 0.0) + np.maximum(v - hi.astype(np.float64), 0.0)) / unit
            excess = np.where(np.isnan(v), np.inf, excess)
            top_n = np.argsort(-excess, kind="stable")[:TOP_NEURONS]
            entry["neurons"] = [{"layer": self.layer_names[self.layer_of[j]], "neuron": int(j - self.offsets[
                self.layer_of[j]]), "value": float(v[j]), "range": [float(lo[j]), float(hi[j])],
                "excess": float(excess[j])} for j in top_n.tolist() if excess[j] > 0]
            outside = np.add.reduceat((excess > 0).astype(np.float64), self.offsets[:-1]) / np.diff(self.offsets)
            order = np.argsort(-outside, kind="stable")[:TOP_LAYERS]
            entry["layers"] = [{"layer": self.layer_names[k], "outside": float(outside[k])} for k in order.tolist()]
            if entry["neurons"]:
                nb = entry["neurons"][0]
                parts.append(f"{nb['layer']}[{nb['neuron']}] = {nb['value']:.4g} outside class {entry['class']}'s "
                             f"[{nb['range'][0]:.4g}, {nb['range'][1]:.4g}]")
            layer = entry["layers"][0]
            parts.append(f"{layer['outside']:.0%} of {layer['layer']} outside its range")
            entry["summary"] = "; ".join(parts)
            out.append(entry)
        return out
