"""Security through real clients: SigV4 authentication with a credentials file (boto3, the AWS CLI and
hand-signed requests for the cases clients will not produce), the default posture without credentials,
SIGHUP reloads, and HTTPS with a certificate from `eddy cert` (boto3 and the AWS CLI verifying it).

Errors are the ones AWS returns: MissingAuthenticationTokenException, IncompleteSignatureException,
InvalidSignatureException, UnrecognizedClientException, ExpiredTokenException.
"""

import datetime
import http.client
import json
import os
import signal
import ssl
import subprocess

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import AWS_CLI, EDDY_BIN, EddyServer, unique_name, wait_until

KEY, SECRET = "AKIDSECURITYTEST", "s3cr3t/with+chars"


def write_credentials(path, keys):
    path.write_text(json.dumps({"keys": keys}))
    os.chmod(path, 0o600)


@pytest.fixture
def creds_file(tmp_path):
    path = tmp_path / "credentials.json"
    write_credentials(
        path,
        [
            {"access_key_id": KEY, "secret_access_key": SECRET},
            {"access_key_id": "AKIDTOKEN", "secret_access_key": "tok-secret", "session_token": "the-token"},
            {"access_key_id": "AKIDOLD", "secret_access_key": "old", "expires": "2020-01-01T00:00:00Z"},
        ],
    )
    return path


@pytest.fixture
def secured(eddy_factory, creds_file):
    return eddy_factory("--credentials", str(creds_file))


def client(server, key=KEY, secret=SECRET, token=None, region="us-east-1", endpoint=None, verify=None):
    import boto3

    return boto3.session.Session().client(
        "kinesis",
        endpoint_url=endpoint or server.endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        verify=verify,
        config=Config(retries={"max_attempts": 0}),
    )


def error_of(call):
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Message", "")


def signed_request(server, op, body, key=KEY, secret=SECRET, when=None, region="us-east-1"):
    """A request signed by botocore's signer (optionally at another time), as (headers, body bytes)."""
    data = json.dumps(body).encode()
    req = AWSRequest(
        method="POST",
        url=server.endpoint + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Kinesis_20131202.{op}"},
    )
    signer = SigV4Auth(Credentials(key, secret), "kinesis", region) if when is None else SignedAt(
        Credentials(key, secret), "kinesis", region, when.strftime("%Y%m%dT%H%M%SZ"))
    signer.add_auth(req)
    return dict(req.headers.items()), data


class SignedAt(SigV4Auth):
    """botocore's signer with a chosen signing time (add_auth always takes the current time)."""

    def __init__(self, credentials, service, region, timestamp):
        super().__init__(credentials, service, region)
        self.timestamp = timestamp

    def add_auth(self, request):
        request.context["timestamp"] = self.timestamp
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        self._inject_signature_to_request(request, self.signature(self.string_to_sign(request, canonical), request))


def send(server, headers, data):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=15)
    try:
        conn.request("POST", "/", body=data, headers=headers)
        r = conn.getresponse()
        payload = r.read()
        return r.status, json.loads(payload) if payload else None
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------
# Authentication


