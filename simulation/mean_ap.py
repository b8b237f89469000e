"""mAP@0.5: the mean over classes of the area under each class's precision-recall curve.

Per class, detections of every image are sorted by score (ties keep their order); each is a
true positive when it overlaps a not-yet-matched ground-truth box of its class in its image
with IoU >= the threshold (the best-overlapping such box is matched), else a false positive.
AP is the all-point interpolated area (the precision envelope, as VOC 2010+ and COCO
compute it). Classes without ground truth are left out of the mean; a class with ground
truth but no detection scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .detection import Detections, box_iou


def average_precision(true_positive: np.ndarray, num_truth: int) -> float:
    """All-point interpolated AP of detections already sorted by score (True = matched)."""
    if num_truth == 0:
        raise ValueError("AP needs at least one ground-truth box")
    tp = np.cumsum(true_positive, dtype=np.float64)
    fp = np.cumsum(~np.asarray(true_positive, dtype=bool), dtype=np.float64)
    recall = np.concatenate([[0.0], tp / num_truth, [1.0]])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def per_class_ap(
    detections: Sequence[Detections], truths: Sequence[np.ndarray], num_classes: int, iou: float = 0.5
) -> dict[int, float]:
    """AP per class that has ground truth; ``truths`` are box rows (K, 5) per image (class -1 = none)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} images of detections but {len(truths)} of ground truth")
    result: dict[int, float] = {}
    for cls in range(num_classes):
        gt = [t[t[:, 0] == cls, 1:5] for t in truths]
        num_truth = sum(len(g) for g in gt)
        if num_truth == 0:
            continue
        found = [
            (float(s), i, b)
            for i, d in enumerate(detections)
            for b, s, c in zip(d.boxes, d.scores, d.classes, strict=True)
            if c == cls
        ]
        found.sort(key=lambda item: -item[0])
        matched = [np.zeros(len(g), dtype=bool) for g in gt]
        hits = np.zeros(len(found), dtype=bool)
        for k, (_, image, box) in enumerate(found):
            if len(gt[image]) == 0:
                continue
            overlaps = box_iou(box, gt[image])[0]
            overlaps[matched[image]] = -1.0
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou:
                matched[image][best] = True
                hits[k] = True
        result[cls] = average_precision(hits, num_truth)
    return result


def mean_ap(
    detections: Sequence[Detections], truths: Sequence[np.ndarray], num_classes: int, iou: float = 0.5
) -> float:
    """Mean AP over classes at ``iou`` (0.5: mAP@0.5); NaN when no class has ground truth."""
    aps = per_class_ap(detections, truths, num_classes, iou)
    return float(np.mean(list(aps.values()))) if aps else float("nan")
