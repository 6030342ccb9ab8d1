"""Reproduces the reference-value table of docs/SEMANTICS.md against a running server.

    PYTHONPATH=client/python python3 client/python/examples/reference_table.py [host:port]

Input 1..9, one channel, kernel of ones, no bias, Conv1D, k in {5, 6},
s in {1, 2}, VALID and SAME_UPPER. Exits 1 on any mismatch.
"""

import sys

import numpy as np

import convserve

EXPECTED = {
    (5, 1): ([15, 20, 25, 30, 35], [6, 10, 15, 20, 25, 30, 35, 30, 24]),
    (5, 2): ([15, 25, 35], [6, 15, 25, 35, 24]),
    (6, 1): ([21, 27, 33, 39], [10, 15, 21, 27, 33, 39, 35, 30, 24]),
    (6, 2): ([21, 33], [10, 21, 33, 35, 24]),
}


def main(target=None):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 9)
    all_match = True
    print("| k | s | VALID | SAME_UPPER |\n|---|---|---|---|")
    with convserve.Client(target) as client:
        for (k, s), (valid, same_upper) in EXPECTED.items():
            w = np.ones((1, 1, k), dtype=np.float32)
            got_valid = convserve.conv1d(x, w, stride=s, padding="valid", client=client).ravel()
            got_same = convserve.conv1d(x, w, stride=s, padding="same_upper",
                                        client=client).ravel()
            all_match &= got_valid.tolist() == valid and got_same.tolist() == same_upper
            print("| %d | %d | %s | %s |" % (k, s, " ".join("%g" % v for v in got_valid),
                                             " ".join("%g" % v for v in got_same)))
    print("all values match docs/SEMANTICS.md" if all_match else "MISMATCH with docs/SEMANTICS.md")
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
