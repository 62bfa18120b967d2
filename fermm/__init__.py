"""fermm: facial emotion recognition, multimodal.

    >>> import fermm
    >>> model = fermm.load_model("glove_cnn")                 # bundled, else its Hub repo
    >>> faces, crops = fermm.find_and_crop(fermm.load_image("photo.jpg"))
    >>> model.predict_proba(crops)                            # (n_faces, 7), rows sum to 1

The package's layers, top to bottom: ``serve`` (the app and the predict service), ``training``,
``studies`` -> ``evaluation`` -> ``models``, ``data`` -> leaves (``labels``, ``faces``, ``framing``,
``transforms``, ``hub``, ``paths``).
"""
from __future__ import annotations

import importlib

__version__ = "0.3.0"

# public name -> the module that defines it; imported on first use, so that `import fermm.labels` stays
# light and the layers below never import the ones above through this package (PEP 562)
_API = {
    "list_models": "fermm.models", "load_model": "fermm.models",
    "load_image": "fermm.faces", "find_and_crop": "fermm.faces", "detect_faces": "fermm.faces",
    "crop_face": "fermm.faces", "ImageError": "fermm.faces",
    "predict_image": "fermm.serve.predict", "ModelPool": "fermm.serve.predict",
    "FER7": "fermm.labels",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'fermm' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
