"""Make this directory's helpers importable (pytest runs in importlib mode)."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # appended: "conftest" stays the root one
