"""`eddy agent` (src/agent/, docs/AGENT.md) against the real server, read back with boto3.

* rotation + SIGKILL: writers append numbered lines to three files, rotating each every ~2 s in its own
  style (rename + create, copytruncate, truncate); the agent is killed with SIGKILL mid-run and started
  again; every line arrives, per file in order; duplicates are only lines already in the stream when the
  agent was killed (sent but not yet checkpointed), and their number is reported;
* restarts mid-shift: a writer rotates ten times a second in logrotate's numbering while the agent is
  killed and started again fifteen times; every line arrives and the first arrivals are in order;
* eddy down: the agent holds at most eddy.maxBufferedBytes, stops reading (the lag grows), and catches up
  once eddy is back on the same port, each shard's lines in file order;
* a stream created after the agent started: the lines are held, and then all arrive;
* processing options end to end (LOGTOJSON, CSVTOJSON, partition key from a field), two flows into two
  streams, malformed lines dropped or kept raw and counted;
* multi-line records, skipped headers, a cut runaway line, a partial last line after its timeout, and exact
  resume after SIGTERM (no duplicate, nothing lost);
* a file rewritten in place past the read offset, with the same first bytes: read again from its start;
* many files with the polling fallback (--no-inotify), and ADDEC2METADATA off EC2 (it says so, no hang);
* configuration errors name the key.

Waits poll with a deadline; writers pace themselves with short sleeps (that is the load, not
synchronisation). Every agent and server is stopped and every folder removed at teardown.
"""

import collections
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import EDDY_BIN, EddyServer, close_clients, make_kinesis, unique_name, wait_until

READY_RE = re.compile(r"agent: started: .* metrics on (http://[0-9.]+:\d+)")
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")


class Agent:
    """One `eddy agent` process on a config file; restartable; stderr kept for failure reports."""

    def __init__(self, config_path, extra=()):
        self.config_path = str(config_path)
        self.extra = list(extra)
        self.proc = None
        self.url = None
        self.log = []
        self._reader = None

    def start(self, timeout=15.0):
        self.proc = subprocess.Popen(
            [EDDY_BIN, "agent", "-c", self.config_path, "--metrics-listen", "127.0.0.1:0", *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0,
        )
        lines = queue.Queue()
        proc = self.proc

        def drain():
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        self._reader = threading.Thread(target=drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None:
                raise AssertionError(f"agent exited with {proc.wait()}:\n" + self.tail())
            m = READY_RE.search(line or "")
            if m:
                self.url = m.group(1)
                return self
            if time.monotonic() > deadline:
                raise AssertionError("agent did not start in time:\n" + self.tail())

    def metrics(self):
        """{name: {labels text: value}} from GET /metrics."""
        body = urllib.request.urlopen(self.url + "/metrics", timeout=10).read().decode()
        out = collections.defaultdict(dict)
        for line in body.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-z_]+)(\{.*\})? (-?[0-9.e+]+)$", line)
            assert m, line
            out[m.group(1)][m.group(2) or ""] = float(m.group(3))
        return out

    def total(self, name):
        return sum(self.metrics().get(name, {}).values())

    def stop(self, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, n=80):
        return "\n".join(self.log[-n:])

    def problems(self):
        return [l for l in self.log if " error " in l or any(m in l for m in SANITIZER)]


@pytest.fixture
def agents():
    made = []

    def make(config_path, extra=()):
        a = Agent(config_path, extra)
        made.append(a)
        return a

    yield make
    for a in made:
        a.cleanup()
        print(f"--- agent stderr ---\n{a.tail()}")


def write_config(path, endpoint, flows, **extra):
    cfg = {
        "kinesis.endpoint": endpoint,
        "kinesis.region": "us-east-1",
        "awsAccessKeyId": "AKIDEXAMPLE",
        "awsSecretAccessKey": "secret",
        "checkpointFile": str(pathlib.Path(path).parent / "checkpoints.db"),
        **extra,
        "flows": flows,
    }
    pathlib.Path(path).write_text(json.dumps(cfg, indent=2))
    return path


