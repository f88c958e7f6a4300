"""Non-maximum suppression in numpy (torchvision is not usable in this environment)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError


def box_iou(box: np.ndarray, boxes: np.ndarray, mode: str = "union") -> np.ndarray:
    """IoU of one ``(4,)`` box with ``(N, 4)`` boxes (x1, y1, x2, y2).

    ``mode="min"`` divides by the smaller area instead of the union (MTCNN's last stage).
    """
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    if mode == "min":
        denom = np.minimum(area(box), area(boxes))
    elif mode == "union":
        denom = area(box) + area(boxes) - inter
    else:
        raise InvalidArgumentError(f"mode must be 'union' or 'min', got {mode!r}")
    return inter / np.maximum(denom, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first.

    Parameters
    ----------
    boxes : (N, 4) float, x1, y1, x2, y2
    scores : (N,) float
    iou_threshold : boxes overlapping a kept box by more than this are dropped
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        iou = box_iou(boxes[i], boxes[order[1:]], mode)
        order = order[1:][iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
