"""Every Python block of README.md runs as written (in a fresh interpreter)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_blocks():
    assert BLOCKS, "README.md should show how to use skad"


@pytest.mark.parametrize("block", range(len(BLOCKS)))
def test_readme_block_runs(block, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(BLOCKS[block])
    # import skad from this checkout, whatever is installed
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
