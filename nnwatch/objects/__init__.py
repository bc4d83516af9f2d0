"""Object detectors monitored per object: output layouts, detections, per-object features and verdicts.

- :mod:`.layouts`: what a detector's outputs mean (presets ``yolov8``, ``nms``,
  ``boxes-scores-classes``, or a JSON spec);
- :mod:`.detections`: outputs read through a layout, boxes cleaned, NMS where the model has none;
- :mod:`.object_features`: tapped feature maps averaged over each box (RoIAlign, compiled);
- :mod:`.scorer`: member detectors on the objects' features, one profile per predicted class;
- :mod:`.object_monitor`: one call per batch, object and frame verdicts, their calibration;
- :mod:`.monitor_state`: the fitted and calibrated state, saved and loaded;
- :mod:`.instrument_detector`, :mod:`.detector_manifest`: the instrumented ONNX detector.
"""
