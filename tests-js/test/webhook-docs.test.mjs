// docs/webhooks.md's signature verifiers in Node, Python and PHP, run as the
// page gives them against a real request from the consultd binary: each
// accepts it, and refuses a tampered body, a wrong secret and a stale `t`.
// PHP is skipped when `php` is missing, unless CONSULTD_WEBHOOK_DOCS_TESTS=required
// (`.ci/run` installs php-cli and sets it).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { freePort, startConsultd } from '../lib/server.mjs';
import { docBlock, nodeVerifier } from '../lib/webhook-docs.mjs';

const SECRET = 'whsec_docs_example';
const REQUIRED = process.env.CONSULTD_WEBHOOK_DOCS_TESTS === 'required';

function has(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
if (REQUIRED) assert.ok(has('php') && has('python3'), 'CONSULTD_WEBHOOK_DOCS_TESTS=required but php or python3 is missing');

/** The cases every verifier must get right, from one real request. */
function cases({ header, body }) {
  const stale = Math.floor(Date.now() / 1000) - 3600;
  const staleSig = createHmac('sha256', SECRET).update(`${stale}.${body}`).digest('hex');
  return [
    { name: 'the real request', header, body, secret: SECRET, ok: true },
    { name: 'a tampered body', header, body: body.replace('"type":"', '"type":"x'), secret: SECRET, ok: false },
    { name: 'another secret', header, body, secret: 'whsec_other', ok: false },
    { name: 'a replay an hour old, correctly signed', header: `t=${stale},v1=${staleSig}`, body, secret: SECRET, ok: false },
    { name: 'no signature', header: '', body, secret: SECRET, ok: false },
  ];
}

describe('the webhook docs verify real consultd signatures', () => {
  let server;
  let receiver;
  let captured;

  before(async () => {
    let got;
    captured = new Promise((ok) => {
      got = ok;
    });
    const port = await freePort();
    receiver = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        got({ header: req.headers['consultd-signature'], body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise((ok) => receiver.listen(port, '127.0.0.1', ok));
    server = await startConsultd({ WEBHOOK_URL: `http://127.0.0.1:${port}/hook`, WEBHOOK_SECRET: SECRET });
    const res = await fetch(`${server.url}/api/chat-sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token('c1', 'customer')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ concern: 'Brakes — “squeal” 🚗' }),
    });
    assert.equal(res.status, 201);
    captured = await captured;
    assert.match(captured.body, /"type":"chat_session\.pending"/);
  });

  after(async () => {
    await server?.stop();
    await new Promise((ok) => receiver.close(ok));
  });

  test('Node', async () => {
    const verify = await nodeVerifier();
    for (const c of cases(captured)) assert.equal(verify(c.header, c.body, c.secret), c.ok, c.name);
  });

  test('Python', { skip: !has('python3') && 'needs python3' }, () => {
    const program = `${docBlock('python')}

import json, sys
for c in json.load(sys.stdin):
    print(json.dumps(verify_signature(c["header"], c["body"].encode("utf-8"), c["secret"])))
`;
    const all = cases(captured);
    const out = execFileSync('python3', ['-c', program], { input: JSON.stringify(all) }).toString().trim().split('\n');
    all.forEach((c, i) => assert.equal(out[i], String(c.ok), c.name));
  });

  test('PHP', { skip: !REQUIRED && !has('php') && 'needs php' }, () => {
    const program = `${docBlock('php').replace(/^<\?php\n/, '')}
foreach (json_decode(stream_get_contents(STDIN), true) as $c) {
    echo json_encode(verify_signature($c['header'], $c['body'], $c['secret'])), "\\n";
}
`;
    const all = cases(captured);
    const out = execFileSync('php', ['-r', program], { input: JSON.stringify(all) }).toString().trim().split('\n');
    all.forEach((c, i) => assert.equal(out[i], String(c.ok), c.name));
  });
});
