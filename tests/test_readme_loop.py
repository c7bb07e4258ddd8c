"""The README's "Your own agent loop" block runs as written (a user's first contact with the protocol)."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_agent_loop_runs_as_written():
    section = README.read_text().split("## Your own agent loop", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md:your-own-agent-loop", "exec"), {"__name__": "readme"})
    printed = out.getvalue()
    match = re.search(r"success=(True|False) in (\d+) steps, last output '(.+)'", printed)
    assert match, printed
    assert 1 <= int(match.group(2)) <= 8
    assert match.group(3) in ("stop", "move forward", "turn left", "turn right")  # a decoded action word
