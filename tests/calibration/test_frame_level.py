"""Frame-level calibration by simulation: the frame false-alarm rate holds whatever the objects per frame."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.calibration.frame_level import FrameCalibration, frame_minimum
from nnwatch.errors import InputError


def object_p_values(rng, ref, n_frames, shared):
    """Clean frames with 0-6 objects whose scores share a per-frame shift (dependent objects)."""
    counts = rng.integers(0, 7, n_frames)
    frame = np.repeat(np.arange(n_frames), counts)
    scores = rng.normal(size=frame.size) + shared * rng.normal(size=n_frames)[frame]
    p = (1 + (ref[None, :] >= scores[:, None]).sum(1)) / (ref.size + 1)
    image = (1 + (ref[None, :] >= rng.normal(size=n_frames)[:, None]).sum(1)) / (ref.size + 1)
    return p, frame, image


def test_frame_minimum():
    got = frame_minimum(np.array([0.5, 0.2, 0.9]), np.array([0, 0, 2]), np.array([1.0, 0.3, 0.95]))
    np.testing.assert_array_equal(got, [0.2, 0.3, 0.9])


@pytest.mark.parametrize("shared", [0.0, 1.0])
def test_frame_false_alarms_hold_and_the_per_object_rule_does_not(shared):
    rng = np.random.default_rng(int(shared * 10))
    alpha, runs = 0.1, 300
    frame_rates, naive_rates = [], []
    for _ in range(runs):
        ref = np.sort(rng.normal(size=200))  # the object calibration (clean objects, other frames)
        cal = FrameCalibration.fit(frame_minimum(*object_p_values(rng, ref, 99, shared)), alpha)
        p, frame, image = object_p_values(rng, ref, 400, shared)
        m = frame_minimum(p, frame, image)
        frame_rates.append(cal.flags(m).mean())
        naive_rates.append((m <= alpha).mean())  # flag a frame when any object has p <= alpha
        # a frame is flagged exactly when one of its objects, or its image term, is
        any_object = np.zeros(m.size, bool)
        np.logical_or.at(any_object, frame, cal.flags(p))
        np.testing.assert_array_equal(cal.flags(m), any_object | cal.flags(image))
    # conformal: E[rate] = floor(alpha (n + 1)) / (n + 1) = 0.1 with n = 99; 3 standard errors
    mean, se = np.mean(frame_rates), np.std(frame_rates) / np.sqrt(runs)
    assert mean <= alpha + 3 * se, (mean, se)
    assert mean >= alpha / 2  # ties among discrete p-values make it conservative, not useless
    assert np.mean(naive_rates) > 2 * alpha  # the simulation would catch the per-object rule


def test_too_few_frames_are_refused():
    with pytest.raises(InputError, match="calibration frames"):
        FrameCalibration.fit(np.linspace(0, 1, 5), 0.05)
