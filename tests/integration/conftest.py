"""Shared fixtures for eddy's integration tests.

Every test gets its own server on a free port with a fresh data folder (``eddy`` fixture, or
``eddy_factory`` for servers with extra flags), plus three ways to talk to it:

* ``kinesis``: a boto3 client (Debian's boto3 1.26 / botocore 1.29, so some newer members and
  operations are missing from its model; those go through ``raw``);
* ``raw``: a small AWS JSON 1.1 client over http.client that returns (status, json_or_None, headers);
* ``awscli``: runs Debian's AWS CLI v2 (/usr/bin/aws) against the server.

Synchronisation is always by polling with a deadline (see ``wait_until``), never by sleeping.
"""

import concurrent.futures
import http.client
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

sys.dont_write_bytecode = True

EDDY_BIN = os.environ.get("EDDY_BIN") or str(pathlib.Path(__file__).resolve().parents[2] / "build" / "eddy")
AWS_CLI = os.environ.get("EDDY_AWS_CLI") or "/usr/bin/aws"
READY_RE = re.compile(r"^eddy listening on http://(\[[^\]]+\]|[^:]+):(\d+)\s*$")
START_DEADLINE_S = 10.0
STOP_DEADLINE_S = 10.0

DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "us-east-1"


def wait_until(predicate, timeout=10.0, interval=0.005, message="condition"):
    """Polls predicate() until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def unique_name(prefix="s"):
    """A stream name unique across the whole run (names are also unique per server anyway)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def stream_arn(name, account=DEFAULT_ACCOUNT, region=DEFAULT_REGION):
    return f"arn:aws:kinesis:{region}:{account}:stream/{name}"


class EddyServer:
    """One eddy process on a data folder. The folder outlives restarts and is removed by cleanup()."""

    def __init__(self, data_dir, args=(), state_delay_ms=0):
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.state_delay_ms = state_delay_ms
        self.proc = None
        self.host = None
        self.port = None
        self.endpoint = None
        self.log = []  # every stderr line of every run, for failure reports
        self._reader = None

    # ---- lifecycle ----

    def command(self):
        return [
            EDDY_BIN,
            "serve",
            "--port",
            "0",
            "--data",
            self.data_dir,
            "--state-delay-ms",
            str(self.state_delay_ms),
            *self.args,
        ]

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        if not os.path.exists(EDDY_BIN):
            raise RuntimeError(f"eddy binary not found at {EDDY_BIN} (set EDDY_BIN)")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        lines = queue.Queue()
        proc = self.proc

        def drain():
            # Keeps reading stderr for the life of the process so that it never blocks on a full pipe.
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        self._reader = threading.Thread(target=drain, name="eddy-stderr", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._force_kill()
                raise RuntimeError("eddy did not print its listening line in time:\n" + self.tail())
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = proc.wait(timeout=STOP_DEADLINE_S)
                raise RuntimeError(f"eddy exited with {code} before listening:\n" + self.tail())
            m = READY_RE.match(line)
            if m:
                self.host = m.group(1).strip("[]")
                self.port = int(m.group(2))
                host = f"[{self.host}]" if ":" in self.host else self.host
                self.endpoint = f"http://{host}:{self.port}"
                return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_DEADLINE_S):
        """SIGTERM and wait; returns the exit code (kills with SIGKILL past the deadline and fails)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._force_kill()
                raise AssertionError(f"eddy did not exit within {timeout}s of SIGTERM:\n" + self.tail())
        self._join_reader()
        return self.proc.returncode

    def kill9(self):
        """SIGKILL, as a crash; returns the exit code (-9)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_DEADLINE_S)
        self._join_reader()
        return self.proc.returncode

    def restart(self, graceful=True):
        """Stops (SIGTERM, or SIGKILL when graceful is False) and starts again on the same data folder."""
        if self.running():
            if graceful:
                self.stop()
            else:
                self.kill9()
        return self.start()

    def cleanup(self):
        """Always safe: kills whatever is left and removes the data folder."""
        try:
            if self.running():
                try:
                    self.stop(timeout=5)
                except AssertionError:
                    pass
        finally:
            self._force_kill()
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _force_kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                pass
        self._join_reader()

    def _join_reader(self):
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self.proc is not None and self.proc.stderr is not None and self.proc.poll() is not None:
            self.proc.stderr.close()

    def tail(self, n=60):
        return "\n".join(self.log[-n:])

    # ---- clients ----

    def boto(self, **kwargs):
        return make_kinesis(self.endpoint, **kwargs)

    @property
    def raw(self):
        return RawClient(self)


# ---------------------------------------------------------------------------------------------------
# Clients


# boto3 clients created during the current test. They are closed before the servers stop: an idle
# keep-alive connection otherwise holds eddy's graceful shutdown for its whole grace period.
_open_clients = []


def close_clients():
    while _open_clients:
        client = _open_clients.pop()
        try:
            client.close()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass


_boto_session = None


def make_kinesis(endpoint, region=DEFAULT_REGION, validate=True):
    """A boto3 Kinesis client for endpoint (dummy credentials, no retries). The boto3 session is shared
    so that the service model is loaded once per run, not once per client."""
    global _boto_session
    import boto3
    from botocore.config import Config

    if _boto_session is None:
        _boto_session = boto3.session.Session()

    config = Config(
        retries={"total_max_attempts": 1},
        parameter_validation=validate,
        connect_timeout=5,
        read_timeout=15,
    )
    client = _boto_session.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        config=config,
    )
    _open_clients.append(client)
    return client


