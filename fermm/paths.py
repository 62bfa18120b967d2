"""Where fermm's files live: its bundled assets, and (in a checkout or the Space) the repo's folders."""
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ASSETS = PACKAGE / "assets"
REPO_ROOT = PACKAGE.parent
CHECKPOINTS = REPO_ROOT / "checkpoints"  # small bundled models: the offline default
RESULTS_DIR = REPO_ROOT / "results"  # measured results, read by the app's Accuracy tab
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # the data sets beside a development checkout
