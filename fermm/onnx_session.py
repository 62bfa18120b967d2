"""ONNX Runtime sessions as the app runs them (the face detector and the CNNs' graphs alike)."""
from __future__ import annotations


def inference_session(graph: bytes, threads: int):
    """A CPU ``onnxruntime.InferenceSession`` on ``graph`` with ``threads`` threads per call, tuned for 2 shared
    cores serving many small requests."""
    import onnxruntime as ort  # lazy: a heavy import, paid only when this runs

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # no busy-waiting between runs: on 2 shared cores it would take CPU from the other models and Gradio
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # no memory arena: it keeps the peak of every concurrent request's buffers (bench/load.py: +240 MB RSS; a
    # 4000x3000 photo's detector buffers would stay for the next request)
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
