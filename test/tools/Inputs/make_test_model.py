#!/usr/bin/python3
"""Random test checkpoint: make_random_model.py's flags, plus --tiny-tokenizer to add a small
sentencepiece tokenizer (the model's --vocab is then set to match it).

    /usr/bin/python3 make_test_model.py OUT_DIR [--tiny-tokenizer] --family opt ...
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolchain as tc  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    tiny = "--tiny-tokenizer" in args
    args = [a for a in args if a != "--tiny-tokenizer"]
    if tiny:
        args += ["--vocab", str(tc.TINY_VOCAB)]
    mrm, _ = tc.training_modules()
    mrm.main(args + ["--fit-seqs", "8", "--fit-len", "24", "--kmeans-iters", "4"])
    if tiny:
        tc.write_tiny_tokenizer(args[0])
