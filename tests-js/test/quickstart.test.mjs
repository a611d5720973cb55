// The README's Node examples (examples/node-quickstart) work as written:
// the quickstart client and the queue consultation app's whole consultation.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { startConsultd } from '../lib/server.mjs';

const run = promisify(execFile);
const QUICKSTART = resolve(import.meta.dirname, '../../examples/node-quickstart/index.mjs');
const CONSULTATION = resolve(import.meta.dirname, '../../examples/node-quickstart/consultation.mjs');

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

test('runs the queue consultation app from setup to the end and prints every phase', async () => {
  const env = {
    ...process.env,
    CONSULTD_URL: server.url,
    DOCTOR_TOKEN: server.token('node-doc', 'doctor', 'Dr Node'),
    PATIENT_TOKEN: server.token('node-pat', 'patient', 'Pat Node'),
  };
  const { stdout } = await run('node', [CONSULTATION], { env, timeout: 20_000 });
  const phases = [...stdout.matchAll(/phase (\w+): /g)].map((m) => m[1]);
  assert.deepEqual(phases, ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'end'], stdout);
  assert.match(stdout, /queue: Pat Node READY/);
  assert.match(stdout, /offer from node-doc \(candidate:doctor\), answer from node-pat \(candidate:patient\); call ACTIVE/);
});
