// docker-compose.yml, the docs and the binary agree: the consultd
// nodes' command and the balancer's port are the ones docs/operating.md
// states, every environment variable is in its compose table with the same
// value and in docs/configuration.md, the binary knows every one of them
// and accepts the command's flags, and HAProxy's configuration names both
// nodes (and is valid, where haproxy is installed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { BIN } from '../lib/server.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const compose = parse(readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true });
const haproxyCfg = readFileSync(resolve(ROOT, 'deploy/haproxy.cfg'), 'utf8');
const operating = readFileSync(resolve(ROOT, 'docs/operating.md'), 'utf8');
const configuration = readFileSync(resolve(ROOT, 'docs/configuration.md'), 'utf8');
const section = operating.slice(operating.indexOf('## docker compose'));
const consultd = compose.services.consultd;

test('two identical nodes behind the balancer, which alone publishes the port', () => {
  assert.deepEqual(compose.services['consultd-2'], consultd);
  assert.equal(consultd.ports, undefined);
  assert.deepEqual(compose.services.haproxy.ports, ['4000:4000']);
  assert.deepEqual(compose.services.redis.command, ['redis-server', '--appendonly', 'yes']);
  const servers = [...haproxyCfg.matchAll(/^\s*server (\S+) (\S+):4000 .*cookie (\S+)/gm)].map((m) => [m[1], m[2]]);
  assert.deepEqual(servers, [['consultd', 'consultd'], ['consultd-2', 'consultd-2']]);
  assert.match(haproxyCfg, /cookie SERVERID insert/);
  try {
    execFileSync('sh', ['-c', 'command -v haproxy'], { stdio: 'ignore' });
  } catch {
    return; // not installed here: the structure above is what can be checked
  }
  execFileSync('haproxy', ['-c', '-q', '-f', resolve(ROOT, 'deploy/haproxy.cfg')]);
});

test('the operating guide states the compose command and port', () => {
  assert.ok(section.includes(`runs \`consultd ${consultd.command.join(' ')}\``), 'command');
  assert.ok(section.includes('`4000:4000`'), 'port');
  assert.equal(consultd.environment.PORT, '4000');
  assert.ok(section.includes('docker compose up'));
  assert.ok(section.includes('http://localhost:4000/demo/'));
});

test('every compose environment variable is in the operating guide\'s table with its value', () => {
  const rows = new Map(
    [...section.matchAll(/^\| `([A-Z_]+)` \| `([^`]*)` \|/gm)].map((m) => [m[1], m[2]]),
  );
  assert.deepEqual(new Map(Object.entries(consultd.environment).map(([k, v]) => [k, String(v)])), rows);
});

test('the binary knows every variable and accepts the command', () => {
  const help = execFileSync(BIN, ['--help']).toString();
  for (const name of Object.keys(consultd.environment)) {
    assert.match(help, new RegExp(`\\[env: ${name}[=\\]]`), `consultd --help lists ${name}`);
    assert.ok(configuration.includes(`| \`${name}\` |`), `${name} in the configuration table`);
  }
  execFileSync(BIN, [...consultd.command, '--help']);
});
