// A real coturn (Debian's `coturn` package) on loopback with the REST-API
// credential scheme (`use-auth-secret`), for the TURN tests. `.ci/run`
// installs it when missing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './server.mjs';

export const TURNSERVER = process.env.TURNSERVER_PATH ?? '/usr/bin/turnserver';
export const UCLIENT = process.env.TURNUTILS_UCLIENT_PATH ?? '/usr/bin/turnutils_uclient';
export const COTURN_MISSING = [TURNSERVER, UCLIENT].filter((p) => !existsSync(p));

/** Starts turnserver with `secret` on a free port; `stop()` ends it. */
export async function startCoturn(secret) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'consultd-coturn-'));
  // A relay port range of its own per run, away from other tests' ports.
  const min = 40000 + Math.floor(Math.random() * 200) * 100;
  const child = spawn(
    TURNSERVER,
    [
      '-n',
      '--listening-ip=127.0.0.1',
      '--relay-ip=127.0.0.1',
      `--listening-port=${port}`,
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      '--realm=consultd.test',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      // Both browsers run on this machine: their relayed peers are loopback.
      '--allow-loopback-peers',
      `--min-port=${min}`,
      `--max-port=${min + 99}`,
      '--log-file=stdout',
      '--simple-log',
      // Its own database file, not the system's /var/lib/turn.
      `--userdb=${join(dir, 'turndb')}`,
      `--pidfile=${join(dir, 'turnserver.pid')}`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let log = '';
  child.stdout.on('data', (d) => {
    log += d.toString();
  });
  const deadline = Date.now() + 10_000;
  // The last line of its start-up; its listeners are open by then.
  while (!/Total General servers/.test(log)) {
    if (child.exitCode !== null) throw new Error(`turnserver exited with ${child.exitCode}:\n${log}`);
    if (Date.now() > deadline) throw new Error(`turnserver did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    url: `turn:127.0.0.1:${port}`,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Allocates a relay on `turn` with `username`/`credential` and sends one
 * message through it with turnutils_uclient; true when it went through.
 */
export function allocates(turn, username, credential) {
  const run = spawnSync(
    UCLIENT,
    ['-u', username, '-w', credential, '-p', String(turn.port), '-n', '1', '-m', '1', '-y', '-e', '127.0.0.1', '127.0.0.1'],
    { timeout: 15_000, encoding: 'utf8' },
  );
  const out = `${run.stdout}${run.stderr}`;
  const ok = run.status === 0 && /tot_recv_bytes ~ [1-9]/.test(out) && !/Cannot complete Allocation/.test(out);
  return { ok, out };
}
