"""A 1,000-class monitor with compact tables: <= 16 MiB, and scores equal to the definition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch.calibration.calibrate import calibrate
from nnwatch.errors import ModelMismatchError
from nnwatch.eval.zoo import wide_classifier
from nnwatch.export.instrument import instrument
from nnwatch.monitor.detectors import COMPILED
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.profiling import build_profile
from nnwatch.monitor.runner import Runner
from nnwatch.profile.signature import rounded_tables

CLASSES, HIDDEN, FEATURES = 1000, 1488, 512  # 2,000 monitored neurons, like ResNet-18's block outputs


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("wide")
    path = folder / "wide.onnx"
    path.write_bytes(instrument(wide_classifier(rng, CLASSES, HIDDEN, FEATURES))[0].SerializeToString())
    runner = Runner(path, providers="cpu", threads=1)
    x = rng.normal(size=(6000, 32)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(runner, x[:5000], batch_size=500)
    return runner, profile, x[5000:], path


def test_thousand_class_monitor_fits_16_mib(wide):
    runner, profile, x, path = wide
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # its own session: the shared runner also holds the profiling run's batch-500 buffers
        compact = Monitor(path, profile, detectors=COMPILED, min_signature_samples=1, providers="cpu", threads=1)
        full = Monitor(runner, profile, detectors=COMPILED, min_signature_samples=1, compact_tables=False)
    assert compact.compact_tables and compact.tables.n_neurons == HIDDEN + FEATURES
    compact.warmup((1,))
    assert compact.memory_bytes() <= 16 * 2**20
    assert full.tables.nbytes >= 6 * compact.tables.nbytes  # what it replaces: 37 bytes per class and neuron


def test_thousand_class_scores_equal_the_definition(wide):
    runner, profile, x, _ = wide
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compact = Monitor(runner, profile, detectors=COMPILED, min_signature_samples=1)
        reference = Monitor(runner, profile, detectors=COMPILED, min_signature_samples=1, compact_tables=False)
        reference.tables = rounded_tables(profile, reference.rare_rate, 1, warn=False)  # the definition
    a, b = compact.score(x[:200]), reference.score(x[:200])
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_array_equal(a.score_matrix, b.score_matrix)
    one = compact.score(x[:1])  # the batch-1 (serial) path too
    np.testing.assert_array_equal(one.score_matrix, b.score_matrix[:1])


def test_calibration_records_the_table_kind(wide):
    runner, profile, x, _ = wide
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mon = Monitor(runner, profile, detectors=("coverage",), min_signature_samples=1)
        calibrate(mon, x[:600], fpr=0.2, min_class_samples=1)
        assert Monitor(runner, mon.profile, detectors=("coverage",)).compact_tables  # follows the calibration
        with pytest.raises(ModelMismatchError, match="compact_tables"):
            Monitor(runner, mon.profile, detectors=("coverage",), compact_tables=False)
