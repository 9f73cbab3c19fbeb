#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_segment_recovery (layout byte + body, see fuzz_segment_recovery.c)."""
import os
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def header(first):
    h = b"EDDYSEG1" + struct.pack("<Q", first)
    return h + struct.pack("<II", crc32c(h), 0)


def frame(index, arrival, pk, data, flags=0):
    body = struct.pack("<QqHHI", index, arrival, len(pk), flags, len(data)) + pk + data
    return struct.pack("<II", 32 + len(pk) + len(data), crc32c(body)) + body


def frames(first, count, arrival=1000):
    return b"".join(frame(first + i, arrival + i // 2, b"key-%d" % i, bytes(range(i * 5 % 200))) for i in range(count))


out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "fuzz_segment_recovery")
os.makedirs(out, exist_ok=True)
seeds = {
    # layout 0: a whole file
    "whole_file": bytes([0]) + header(0) + frames(0, 6),
    "whole_file_torn": bytes([0]) + (header(0) + frames(0, 4))[:-7],
    "whole_file_zero_tail": bytes([4]) + header(0) + frames(0, 3) + bytes(64),
    "partial_header": bytes([0]) + header(0)[:11],
    # layout 1: frames after a valid header, resealed or not
    "frames_after_header": bytes([1]) + frames(0, 5),
    "resealed_bad_index": bytes([1 | 8]) + frame(0, 5, b"k", b"a") + frame(2, 5, b"k", b"b"),
    "resealed_flags": bytes([1 | 8]) + frame(0, 5, b"k", b"a") + frame(1, 5, b"k", b"b", flags=1),
    "resealed_arrival_back": bytes([1 | 8 | 4]) + frame(0, 9, b"k", b"a") + frame(1, 3, b"k", b"b"),
    # layout 2: three valid frames, then more
    "after_valid": bytes([2]) + frame(3, 300, b"kk", b"data"),
    "after_valid_bad_crc": bytes([2]) + frame(3, 300, b"kk", b"data")[:-1] + b"X",
    # layout 3: a second segment
    "second_segment": bytes([3]) + frames(3, 4, 300),
    "second_segment_resealed": bytes([3 | 8]) + frame(3, 300, b"k" * 40, bytes(300)),
}
for name, blob in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)
print("wrote %d seeds to %s" % (len(seeds), out))
