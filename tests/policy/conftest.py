import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # importlib mode: make helpers_policy importable
