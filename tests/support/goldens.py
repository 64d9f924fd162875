"""Golden files for Slack views: compare, or regenerate with UPDATE_GOLDENS=1."""

from __future__ import annotations

import difflib
import json
import os
from typing import Any

import pytest

from tests.support.paths import FIXTURES as FIXTURES_DIR

GOLDEN_DIR = FIXTURES_DIR / "slack_ui"


UPDATE_GOLDENS = os.environ.get("UPDATE_GOLDENS") == "1"


def assert_golden(name: str, actual: dict[str, Any]) -> None:
    path = GOLDEN_DIR / f"{name}.json"
    if UPDATE_GOLDENS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    expected = json.loads(path.read_text(encoding="utf-8"))
    if actual != expected:
        diff = difflib.unified_diff(
            json.dumps(expected, indent=2, ensure_ascii=False).splitlines(),
            json.dumps(actual, indent=2, ensure_ascii=False).splitlines(),
            "expected",
            "actual",
            lineterm="",
        )
        pytest.fail(f"{path.name} differs (UPDATE_GOLDENS=1 regenerates):\n" + "\n".join(diff), pytrace=False)