def make_stream(kinesis, shards=1):
    name = unique_name("agent")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", message="stream ACTIVE")
    return name


def read_shards(kinesis, stream, arrivals=False):
    """Every record of each shard: {shard id: [(partition key, data bytes)]} (with arrivals: and its
    ApproximateArrivalTimestamp in epoch seconds as a third item)."""
    out = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        records = out[shard["ShardId"]] = []
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            got = kinesis.get_records(ShardIterator=it, Limit=10000)
            records += [(r["PartitionKey"], r["Data"], r["ApproximateArrivalTimestamp"].timestamp()) if arrivals
                        else (r["PartitionKey"], r["Data"]) for r in got["Records"]]
            if not got["Records"] and got.get("MillisBehindLatest", 0) == 0:
                break
            it = got.get("NextShardIterator")
    return out


def read_stream(kinesis, stream, arrivals=False):
    """Every record of every shard, in shard order: [(partition key, data bytes)] (with arrivals: and its
    ApproximateArrivalTimestamp in epoch seconds as a third item)."""
    return [r for records in read_shards(kinesis, stream, arrivals).values() for r in records]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------
# Rotation in three styles, SIGKILL mid-run


class Writer(threading.Thread):
    """Appends "<name> <seq>" lines to dir/name at ~rate lines/s, rotating every `every` seconds in `style`."""

    def __init__(self, directory, name, style, ckpt_db, rate=80, every=2.0, duration=14.0):
        super().__init__(daemon=True)
        self.dir, self.name, self.style, self.ckpt_db = directory, name, style, ckpt_db
        self.path = os.path.join(directory, name)
        self.rate, self.every, self.duration = rate, every, duration
        self.written = 0
        self.rotations = 0
        self.error = None

    def open(self):
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def shift(self):
        """name.N -> name.N+1 ... name.1 -> name.2 (logrotate's numbering; nothing deleted)."""
        n = 1
        while os.path.exists(f"{self.path}.{n}"):
            n += 1
        for k in range(n - 1, 0, -1):
            os.rename(f"{self.path}.{k}", f"{self.path}.{k + 1}")

    def checkpointed(self):
        """Whether the agent's checkpoint covers the whole current file (its row: same inode, same start)."""
        st = os.stat(self.path)
        with open(self.path, "rb") as f:
            head = f.read(1024)
        try:
            db = sqlite3.connect(f"file:{self.ckpt_db}?mode=ro", uri=True, timeout=5)
            try:
                rows = db.execute("SELECT fingerprint, offset FROM eddy_file_checkpoints WHERE ino = ?",
                                  (st.st_ino,)).fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            return False
        return any(head.startswith(bytes(fp)) and off >= st.st_size for fp, off in rows)

    def rotate(self, fd):
        if self.style == "rename":
            self.shift()
            os.rename(self.path, self.path + ".1")
            for _ in range(3):  # the application writes on to the renamed file until it reopens
                self.line(fd)
            os.close(fd)
            return self.open()
        if self.style == "copytruncate":
            self.shift()
            shutil.copyfile(self.path, self.path + ".1")
            os.truncate(self.path, 0)
            return fd
        # truncate: the application empties its log once the agent has it all (else lines would be lost)
        wait_until(self.checkpointed, timeout=60, interval=0.05, message=f"{self.path} checkpointed")
        os.truncate(self.path, 0)
        return fd

    def line(self, fd):
        os.write(fd, f"{self.name} {self.written:08d} {'x' * 30}\n".encode())
        self.written += 1

    def run(self):
        try:
            fd = self.open()
            start = last = time.monotonic()
            while time.monotonic() - start < self.duration:
                self.line(fd)
                if time.monotonic() - last >= self.every:
                    fd = self.rotate(fd)
                    self.rotations += 1
                    last = time.monotonic()
                time.sleep(1.0 / self.rate)
            os.close(fd)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def parse_lines(records):
    out = []
    for _, data, *_ in records:
        name, seq, _ = data.decode().rstrip("\n").split(" ")
        out.append((name, int(seq)))
    return out


