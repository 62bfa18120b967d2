"""Scripts' entry point: expected failures (no pretrained weights, data missing, the Hub unreachable or
refusing a push, a damaged file) end with one line a person can read and a non-zero status; tracebacks stay
for real bugs."""
from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from fermm.data.errors import DataError
from fermm.faces import ImageError

# OSError covers missing files and folders, network failures, huggingface_hub's errors (offline mode, HTTP
# refusals) and what transformers raises for weights it cannot find or fetch
EXPECTED: tuple[type[BaseException], ...] = (OSError, DataError, ImageError)


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``, with an expected failure reported as ``error: ...`` on stderr and status 2."""
    try:
        return main(argv)
    except EXPECTED as e:
        logging.getLogger(__name__).debug("expected failure", exc_info=True)
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the output folder keeps the last finished epoch, and the same command resumes",
              file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:397] + "..."
