"""``vim``: virtual-logit matching (Wang, Li, Feng, Zhang, "ViM: Out-Of-Distribution with
Virtual-logit Matching", CVPR 2022).

With the classifier head ``W, b``, the features are re-centred at ``u = -pinv(W) b`` (where the
logits vanish). The principal subspace ``P`` (the top ``N`` eigenvectors of the centred training
features' second-moment matrix; ``N = 1000`` for ``D >= 1500``, ``512`` for ``D >= 768``, else
``D / 2``, as the paper) carries what the classifier uses; the residual ``x - u`` outside it
is what it ignores. A virtual logit ``v = alpha ||(x - u) R||`` (``R`` the residual space,
``alpha`` = mean training max-logit / mean training residual norm, from the profile's feature
sample) competes with the real logits:

    score = v - logsumexp(W x + b)

which orders inputs like the virtual class's softmax probability. Higher = more anomalous.
The second-moment matrix comes from the profile's streaming feature sums, so no training
features are stored beyond the sample ``alpha`` needs.
"""

from __future__ import annotations

import numpy as np

from ...profile.schema import Profile
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf
from ...kernels.rules import logsumexp_rows


def principal_dims(d: int) -> int:
    """The paper's principal-space size for ``d``-dimensional features."""
    return 1000 if d >= 1500 else 512 if d >= 768 else max(d // 2, 1)


class VirtualLogit(Detector):
    """Norm of the features outside the classifier's principal space, as a competing logit."""

    name = "vim"
    cost = "full"
    needs_head = True

    def _fit(self, profile: Profile) -> None:
        self.layer_ = self.feature_layer(profile, sample=True)
        r = profile.ranges
        w, b = (a.astype(np.float64) for a in self.head_)
        self.weight_, self.bias_ = w, b
        self.origin_ = -np.linalg.pinv(w) @ b
        n = max(float(r.count[-1]), 1.0)
        mean = r.feat_sum[-1] / n
        u = self.origin_
        second = r.feat_outer / n - np.outer(u, mean) - np.outer(mean, u) + np.outer(u, u)
        evals, evecs = np.linalg.eigh((second + second.T) / 2)
        order = np.argsort(evals)[::-1]
        k = min(principal_dims(w.shape[1]), w.shape[1] - 1)
        self.residual_ = np.ascontiguousarray(evecs[:, order[k:]])  # (D, D - k)
        sample = r.sample_feats.astype(np.float64)
        residual_norm = np.linalg.norm((sample - u) @ self.residual_, axis=1)
        max_logit = (sample @ w.T + b).max(axis=1)
        self.alpha_ = float(max_logit.mean() / max(residual_norm.mean(), 1e-12))

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        x = view.layer(self.layer_).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            virtual = self.alpha_ * np.linalg.norm((x - self.origin_) @ self.residual_, axis=1)
            return finite_or_inf(virtual - logsumexp_rows(x @ self.weight_.T + self.bias_))
