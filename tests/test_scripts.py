"""The README's quickstart runs as printed and learns."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_trains_to_high_accuracy():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "quickstart.py")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"training accuracy ([\d.]+)%", result.stdout).group(1))
    assert accuracy > 90


def test_readme_example_is_the_quickstart_script():
    with open(os.path.join(ROOT, "README.md")) as readme, \
            open(os.path.join(ROOT, "scripts", "quickstart.py")) as script:
        code = script.read().split('"""', 2)[2].strip()
        assert code in readme.read(), "README's example and scripts/quickstart.py have drifted apart"
