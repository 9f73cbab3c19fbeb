#!/usr/bin/python3
"""A KCL MultiLang record processor written against the protocol alone (no KCL package), for
test_consume.py: JSON lines on stdin (initialize, processRecords, leaseLost, shardEnded, shutdownRequested,
checkpoint replies) and stdout (checkpoint requests, status).

Everything it sees goes to the JSON-lines log named by ML_LOG (one append per message, so several
processes can share it): {"ev": "init"|"rec"|"cp"|"lost"|"end"|"shutdown", "shard", "t" (CLOCK_MONOTONIC,
comparable across processes), ...}. It checkpoints after every ML_CHECKPOINT_EVERY records (default 25) and
at shardEnded / shutdownRequested, unless ML_FORGET_SHARD_END is set (then shardEnded is answered without a
checkpoint, to see the worker insist). Test hooks, all optional: ML_CHECKPOINT_AT_RECORD=N checkpoints
at exactly the N-th record this process sees (its sequence and sub-sequence number) and, with
ML_EXIT_AFTER_CHECKPOINT, then exits at once (a crash right after a mid-aggregate checkpoint);
ML_STALL_FILE: while that file exists, processRecords waits before checkpointing (a stalled processor).
"""

import json
import os
import sys
import time

LOG = os.environ["ML_LOG"]
EVERY = int(os.environ.get("ML_CHECKPOINT_EVERY", "25"))
FORGET_SHARD_END = bool(os.environ.get("ML_FORGET_SHARD_END"))
WORKER = os.environ.get("ML_WORKER", "")
CHECKPOINT_AT = int(os.environ.get("ML_CHECKPOINT_AT_RECORD", "0"))
EXIT_AFTER_CHECKPOINT = bool(os.environ.get("ML_EXIT_AFTER_CHECKPOINT"))
STALL_FILE = os.environ.get("ML_STALL_FILE")


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def log(*events):
    now = time.monotonic()
    text = "".join(json.dumps(dict(e, t=now, worker=WORKER, pid=os.getpid())) + "\n" for e in events)
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def checkpoint(sequence=None, sub=None):
    send({"action": "checkpoint", "sequenceNumber": sequence, "subSequenceNumber": sub})
    reply = json.loads(sys.stdin.readline())
    assert reply["action"] == "checkpoint", reply
    return reply.get("error")


def main():
    shard = None
    since_checkpoint = 0
    seen = 0
    last = None
    while True:
        line = sys.stdin.readline()
        if not line:
            return  # the worker went away
        msg = json.loads(line)
        action = msg["action"]
        if action == "initialize":
            shard = msg["shardId"]
            log({"ev": "init", "shard": shard, "seq": msg["sequenceNumber"], "sub": msg.get("subSequenceNumber")})
        elif action == "processRecords":
            events = []
            at = None
            for r in msg["records"]:
                events.append({"ev": "rec", "shard": shard, "seq": r["sequenceNumber"],
                               "sub": r.get("subSequenceNumber", 0), "pk": r["partitionKey"], "data": r["data"]})
                last = (r["sequenceNumber"], r.get("subSequenceNumber", 0))
                seen += 1
                if seen == CHECKPOINT_AT:
                    at = last
            log(*events)
            while STALL_FILE and os.path.exists(STALL_FILE):
                time.sleep(0.02)
            since_checkpoint += len(msg["records"])
            if at is not None:
                err = checkpoint(at[0], at[1])
                log({"ev": "cp", "shard": shard, "seq": at[0], "sub": at[1], "err": err})
                if EXIT_AFTER_CHECKPOINT:
                    os._exit(0)
            elif CHECKPOINT_AT == 0 and since_checkpoint >= EVERY and last is not None:
                err = checkpoint()
                log({"ev": "cp", "shard": shard, "seq": last[0], "sub": last[1], "err": err})
                since_checkpoint = 0
        elif action == "leaseLost":
            log({"ev": "lost", "shard": shard})
        elif action == "shardEnded":
            err = None if FORGET_SHARD_END else checkpoint()
            log({"ev": "end", "shard": shard, "err": err, "forgot": FORGET_SHARD_END})
        elif action == "shutdownRequested":
            err = checkpoint()
            log({"ev": "shutdown", "shard": shard, "err": err})
        send({"action": "status", "responseFor": action})


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the worker was killed (the SIGKILL test): nothing to answer to
        os._exit(0)
