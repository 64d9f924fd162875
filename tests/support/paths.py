"""Where things are, for tests anywhere in the tree: the repository and the fixture files."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
