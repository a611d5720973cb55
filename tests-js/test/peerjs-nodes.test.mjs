// The PeerJS broker on two consultd nodes sharing PostgreSQL and Redis
// (CONTRACT §8, §9): peers connected to different nodes reach each other
// in order, an id is one id across nodes, and authorisation and a call's
// end hold across them. Skipped without PostgreSQL (TEST_DATABASE_URL)
// unless CONSULTD_NODES_TESTS=required (`.ci/run` sets it); Redis is
// expected on 127.0.0.1:6379.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, liveCall, open, peer, sleep } from '../lib/peerjs.mjs';
import { clusterSchema, startConsultd, within } from '../lib/server.mjs';

const REQUIRED = process.env.CONSULTD_NODES_TESTS === 'required';
const PG = process.env.TEST_DATABASE_URL;
if (REQUIRED) assert.ok(PG, 'CONSULTD_NODES_TESTS=required but TEST_DATABASE_URL is not set');
const SECRET = 'peerjs-nodes-secret-that-is-long-enough-for-hs256';

describe('the PeerJS broker on two nodes', { skip: !PG && 'needs TEST_DATABASE_URL' }, () => {
  let cluster;
  let one;
  let two;
  const t = {};

  before(async () => {
    cluster = clusterSchema(PG, 't_pj', SECRET);
    [one, two] = [await startConsultd(cluster.env), await startConsultd(cluster.env)];
    t.doctor = one.token('pjn-doc', 'doctor', 'Dr N');
    t.patient = one.token('pjn-pat', 'patient', 'Pat N');
    t.stranger = one.token('pjn-str', 'patient', 'Stranger');
  });
  after(async () => {
    await Promise.all([one?.stop(), two?.stop()]);
    cluster?.drop();
  });

  test('OFFER, ANSWER and CANDIDATEs cross nodes in order, with src set by the server', async () => {
    const call = await liveCall(one, t.patient, 'pjn-doc');
    const doc = await open(one, { id: 'n-doc-a', token: t.doctor });
    const pat = await open(two, { id: 'n-pat-a', token: t.patient });
    doc.send({ type: 'OFFER', src: 'forged', dst: 'n-pat-a', payload: { sdp: 'v=0', connectionId: 'mc_1' } });
    for (let i = 0; i < 100; i++) doc.send({ type: 'CANDIDATE', dst: 'n-pat-a', payload: { n: i } });
    assert.deepEqual(await pat.next('OFFER'), {
      type: 'OFFER',
      src: 'n-doc-a',
      dst: 'n-pat-a',
      payload: { sdp: 'v=0', connectionId: 'mc_1' },
    });
    for (let i = 0; i < 100; i++) assert.equal((await pat.next('CANDIDATE')).payload.n, i, 'in order');
    pat.send({ type: 'ANSWER', dst: 'n-doc-a', payload: { sdp: 'answer' } });
    assert.equal((await doc.next('ANSWER')).src, 'n-pat-a');
    // The patient goes: the doctor, on the other node, is told LEAVE.
    await pat.close();
    assert.deepEqual(await doc.next('LEAVE'), { type: 'LEAVE', src: 'n-pat-a', dst: 'n-doc-a' });
    await doc.close();
    await api(two, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('one id across nodes: ID-TAKEN for another token, the same token moves it', async () => {
    const call = await liveCall(one, t.patient, 'pjn-doc');
    const first = await open(one, { id: 'n-pat-b', token: t.patient });
    const thief = peer(two, { id: 'n-pat-b', token: t.stranger });
    await thief.next('ID-TAKEN');
    const moved = await open(two, { id: 'n-pat-b', token: t.patient });
    await within(3000, first.closed, 'the socket on the first node closes');
    const doc = await open(one, { id: 'n-doc-b', token: t.doctor });
    doc.send({ type: 'OFFER', dst: 'n-pat-b', payload: { to: 'moved' } });
    assert.equal((await moved.next('OFFER')).payload.to, 'moved');
    await Promise.all([doc.close(), moved.close()]);
    await api(one, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('messages wait for an id claimed on the other node, then arrive in order', async () => {
    const call = await liveCall(one, t.patient, 'pjn-doc');
    const doc = await open(one, { id: 'n-doc-c', token: t.doctor });
    doc.send({ type: 'OFFER', dst: 'n-pat-c', payload: { n: 0 } });
    for (let i = 1; i < 10; i++) doc.send({ type: 'CANDIDATE', dst: 'n-pat-c', payload: { n: i } });
    await sleep(500);
    const pat = peer(two, { id: 'n-pat-c', token: t.patient });
    await pat.next('OPEN');
    // More while the queue is handed over: behind it, not before.
    for (let i = 10; i < 20; i++) doc.send({ type: 'CANDIDATE', dst: 'n-pat-c', payload: { n: i } });
    assert.equal((await pat.next('OFFER')).payload.n, 0);
    for (let i = 1; i < 20; i++) assert.equal((await pat.next('CANDIDATE')).payload.n, i, 'in order');
    await Promise.all([doc.close(), pat.close()]);
    await api(one, 'POST', `/api/call-sessions/${call}/cancel`, t.patient);
  });

  test('a stranger on the other node reaches no one; a call ended on one node closes the pair on both', async () => {
    const call = await liveCall(one, t.patient, 'pjn-doc');
    const doc = await open(one, { id: 'n-doc-d', token: t.doctor });
    const pat = await open(two, { id: 'n-pat-d', token: t.patient });
    const stranger = await open(two, { id: 'n-str-d', token: t.stranger });
    stranger.send({ type: 'OFFER', dst: 'n-doc-d', payload: { evil: true } });
    doc.send({ type: 'CANDIDATE', dst: 'n-pat-d', payload: { during: true } });
    assert.equal((await pat.next('CANDIDATE')).payload.during, true);
    assert.deepEqual(await stranger.next('EXPIRE', 12000), { type: 'EXPIRE', src: 'n-doc-d', dst: 'n-str-d' });
    assert.deepEqual(doc.frames, []);

    // set-peer-id on node two refuses the id the doctor holds on node one.
    const stolen = await api(two, 'POST', `/api/call-sessions/${call}/set-peer-id`, t.patient, { peerId: 'n-doc-d' });
    assert.equal(stolen.status, 403);

    // Ended through node two; the doctor relays through node one.
    assert.equal((await api(two, 'POST', `/api/call-sessions/${call}/cancel`, t.patient)).status, 200);
    await sleep(300);
    doc.send({ type: 'CANDIDATE', dst: 'n-pat-d', payload: { after: true } });
    assert.equal((await doc.next('EXPIRE', 12000)).src, 'n-pat-d');
    assert.deepEqual(pat.frames, []);
    await Promise.all([doc.close(), pat.close(), stranger.close()]);
  });
});
