"""Face detection for comic panels: ``python -m ssuper_lib.detect`` (:mod:`~ssuper_lib.detect.cli`).

The paper's data pipeline starts from boxes found by an external cartoon face detector (RetinaFace-style,
confidence >= 0.9, NMS 0.2, docs/original.md 3.1 and 4.4). This package gives that step a small interface:

* :mod:`~ssuper_lib.detect.base`: the :class:`Detector` protocol (images in, one ``Detection(boxes, scores)`` each out);
* :mod:`~ssuper_lib.detect.adapters`: existing annotation files, ``animeface``, a torchvision checkpoint;
  :mod:`~ssuper_lib.detect.bbtnet`: the seed's FaceDetector RetinaFace (docs/original.md 9.1);
* :mod:`~ssuper_lib.detect.run`: :func:`run_detector`, resumable and shardable, one annotation file per series;
* :mod:`~ssuper_lib.detect.filters`: confidence threshold, NMS and minimum face side, counted per stage;
* :mod:`~ssuper_lib.detect.scoring`: precision, recall and AP@0.5 against ground truth, confidence sweeps;
* :mod:`~ssuper_lib.detect.plots`: panels with kept / removed boxes, notebook 02's viewer, evaluation curves;
* :mod:`~ssuper_lib.detect.finetune`: FaceDetector's training loss on the synthetic ground truth (optional demo).
"""

from ..data.boxes import box_iou
from .adapters import TORCHVISION_ARCHS, AnimeFaceDetector, AnnotationFileDetector, TorchvisionDetector
from .base import Detection, Detector, open_rgb
from .bbtnet import BBTNetDetector, bbtnet_preview
from .cli import main
from .filters import FilterReport, filter_annotations, filter_boxes, filter_panel_boxes
from .plots import count_text, detection_viewer, plot_detection_evaluation, plot_panel_detections
from .run import DetectionRunReport, parse_shard, run_detector, shard_series
from .scoring import confidence_sweep, evaluate_dataset, evaluate_detections, read_ground_truth

__all__ = [
    "Detection", "Detector", "open_rgb",
    "AnnotationFileDetector", "AnimeFaceDetector", "TorchvisionDetector", "TORCHVISION_ARCHS", "BBTNetDetector",
    "FilterReport", "filter_boxes", "filter_panel_boxes", "filter_annotations",
    "parse_shard", "shard_series", "DetectionRunReport", "run_detector",
    "read_ground_truth", "box_iou", "evaluate_detections", "confidence_sweep", "evaluate_dataset",
    "plot_panel_detections", "detection_viewer", "count_text", "plot_detection_evaluation", "bbtnet_preview",
    "main",
]
