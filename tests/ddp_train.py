"""Run by tests/test_distributed.py under `accelerate launch --num_processes 2 --cpu`: train/glove_cnn.py's
main on the fixture for a few steps, then each rank writes a checksum of its final weights."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from accelerate import PartialState

import train.glove_cnn as script
from fermm.models.cnn import CNNClassifier


def main(out: str, report: str) -> None:
    script.main(["--base", "--backbone", "mini", "--dataset", "tests/fixtures/fer_tiny", "--epochs", "2",
                 "--batch_size", "8", "--max_steps_per_epoch", "2", "--threads", "1", "--log_with", "none",
                 "--precision", "no", "--output_dir", out])
    state = PartialState()
    model = CNNClassifier.from_pretrained(str(Path(out) / "stage_ce" / "best"))
    digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values()))
    Path(report, f"rank{state.process_index}.txt").write_text(f"{state.num_processes} {digest.hexdigest()}")
    state.wait_for_everyone()


if __name__ == "__main__":
    torch.manual_seed(0)
    main(sys.argv[1], sys.argv[2])
