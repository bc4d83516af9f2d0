"""Matching detections to drawn objects, and what became of the drawn anomalous ones, against
hand-worked cases."""

from __future__ import annotations

import numpy as np

from nnwatch.objects.detections import Detections
from nnwatch.objects.evaluation import DrawnObjects, anomalous_outcomes, match_objects, matched_drawn


def detections(frames, boxes):
    n = len(frames)
    return Detections(frame=np.asarray(frames, np.int64), boxes=np.asarray(boxes, np.float32).reshape(n, 4),
                      score=np.ones(n, np.float32), cls=np.zeros(n, np.int64), class_scores=None, n_frames=2)


def test_each_detection_takes_its_best_overlapping_drawn_object():
    drawn = DrawnObjects([np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([[0, 0, 10, 10]], float)],
                         [np.array([False, True]), np.array([True])])
    det = detections([0, 0, 0, 1, 1], [[0, 0, 10, 10],      # known object, exact
                                       [21, 21, 31, 31],    # anomalous one, IoU 81/119 = 0.68
                                       [20, 20, 25, 25],    # anomalous one, IoU 25/100 = 0.25: unmatched
                                       [1, 1, 10, 10],      # frame 1's anomalous object, IoU 0.81
                                       [0, 0, 9, 10]])      # the same object again, IoU 0.9
    np.testing.assert_array_equal(matched_drawn(det, drawn), [0, 1, -1, 0, 0])
    np.testing.assert_array_equal(match_objects(det, drawn), [0, 1, -1, 1, 1])


def test_outcomes_count_drawn_objects_once_however_many_detections_match():
    drawn = DrawnObjects([np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([[0, 0, 10, 10]], float)],
                         [np.array([True, True]), np.array([True])])
    det = detections([0, 0, 1, 1], [[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [1, 1, 10, 10]])
    out = anomalous_outcomes(det, drawn, np.array([False, True, False, False]))
    # three drawn anomalous; two found (frame 0's second one by nothing); one flagged; four detections match
    assert out == {"drawn": 3, "found": 2, "flagged": 1, "matched_detections": 4}
