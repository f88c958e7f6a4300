"""MTCNN (P-Net, R-Net, O-Net cascade) in pure torch + numpy.

The weights are the ones shipped in ``facenet-pytorch`` (``facenet_pytorch/data/{p,r,o}net.pt``,
converted by that project from the original MTCNN release). Only the weight files are used:
``facenet_pytorch`` itself is never imported, because it imports torchvision, which is not
usable here. The networks below are re-declared with the same parameter names, and the cascade
follows facenet-pytorch's ``detect_face`` conventions exactly:

- input: RGB, NCHW, ``(x - 127.5) * 0.0078125``; **no** H/W transpose of the image (the
  original Caffe/Matlab MTCNN and davidsandberg's TF port feed transposed images; these
  converted weights expect untransposed ones: transposed face crops drop O-Net's face
  probability from > 0.96 to 0.02-0.75). The transpose survives in one place only: R-Net and
  O-Net flatten their last feature map in (W, H, C) order, ``permute(0, 3, 2, 1)``, before the
  first dense layer;
- resampling: ``"area"`` interpolation (adaptive average pooling) for the pyramid and crops;
- box conventions: P-Net cells are mapped back with ``floor((2 * cell + 1) / scale)`` and
  ``floor((2 * cell + 12) / scale)``, crops use 1-based inclusive boxes clipped to the image
  (no zero padding), and the final NMS divides by the smaller area (``mode="min"``).
"""

from __future__ import annotations

import numpy as np

from .._deps import package_dir
from .._weights import verify_file
from ..errors import InvalidArgumentError, MissingDependencyError
from ..types import Face
from .base import Detector, check_rgb, sort_faces
from .nms import nms

_INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"
_NMS_SCALE = 0.5    # P-Net, within one pyramid level
_NMS_PYRAMID = 0.7  # P-Net, across pyramid levels
_NMS_RNET = 0.7
_NMS_ONET = 0.7     # mode "min"


def _weights_dir():
    try:
        root = package_dir("facenet_pytorch", "mtcnn", "facenet-pytorch")
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            "the 'mtcnn' detector uses the MTCNN weights shipped in facenet-pytorch, which is "
            f"not installed; install it with: {_INSTALL_HINT} (--no-deps: its torch/torchvision "
            "pins are not needed, fiqa-sdk never imports it)"
        ) from exc
    data = root / "data"
    missing = [n for n in ("pnet.pt", "rnet.pt", "onet.pt") if not (data / n).is_file()]
    if missing:
        raise MissingDependencyError(
            f"facenet-pytorch is installed at {root} but its MTCNN weights {missing} are missing; "
            f"reinstall it with: {_INSTALL_HINT} --force-reinstall"
        )
    return data


def _build_networks():
    """P-Net, R-Net and O-Net as torch modules (defined lazily so importing is cheap)."""
    import torch
    from torch import nn

    class PNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
            self.prelu1 = nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
            self.prelu2 = nn.PReLU(16)
            self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
            self.prelu3 = nn.PReLU(32)
            self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
            self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu2(self.conv2(x))
            x = self.prelu3(self.conv3(x))
            return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)

    class RNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
            self.prelu1 = nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
            self.prelu2 = nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
            self.prelu3 = nn.PReLU(64)
            self.dense4 = nn.Linear(576, 128)
            self.prelu4 = nn.PReLU(128)
            self.dense5_1 = nn.Linear(128, 2)
            self.dense5_2 = nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # (W, H, C) flatten order
            x = self.prelu4(self.dense4(x))
            return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)

    class ONet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # (W, H, C) flatten order
            x = self.prelu5(self.dense5(x))
            return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)

    return PNet(), RNet(), ONet()


def _resolve_device(device: str) -> str:
    from .._torch import torch_device

    return torch_device(device).type


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
         mode: str = "union") -> np.ndarray:
    """:func:`~fiqa_sdk.detect.nms.nms` with the same result, faster on the few hundred boxes
    per MTCNN stage: one vectorised IoU matrix, then the greedy pass on boolean rows."""
    n = len(boxes)
    if n > 1024:  # the matrix would get big; the reference loop is fine there
        return nms(boxes, scores, threshold, mode)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    b = b[order]
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    x1, y1, x2, y2 = b.T
    iw = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = iw * ih
    if mode == "min":
        denom = np.minimum(area[:, None], area[None, :])
    elif mode == "union":
        denom = area[:, None] + area[None, :] - inter
    else:
        raise InvalidArgumentError(f"mode must be 'union' or 'min', got {mode!r}")
    over = inter / np.maximum(denom, 1e-12) > threshold
    removed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if not removed[i]:
            keep.append(i)
            removed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]


