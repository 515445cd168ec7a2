"""Peak memory of one training step, in a fresh interpreter (run by run.py, one process per measurement).

    python benchmarks/memory_probe.py PEER CELL C H L T N THREADS

Imports everything, runs one step on a tiny problem (so one-time library initialisation, e.g. torch's
autograd engine, is not counted against the step), creates the inputs and the peer's callable, then prints
as JSON the growth of the peak resident set size (getrusage ru_maxrss) over one training step.
"""

from __future__ import annotations

import json
import os
import resource
import sys

START_KIB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; small unless inherited

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from benchmarks.cases import Case, make_problem  # noqa: E402
from benchmarks.peers import available_peers  # noqa: E402


def maxrss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main(argv):
    peer_name, cell = argv[0], argv[1]
    C, H, L, T, N, threads = (int(v) for v in argv[2:8])
    peers, missing = available_peers(include=(peer_name,))
    if not peers:
        print(json.dumps({"error": missing.get(peer_name, "not available")}))
        return 0
    peer = peers[0]
    peer.set_threads(threads)
    peer.train(make_problem(Case(cell, 2, 4, L, 3, 2)))()  # library warm-up on a tiny problem
    step = peer.train(make_problem(Case(cell, C, H, L, T, N)))
    before = maxrss_kib()
    step()
    after = maxrss_kib()
    print(json.dumps({"start_kib": START_KIB, "before_kib": before, "after_kib": after, "delta_mib": (after - before) / 1024.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
