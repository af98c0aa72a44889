"""Random calls on shared Session and Document objects from two threads (stress_incnn.py),
in a subprocess so that a crash fails the test instead of killing pytest. INCNN_STRESS_SECONDS
sets the length (default 10 s); scripts/sanitize.sh runs the same script under
AddressSanitizer."""
import os
import subprocess
import sys

import incnn

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "pep-vq")


def test_random_calls_from_two_threads(tmp_path):
    # A short window keeps each update cheap: more calls in the time.
    program = str(tmp_path / "pep.incnn")
    incnn.compile(BUNDLED, program, max_positions=256)
    seconds = os.environ.get("INCNN_STRESS_SECONDS", "10")
    r = subprocess.run(
        [sys.executable, os.path.join(HERE, "stress_incnn.py"), program, "--seconds", seconds],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        env=dict(os.environ, PYTHONPATH=os.path.dirname(incnn.__file__)),
        timeout=float(seconds) + 120)
    assert r.returncode == 0, r.stdout[-5000:]
    assert "stress: ok" in r.stdout, r.stdout[-5000:]
