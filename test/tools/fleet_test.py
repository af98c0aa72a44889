#!/usr/bin/python3
"""A fleet under load, with a failover (docs/serve.md, "A fleet").

    /usr/bin/python3 fleet_test.py SOURCE_DIR BUILD_DIR

Starts scripts/fleet.sh (3 incnn-serve processes behind HAProxy on loopback), runs
scripts/load_test.py through HAProxy (clients name their documents, replay PEP histories and
verify every 4th edit), kills the server holding the most documents 4 s in, and prints the
load test's report: every client must recover its documents by PUTting its text again, no
request may fail and every verified output must be exact. Then stops the fleet with SIGTERM.
"""

import os
import signal
import subprocess
import sys


def main():
    src, build = sys.argv[1:3]
    fleet = subprocess.Popen([os.path.join(src, "scripts", "fleet.sh"), "-n", "3", "-p", "0",
                              "-b", build], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        line = fleet.stdout.readline()
        if "fleet: http://" not in line:
            sys.exit("FAIL the fleet did not start: %r" % line)
        url = line.split()[1]
        run = line.split("run directory ")[1].rstrip(")\n")
        print("fleet of 3 servers behind HAProxy at %s" % url.rsplit(":", 1)[0])
        load = subprocess.run([sys.executable, os.path.join(src, "scripts", "load_test.py"),
                               "--url", url, "--clients", "6", "--edits-per-client", "24",
                               "--verify-every", "4", "--kill-busiest", run, "--kill-after", "4"],
                              capture_output=True, text=True, timeout=900)
        print(load.stdout, end="")
        sys.stderr.write(load.stderr)  # lit shows it unchecked
        if load.returncode != 0:
            sys.stderr.write(load.stdout)
            sys.exit("FAIL the load test exited %d" % load.returncode)
    finally:
        fleet.send_signal(signal.SIGTERM)
        code = fleet.wait(timeout=60)
    print("fleet stopped with SIGTERM: exit status %d" % code)


if __name__ == "__main__":
    main()
