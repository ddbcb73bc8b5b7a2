"""The detection CLI::

    python -m ssuper_lib.detect --panels data/synthetic/panels --out my_annots --detector animeface --shard 0/4
    python -m ssuper_lib.detect --panels P --out A --detector torchvision --checkpoint face_rcnn.pt --face-label 1
    python -m ssuper_lib.detect --panels P --out A --detector bbtnet --checkpoint weights/final_mixed_r50.pth

``--detector bbtnet`` is the seed's FaceDetector RetinaFace (``ssuper_lib.detect.bbtnet``, docs/original.md 9.1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..config import resolve_device
from .adapters import TORCHVISION_ARCHS, AnimeFaceDetector, AnnotationFileDetector, TorchvisionDetector
from .base import Detector
from .bbtnet import BBTNetDetector
from .run import run_detector

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ssuper_lib.detect", description="Run a face detector over a panel root.")
    p.add_argument("--panels", required=True, help="panel root holding <series>/<page>_<panel>.jpg")
    p.add_argument("--out", required=True, help="output folder for <series>.txt annotation files")
    p.add_argument("--detector", choices=("animeface", "torchvision", "bbtnet", "annotations"), default="animeface")
    p.add_argument("--checkpoint", help="detector checkpoint (--detector torchvision or bbtnet, e.g. final_mixed_r50.pth)")
    p.add_argument("--bbtnet-conf", type=float, default=0.1, help="bbtnet: model-side score threshold (score > conf)")
    p.add_argument("--bbtnet-nms", type=float, default=0.2, help="bbtnet: model-side greedy NMS IoU (original: 0.2)")
    p.add_argument("--bbtnet-backbone", choices=("resnet50", "resnet152"), help="bbtnet backbone (else from the keys)")
    p.add_argument("--arch", choices=TORCHVISION_ARCHS, help="torchvision architecture (else read from the checkpoint)")
    p.add_argument("--num-classes", type=int, help="classes of the torchvision model incl. background")
    p.add_argument("--face-label", type=int, help="label index of the face class (torchvision)")
    p.add_argument("--annotations", help="existing annotation folder (--detector annotations)")
    p.add_argument("--device", help="cpu, cuda or auto (default: auto for bbtnet - the GPU when there is one - else cpu)")
    p.add_argument("--shard", default="0/1", help="i/n: handle every n-th series starting at i")
    p.add_argument("--conf-floor", type=float, default=0.05, help="do not write boxes below this score")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--overwrite", action="store_true", help="redo series whose file already exists")
    p.add_argument("--no-progress", action="store_true")
    return p


def _device(a: argparse.Namespace):
    """``--device``, else auto (the GPU when there is one) for bbtnet and cpu for the other detectors."""
    return resolve_device(a.device or ("auto" if a.detector == "bbtnet" else "cpu"))


def _detector(a: argparse.Namespace, p: argparse.ArgumentParser) -> Detector:
    if a.detector == "animeface":
        return AnimeFaceDetector()
    if a.detector == "torchvision":
        if not a.checkpoint:
            p.error("--detector torchvision needs --checkpoint")
        return TorchvisionDetector(a.checkpoint, a.arch, a.num_classes, a.face_label, device=_device(a),
                                   batch_size=a.batch_size)
    if a.detector == "bbtnet":
        if not a.checkpoint:
            p.error("--detector bbtnet needs --checkpoint (FaceDetector's final_mixed_r50.pth or the R152 file)")
        return BBTNetDetector(a.checkpoint, backbone=a.bbtnet_backbone, device=_device(a), conf_thold=a.bbtnet_conf,
                              nms_thold=a.bbtnet_nms, batch_size=a.batch_size)
    if not a.annotations:
        p.error("--detector annotations needs --annotations")
    return AnnotationFileDetector(a.annotations)


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    try:
        det = _detector(a, p)
    except (FileNotFoundError, ValueError) as exc:  # a missing, damaged or mismatched weights file: one line
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rep = run_detector(det, a.panels, a.out, shard=a.shard, conf_floor=a.conf_floor, batch_size=a.batch_size,
                       progress=not a.no_progress, overwrite=a.overwrite)
    print(rep)
    no_person = getattr(det, "no_person", None)
    if no_person:  # the original's list of panels without faces (best score <= 0.08)
        with open(Path(a.out) / "no_person_frames.txt", "a") as f:
            f.writelines(f"{name}\n" for name in no_person)
        print(f"{len(no_person)} panels without faces listed in {Path(a.out) / 'no_person_frames.txt'}")
    return 0