def test_rotation_styles_and_sigkill_lose_nothing(eddy_factory, agents, tmp_path, record_property):
    eddy = eddy_factory("--shard-limits", "off")
    kinesis = make_kinesis(eddy.endpoint)
    stream = make_stream(kinesis, shards=1)  # one shard: the stream's order is the put order
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": f"{logs}/*.log*", "kinesisStream": stream, "initialPosition": "START_OF_FILE",
         "maxBufferAgeMillis": 100}], **{"eddy.checkpointIntervalMillis": 1000})
    agent = agents(cfg).start()
    ckpt_db = str(tmp_path / "checkpoints.db")
    writers = [Writer(str(logs), f"{style}.log", style, ckpt_db) for style in ("rename", "copytruncate", "truncate")]
    for w in writers:
        w.start()
    # the kill comes at a line count, not at a rotation: the truncate writer rotates right after a checkpoint
    wait_until(lambda: all(w.rotations >= 1 for w in writers) and sum(w.written for w in writers) >= 1500,
               timeout=30, message="writers under way")
    agent.kill9()
    killed_at_rotations = [w.rotations for w in writers]
    wait_until(lambda: all(w.rotations > r for w, r in zip(writers, killed_at_rotations) if w.style != "truncate"),
               timeout=30, message="rotations while the agent is down")
    # the records that arrived before the restart came from the killed agent: the only lines allowed to come
    # twice (eddy stamps arrivals with this machine's clock; seconds of rotations separate the two agents)
    restarted_at = time.time()
    agent.start()
    for w in writers:
        w.join(timeout=90)
        assert not w.is_alive() and w.error is None, w.error
    expected = {(w.name, i) for w in writers for i in range(w.written)}

    def all_arrived():
        got = parse_lines(read_stream(kinesis, stream))
        return got if expected <= set(got) else None

    got = wait_until(all_arrived, timeout=60, interval=0.5, message="every line in the stream")
    before = set(parse_lines([r for r in read_stream(kinesis, stream, arrivals=True) if r[2] < restarted_at]))
    counts = collections.Counter(got)
    assert set(counts) == expected, f"unexpected lines: {sorted(set(counts) - expected)[:5]}"
    duplicates = {line: n for line, n in counts.items() if n > 1}
    assert all(n == 2 for n in duplicates.values()), "a line arrived three times"
    assert set(duplicates) <= before, (
        f"{len(set(duplicates) - before)} of {len(duplicates)} duplicates were not in the stream when the agent died: "
        f"{sorted(set(duplicates) - before)[:40]}")
    for w in writers:  # per file in order (first arrivals)
        seen, order = set(), []
        for name, seq in got:
            if name == w.name and seq not in seen:
                seen.add(seq)
                order.append(seq)
        assert order == sorted(order), f"{w.name}: out of order"
    record_property("duplicates_after_sigkill", len(duplicates))
    spans = {w.name: sorted(seq for name, seq in duplicates if name == w.name) for w in writers}
    print("duplicates per file: " + (", ".join(f"{n}: {len(v)} ({v[0]}..{v[-1]})" for n, v in spans.items() if v)
                                     or "none"))
    print(f"rotation test: {len(expected)} lines, {sum(w.rotations for w in writers)} rotations, "
          f"{len(duplicates)} duplicates (sent before SIGKILL, not yet checkpointed)")
    assert agent.total("eddy_agent_bytes_lost_total") == 0
    assert agent.stop() == 0
    assert not agent.problems(), agent.problems()


def test_restarts_while_names_shift_keep_each_file_in_order(eddy_factory, agents, tmp_path):
    """The agent is killed and started again and again while a writer rotates fast in logrotate's
    numbering (each rotation renames every app.log.N): a start that lists the directory mid-shift must
    still find every file, and read the older ones first; lines written to a file after its rename go
    before the next file's."""
    eddy = eddy_factory("--shard-limits", "off")
    kinesis = make_kinesis(eddy.endpoint)
    stream = make_stream(kinesis, shards=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": f"{logs}/shift.log*", "kinesisStream": stream, "initialPosition": "START_OF_FILE",
         "maxBufferAgeMillis": 50}], **{"eddy.checkpointIntervalMillis": 200})
    agent = agents(cfg).start()
    writer = Writer(str(logs), "shift.log", "rename", str(tmp_path / "checkpoints.db"), rate=400, every=0.1,
                    duration=6.0)
    writer.start()
    restarts = 0
    while writer.is_alive():
        wait_until(lambda: not writer.is_alive() or writer.rotations > 4 * (restarts + 1), timeout=30,
                   message="rotations")
        agent.kill9()
        agent.start()
        restarts += 1
    writer.join(timeout=30)
    assert writer.error is None, writer.error
    expected = {(writer.name, i) for i in range(writer.written)}

    def all_arrived():
        got = parse_lines(read_stream(kinesis, stream))
        return got if expected <= set(got) else None

    got = wait_until(all_arrived, timeout=60, interval=0.5, message="every line in the stream")
    assert set(got) == expected
    seen, order = set(), []
    for _, seq in got:
        if seq not in seen:
            seen.add(seq)
            order.append(seq)
    slips = [(a, b) for a, b in zip(order, order[1:]) if b < a]
    print(f"shifting rotations: {writer.written} lines, {writer.rotations} rotations, {restarts} restarts")
    assert not slips, f"first arrivals out of order at {slips[:5]}"
    assert agent.stop() == 0
    assert not agent.problems(), agent.problems()


# ---------------------------------------------------------------------------------------------------
# eddy down: bounded buffer, back-pressure, catch-up


def test_eddy_down_buffers_to_its_bound_and_catches_up(tmp_path, agents):
    port = free_port()
    eddy = EddyServer(tmp_path / "eddy-data", args=("--port", str(port), "--shard-limits", "off"))
    try:
        eddy.start()
        kinesis = make_kinesis(eddy.endpoint)
        stream = make_stream(kinesis, shards=2)
        log = tmp_path / "app.log"
        limit = 1024 * 1024
        cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
            {"filePattern": str(log), "kinesisStream": stream, "initialPosition": "START_OF_FILE",
             "maxBufferAgeMillis": 100, "retryInitialBackoffMillis": 50, "retryMaxBackoffMillis": 500}],
            **{"eddy.maxBufferedBytes": limit, "shutdownTimeoutMillis": 1000})
        with open(log, "w") as f:
            f.writelines(f"line {i:07d} {'y' * 180}\n" for i in range(2000))
        agent = agents(cfg).start()
        wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 2000, timeout=30, message="first 2000")
        close_clients()
        eddy.stop()
        with open(log, "a") as f:  # ~4 MB while eddy is down: four times the bound
            f.writelines(f"line {i:07d} {'y' * 180}\n" for i in range(2000, 22000))
        size = log.stat().st_size

        def full():
            m = agent.metrics()
            buffered = m["eddy_agent_buffered_bytes"][""]
            assert buffered <= limit + 1024, f"buffered {buffered} above the bound {limit}"
            read = max(m["eddy_agent_file_read_offset_bytes"].values())
            return buffered >= limit * 0.9 and read < size

        wait_until(full, timeout=30, interval=0.1, message="the buffer at its bound, reading paused")
        for _ in range(20):  # it stays bounded while eddy is down
            assert full()
        eddy.start()
        kinesis = make_kinesis(eddy.endpoint)
        wait_until(lambda: agent.total("eddy_agent_records_sent_total") >= 22000, timeout=90, interval=0.2,
                   message="caught up")
        shards = read_shards(kinesis, stream)
        got = [d for records in shards.values() for _, d in records]
        counts = collections.Counter(got)
        assert len(counts) == 22000, f"{22000 - len(counts)} lines missing"
        print(f"eddy-down test: {sum(counts.values()) - len(counts)} duplicates, "
              f"{agent.total('eddy_agent_record_send_errors_total'):.0f} failed attempts retried")
        for shard, records in shards.items():  # the file's order holds through the failures and retries
            seen, order = set(), []
            for _, d in records:
                if d not in seen:
                    seen.add(d)
                    order.append(d)
            slips = [(a[:12], b[:12]) for a, b in zip(order, order[1:]) if b < a]
            assert not slips, f"{shard}: first arrivals out of order at {slips[:5]}"
        # stopped while eddy is down: it exits (after shutdownTimeoutMillis, 1 s here) and the lines it could
        # not send are read again by the next run
        close_clients()
        eddy.stop()
        with open(log, "a") as f:
            f.writelines(f"line {i:07d} {'y' * 180}\n" for i in range(22000, 22100))
        wait_until(lambda: agent.total("eddy_agent_records_parsed_total") >= 22100, timeout=30,
                   message="the last lines read")
        assert agent.stop(timeout=60) == 0
        assert not agent.problems(), agent.problems()
        eddy.start()
        kinesis = make_kinesis(eddy.endpoint)
        again = agents(cfg).start()
        wait_until(lambda: len({d for _, d in read_stream(kinesis, stream)}) == 22100, timeout=60, interval=0.5,
                   message="the lines sent by the next run")
        assert again.stop() == 0
        assert not again.problems(), again.problems()
    finally:
        close_clients()
        eddy.cleanup()


def test_a_stream_created_later_gets_every_line(eddy, kinesis, tmp_path, agents):
    """The agent starts before its stream exists: it holds the lines (put again with backoff), reads on as
    the files grow, and once the stream is created every line arrives."""
    stream = unique_name("agent-later")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    for log in logs:
        with open(log, "w") as f:
            f.writelines(f"{log.stem} {i:06d} {'z' * 60}\n" for i in range(1500))
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": str(tmp_path / "*.log"), "kinesisStream": stream, "initialPosition": "START_OF_FILE",
         "maxBufferAgeMillis": 100, "retryInitialBackoffMillis": 50, "retryMaxBackoffMillis": 200}])
    agent = agents(cfg).start()
    wait_until(lambda: agent.metrics()["eddy_agent_buffered_records"][""] == 3000, timeout=30,
               message="the lines read and held")
    for log in logs:  # more lines while the stream is missing: they queue behind the held ones
        with open(log, "a") as f:
            f.writelines(f"{log.stem} {i:06d} {'z' * 60}\n" for i in range(1500, 2000))
    wait_until(lambda: agent.metrics()["eddy_agent_buffered_records"][""] == 4000, timeout=30,
               message="the new lines read and held")
    assert agent.total("eddy_agent_records_sent_total") == 0
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 4000, timeout=60, interval=0.2,
               message="every line sent")
    got = [d.decode().split(" ") for _, d in read_stream(kinesis, stream)]
    slips = 0
    for log in logs:
        seen, order = set(), []
        for name, seq, _ in got:
            if name == log.stem and seq not in seen:
                seen.add(seq)
                order.append(int(seq))
        assert sorted(order) == list(range(2000)), f"{log.name}: {2000 - len(order)} lines missing"
        # not asserted: a record the producer failed for good (no such stream) is put again by the agent,
        # and may land after later lines the producer still held when the stream appeared
        slips += sum(1 for a, b in zip(order, order[1:]) if b < a)
    print(f"stream created later: {len(got) - 4000} duplicates, {slips} lines landed before earlier ones")
    assert agent.stop() == 0
    assert not agent.problems(), agent.problems()


# ---------------------------------------------------------------------------------------------------
# Processing options, two flows into two streams


APACHE = [
    '10.0.0.1 - alice [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326',
    'not an access log line',
    '10.0.0.2 - - [10/Oct/2000:13:55:37 -0700] "POST /b HTTP/1.1" 404 -',
]


def test_processing_options_two_flows_two_streams(eddy, kinesis, tmp_path, agents):
    web_stream, csv_stream = make_stream(kinesis), make_stream(kinesis)
    web, data = tmp_path / "web", tmp_path / "data"
    web.mkdir()
    data.mkdir()
    (web / "access.log").write_text("\n".join(APACHE) + "\n")
    (data / "a.csv").write_text("id,user,score\n1,ann,10\n2,bob\n3,cy,30,extra\n")
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": f"{web}/access.log", "kinesisStream": web_stream, "initialPosition": "START_OF_FILE",
         "partitionKeyOption": "FIELD:host", "maxBufferAgeMillis": 100,
         "dataProcessingOptions": [{"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}]},
        {"filePattern": f"{data}/*.csv", "kinesisStream": csv_stream, "initialPosition": "START_OF_FILE",
         "skipHeaderLines": 1, "partitionKeyOption": "DETERMINISTIC", "maxBufferAgeMillis": 100,
         "dataProcessingOptions": [{"optionName": "CSVTOJSON", "customFieldNames": ["id", "user", "score"],
                                    "onMismatch": "RAW"}]},
    ])
    agent = agents(cfg).start()
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 5, timeout=20, message="5 records sent")
    web_records = read_stream(kinesis, web_stream)
    assert [(pk, json.loads(d)) for pk, d in web_records] == [
        ("10.0.0.1", {"host": "10.0.0.1", "ident": "-", "authuser": "alice", "datetime": "10/Oct/2000:13:55:36 -0700",
                      "request": "GET /a.gif HTTP/1.0", "response": "200", "bytes": "2326"}),
        ("10.0.0.2", {"host": "10.0.0.2", "ident": "-", "authuser": "-", "datetime": "10/Oct/2000:13:55:37 -0700",
                      "request": "POST /b HTTP/1.1", "response": "404", "bytes": "-"}),
    ]
    csv_records = read_stream(kinesis, csv_stream)
    assert [d for _, d in csv_records] == [
        b'{"id":"1","user":"ann","score":"10"}\n', b"2,bob\n", b'{"id":"3","user":"cy","score":"30"}\n']
    import hashlib
    assert all(pk == hashlib.md5(d).hexdigest() for pk, d in csv_records)
    conv = agent.metrics()["eddy_agent_converter_records_total"]
    by = {(re.search(r'option="(\w+)"', k).group(1), re.search(r'outcome="(\w+)"', k).group(1)): v
          for k, v in conv.items()}
    assert by[("LOGTOJSON", "converted")] == 2 and by[("LOGTOJSON", "malformed")] == 1
    assert by[("LOGTOJSON", "dropped")] == 1
    assert by[("CSVTOJSON", "converted")] == 2 and by[("CSVTOJSON", "kept_raw")] == 1
    assert agent.total("eddy_agent_records_skipped_total") == 2  # the CSV header, the dropped log line
    assert agent.stop() == 0


# ---------------------------------------------------------------------------------------------------
# Multi-line records, headers, cut lines, partial last line; exact resume after SIGTERM


def test_multiline_partial_lines_and_exact_resume(eddy, kinesis, tmp_path, agents):
    stream = make_stream(kinesis)
    log = tmp_path / "app.log"
    log.write_bytes(b"HEADER 1\nHEADER 2\n"
                    b"2024-01-01 first\n  at frame 1\n  at frame 2\n"
                    b"2024-01-02 " + b"z" * 300 + b"\n"
                    b"2024-01-03 third\n")
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": str(log), "kinesisStream": stream, "initialPosition": "START_OF_FILE",
         "multiLineStartPattern": r"^\d{4}-\d{2}-\d{2} ", "skipHeaderLines": 2, "maxRecordSizeBytes": 100,
         "truncatedRecordTerminator": "<CUT>\n", "partialLineTimeoutMillis": 300, "maxBufferAgeMillis": 100}])
    agent = agents(cfg).start()
    # the third record has no start line after it: it goes once the file stopped growing for 300 ms
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 3, timeout=20, message="3 records")
    with open(log, "ab") as f:
        f.write(b"2024-01-04 fourth, unterminated")
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 4, timeout=20, message="partial line")
    assert agent.stop() == 0
    with open(log, "ab") as f:
        f.write(b"\n2024-01-05 fifth\n2024-01-06 sixth\n")
    agent.start()
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 3, timeout=20, message="after restart")
    got = [d for _, d in read_stream(kinesis, stream)]
    assert got == [
        b"2024-01-01 first\n  at frame 1\n  at frame 2\n",
        b"2024-01-02 " + b"z" * (100 - 11 - 6) + b"<CUT>\n",
        b"2024-01-03 third\n",
        b"2024-01-04 fourth, unterminated",
        b"\n",  # the rest of the line sent on its timeout: continuation lines with no start line before them
        b"2024-01-05 fifth\n",
        b"2024-01-06 sixth\n",
    ], got
    assert agent.stop() == 0
    assert not agent.problems(), agent.problems()


def test_a_file_rewritten_under_the_offset_is_read_again(eddy, kinesis, tmp_path, agents):
    """A file rewritten in place (no truncation seen, its size already past the read offset) whose first
    100 bytes are the same as before: the bytes just before the offset changed, so it is a new file, read
    from its start; nothing of the new content is skipped."""
    stream = make_stream(kinesis)
    log = tmp_path / "app.log"
    header = b"# " + b"h" * 97 + b"\n"  # longer than the first bytes the careful path compares
    old = [header] + [b"old %03d %s\n" % (i, b"x" * 40) for i in range(40)]
    log.write_bytes(b"".join(old))
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": str(log), "kinesisStream": stream, "initialPosition": "START_OF_FILE",
         "maxBufferAgeMillis": 100}])
    agent = agents(cfg).start()
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 41, timeout=20, message="the old lines")
    more = [b"old %03d %s\n" % (i, b"x" * 40) for i in range(40, 45)]
    with open(log, "ab") as f:
        f.write(b"".join(more))
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 46, timeout=20, message="appended lines")
    new = [header] + [b"new %03d %s\n" % (i, b"y" * 40) for i in range(70)]
    with open(log, "r+b") as f:
        f.write(b"".join(new))  # in place, longer than before
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 46 + len(new), timeout=20,
               message="the new content from its start")
    got = [d for _, d in read_stream(kinesis, stream)]
    assert got == old + more + new, got
    assert agent.total("eddy_agent_rotations_total") >= 1
    assert agent.stop() == 0
    assert not agent.problems(), agent.problems()


# ---------------------------------------------------------------------------------------------------
# Many files, polling fallback; EC2 metadata off EC2; configuration errors


def test_many_files_with_polling_fallback(eddy_factory, agents, tmp_path):
    eddy = eddy_factory("--shard-limits", "off")
    kinesis = make_kinesis(eddy.endpoint)
    stream = make_stream(kinesis, shards=2)
    logs = tmp_path / "many"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": f"{logs}/*.log", "kinesisStream": stream, "maxBufferAgeMillis": 200,
         "minTimeBetweenFilePollsMillis": 200}])
    files = 200
    for i in range(files):
        (logs / f"f{i:03d}.log").write_text("before the agent started\n")  # END_OF_FILE: not sent
    agent = agents(cfg, extra=["--no-inotify"]).start()
    assert agent.total("eddy_agent_inotify") == 0
    for round_ in range(5):
        for i in range(files):
            with open(logs / f"f{i:03d}.log", "a") as f:
                f.write(f"f{i:03d} {round_}\n")
    os.rename(logs / "f000.log", logs / "f000.log.1")  # out of the pattern: read to its end, then closed
    with open(logs / "f000.log.1", "a") as f:
        f.write("f000 5\n")
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == files * 5 + 1, timeout=60,
               message="every line")
    # the directory is not listed again while it is unchanged; a new file changes it and is found
    wait_until(lambda: agent.total("eddy_agent_files_tracked") == files - 1, timeout=30, message="f000 closed")
    (logs / "g000.log").write_text("g000 0\n")
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == files * 5 + 2, timeout=30,
               message="the new file's line")
    got = collections.Counter(d for _, d in read_stream(kinesis, stream))
    assert len(got) == files * 5 + 2 and set(got.values()) == {1}
    assert agent.stop() == 0


def test_add_ec2_metadata_off_ec2_says_so(eddy, kinesis, tmp_path, agents):
    stream = make_stream(kinesis)
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    cfg = write_config(tmp_path / "agent.json", eddy.endpoint, [
        {"filePattern": str(log), "kinesisStream": stream, "initialPosition": "START_OF_FILE",
         "maxBufferAgeMillis": 100, "dataProcessingOptions": [{"optionName": "ADDEC2METADATA"}]}])
    start = time.monotonic()
    agent = agents(cfg).start(timeout=10)
    assert time.monotonic() - start < 8
    assert any("ADDEC2METADATA" in l and "EC2" in l for l in agent.log), agent.tail()
    wait_until(lambda: agent.total("eddy_agent_records_sent_total") == 1, timeout=20)
    assert [d for _, d in read_stream(kinesis, stream)] == [b"hello\n"]
    assert agent.stop() == 0


@pytest.mark.parametrize("flow, globals_, message", [
    ({"filePattern": "/tmp/x/*.log", "kinesisStream": "s", "bogus": 1}, {}, "flows[0].bogus: unknown key"),
    ({"filePattern": "/tmp/x/*.log", "kinesisStream": "s"}, {"nope": 1}, "nope: unknown key"),
    ({"filePattern": "/tmp/x/*.log", "kinesisStream": "s", "maxBufferSizeRecords": 501}, {},
     "flows[0].maxBufferSizeRecords: must be an integer in 1 .. 500"),
    ({"filePattern": "/tmp/*/a.log", "kinesisStream": "s"}, {}, "the directory part must be literal"),
    ({"filePattern": "/tmp/x/a.log", "deliveryStream": "d"}, {}, "Firehose destinations are not supported"),
    ({"filePattern": "/tmp/x/a.log", "kinesisStream": "s", "multiLineStartPattern": "(["}, {},
     "flows[0].multiLineStartPattern: invalid regular expression"),
    ({"filePattern": "/tmp/x/a.log", "kinesisStream": "s",
      "dataProcessingOptions": [{"optionName": "LOGTOJSON", "logFormat": "NGINX"}]}, {},
     "flows[0].dataProcessingOptions[0].logFormat must be"),
])
def test_configuration_errors_name_the_key(tmp_path, flow, globals_, message):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({**globals_, "flows": [flow]}))
    done = subprocess.run([EDDY_BIN, "agent", "-c", str(path), "--check"], capture_output=True, timeout=30)
    assert done.returncode == 2, done
    assert message in done.stderr.decode(), done.stderr.decode()


def test_a_valid_kinesis_agent_configuration_checks(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({
        "cloudwatch.emitMetrics": True, "kinesis.endpoint": "https://kinesis.us-east-1.amazonaws.com",
        "firehose.endpoint": "", "maxSendingThreads": 8,
        "flows": [{"filePattern": "/var/log/app/*.log", "kinesisStream": "app", "partitionKeyOption": "RANDOM",
                   "initialPosition": "END_OF_FILE", "maxBufferAgeMillis": "60000",
                   "dataProcessingOptions": [{"optionName": "SINGLELINE"},
                                             {"optionName": "ADDMETADATA", "timestamp": "true",
                                              "metadata": {"env": "prod"}}]}]}))
    done = subprocess.run([EDDY_BIN, "agent", "-c", str(path), "--check"], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    assert "maxSendingThreads: accepted and ignored" in done.stderr.decode()
