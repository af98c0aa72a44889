#!/usr/bin/python3
"""Overwrites element INDEX of tensor NAME in DIR/model.safetensors (f32) with VALUE
(nan, inf, -inf or a number): a hostile checkpoint for the exactness tests.

    poison_weight.py DIR NAME INDEX VALUE
"""
import json
import struct
import sys

path = sys.argv[1] + "/model.safetensors"
name, index, value = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
data = bytearray(open(path, "rb").read())
(header_len,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + header_len])
entry = header[name]
assert entry["dtype"] == "F32", entry
at = 8 + header_len + entry["data_offsets"][0] + 4 * index
data[at:at + 4] = struct.pack("<f", value)
open(path, "wb").write(data)
