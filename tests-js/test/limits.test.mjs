// A REST body over MAX_BODY_BYTES is answered 413 with the envelope, and
// Node's fetch (undici) sees that answer instead of EPIPE: consultd reads
// and discards the rest of the upload before it answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConsultd } from '../lib/server.mjs';

let server;
before(async () => {
  server = await startConsultd();
});
after(async () => {
  await server.stop();
});

const MIB = 1024 * 1024;

for (const size of [MIB + 16 * 1024, 2 * MIB]) {
  test(`a ${size}-byte body gets its 413, 20 times in a row`, async () => {
    const token = server.token('l-big', 'learner');
    const body = ' '.repeat(size);
    for (let round = 0; round < 20; round++) {
      let res;
      try {
        res = await fetch(`${server.url}/api/sessions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body,
        });
      } catch (e) {
        assert.fail(`round ${round}: no answer, ${e.cause?.code ?? e}`);
      }
      assert.equal(res.status, 413, `round ${round}`);
      const json = await res.json();
      assert.equal(json.success, false);
      assert.equal(json.error.code, 'too_large');
    }
  });
}
