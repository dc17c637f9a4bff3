import sys
from pathlib import Path

# --import-mode=importlib: make this folder's helpers_*.py importable by the tests next to them.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eventlog"))