def _forward(net, batch, chunk: int = 512) -> list[np.ndarray]:
    """``net(batch)`` as numpy arrays, run ``chunk`` crops at a time to bound memory."""
    outs = [net(batch[i:i + chunk]) for i in range(0, len(batch), chunk)]
    return [np.concatenate([o[k].float().cpu().numpy() for o in outs]) for k in range(len(outs[0]))]


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares of side max(w, h) about their centres (facenet-pytorch ``rerec``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """R-Net / O-Net box regression (offsets relative to the inclusive box size)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


class MTCNNDetector(Detector):
    """MTCNN face detector: boxes, probabilities and 5 landmarks (ArcFace order).

    Parameters
    ----------
    min_face_size : int
        Smallest face side (pixels) searched for; sets the top of the image pyramid.
    thresholds : (float, float, float)
        Face-probability thresholds of P-Net, R-Net and O-Net.
    factor : float
        Scale ratio between consecutive pyramid levels (< 1).
    device : {"cpu", "cuda", "auto"}
    threads : int, optional
        If given, ``torch.set_num_threads(threads)`` is called once here. It is process-wide;
        the default leaves torch's setting alone. MTCNN's tensors are small, so one thread is
        usually fastest on a busy CPU (several intra-op threads contending for few cores can
        make it many times slower).
    """

    name = "mtcnn"

    def __init__(self, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7),
                 factor: float = 0.709, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        if threads is not None:
            if int(threads) < 1:
                raise InvalidArgumentError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(int(threads))

        if min_face_size <= 0:
            raise InvalidArgumentError(f"min_face_size must be positive, got {min_face_size}")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3:
            raise InvalidArgumentError(f"thresholds must hold three values (P, R, O-Net), got {thresholds}")
        if not 0.0 < factor < 1.0:
            raise InvalidArgumentError(f"factor must be in (0, 1), got {factor}")
        self.min_face_size = float(min_face_size)
        self.thresholds = thresholds
        self.factor = float(factor)
        self.device = _resolve_device(device)

        data = _weights_dir()
        self.pnet, self.rnet, self.onet = _build_networks()
        for net, fname in ((self.pnet, "pnet.pt"), (self.rnet, "rnet.pt"), (self.onet, "onet.pt")):
            state = torch.load(verify_file(data / fname), map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
            net.eval().requires_grad_(False).to(self.device)

    def __repr__(self) -> str:
        return (f"MTCNNDetector(min_face_size={self.min_face_size:g}, "
                f"thresholds={self.thresholds}, factor={self.factor}, device={self.device!r})")

    # -- stages -------------------------------------------------------------------------------

    def _scales(self, h: int, w: int) -> list[float]:
        m = 12.0 / self.min_face_size
        minl = min(h, w) * m
        scales, scale = [], m
        while minl >= 12:
            scales.append(scale)
            scale *= self.factor
            minl *= self.factor
        return scales

    def _stage1(self, img, h: int, w: int) -> np.ndarray:
        """P-Net over the pyramid: (N, 5) candidate boxes + score, before squaring."""
        import torch
        import torch.nn.functional as F

        per_scale = []
        for scale in self._scales(h, w):
            size = (int(h * scale + 1), int(w * scale + 1))
            level = F.adaptive_avg_pool2d(img, size).contiguous(memory_format=torch.channels_last)
            reg, prob = self.pnet(level)
            prob = prob[0, 1].cpu().numpy()
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if ys.size == 0:
                continue
            reg = reg[0].cpu().numpy()[:, ys, xs].T
            cell = np.stack([xs, ys], axis=1).astype(np.float32)
            q1 = np.floor((2 * cell + 1) / np.float32(scale))
            q2 = np.floor((2 * cell + 12) / np.float32(scale))
            cand = np.hstack([q1, q2, prob[ys, xs, None], reg]).astype(np.float32)
            per_scale.append(cand[_nms(cand[:, :4], cand[:, 4], _NMS_SCALE)])
        if not per_scale:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(per_scale)
        boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], _NMS_PYRAMID)]
        bw = boxes[:, 2] - boxes[:, 0]
        bh = boxes[:, 3] - boxes[:, 1]
        out = np.stack([boxes[:, 0] + boxes[:, 5] * bw, boxes[:, 1] + boxes[:, 6] * bh,
                        boxes[:, 2] + boxes[:, 7] * bw, boxes[:, 3] + boxes[:, 8] * bh,
                        boxes[:, 4]], axis=1)
        return out.astype(np.float32)

    def _crops(self, img, boxes: np.ndarray, h: int, w: int, size: int):
        """Resampled ``size`` x ``size`` crops of (1-based, inclusive) boxes clipped to the image.

        Returns the batch and the indices of the boxes that overlap the image at all.
        """
        import torch
        import torch.nn.functional as F

        b = np.trunc(boxes[:, :4]).astype(np.int64)
        x0 = np.maximum(b[:, 0], 1) - 1
        y0 = np.maximum(b[:, 1], 1) - 1
        x1 = np.minimum(b[:, 2], w)
        y1 = np.minimum(b[:, 3], h)
        valid = np.flatnonzero((x1 > x0) & (y1 > y0))
        crops = [F.adaptive_avg_pool2d(img[:, :, y0[k]:y1[k], x0[k]:x1[k]], (size, size))
                 for k in valid]
        batch = torch.cat(crops) if crops else img.new_zeros((0, 3, size, size))
        # channels-last input makes torch's CPU max-pooling ~10x faster on these shapes
        return batch.contiguous(memory_format=torch.channels_last), valid

    def _stage2(self, img, boxes: np.ndarray, h: int, w: int) -> np.ndarray:
        batch, valid = self._crops(img, boxes, h, w, 24)
        if valid.size == 0:
            return np.zeros((0, 5), np.float32)
        reg, prob = _forward(self.rnet, batch)
        score = prob[:, 1]
        keep = score > self.thresholds[1]
        boxes = np.hstack([boxes[valid[keep], :4], score[keep, None]])
        reg = reg[keep]
        pick = _nms(boxes[:, :4], boxes[:, 4], _NMS_RNET)
        return _square(_regress(boxes[pick], reg[pick]))

    def _stage3(self, img, boxes: np.ndarray, h: int, w: int):
        batch, valid = self._crops(img, boxes, h, w, 48)
        if valid.size == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        reg, pts, prob = _forward(self.onet, batch)
        score = prob[:, 1]
        keep = score > self.thresholds[2]
        boxes = np.hstack([boxes[valid[keep], :4], score[keep, None]])
        reg, pts = reg[keep], pts[keep]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lx = bw * pts[:, :5] + boxes[:, 0:1] - 1
        ly = bh * pts[:, 5:] + boxes[:, 1:2] - 1
        landmarks = np.stack([lx, ly], axis=2)
        boxes = _regress(boxes, reg)
        # facenet-pytorch's last NMS counts pixels inclusively (area (x2 - x1 + 1) * ...)
        incl = boxes[:, :4] + np.array([0, 0, 1, 1], np.float32)
        pick = _nms(incl, boxes[:, 4], _NMS_ONET, mode="min")
        return boxes[pick], landmarks[pick]

    # -- public -------------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[Face]:
        import torch

        image = check_rgb(image)
        h, w = image.shape[:2]
        if not self._scales(h, w):
            return []
        with torch.inference_mode():
            x = (image.astype(np.float32) - np.float32(127.5)) * np.float32(0.0078125)
            img = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).to(self.device)
            boxes = self._stage1(img, h, w)
            if len(boxes):
                boxes = self._stage2(img, _square(boxes), h, w)
            if not len(boxes):
                return []
            boxes, landmarks = self._stage3(img, boxes, h, w)
        faces = [
            Face(boxes[i, :4], landmarks[i], float(boxes[i, 4]), detector=self.name)
            for i in range(len(boxes))
        ]
        return sort_faces(faces)
