// Starts a real consultd binary on a free port with a fresh data directory
// (zero configuration: SQLite and a generated secret), and mints tokens with
// `consultd token` against the same directory.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const BIN = process.env.CONSULTD_BIN ?? resolve(import.meta.dirname, '../../target/debug/consultd');

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

export async function startConsultd(extraEnv = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'consultd-js-'));
  const port = await freePort();
  const env = {
    PATH: process.env.PATH,
    HOST: '127.0.0.1',
    PORT: String(port),
    CONSULTD_DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  const child = spawn(BIN, [], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`consultd exited with ${child.exitCode}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('consultd did not become healthy');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    dataDir,
    token(sub, role, name) {
      const args = ['token', '--sub', String(sub), '--role', role, '--ttl', '10m'];
      if (name) args.push('--name', name);
      return execFileSync(BIN, args, { env }).toString().trim();
    },
    secret() {
      return readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim();
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JWT over arbitrary claims, for the refusal cases. */
export function signHs256(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const head = `${b64url(header)}.${b64url(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/** The bad tokens of CONTRACT §1, each with the word it must be refused with. */
export function badTokens(server) {
  const secret = server.secret();
  const now = Math.floor(Date.now() / 1000);
  return [
    ['garbage', 'garbage.token.value', 'unauthorized'],
    ['expired', signHs256({ sub: '1', role: 'doctor', exp: now - 60 }, secret), 'token_expired'],
    ['wrong signature', signHs256({ sub: '1', role: 'doctor', exp: now + 600 }, 'not-the-secret'), 'unauthorized'],
    ['alg none', `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: '1', role: 'doctor', exp: now + 600 })}.`, 'unauthorized'],
    ['role-less', signHs256({ sub: '1', exp: now + 600 }, secret), 'unauthorized'],
    ['unknown role', signHs256({ sub: '1', role: 'nurse', exp: now + 600 }, secret), 'unauthorized'],
  ];
}

/** Resolves with the value, or rejects after `ms`. */
export function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, fail) => {
      timer = setTimeout(() => fail(new Error(`timed out: ${what}`)), ms);
    }),
  ]);
}

/**
 * A PostgreSQL schema of its own for a group of nodes, and the environment
 * that makes them one cluster (the schema's database, Redis, one secret).
 * `drop()` removes the schema.
 */
export function clusterSchema(pgUrl, prefix, secret) {
  const schema = `${prefix}_${process.pid}_${Date.now()}`;
  const psql = (sql) => execFileSync('psql', [pgUrl, '-q', '-c', sql]);
  psql(`CREATE SCHEMA "${schema}"`);
  const sep = pgUrl.includes('?') ? '&' : '?';
  return {
    env: {
      DATABASE_URL: `${pgUrl}${sep}options=-c%20search_path%3D${schema}`,
      REDIS_URL: 'redis://127.0.0.1:6379',
      JWT_SECRET: secret,
    },
    drop: () => psql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`),
  };
}
