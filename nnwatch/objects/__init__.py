"""Object detectors monitored per object: output layouts, detections, per-object features and verdicts.

- :mod:`.layouts`: what a detector's outputs mean (presets ``yolov8``, ``nms``,
  ``boxes-scores-classes``, or a JSON spec);
- :mod:`.detections`: outputs read through a layout, boxes cleaned, NMS where the model has none;
- :mod:`.object_features`: tapped feature maps averaged over each box (RoIAlign, compiled);
"""
