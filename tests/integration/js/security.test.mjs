// Security through the JS SDK v3 (HTTP/2): SigV4 with a credentials file (the SDK signs the HTTP/2
// :authority pseudo-header), a wrong secret, and HTTPS with the CA of `eddy cert` (verified by the client,
// ALPN h2) including SubscribeToShard over TLS.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KinesisClient, ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { EDDY_BIN, expectAwsError, pollUntil, startEddy, uniqueName, withDeadline } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const KEY_ID = 'AKIDJSSECURITY';
const SECRET = 'js/secret+value';

function client(endpoint, secret = SECRET) {
  return new KinesisClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: KEY_ID, secretAccessKey: secret },
    maxAttempts: 1,
  });
}

describe('security (JS SDK)', () => {
  let dir, eddy, https;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'eddy-sec-'));
    writeFileSync(path.join(dir, 'creds.json'), JSON.stringify({ keys: [{ access_key_id: KEY_ID, secret_access_key: SECRET }] }));
    const cert = spawnSync(EDDY_BIN, ['cert', '--out', path.join(dir, 'certs')], { encoding: 'utf8' });
    assert.equal(cert.status, 0, cert.stderr);
    eddy = await startEddy({
      args: [
        '--credentials', path.join(dir, 'creds.json'),
        '--tls-cert', path.join(dir, 'certs', 'server.pem'),
        '--tls-key', path.join(dir, 'certs', 'server-key.pem'),
        '--tls-port', '0',
      ],
    });
    // the https line follows the http one that startEddy waited for
    const m = await pollUntil(() => /eddy listening on https:\/\/[^:]+:(\d+)/.exec(eddy.stderr), {
      what: 'the https listening line',
    });
    https = `https://localhost:${m[1]}`;
  });
  after(async () => {
    await eddy?.stop();
    await eddy?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('signed requests over cleartext HTTP/2 succeed; a wrong secret is InvalidSignatureException', async () => {
    assert.ok(Array.isArray((await client(eddy.endpoint).send(new ListStreamsCommand({}))).StreamNames));
    await expectAwsError(client(eddy.endpoint, 'wrong').send(new ListStreamsCommand({})), 'InvalidSignatureException', {
      status: 403,
    });
  });

  it('HTTPS with the generated CA: the SDK verifies the certificate, speaks h2, and SubscribeToShard works', async () => {
    const run = (env) =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [path.join(here, 'tls_client.mjs')], {
          env: { ...process.env, ENDPOINT: https, KEY_ID, SECRET, STREAM: uniqueName('tls'), ...env },
          stdio: ['ignore', 'pipe', 'ignore'],
        });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.on('exit', () => resolve(JSON.parse(out.trim().split('\n').pop())));
      });
    const trusted = await withDeadline(run({ NODE_EXTRA_CA_CERTS: path.join(dir, 'certs', 'ca.pem') }), 30_000, 'TLS client');
    assert.deepEqual(trusted, { ok: true, data: 'over tls' });
    const untrusted = await withDeadline(run({ NODE_EXTRA_CA_CERTS: '' }), 30_000, 'TLS client without the CA');
    assert.match(untrusted.error ?? '', /certificate|self.signed|issuer/i);
  });
});
