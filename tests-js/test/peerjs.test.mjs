// The PeerJS broker (CONTRACT §9) against the consultd binary, on the wire
// that the `peerjs` client 1.5 speaks (its URL, its frames), with `ws`
// standing in for the browser's WebSocket. The call itself, with the real
// client in Chromium, is in browser-peerjs.test.mjs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { api, liveCall, open, peer, sleep } from '../lib/peerjs.mjs';
import { startConsultd, within } from '../lib/server.mjs';

describe('PeerJS broker', () => {
  let server;
  const t = {};
  before(async () => {
    server = await startConsultd({ TURN_URLS: 'turn:127.0.0.1:3478', TURN_SECRET: 's3cret', STUN_URLS: 'stun:127.0.0.1:3478' });
    t.doctor = server.token('pj-doc', 'doctor', 'Dr P');
    t.patient = server.token('pj-pat', 'patient', 'Pat P');
    t.stranger = server.token('pj-str', 'patient', 'Stranger');
  });
  after(() => server?.stop());

  test('the HTTP side: server info, a fresh id, no discovery', async () => {
    const info = await (await fetch(`${server.url}/peerjs`)).json();
    assert.equal(info.name, 'PeerJS Server');
    const res = await fetch(`${server.url}/peerjs/peerjs/id?ts=123&version=1.5.5`);
    assert.equal(res.status, 200);
    const id = await res.text();
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.notEqual(id, await (await fetch(`${server.url}/peerjs/peerjs/id`)).text());
    assert.equal((await fetch(`${server.url}/peerjs/peerjs/peers`)).status, 401);
  });

  test('ERROR and a close for a missing id, token or key, a wrong key, a bad token or id', async () => {
    const cases = [
      [{ token: t.doctor }, /No id, token, or key/],
      [{ id: 'x1' }, /No id, token, or key/],
      [{ id: 'x1', token: t.doctor, key: null }, /No id, token, or key/],
      [{ id: 'x1', token: t.doctor, key: 'nope' }, /Invalid key/],
      [{ id: 'x1', token: 'not-a-token' }, /Invalid token/],
      [{ id: 'bad/id', token: t.doctor }, /Invalid id/],
    ];
    for (const [opts, msg] of cases) {
      const p = peer(server, opts);
      const err = await p.next('ERROR');
      assert.match(err.payload.msg, msg, JSON.stringify(opts));
      await within(3000, p.closed, 'closed after ERROR');
      assert.equal(p.frames.length, 0, 'nothing but the ERROR');
    }
  });

  test('OPEN; ID-TAKEN for another token; the same token replaces the old socket', async () => {
    const first = await open(server, { id: 'dr-take', token: t.doctor });
    const other = peer(server, { id: 'dr-take', token: t.patient });
    assert.equal((await other.next('ID-TAKEN')).payload.msg, 'ID is taken');
    await within(3000, other.closed, 'closed after ID-TAKEN');
    const again = await open(server, { id: 'dr-take', token: t.doctor });
    await within(3000, first.closed, 'the replaced socket closes');
    assert.equal(again.ws.readyState, WebSocket.OPEN);
    await again.close();
  });

  test('OFFER, ANSWER and CANDIDATE between a call\'s two users, with src set by the server', async () => {
    const call = await liveCall(server, t.patient, 'pj-doc');
    const doc = await open(server, { id: 'doc-a', token: t.doctor });
    const pat = await open(server, { id: 'pat-a', token: t.patient });
    doc.send({ type: 'OFFER', src: 'pat-a', dst: 'pat-a', payload: { sdp: { type: 'offer', sdp: 'v=0' }, type: 'media', connectionId: 'mc_1' } });
    const offer = await pat.next('OFFER');
    assert.deepEqual(offer, {
      type: 'OFFER',
      src: 'doc-a',
      dst: 'pat-a',
      payload: { sdp: { type: 'offer', sdp: 'v=0' }, type: 'media', connectionId: 'mc_1' },
    });
    pat.send({ type: 'ANSWER', dst: 'doc-a', payload: { sdp: { type: 'answer' }, connectionId: 'mc_1' } });
    assert.equal((await doc.next('ANSWER')).src, 'pat-a');
    for (let i = 0; i < 20; i++) pat.send({ type: 'CANDIDATE', dst: 'doc-a', payload: { n: i } });
    for (let i = 0; i < 20; i++) assert.equal((await doc.next('CANDIDATE')).payload.n, i, 'in order');
    // HEARTBEAT and unknown or malformed frames are taken and go nowhere.
    doc.send({ type: 'HEARTBEAT' });
    doc.ws.send('not json');
    doc.send({ type: 'WHATEVER', dst: 'pat-a' });
    doc.send({ type: 'OFFER', dst: 42 });
    doc.send({ type: 'CANDIDATE', dst: 'pat-a', payload: { last: true } });
    assert.equal((await pat.next('CANDIDATE')).payload.last, true);
    assert.deepEqual(pat.frames, []);

    // A peer that goes: its partner is told LEAVE.
    await pat.close();
    assert.deepEqual(await doc.next('LEAVE'), { type: 'LEAVE', src: 'pat-a', dst: 'doc-a' });
    await doc.close();
    await api(server, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('a stranger\'s messages reach no one: one EXPIRE after 5 s, as for an offline id', async () => {
    const call = await liveCall(server, t.patient, 'pj-doc');
    const pat = await open(server, { id: 'pat-b', token: t.patient });
    const stranger = await open(server, { id: 'str-b', token: t.stranger });
    const sent = Date.now();
    stranger.send({ type: 'OFFER', dst: 'pat-b', payload: { sdp: 'evil' } });
    stranger.send({ type: 'CANDIDATE', dst: 'pat-b', payload: { c: 1 } });
    stranger.send({ type: 'LEAVE', dst: 'pat-b' });
    // Real time on a loaded machine: the 5 s are exact in the broker's unit
    // tests (injected time); here the sweep's 1 s period and scheduling add.
    const expire = await stranger.next('EXPIRE', 12000);
    const waited = Date.now() - sent;
    assert.deepEqual(expire, { type: 'EXPIRE', src: 'pat-b', dst: 'str-b' });
    assert.ok(waited >= 4500 && waited < 10000, `EXPIRE after ${waited} ms`);
    await sleep(1500);
    assert.deepEqual(stranger.frames, [], 'one EXPIRE per destination');
    assert.deepEqual(pat.frames, [], 'the participant heard nothing');
    // Closing the stranger tells the participant nothing either.
    await stranger.close();
    await sleep(300);
    assert.deepEqual(pat.frames, []);
    await pat.close();
    await api(server, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('messages for an id nobody holds wait for it; unclaimed, the sender gets EXPIRE', async () => {
    const call = await liveCall(server, t.patient, 'pj-doc');
    const doc = await open(server, { id: 'doc-c', token: t.doctor });
    doc.send({ type: 'OFFER', dst: 'pat-c', payload: { n: 1 } });
    doc.send({ type: 'CANDIDATE', dst: 'pat-c', payload: { n: 2 } });
    doc.send({ type: 'OFFER', dst: 'nobody-c', payload: { n: 3 } });
    await sleep(1000);
    const pat = peer(server, { id: 'pat-c', token: t.patient });
    await pat.next('OPEN');
    assert.equal((await pat.next('OFFER')).payload.n, 1);
    assert.equal((await pat.next('CANDIDATE')).payload.n, 2);
    assert.deepEqual(await doc.next('EXPIRE', 12000), { type: 'EXPIRE', src: 'nobody-c', dst: 'doc-c' });
    assert.deepEqual(doc.frames, [], 'nothing expired for the id that was claimed');
    // A stranger claiming a waited-for id gets none of it.
    doc.send({ type: 'OFFER', dst: 'pat-c2', payload: { secret: true } });
    const squatter = await open(server, { id: 'pat-c2', token: t.stranger });
    // Whether the squatter claimed it before or after the OFFER arrived,
    // the doctor hears EXPIRE as for an offline id, and the squatter nothing.
    assert.deepEqual(await doc.next('EXPIRE', 12000), { type: 'EXPIRE', src: 'pat-c2', dst: 'doc-c' });
    assert.deepEqual(squatter.frames, []);
    await Promise.all([doc.close(), pat.close(), squatter.close()]);
    await api(server, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('the call\'s end closes the pair\'s authorisation', async () => {
    const call = await liveCall(server, t.patient, 'pj-doc');
    const doc = await open(server, { id: 'doc-d', token: t.doctor });
    const pat = await open(server, { id: 'pat-d', token: t.patient });
    doc.send({ type: 'CANDIDATE', dst: 'pat-d', payload: { during: true } });
    assert.equal((await pat.next('CANDIDATE')).payload.during, true);
    const cancelled = await api(server, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
    assert.equal(cancelled.status, 200);
    doc.send({ type: 'CANDIDATE', dst: 'pat-d', payload: { after: true } });
    assert.equal((await doc.next('EXPIRE', 12000)).src, 'pat-d');
    assert.deepEqual(pat.frames, []);
    await Promise.all([doc.close(), pat.close()]);
  });

  test('a tutoring session authorises its pair once accepted (seed 003\'s `${user.id}-${roomId}` ids)', async () => {
    const teacher = server.token('pj-teach', 'teacher', 'Teacher');
    const learner = server.token('pj-learn', 'learner', 'Learner');
    const created = await api(server, 'POST', '/api/sessions', learner, { host_id: 'pj-teach', skill_name: 'Piano' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const session = created.body.data;
    // Pending: no room yet, so the pair may not signal.
    const early = await open(server, { id: 'pj-learn-early', token: learner });
    const host = await open(server, { id: 'pj-teach-early', token: teacher });
    early.send({ type: 'OFFER', dst: 'pj-teach-early', payload: { pending: true } });
    assert.equal((await early.next('EXPIRE', 12000)).src, 'pj-teach-early');
    assert.deepEqual(host.frames, []);
    await Promise.all([early.close(), host.close()]);

    const accepted = await api(server, 'POST', `/api/sessions/${session.id}/accept`, teacher);
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    const room = accepted.body.data.room_id;
    const l = await open(server, { id: `pj-learn-${room}`, token: learner });
    const h = await open(server, { id: `pj-teach-${room}`, token: teacher });
    h.send({ type: 'OFFER', dst: `pj-learn-${room}`, payload: { lesson: true } });
    assert.equal((await l.next('OFFER')).src, `pj-teach-${room}`);
    // Ended: the pair is closed again.
    assert.equal((await api(server, 'POST', `/api/sessions/${session.id}/end`, learner)).status, 200);
    h.send({ type: 'CANDIDATE', dst: `pj-learn-${room}`, payload: {} });
    assert.equal((await h.next('EXPIRE', 12000)).src, `pj-learn-${room}`);
    assert.deepEqual(l.frames, []);
    await Promise.all([l.close(), h.close()]);
  });

  test('set-peer-id takes an id the caller holds or nobody holds, never another user\'s', async () => {
    const call = await liveCall(server, t.patient, 'pj-doc');
    const doc = await open(server, { id: 'doc-e', token: t.doctor });
    const pat = await open(server, { id: 'pat-e', token: t.patient });
    const path = `/api/call-sessions/${call}/set-peer-id`;
    const stolen = await api(server, 'POST', path, t.patient, { peerId: 'doc-e' });
    assert.equal(stolen.status, 403);
    assert.equal(stolen.body.error.code, 'forbidden');
    const own = await api(server, 'POST', path, t.patient, { peerId: 'pat-e' });
    assert.equal(own.status, 200);
    assert.equal(own.body.data.patientPeerId, 'pat-e');
    const free = await api(server, 'POST', path, t.doctor, { peerId: 'doc-not-yet' });
    assert.equal(free.status, 200);
    assert.equal(free.body.data.doctorPeerId, 'doc-not-yet');
    const read = await api(server, 'GET', `/api/call-sessions/${call}`, t.patient);
    assert.equal(read.body.data.doctorPeerId, 'doc-not-yet', 'the refused one changed nothing');
    await Promise.all([doc.close(), pat.close()]);
    await api(server, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('a ticket opens a broker connection for its user and nothing else', async () => {
    const call = await liveCall(server, t.patient, 'pj-doc');
    const res = await api(server, 'POST', '/api/peerjs/ticket', t.patient);
    assert.equal(res.status, 200);
    const { token, ttl } = res.body.data;
    assert.equal(ttl, 300);
    assert.equal((await api(server, 'GET', '/api/me', token)).status, 401, 'not a REST token');
    assert.equal((await api(server, 'POST', '/api/peerjs/ticket', 'nope')).status, 401);
    const pat = await open(server, { id: 'pat-f', token });
    const doc = await open(server, { id: 'doc-f', token: t.doctor });
    doc.send({ type: 'OFFER', dst: 'pat-f', payload: {} });
    assert.equal((await pat.next('OFFER')).src, 'doc-f', 'the ticket is the patient');
    // The same ticket replaces its socket (PeerJS's reconnect reuses it).
    const again = await open(server, { id: 'pat-f', token });
    await within(3000, pat.closed, 'replaced');
    await Promise.all([doc.close(), again.close()]);
    await api(server, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('ICE servers: STUN, and TURN with coturn REST credentials for the caller', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await api(server, 'GET', '/api/ice-servers', t.patient);
    assert.equal(res.status, 200);
    const { iceServers, ttl } = res.body.data;
    assert.equal(ttl, 3600);
    assert.deepEqual(iceServers[0], { urls: ['stun:127.0.0.1:3478'] });
    const turn = iceServers[1];
    assert.deepEqual(turn.urls, ['turn:127.0.0.1:3478']);
    const [expiry, user] = turn.username.split(':');
    assert.equal(user, 'pj-pat');
    assert.ok(Number(expiry) >= before + 3600 && Number(expiry) <= before + 3605);
    assert.equal(turn.credential, createHmac('sha1', 's3cret').update(turn.username).digest('base64'));
    assert.equal((await fetch(`${server.url}/api/ice-servers`)).status, 401);
  });
});

describe('PeerJS broker limits', () => {
  let server;
  before(async () => {
    server = await startConsultd({
      PEERJS_ALIVE_TIMEOUT_MS: '1500',
      PEERJS_CONCURRENT_LIMIT: '2',
      PEERJS_PATH: '/media/pj',
      PEERJS_KEY: 'app-key',
      PEERJS_ALLOW_DISCOVERY: 'true',
      EVENT_RATE: '5',
      EVENT_BURST: '5',
    });
  });
  after(() => server?.stop());

  test('a configured path and key, discovery, the concurrent limit and the alive timeout', async () => {
    const token = server.token('lim-1', 'doctor');
    assert.equal((await fetch(`${server.url}/peerjs`)).status, 404);
    const a = await open(server, { id: 'lim-a', token, key: 'app-key', path: '/media/pj' });
    const b = await open(server, { id: 'lim-b', token, key: 'app-key', path: '/media/pj' });
    const ids = await (await fetch(`${server.url}/media/pj/app-key/peers`)).json();
    assert.deepEqual(ids.sort(), ['lim-a', 'lim-b']);
    const c = peer(server, { id: 'lim-c', token, key: 'app-key', path: '/media/pj' });
    assert.match((await c.next('ERROR')).payload.msg, /concurrent user limit/);
    // `a` keeps beating; `b` falls silent and is closed at the alive timeout.
    const beat = setInterval(() => a.send({ type: 'HEARTBEAT' }), 300);
    try {
      await within(4000, b.closed, 'the silent peer is closed');
      assert.equal(a.ws.readyState, WebSocket.OPEN, 'the beating peer stays');
    } finally {
      clearInterval(beat);
    }
    await a.close();
  });

  test('a flood of frames is dropped past the socket\'s event rate', async () => {
    const token = server.token('lim-2', 'doctor');
    const metric = async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return Number(/^consultd_peerjs_dropped_total (\d+)/m.exec(text)?.[1] ?? 0);
    };
    const before = await metric();
    const p = await open(server, { id: 'lim-flood', token, key: 'app-key', path: '/media/pj' });
    for (let i = 0; i < 50; i++) p.send({ type: 'CANDIDATE', dst: 'nobody', payload: { i } });
    await sleep(300);
    const dropped = (await metric()) - before;
    assert.ok(dropped >= 40 && dropped <= 45, `dropped ${dropped} of 50 (burst 5)`);
    assert.equal(p.ws.readyState, WebSocket.OPEN, 'dropped, not disconnected');
    await p.close();
  });
});

describe('PeerJS connects per client IP', () => {
  let server;
  before(async () => {
    server = await startConsultd({ HANDSHAKE_RATE: '1', HANDSHAKE_BURST: '3', RATE_LIMIT_EXEMPT: '' });
  });
  after(() => server?.stop());

  test('share the Socket.IO handshake rate: past the burst, 429 before any token is read', async () => {
    const token = server.token('ip-1', 'doctor');
    const opened = [];
    for (let i = 0; i < 3; i++) opened.push(await open(server, { id: `ip-${i}`, token }));
    const refused = peer(server, { id: 'ip-3', token: 'not even a token' });
    const status = await new Promise((ok) => refused.ws.on('unexpected-response', (_req, res) => ok(res.statusCode)));
    assert.equal(status, 429);
    await Promise.all(opened.map((p) => p.close()));
  });
});

describe('ICE servers without TURN settings', () => {
  let server;
  before(async () => {
    server = await startConsultd({ PEERJS_PATH: 'off' });
  });
  after(() => server?.stop());

  test('answer an empty list, and the broker is off', async () => {
    const token = server.token('ice-1', 'patient');
    const res = await api(server, 'GET', '/api/ice-servers', token);
    assert.deepEqual(res.body.data, { iceServers: [], ttl: 3600 });
    assert.equal((await fetch(`${server.url}/peerjs`)).status, 404);
    assert.equal((await api(server, 'POST', '/api/peerjs/ticket', token)).status, 404);
  });
});