def test_boto3_and_cli_with_the_right_key(secured):
    kin = client(secured)
    name = unique_name("sec")
    kin.create_stream(StreamName=name, ShardCount=1)
    wait_until(lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
    assert kin.put_record(StreamName=name, Data=b"signed", PartitionKey="p")["ShardId"] == "shardId-000000000000"
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    out = subprocess.run([AWS_CLI, "--endpoint-url", secured.endpoint, "--output", "json", "kinesis", "list-streams"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert name in json.loads(out.stdout)["StreamNames"]
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    out = subprocess.run([AWS_CLI, "--endpoint-url", secured.endpoint, "kinesis", "list-streams"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "InvalidSignatureException" in out.stderr


def test_wrong_secret_unknown_key_and_wrong_region(secured):
    code, status, message = error_of(lambda: client(secured, secret="wrong").list_streams())
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("The request signature we calculated does not match")
    code, status, message = error_of(lambda: client(secured, key="AKIDNOBODY").list_streams())
    assert (code, status, message) == ("UnrecognizedClientException", 400, "The security token included in the request is invalid.")
    code, status, message = error_of(lambda: client(secured, region="eu-west-1").list_streams())
    assert code == "InvalidSignatureException" and "eu-west-1" in message


def test_session_tokens_and_expired_keys(secured):
    assert client(secured, "AKIDTOKEN", "tok-secret", token="the-token").list_streams()["StreamNames"] == []
    code, _, _ = error_of(lambda: client(secured, "AKIDTOKEN", "tok-secret").list_streams())
    assert code == "UnrecognizedClientException"
    code, _, _ = error_of(lambda: client(secured, "AKIDTOKEN", "tok-secret", token="other").list_streams())
    assert code == "UnrecognizedClientException"
    code, status, message = error_of(lambda: client(secured, "AKIDOLD", "old").list_streams())
    assert (code, status) == ("ExpiredTokenException", 403) and "expired" in message


def test_missing_and_malformed_authorization(secured):
    status, body = send(secured, {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams"}, b"{}")
    assert status == 403 and body["__type"] == "MissingAuthenticationTokenException"
    headers, data = signed_request(secured, "ListStreams", {})
    headers["Authorization"] = headers["Authorization"].replace("SignedHeaders=", "SignedHeadrs=")
    status, body = send(secured, headers, data)
    assert status == 400 and body["__type"] == "IncompleteSignatureException"
    assert "Authorization header requires 'SignedHeaders' parameter." in body["message"]


def test_expired_and_future_dates(secured):
    now = datetime.datetime.now(datetime.timezone.utc)
    for skew, fragment in ((-20, "Signature expired"), (20, "Signature not yet current")):
        headers, data = signed_request(secured, "ListStreams", {}, when=now + datetime.timedelta(minutes=skew))
        status, body = send(secured, headers, data)
        assert status == 403 and body["__type"] == "InvalidSignatureException" and fragment in body["message"]
    headers, data = signed_request(secured, "ListStreams", {}, when=now - datetime.timedelta(minutes=10))
    assert send(secured, headers, data)[0] == 200


def test_tampered_body_or_header(secured):
    headers, data = signed_request(secured, "ListStreams", {"Limit": 5})
    assert send(secured, headers, data)[0] == 200
    status, body = send(secured, headers, data.replace(b"5", b"6"))
    assert status == 403 and body["__type"] == "InvalidSignatureException"
    tampered = dict(headers, **{"X-Amz-Target": "Kinesis_20131202.DescribeLimits"})
    status, body = send(secured, tampered, data)
    assert status == 403 and body["__type"] == "InvalidSignatureException"


def test_health_endpoints_need_no_signature(secured):
    conn = http.client.HTTPConnection(secured.host, secured.port, timeout=5)
    conn.request("GET", "/health/ready")
    assert conn.getresponse().status == 200
    conn.close()


def test_sighup_reloads_the_credentials(secured, creds_file):
    code, _, _ = error_of(lambda: client(secured, "AKIDNEW", "new").list_streams())
    assert code == "UnrecognizedClientException"
    write_credentials(creds_file, [{"access_key_id": "AKIDNEW", "secret_access_key": "new"}])
    secured.proc.send_signal(signal.SIGHUP)

    def new_key_works():
        try:
            client(secured, "AKIDNEW", "new").list_streams()
            return True
        except ClientError:
            return False

    wait_until(new_key_works, message="the reloaded key to be accepted")
    assert error_of(lambda: client(secured).list_streams())[0] == "UnrecognizedClientException"
    # an invalid file keeps the keys in use
    creds_file.write_text("{not json")
    secured.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: any("keeping the current credentials" in line for line in secured.log))
    assert client(secured, "AKIDNEW", "new").list_streams()["StreamNames"] == []


# ---------------------------------------------------------------------------------------------------
# Posture without credentials


def test_loopback_without_credentials_accepts_any_request(eddy):
    status, body = send(eddy, {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams"}, b"{}")
    assert status == 200
    assert any("authentication off" in line for line in eddy.log)


def test_other_addresses_need_credentials_or_insecure(tmp_path):
    proc = subprocess.run([EDDY_BIN, "serve", "--host", "0.0.0.0", "--port", "0", "--data", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0 without --credentials" in proc.stderr
    server = EddyServer(tmp_path / "d2", args=["--host", "0.0.0.0", "--insecure"])
    server.start()
    try:
        assert any("--insecure" in line for line in server.log)
    finally:
        server.cleanup()


# ---------------------------------------------------------------------------------------------------
# HTTPS


@pytest.fixture
def certs(tmp_path):
    out = tmp_path / "certs"
    proc = subprocess.run([EDDY_BIN, "cert", "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out


def test_https_with_a_verified_certificate(eddy_factory, certs, creds_file):
    srv = eddy_factory("--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem"),
                       "--tls-port", "0", "--credentials", str(creds_file))
    # the https line follows the http one that start() waited for: poll for it
    https = wait_until(lambda: next((line.split()[-1] for line in srv.log if line.startswith("eddy listening on https://")), None),
                       message="the https listening line")
    https = https.replace("127.0.0.1", "localhost")
    kin = client(srv, endpoint=https, verify=str(certs / "ca.pem"))
    name = unique_name("tls")
    kin.create_stream(StreamName=name, ShardCount=1)
    wait_until(lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
    kin.put_record(StreamName=name, Data=b"over tls", PartitionKey="p")
    # without the CA the client refuses the certificate
    from botocore.exceptions import SSLError

    with pytest.raises(SSLError):
        client(srv, endpoint=https, verify=True).list_streams()
    # TLS 1.2 or later, and ALPN offers h2 and http/1.1
    port = int(https.rsplit(":", 1)[1])
    for proto in (["h2"], ["http/1.1"]):
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.set_alpn_protocols(proto)
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.selected_alpn_protocol() == proto[0]
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.TLSv1
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="localhost")
