"""The HTTP front: health endpoints, keep-alive, body limit, request ids, signals."""

import http.client
import json
import re
import signal
import socket
import threading
import time

import pytest

from conftest import make_kinesis, unique_name, wait_until

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def kinesis_request(conn, op, body):
    conn.request(
        "POST",
        "/",
        body=json.dumps(body),
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Kinesis_20131202.{op}"},
    )
    resp = conn.getresponse()
    data = resp.read()
    return resp, (json.loads(data) if data else None)


def test_listening_line_printed_once(eddy):
    lines = [line for line in eddy.log if line.startswith("eddy listening on ")]
    assert lines == [f"eddy listening on http://127.0.0.1:{eddy.port}"]


@pytest.mark.parametrize("path,status", [("/health/live", "live"), ("/health/ready", "ready")])
def test_health_endpoints(eddy, path, status):
    conn = http.client.HTTPConnection(eddy.host, eddy.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200
        assert resp.getheader("Content-Type", "").startswith("application/json")
        assert json.loads(body) == {"status": status}
        assert UUID_RE.match(resp.getheader("x-amzn-RequestId", ""))
    finally:
        conn.close()


def test_unknown_path_and_method(eddy):
    conn = http.client.HTTPConnection(eddy.host, eddy.port, timeout=10)
    try:
        conn.request("GET", "/nope")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404
        conn.request("PUT", "/", body=b"{}")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 405
    finally:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(eddy):
    conn = http.client.HTTPConnection(eddy.host, eddy.port, timeout=10)
    try:
        name = unique_name()
        conn.connect()
        sock = conn.sock
        local = sock.getsockname()

        resp, body = kinesis_request(conn, "CreateStream", {"StreamName": name, "ShardCount": 2})
        assert resp.status == 200 and body is None
        assert (resp.getheader("Connection") or "").lower() != "close"

        for _ in range(3):
            resp, body = kinesis_request(conn, "DescribeStreamSummary", {"StreamName": name})
            assert resp.status == 200
            assert body["StreamDescriptionSummary"]["OpenShardCount"] == 2

        # Errors do not close the connection either.
        resp, body = kinesis_request(conn, "DescribeStreamSummary", {"StreamName": "missing"})
        assert resp.status == 400 and body["__type"] == "ResourceNotFoundException"
        resp, body = kinesis_request(conn, "NoSuchOperation", {})
        assert resp.status == 400 and body["__type"] == "UnknownOperationException"

        conn.request("GET", "/health/live")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200

        resp, body = kinesis_request(conn, "ListStreams", {})
        assert body["StreamNames"] == [name]

        # http.client reconnects silently when the server closes: the socket must be the very same one.
        assert conn.sock is sock
        assert conn.sock.getsockname() == local
    finally:
        conn.close()


def test_request_id_on_every_reply(eddy):
    conn = http.client.HTTPConnection(eddy.host, eddy.port, timeout=10)
    ids = []
    try:
        calls = [
            ("ListStreams", {}),
            ("CreateStream", {"StreamName": "rid", "ShardCount": 1}),
            ("CreateStream", {"StreamName": "rid", "ShardCount": 1}),  # ResourceInUseException
            ("DescribeStreamSummary", {"StreamName": "missing"}),  # ResourceNotFoundException
            ("CreateStream", {"StreamName": "bad name", "ShardCount": 1}),  # ValidationException
            ("Bogus", {}),  # UnknownOperationException
        ]
        for op, body in calls:
            resp, _ = kinesis_request(conn, op, body)
            rid = resp.getheader("x-amzn-RequestId")
            assert rid is not None, f"{op}: no x-amzn-RequestId"
            assert UUID_RE.match(rid), rid
            ids.append(rid)
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams"}
        conn.request("POST", "/", body=b"{oops", headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 400
        ids.append(resp.getheader("x-amzn-RequestId"))
    finally:
        conn.close()
    assert None not in ids
    assert len(set(ids)) == len(ids), "request ids must be unique"


def test_boto3_sees_the_request_id(eddy):
    kinesis = make_kinesis(eddy.endpoint)
    out = kinesis.list_streams()
    assert UUID_RE.match(out["ResponseMetadata"]["RequestId"])
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == out["ResponseMetadata"]["RequestId"]


def send_with_body(server, length, body_byte=b"x"):
    """POSTs `length` body bytes on a raw socket, reading the reply while the body is still being sent
    (the server may answer and close before it has read the whole body). Returns (status, raw reply)."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        head = (
            "POST / HTTP/1.1\r\n"
            f"Host: {server.host}:{server.port}\r\n"
            "Content-Type: application/x-amz-json-1.1\r\n"
            "X-Amz-Target: Kinesis_20131202.ListStreams\r\n"
            f"Content-Length: {length}\r\n"
            "\r\n"
        ).encode()
        sock.sendall(head)

        def send_body():
            chunk = body_byte * 65536
            left = length
            try:
                while left > 0:
                    n = min(left, len(chunk))
                    sock.sendall(chunk[:n])
                    left -= n
            except OSError:
                pass  # the server stopped reading: expected for a refused body

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        reply = b""
        try:
            while b"\r\n\r\n" not in reply:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except ConnectionResetError:
            pass
        sender.join(timeout=10)
    finally:
        sock.close()
    status_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
    m = re.match(r"HTTP/1\.[01] (\d{3})", status_line)
    assert m, f"no HTTP status line in {reply[:200]!r}"
    return int(m.group(1)), reply


def test_body_over_limit_gets_413(eddy_factory):
    server = eddy_factory("--max-body-mib", "1")
    status, _ = send_with_body(server, 2 * 1024 * 1024)
    assert status == 413
    # The server is fine afterwards, and a body under the limit is served.
    under = json.dumps({"Limit": 5, "Padding": "p" * (1024 * 1024 - 100)}).encode()
    assert len(under) < 1024 * 1024
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/",
            body=under,
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["StreamNames"] == []
    finally:
        conn.close()
    assert server.running()


def test_default_body_limit_accepts_two_mib(eddy):
    body = json.dumps({"Padding": "p" * (2 * 1024 * 1024)}).encode()
    conn = http.client.HTTPConnection(eddy.host, eddy.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/",
            body=body,
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero(eddy, raw, sig):
    raw.ok("CreateStream", {"StreamName": unique_name(), "ShardCount": 1})
    start = time.monotonic()
    eddy.proc.send_signal(sig)
    code = eddy.proc.wait(timeout=5)
    assert code == 0
    assert time.monotonic() - start < 5
    assert not eddy.running()


def test_sigterm_with_idle_keep_alive_connection(eddy):
    conn = http.client.HTTPConnection(eddy.host, eddy.port, timeout=10)
    try:
        resp, body = kinesis_request(conn, "ListStreams", {})
        assert resp.status == 200
        # The connection stays open and idle while the server is asked to stop.
        start = time.monotonic()
        eddy.proc.send_signal(signal.SIGTERM)
        code = eddy.proc.wait(timeout=5)
        assert code == 0
        assert time.monotonic() - start < 5
    finally:
        conn.close()


def test_sighup_does_not_stop_the_server(eddy, raw):
    eddy.proc.send_signal(signal.SIGHUP)
    # The signal is handled asynchronously: wait until the server has logged it, then check it still serves.
    wait_until(lambda: any("SIGHUP" in line for line in eddy.log), timeout=5, message="SIGHUP logged")
    assert raw.ok("ListStreams", {})["StreamNames"] == []
    assert eddy.running()
    assert eddy.stop() == 0
