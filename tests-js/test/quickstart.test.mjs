// The README's quickstart client (examples/node-quickstart) works as written.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { startConsultd } from '../lib/server.mjs';

const run = promisify(execFile);
const QUICKSTART = resolve(import.meta.dirname, '../../examples/node-quickstart/index.mjs');

let server;
before(async () => {
  server = await startConsultd();
});
after(async () => {
  await server?.stop();
});

test('prints the ack for a doctor', async () => {
  const env = { ...process.env, CONSULTD_URL: server.url, TOKEN: server.token(1, 'doctor') };
  const { stdout } = await run('node', [QUICKSTART], { env, timeout: 10_000 });
  assert.equal(stdout.trim(), 'identify_as_doctor -> {"ok":true}');
});

test('says why a bad token is refused', async () => {
  const env = { ...process.env, CONSULTD_URL: server.url, TOKEN: 'nope' };
  await assert.rejects(run('node', [QUICKSTART], { env, timeout: 10_000 }), (err) => {
    assert.equal(err.code, 1);
    assert.match(err.stderr, /refused: unauthorized/);
    return true;
  });
});
