// The README's shell blocks work as written, so they cannot drift: each
// group between `<!-- readme-test: begin -->` and `<!-- readme-test: end -->`
// is pasted, in order, into one bash from the repository root, as a new
// user would, against a fresh data directory. The output shown in the
// block's `# …` comment lines must appear. `target/release/consultd` is the
// binary under test (CONSULTD_BIN); the README's `cargo build --release`
// block is the one not run here, since CI has built the binary already.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BIN } from '../lib/server.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const readme = readFileSync(resolve(ROOT, 'README.md'), 'utf8');
const groups = [...readme.matchAll(/<!-- readme-test: begin -->([\s\S]*?)<!-- readme-test: end -->/g)].map((m) =>
  [...m[1].matchAll(/```sh\n([\s\S]*?)```/g)].map((b) => b[1]).join('\n'),
);

/** The README's blocks use the documented port; something else on it would make the test meaningless. */
function portInUse(port) {
  return new Promise((ok) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      ok(true);
    });
    s.on('error', () => ok(false));
  });
}

/** The output a block promises: its comment lines that show a result. */
function promised(block) {
  return block
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^# [{a-z_]+ ?(->|")/.test(l) || l.startsWith('# {'))
    .map((l) => l.slice(2));
}

function paste(script) {
  const dataDir = mkdtempSync(join(tmpdir(), 'consultd-readme-'));
  try {
    // As pasted: no `set -e` (a failing line shows in the output and in
    // the checks below); the trap stops a server the block left running.
    const wrapped = [
      'trap \'[ -n "${CONSULTD_PID:-}" ] && kill "$CONSULTD_PID" 2>/dev/null; true\' EXIT',
      script.replaceAll('target/release/consultd', JSON.stringify(BIN)),
      'echo "exit status of the last line: $?"',
    ].join('\n');
    return spawnSync('bash', ['-c', wrapped], {
      cwd: ROOT,
      env: { ...process.env, CONSULTD_DATA_DIR: dataDir, LOG_LEVEL: 'warn', NO_COLOR: '1' },
      encoding: 'utf8',
      timeout: 180_000,
    });
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

test('the README has the tested blocks', () => {
  assert.equal(groups.length, 2, 'the quick start and the demo');
  assert.match(groups[0], /readyz/);
  assert.match(groups[0], /kill \$CONSULTD_PID/);
});

test('the quick start, pasted as written, prints what it promises', async () => {
  assert.equal(await portInUse(4000), false, 'port 4000 is taken: the README uses it');
  const run = paste(groups[0]);
  const out = run.stdout;
  assert.equal(run.status, 0, `${out}\n${run.stderr}`);
  assert.match(out, /"status":"ready"/, out);
  for (const line of promised(groups[0])) {
    assert.ok(out.includes(line), `missing ${line} in:\n${out}\n${run.stderr}`);
  }
  assert.match(out, /exit status of the last line: 0/);
  assert.equal(await portInUse(4000), false, 'the last block stopped the server');
});

test('the demo block serves the page', async () => {
  assert.equal(await portInUse(4000), false, 'port 4000 is taken: the README uses it');
  const script = `${groups[1]}\ncurl -sSf localhost:4000/demo/ | grep -c '<title>' \n`;
  const run = paste(script);
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /"status":"ready"/, run.stdout);
  assert.match(run.stdout, /open http:\/\/localhost:4000\/demo\/\?role=doctor/);
  assert.match(run.stdout, /^1$/m, `the demo page: ${run.stdout}`);
  assert.match(run.stdout, /exit status of the last line: 0/);
});
