"""A calibration records what its scores depend on; a monitor configured otherwise refuses it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch.calibration.calibrate import calibrate
from nnwatch.calibration.groups import CalibrationWarning
from nnwatch.errors import InputError, ModelMismatchError
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.profiling import build_profile
from nnwatch.profile.store import load_profile, save_profile
from nnwatch.sources import ArraySource


@pytest.fixture(scope="module")
def files(digits_monitor_files):
    return digits_monitor_files


def test_settings_are_recorded_and_survive_a_save(files, tmp_path):
    prof = load_profile(files["profile"])
    cal = prof.calibration
    assert cal.settings["rare_rate"] == 0.01 and cal.settings["min_signature_samples"] == 10
    assert cal.settings["profile_digest"] == prof.digest()
    save_profile(prof, tmp_path / "again.npz")
    Monitor(files["model"], tmp_path / "again.npz", providers="cpu")  # accepted


@pytest.mark.parametrize("kwargs, message", [
    ({"rare_rate": 0.05}, "rare_rate: calibrated with 0.01, this monitor uses 0.05"),
    ({"min_signature_samples": 3}, "min_signature_samples: calibrated with 10, this monitor uses 3"),
])
def test_other_monitor_settings_are_refused(files, kwargs, message):
    with pytest.raises(ModelMismatchError, match=message):
        Monitor(files["model"], files["profile"], providers="cpu", **kwargs)


def test_calibration_of_another_profile_is_refused(files):
    other = build_profile(files["model"], ArraySource(*files["splits"]["train"], "train").limit(600))
    theirs = load_profile(files["profile"]).calibration
    fresh = Monitor(files["model"], other, providers="cpu")  # not calibrated yet
    with pytest.raises(ModelMismatchError, match="the profile's statistics"):
        fresh.set_calibration(theirs)
    other.calibration = theirs
    with pytest.raises(ModelMismatchError, match="the profile's statistics"):
        Monitor(files["model"], other, providers="cpu")


def test_uncalibrated_decision_is_refused(files):
    mon = Monitor(files["model"], load_profile(files["profile"]), providers="cpu", detectors=("coverage", "msp"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        calibrate(mon, ArraySource(*files["splits"]["val"], "val"), detectors=("coverage",))
    with pytest.raises(ModelMismatchError, match="decision detector 'msp' is not calibrated"):
        Monitor(files["model"], mon.profile, providers="cpu", detectors=("coverage", "msp"), decision="msp")
    explicit = Monitor(files["model"], mon.profile, providers="cpu", detectors=("coverage", "msp"), decision="coverage")
    with pytest.raises(InputError, match="must include the monitor's decision detector 'coverage'"):
        calibrate(explicit, ArraySource(*files["splits"]["val"], "val"), detectors=("msp",))
    with warnings.catch_warnings():  # an "auto" monitor decides with what was calibrated
        warnings.simplefilter("ignore", CalibrationWarning)
        calibrate(mon, ArraySource(*files["splits"]["val"], "val"), detectors=("msp",))
    assert mon.decision == "msp" and mon.calibrated


def test_calibration_reports_classes_without_their_own_threshold(files):
    mon = Monitor(files["model"], load_profile(files["profile"]), providers="cpu")
    x, y = files["splits"]["val"]
    keep = (y != 3) | (np.cumsum(y == 3) <= 5)  # only five samples of class 3
    with pytest.warns(CalibrationWarning, match=r"classes 3 \(\d\)"):
        cal = calibrate(mon, ArraySource(x[keep], y[keep], "val"))
    assert cal.fpr == 0.05