class RawClient:
    """AWS JSON 1.1 over plain HTTP (unsigned: eddy does not check auth).

    raw(op, body) -> (status, parsed JSON or None, headers with lower-case names). The endpoint is read
    from the server object on every call, so the client keeps working across restarts.
    """

    def __init__(self, server):
        self.server = server

    def __call__(self, op, body=None, *, raw_body=None, headers=None, target=None, content_type=None):
        if raw_body is None:
            raw_body = json.dumps({} if body is None else body).encode()
        elif isinstance(raw_body, str):
            raw_body = raw_body.encode()
        h = {
            "Content-Type": content_type or "application/x-amz-json-1.1",
            "X-Amz-Target": target if target is not None else f"Kinesis_20131202.{op}",
        }
        if headers:
            h.update(headers)
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=15)
        try:
            conn.request("POST", "/", body=raw_body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            status = resp.status
        finally:
            conn.close()
        parsed = None
        if data:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        return status, parsed, hdrs

    def ok(self, op, body=None):
        """Calls op and asserts a 200; returns the parsed body ({} for an empty one)."""
        status, parsed, _ = self(op, body)
        assert status == 200, f"{op} {body!r} -> {status} {parsed!r}"
        return parsed if parsed is not None else {}

    def error(self, op, body=None, status=400):
        """Calls op and asserts an error reply; returns (__type, message)."""
        got, parsed, _ = self(op, body)
        assert got == status, f"{op} {body!r} -> {got} {parsed!r}"
        assert isinstance(parsed, dict) and "__type" in parsed, parsed
        return parsed["__type"], parsed.get("message")


class AwsCli:
    """Runs `aws --endpoint-url ... --output json kinesis ARGS...`; returns (rc, json_or_None, stderr)."""

    def __init__(self, server, home):
        self.server = server
        self.home = str(home)

    def env(self):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") and k not in ("PYTHONPATH", "PYTHONHOME")
        }
        env.update(
            {
                "HOME": self.home,
                "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "AWS_DEFAULT_REGION": DEFAULT_REGION,
                "AWS_PAGER": "",
                "AWS_MAX_ATTEMPTS": "1",
                "AWS_RETRY_MODE": "standard",
                "AWS_CONFIG_FILE": os.path.join(self.home, "aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.home, "aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "LC_ALL": "C.UTF-8",
            }
        )
        return env

    def __call__(self, *args, timeout=60):
        cmd = [
            AWS_CLI,
            "--endpoint-url",
            self.server.endpoint,
            "--output",
            "json",
            "--cli-read-timeout",
            "15",
            "--cli-connect-timeout",
            "5",
            "kinesis",
            *[str(a) for a in args],
        ]
        proc = subprocess.run(
            cmd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            text=True,
        )
        out = proc.stdout.strip()
        parsed = json.loads(out) if out else None
        return proc.returncode, parsed, proc.stderr

    def ok(self, *args):
        rc, out, err = self(*args)
        assert rc == 0, f"aws kinesis {' '.join(map(str, args))} -> {rc}: {err}"
        return out

    def many(self, *commands):
        """Runs independent commands (each a tuple of arguments) concurrently; results in order.
        The CLI spends most of a call starting up, so this keeps the CLI tests reasonably fast."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self(*args), commands))


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def eddy_factory(tmp_path):
    """eddy_factory(*extra_flags, state_delay_ms=0) -> a started EddyServer on a fresh data folder
    under tmp_path; every server is stopped and its folder removed at teardown, whatever the outcome."""
    servers = []

    def make(*args, state_delay_ms=0):
        server = EddyServer(tmp_path / f"eddy-data-{len(servers)}", args=args, state_delay_ms=state_delay_ms)
        servers.append(server)
        server.start()
        return server

    yield make

    close_clients()
    for server in servers:
        server.cleanup()
        # Shown by pytest only when the test failed.
        print(f"--- eddy stderr ({server.data_dir}) ---\n{server.tail()}")


@pytest.fixture
def eddy(eddy_factory):
    """A fresh server with --state-delay-ms 0 and default limits."""
    return eddy_factory()


@pytest.fixture
def kinesis(eddy):
    """boto3 Kinesis client for the `eddy` server (client-side parameter validation on)."""
    return make_kinesis(eddy.endpoint)


@pytest.fixture
def kinesis_nv(eddy):
    """boto3 Kinesis client with client-side parameter validation off (to reach server validation)."""
    return make_kinesis(eddy.endpoint, validate=False)


@pytest.fixture
def raw(eddy):
    return RawClient(eddy)


@pytest.fixture
def awscli_factory(tmp_path):
    """awscli_factory(server) -> an AwsCli bound to that server (for servers from eddy_factory)."""
    if not os.path.exists(AWS_CLI):
        pytest.skip(f"AWS CLI not found at {AWS_CLI}")
    home = tmp_path / "aws-cli-home"
    home.mkdir(exist_ok=True)
    return lambda server: AwsCli(server, home)


@pytest.fixture
def awscli(eddy, awscli_factory):
    """AWS CLI v2 bound to the `eddy` server: awscli(*args) -> (returncode, stdout JSON or None, stderr)."""
    return awscli_factory(eddy)
