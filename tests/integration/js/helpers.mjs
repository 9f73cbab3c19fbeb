// Helpers for the eddy integration tests: start a server on a free port with a fresh data folder, stop it
// (gracefully or with SIGKILL), restart it on the same folder, and make AWS SDK clients that talk to it.
//
// Every wait is a poll or an event with a deadline; nothing sleeps to synchronise.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { KinesisClient } from '@aws-sdk/client-kinesis';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Path of the eddy binary: $EDDY_BIN, or ../../../build/eddy relative to this folder. */
export const EDDY_BIN = process.env.EDDY_BIN
  ? path.resolve(process.env.EDDY_BIN)
  : path.resolve(here, '../../../build/eddy');

export const ACCOUNT = '000000000000';
export const REGION = 'us-east-1';

const READY_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 10_000;
const LISTENING = /^eddy listening on (http:\/\/\S+)$/m;

/** Resolves with the value of `promise`, or rejects after `ms` with an error naming `what`. */
export function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Polls `fn` (sync or async) until it returns a truthy value, and returns that value. Throws when the
 * deadline passes; the last error thrown by `fn` (if any) is attached as the cause.
 */
export async function pollUntil(fn, { timeoutMs = 5_000, intervalMs = 20, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= end) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Starts eddy with a fresh temporary data folder.
 *
 * @param {object} [opts]
 * @param {string[]} [opts.args] extra `eddy serve` flags (e.g. ['--shard-limit', '10'])
 * @param {number} [opts.stateDelayMs] value for --state-delay-ms (default 0: every change is instant)
 * @returns {Promise<Eddy>} handle with endpoint, stop(), kill9(), restart(), cleanup()
 */
export async function startEddy({ args = [], stateDelayMs = 0 } = {}) {
  if (!existsSync(EDDY_BIN)) {
    throw new Error(
      `eddy binary not found at ${EDDY_BIN}: build it (cmake -S . -B build && cmake --build build) or set EDDY_BIN`,
    );
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'eddy-js-'));
  const eddy = new Eddy(dataDir, ['--state-delay-ms', String(stateDelayMs), ...args]);
  try {
    await eddy.start(0);
  } catch (err) {
    await eddy.cleanup();
    throw err;
  }
  return eddy;
}

export class Eddy {
  constructor(dataDir, args) {
    this.dataDir = dataDir;
    this.args = args;
    this.proc = null;
    this.port = 0;
    this.endpoint = '';
    this.stderr = '';
    this.exit = null; // {code, signal} of the last process once it exited
  }

  /** Spawns `eddy serve` and waits (10 s deadline) for its "eddy listening on" line. */
  async start(port) {
    const argv = ['serve', '--port', String(port), '--data', this.dataDir, ...this.args];
    const proc = spawn(EDDY_BIN, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    this.exit = null;
    this.stderr = '';
    const exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    this.exited = exited;
    proc.stderr.setEncoding('utf8');
    const ready = new Promise((resolve, reject) => {
      proc.stderr.on('data', (chunk) => {
        this.stderr += chunk;
        const m = LISTENING.exec(this.stderr);
        if (m) resolve(m[1]);
      });
      proc.once('error', reject);
      exited.then(({ code, signal }) =>
        reject(new Error(`eddy exited before listening (code ${code}, signal ${signal}):\n${this.stderr}`)),
      );
    });
    let url;
    try {
      url = await withDeadline(ready, READY_TIMEOUT_MS, `"eddy listening on" from ${EDDY_BIN}`);
    } catch (err) {
      await this.kill9();
      throw err;
    }
    const u = new URL(url);
    this.port = Number(u.port);
    this.endpoint = url;
    return url;
  }

  get running() {
    return this.proc !== null && this.exit === null;
  }

  async #signalAndWait(signal) {
    if (!this.running) return this.exit;
    this.proc.kill(signal);
    return withDeadline(this.exited, EXIT_TIMEOUT_MS, `eddy to exit after ${signal}`);
  }

  /** SIGTERM and wait for the exit; returns {code, signal}. Falls back to SIGKILL past the deadline. */
  async stop() {
    try {
      return await this.#signalAndWait('SIGTERM');
    } catch (err) {
      await this.kill9();
      throw err;
    }
  }

  /** SIGKILL and wait for the exit; returns {code, signal}. */
  async kill9() {
    return this.#signalAndWait('SIGKILL');
  }

  /**
   * Stops the server (SIGTERM unless it already exited) and starts it again on the same data folder and
   * the same port, so existing endpoints stay valid. Returns the endpoint.
   */
  async restart() {
    if (this.running) await this.stop();
    return this.start(this.port);
  }

  /** Kills the process if it still runs and removes the data folder. Safe to call more than once. */
  async cleanup() {
    try {
      if (this.running) await this.kill9();
    } finally {
      await rm(this.dataDir, { recursive: true, force: true });
    }
  }
}

/** A KinesisClient for `endpoint` with dummy credentials and no retries. */
export function makeClient(endpoint, extra = {}) {
  return new KinesisClient({
    endpoint,
    region: REGION,
    credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
    maxAttempts: 1,
    ...extra,
  });
}

/** The ARN eddy gives stream `name` with the default account and region. */
export function streamArn(name, { account = ACCOUNT, region = REGION } = {}) {
  return `arn:aws:kinesis:${region}:${account}:stream/${name}`;
}

/**
 * Asserts that `promise` rejects with the AWS error `name`, HTTP 400 (unless `status` says otherwise),
 * and, when given, a message equal to a string or matching a RegExp. Returns the error.
 */
export async function expectAwsError(promise, name, { message, status = 400 } = {}) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected ${name} but the call succeeded`);
  const info = `${err.name}: ${err.message}`;
  assert.equal(err.name, name, `unexpected error ${info}`);
  assert.equal(err.$metadata?.httpStatusCode, status, `unexpected status for ${info}`);
  if (message instanceof RegExp) {
    assert.match(err.message, message);
  } else if (message !== undefined) {
    assert.equal(err.message, message);
  }
  return err;
}

let counter = 0;
/** A stream name unique within this process: prefix-<pid>-<n>. */
export function uniqueName(prefix = 's') {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

const HASH_SPACE = 1n << 128n;
/**
 * The hash key ranges Kinesis gives a new stream of n shards: shard i starts at i * floor(2^128 / n) and
 * ends one below the next start; the last shard ends at 2^128 - 1.
 */
export function evenHashRanges(n) {
  const size = HASH_SPACE / BigInt(n);
  return Array.from({ length: n }, (_, i) => ({
    StartingHashKey: (size * BigInt(i)).toString(),
    EndingHashKey: (i === n - 1 ? HASH_SPACE - 1n : size * BigInt(i + 1) - 1n).toString(),
  }));
}

/** shardId-000000000007 for 7. */
export function shardId(i) {
  return `shardId-${String(i).padStart(12, '0')}`;
}
