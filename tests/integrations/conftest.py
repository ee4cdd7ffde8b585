"""The integrations' shared helpers (flower_app) import by name; the suite runs in importlib mode."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
