// docker-compose.yml, the README and the binary agree: the consultd
// service's command and port are the README's, every environment variable
// is in the README's compose table with the same value, and the binary
// knows every one of them and accepts the command's flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { BIN } from '../lib/server.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const compose = parse(readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8'));
const readme = readFileSync(resolve(ROOT, 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('### docker compose'), readme.indexOf('## Code tour'));
const consultd = compose.services.consultd;

test('the README states the compose command and port', () => {
  assert.ok(section.includes(`runs \`consultd ${consultd.command.join(' ')}\``), 'command');
  assert.deepEqual(consultd.ports, ['4000:4000']);
  assert.ok(section.includes('`4000:4000`'), 'port');
  assert.equal(consultd.environment.PORT, '4000');
  assert.ok(section.includes('docker compose up'));
  assert.ok(section.includes('http://localhost:4000/demo/'));
});

test('every compose environment variable is in the README table with its value', () => {
  const rows = new Map(
    [...section.matchAll(/^\| `([A-Z_]+)` \| `([^`]*)` \|/gm)].map((m) => [m[1], m[2]]),
  );
  assert.deepEqual(new Map(Object.entries(consultd.environment).map(([k, v]) => [k, String(v)])), rows);
});

test('the binary knows every variable and accepts the command', () => {
  const help = execFileSync(BIN, ['--help']).toString();
  for (const name of Object.keys(consultd.environment)) {
    assert.match(help, new RegExp(`\\[env: ${name}[=\\]]`), `consultd --help lists ${name}`);
    assert.ok(readme.includes(`| \`${name}\` |`), `${name} in the configuration table`);
  }
  execFileSync(BIN, [...consultd.command, '--help']);
});
