// TURN credentials (CONTRACT §9) against a real coturn: what
// `GET /api/ice-servers` hands out allocates a relay; forged, tampered and
// expired credentials do not. Skipped when coturn is missing, unless
// CONSULTD_TURN_TESTS=required (`.ci/run` sets it and installs coturn).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { COTURN_MISSING, allocates, startCoturn } from '../lib/coturn.mjs';
import { startConsultd } from '../lib/server.mjs';

const REQUIRED = process.env.CONSULTD_TURN_TESTS === 'required';
const skip = !REQUIRED && COTURN_MISSING.length > 0 ? `missing ${COTURN_MISSING.join(', ')} (apt-get install coturn)` : false;
const SECRET = 'turn-test-secret';

describe('TURN credentials from consultd, checked by coturn', { skip }, () => {
  let turn;
  let server;
  before(async () => {
    assert.deepEqual(COTURN_MISSING, [], 'CONSULTD_TURN_TESTS=required but coturn is missing');
    turn = await startCoturn(SECRET);
    server = await startConsultd({ TURN_URLS: turn.url, TURN_SECRET: SECRET, TURN_TTL: '120' });
  });
  after(async () => {
    await server?.stop();
    await turn?.stop();
  });

  const iceServers = async (token) => {
    const res = await fetch(`${server.url}/api/ice-servers`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    return (await res.json()).data;
  };

  test('the credentials handed out allocate a relay', async () => {
    const { iceServers: list, ttl } = await iceServers(server.token('turn-1', 'patient'));
    assert.equal(ttl, 120);
    const entry = list.find((s) => s.urls.includes(turn.url));
    assert.ok(entry, JSON.stringify(list));
    assert.match(entry.username, /^\d+:turn-1$/);
    const got = allocates(turn, entry.username, entry.credential);
    assert.ok(got.ok, got.out);
  });

  test('forged, tampered and expired credentials are refused', async () => {
    const { iceServers: list } = await iceServers(server.token('turn-2', 'doctor'));
    const { username, credential } = list.find((s) => s.urls.includes(turn.url));
    const forged = allocates(turn, username, `${credential.slice(0, -4)}AAA=`);
    assert.equal(forged.ok, false, 'a forged password');
    // Another user's name (or a later expiry) with this password.
    const [expiry] = username.split(':');
    assert.equal(allocates(turn, `${expiry}:turn-other`, credential).ok, false, 'a tampered username');
    assert.equal(allocates(turn, `${Number(expiry) + 3600}:turn-2`, credential).ok, false, 'a stretched expiry');
    // Signed with the right secret, as consultd signs, but past its expiry.
    const past = `${Math.floor(Date.now() / 1000) - 5}:turn-2`;
    const expired = createHmac('sha1', SECRET).update(past).digest('base64');
    assert.equal(allocates(turn, past, expired).ok, false, 'an expired credential');
    // The same scheme with a fresh expiry does work: the refusals above are
    // the credentials', not the server's.
    const fresh = `${Math.floor(Date.now() / 1000) + 60}:turn-2`;
    assert.ok(allocates(turn, fresh, createHmac('sha1', SECRET).update(fresh).digest('base64')).ok);
  });
});
