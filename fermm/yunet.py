"""YuNet, OpenCV Zoo's face detector (``fermm/assets/face_detection_yunet_2023mar.onnx``), run in ONNX Runtime and
decoded exactly as OpenCV's ``cv2.FaceDetectorYN`` decodes it (modules/objdetect/src/face_detect.cpp).

Why not ``cv2.FaceDetectorYN`` itself: on one thread here OpenCV's DNN module takes 20 ms for a 640x480 photo and
ONNX Runtime 8.4 ms for the same graph (``python -m bench.latency`` times the whole detection: 7.5 ms p50), and
detection was the largest part of a request's own CPU (``tests/test_faces.py`` checks both give the same faces).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fermm.onnx_session import inference_session

STRIDES = (8, 16, 32)


def dynamic_graph(model_path: str | Path) -> bytes:
    """The YuNet graph with free input height and width (it is saved for 640x640; its reshapes use -1)."""
    import onnx  # lazy: a heavy import, paid only when the detector loads

    model = onnx.load(str(model_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].dim_param = f"anchors_{out.name}"
    del model.graph.value_info[:]  # the saved intermediate shapes are 640x640's
    return model.SerializeToString()


class YuNet:
    """``detect(bgr)`` -> (N, 15) float32 rows as cv2.FaceDetectorYN gives them: x, y, w, h, five landmarks
    (right eye, left eye, nose tip, right and left mouth corners; x, y each), score. Thread-safe."""

    def __init__(self, model_path: str | Path, score_threshold: float = 0.7, nms_threshold: float = 0.3,
                 top_k: int = 5000, threads: int | None = None):
        import torch  # lazy: only for the process's thread setting; a heavy import

        # threads: the app's setting (fermm.serve.threads) unless given
        self.session = inference_session(dynamic_graph(model_path), threads or torch.get_num_threads())
        self.names = [o.name for o in self.session.get_outputs()]
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """Faces in an (H, W, 3) uint8 BGR image, in its pixels, best first after non-maximum suppression."""
        h, w = bgr.shape[:2]
        pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32  # zero padding to a multiple of the largest stride
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        outputs = dict(zip(self.names, self.session.run(None, {"input": blob})))
        faces = np.concatenate([decode(outputs, s, pad_h // s, pad_w // s, self.score_threshold) for s in STRIDES])
        return suppress(faces, self.score_threshold, self.nms_threshold, self.top_k)


def decode(outputs: dict[str, np.ndarray], stride: int, rows: int, cols: int, threshold: float) -> np.ndarray:
    """One stride's anchors -> (M, 15) faces scoring at least ``threshold``: score = sqrt(cls * obj), both clamped
    to [0, 1]; centre = (cell + offset) * stride, size = exp(log-size) * stride, landmarks = (cell + offset) *
    stride."""
    cls, obj = outputs[f"cls_{stride}"].reshape(-1), outputs[f"obj_{stride}"].reshape(-1)
    score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
    keep = np.flatnonzero(score >= threshold)
    r, c = np.divmod(keep, cols)
    box = outputs[f"bbox_{stride}"].reshape(rows * cols, 4)[keep]
    kps = outputs[f"kps_{stride}"].reshape(rows * cols, 10)[keep]
    w, h = np.exp(box[:, 2]) * stride, np.exp(box[:, 3]) * stride
    x, y = (c + box[:, 0]) * stride - w / 2, (r + box[:, 1]) * stride - h / 2
    marks = np.empty_like(kps)
    marks[:, 0::2] = (kps[:, 0::2] + c[:, None]) * stride
    marks[:, 1::2] = (kps[:, 1::2] + r[:, None]) * stride
    return np.column_stack([x, y, w, h, marks, score[keep]]).astype(np.float32)


def suppress(faces: np.ndarray, score_threshold: float, nms_threshold: float, top_k: int) -> np.ndarray:
    """OpenCV's non-maximum suppression over the faces, on their boxes truncated to whole pixels as OpenCV does."""
    if len(faces) <= 1:
        return faces
    import cv2  # lazy: a heavy import, paid only when this runs

    boxes = [[int(v) for v in row[:4]] for row in faces]
    keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), score_threshold, nms_threshold, 1.0, top_k)
    return faces[np.asarray(keep, int).reshape(-1)]
