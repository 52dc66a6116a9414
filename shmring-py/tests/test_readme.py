"""The README's "From Python" example runs as written, as two processes."""

import pathlib
import re
import subprocess
import sys

import shmring

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_producer_and_consumer_run_as_written(tmp_path):
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert [b.splitlines()[0] for b in blocks] == ["# producer.py", "# consumer.py"]
    try:
        for block in blocks:
            script = tmp_path / block.splitlines()[0][2:]
            script.write_text(block)
        subprocess.run([sys.executable, tmp_path / "producer.py"], check=True, timeout=60)
        out = subprocess.run(
            [sys.executable, tmp_path / "consumer.py"],
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        ).stdout
        assert out == "tick 0\ntick 1\ntick 2\n"
    finally:
        try:
            shmring.unlink("/py-quotes")
        except shmring.NotFound:
            pass
