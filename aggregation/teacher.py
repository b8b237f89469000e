"""The local EMA teacher and its pseudo labels, with Efficient Teacher's conventions (FedSTO builds on them).

Xu et al., "Efficient Teacher: Semi-Supervised Object Detection for YOLOv5", arXiv:2302.07577.
The teacher's detections (NMS at IoU 0.65, scores below 0.1 dropped) fall in two buckets:
*reliable* (score >= 0.6) supervise the student's box, class and objectness; *uncertain*
(0.1 <= score < 0.6) supervise only its objectness, with the score as a soft target. Every
other cell is background (objectness 0).
"""

from __future__ import annotations

import numpy as np
import torch

from fedledger.simulation.detection import Targets, cell_of, detect

RELIABLE, UNCERTAIN, NMS_IOU = 0.6, 0.1, 0.65


def buckets(
    scores: np.ndarray, reliable: float = RELIABLE, uncertain: float = UNCERTAIN
) -> tuple[np.ndarray, np.ndarray]:
    """(reliable, uncertain) masks of detection scores; the rest is dropped."""
    if not 0 <= uncertain <= reliable <= 1:
        raise ValueError(f"need 0 <= uncertain <= reliable <= 1, got {uncertain} and {reliable}")
    scores = np.asarray(scores)
    return scores >= reliable, (scores >= uncertain) & (scores < reliable)


def pseudo_targets(
    teacher_output: torch.Tensor,
    reliable: float = RELIABLE,
    uncertain: float = UNCERTAIN,
    nms_iou: float = NMS_IOU,
    soft_target: str = "objectness",
) -> tuple[Targets, dict[str, float]]:
    """Targets for the student from the teacher's raw outputs, and the mean count of each bucket per image.

    An uncertain detection's soft objectness target is the teacher's objectness at its cell
    (``soft_target="objectness"``) or its detection score, objectness x class probability
    (``"score"``); docs/fedsto.md says why the default is the former.
    """
    if soft_target not in ("objectness", "score"):
        raise ValueError(f"soft_target is 'objectness' or 'score', got {soft_target!r}")
    teacher_objectness = torch.sigmoid(teacher_output[..., 0])
    n = teacher_output.shape[0]
    targets = Targets.background(n)
    counts = {"reliable": 0, "uncertain": 0}
    for i, found in enumerate(detect(teacher_output, uncertain, nms_iou)):
        sure, unsure = buckets(found.scores, reliable, uncertain)
        for k in range(len(found.scores)):  # best first: the best detection of a cell wins it
            x1, y1, x2, y2 = (float(v) for v in found.boxes[k])
            cell = cell_of((x1 + x2) / 2, (y1 + y2) / 2)
            if targets.objectness[i, cell] > 0:
                continue
            if sure[k]:
                targets.assign(i, int(found.classes[k]), x1, y1, x2, y2)
                counts["reliable"] += 1
            elif unsure[k]:
                soft = teacher_objectness[i, cell] if soft_target == "objectness" else found.scores[k]
                targets.objectness[i, cell] = float(soft)
                counts["uncertain"] += 1
    per_image = {key: value / max(n, 1) for key, value in counts.items()}
    return targets, per_image


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """Move the teacher towards the student: t <- decay * t + (1 - decay) * s, parameters and float buffers."""
    if not 0 <= decay <= 1:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    student_state = student.state_dict()
    for name, value in teacher.state_dict().items():
        if value.dtype.is_floating_point:
            value.mul_(decay).add_(student_state[name], alpha=1 - decay)
        else:
            value.copy_(student_state[name])
