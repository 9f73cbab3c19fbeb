#!/usr/bin/python3
"""eddy agent with many files: CPU and RSS of the agent while N files each get R lines/s.

Starts eddy (--shard-limits off) and a 16-shard stream (10,000 records/s need 10 shards at Kinesis limits), creates N files, starts `eddy agent` on them, and
writes one line to every file every 1/R s for warm-up + measure seconds. Over the measured window it
reads the agent's CPU time (utime + stime from /proc/PID/stat) and RSS (VmRSS; VmHWM for the peak), and at
the end checks the agent kept up (records sent == lines written). The writer's own CPU is not counted.

usage: bench/agent_bench.py [--eddy build-agent/eddy] [--files 1000] [--rate 10] [--warmup 10]
                            [--measure 30] [--no-inotify] [--aggregation] [--stagger SECONDS]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
from botocore.config import Config


def start(cmd, ready):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(ready, line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit(f"{cmd[0]} did not start")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def metric(url, name):
    body = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines() if l.startswith(name + "{") or
               l.startswith(name + " "))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eddy", default="build-agent/eddy")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--measure", type=float, default=30.0)
    ap.add_argument("--no-inotify", action="store_true")
    ap.add_argument("--aggregation", action="store_true")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--stagger", type=float, default=0.0,
                    help="file i gets its first line i/N of this many seconds after the others' start, so that "
                         "the files are written at different phases (as writers started at different times are)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="eddy-agent-bench-")
    procs = []
    try:
        eddy, endpoint = start([args.eddy, "serve", "--port", "0", "--data", f"{work}/data", "--state-delay-ms", "0",
                                "--shard-limits", "off"], r"listening on (http://\S+)")
        procs.append(eddy)
        kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                               aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}))
        kinesis.create_stream(StreamName="bench", ShardCount=args.shards)
        while kinesis.describe_stream_summary(StreamName="bench")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            time.sleep(0.05)
        logs = f"{work}/logs"
        os.mkdir(logs)
        fds = [os.open(f"{logs}/app-{i:05d}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
               for i in range(args.files)]
        cfg = {"kinesis.endpoint": endpoint, "awsAccessKeyId": "x", "awsSecretAccessKey": "x",
               "checkpointFile": f"{work}/checkpoints.db",
               "flows": [{"filePattern": f"{logs}/app-*.log", "kinesisStream": "bench",
                          "initialPosition": "START_OF_FILE", "aggregation": args.aggregation}]}
        with open(f"{work}/agent.json", "w") as f:
            json.dump(cfg, f)
        cmd = [args.eddy, "agent", "-c", f"{work}/agent.json", "--metrics-listen", "127.0.0.1:0"]
        if args.no_inotify:
            cmd.append("--no-inotify")
        agent, url = start(cmd, r"metrics on (http://\S+)")
        procs.append(agent)
        line = b"2024-01-01T00:00:00.000Z INFO request served in 12 ms path=/api/v1/items status=200 bytes=1234\n"
        written = 0
        period = 1.0 / args.rate
        t0 = time.monotonic()
        tick = t0
        cpu0 = rss_sum = rss_n = None
        while True:
            now = time.monotonic()
            if now - t0 >= args.warmup + args.measure:
                break
            if cpu0 is None and now - t0 >= args.warmup:
                cpu0, m0 = cpu_seconds(agent.pid), now
                rss_sum, rss_n = 0, 0
            started = len(fds) if now - t0 >= args.stagger else int(len(fds) * (now - t0) / args.stagger)
            for fd in fds[:started]:
                os.write(fd, line)
            written += started
            if rss_n is not None:
                rss_sum += status_kb(agent.pid, "VmRSS")
                rss_n += 1
            tick += period
            delay = tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        cpu1, m1 = cpu_seconds(agent.pid), time.monotonic()
        lines_per_s = written / (m1 - t0)
        deadline = time.monotonic() + 60
        while metric(url, "eddy_agent_records_sent_total") < written and time.monotonic() < deadline:
            time.sleep(0.2)
        sent = metric(url, "eddy_agent_records_sent_total")
        requests = metric(url, "eddy_agent_put_records_requests_total")
        caught_up = time.monotonic() - m1
        print(f"files {args.files}, {args.rate:g} lines/s each ({lines_per_s:.0f} lines/s written), "
              f"{'polling' if args.no_inotify else 'inotify'}, aggregation {'on' if args.aggregation else 'off'}")
        print(f"agent CPU: {100 * (cpu1 - cpu0) / (m1 - m0):.2f} % of one core over {m1 - m0:.0f} s")
        print(f"agent RSS: {rss_sum / max(rss_n, 1) / 1024:.1f} MiB average, {status_kb(agent.pid, 'VmHWM') / 1024:.1f} "
              f"MiB peak")
        print(f"records sent {sent:.0f} of {written} written; caught up {caught_up:.1f} s after the writers stopped; "
              f"{requests:.0f} PutRecords ({sent / max(requests, 1):.0f} lines each on average)")
        for fd in fds:
            os.close(fd)
        return 0 if sent >= written else 1
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
