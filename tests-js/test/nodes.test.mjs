// Two consultd nodes on PostgreSQL and Redis behind a real HAProxy with
// cookie stickiness (CONTRACT §8): a socket.io-client 2.x polling patient on
// one node and a 4.x doctor on the other complete the queue flow and relay
// signaling through the balancer. Needs PostgreSQL (TEST_DATABASE_URL),
// Redis on 127.0.0.1:6379 and `haproxy`; skipped without them unless
// CONSULTD_NODES_TESTS=required (`.ci/run` sets it).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { client } from '../lib/clients.mjs';
import { clusterSchema, freePort, startConsultd, within } from '../lib/server.mjs';

const REQUIRED = process.env.CONSULTD_NODES_TESTS === 'required';
const PG = process.env.TEST_DATABASE_URL;

function has(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const missing = [!PG && 'TEST_DATABASE_URL', !has('haproxy') && 'haproxy', !has('psql') && 'psql'].filter(Boolean);
if (REQUIRED) assert.deepEqual(missing, [], 'CONSULTD_NODES_TESTS=required but something is missing');

const SECRET = 'nodes-test-secret-that-is-long-enough-for-hs256';
const EVENTS = ['doctor_online', 'queue_updated', 'call_invitation', 'call_confirmed', 'call_ended', 'webrtc:offer', 'webrtc:peer_joined'];

describe('two nodes behind HAProxy', { skip: missing.length > 0 && `needs ${missing.join(', ')}` }, () => {
  let cluster;
  let nodes = [];
  let proxy;
  let lb;
  let dir;

  before(async () => {
    cluster = clusterSchema(PG, 't_js', SECRET);
    const env = { ...cluster.env, TRUSTED_PROXIES: '127.0.0.1/32' };
    nodes = [await startConsultd(env), await startConsultd(env)];
    dir = mkdtempSync(join(tmpdir(), 'consultd-lb-'));
    const port = await freePort();
    const servers = nodes
      .map((n, i) => `  server n${i + 1} ${new URL(n.url).host} cookie n${i + 1} check inter 500ms`)
      .join('\n');
    const config = [
      'global',
      '  maxconn 1000',
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      '  timeout tunnel 60s',
      'frontend web',
      `  bind 127.0.0.1:${port}`,
      '  default_backend consultd',
      'backend consultd',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      '  option forwardfor',
      '  cookie SERVERID insert indirect nocache',
      '  http-response set-header x-served-by %[srv_name]',
      servers,
      '',
    ].join('\n');
    writeFileSync(join(dir, 'haproxy.cfg'), config);
    proxy = spawn('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], { stdio: ['ignore', 'ignore', 'inherit'] });
    lb = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await fetch(`${lb}/readyz`)).ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error('haproxy did not come up');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    proxy?.kill('SIGTERM');
    for (const n of nodes) await n.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    cluster?.drop();
  });

  // A browser keeps the balancer's cookie by itself; these Node clients
  // send it the way a browser would after its first response.
  const pinned = (node) => ({ cookie: `SERVERID=${node}` });

  async function api(method, path, token, body, node = 'n1') {
    const res = await fetch(`${lb}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...pinned(node) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json(), servedBy: res.headers.get('x-served-by') };
  }

  function token(sub, role) {
    return nodes[0].token(sub, role);
  }

  const connect = (kind, transports, tokenValue, node) =>
    client({ url: lb }, kind, tokenValue, transports, EVENTS, { extraHeaders: pinned(node) });
  const count = (c, name) => c.pending().filter((n) => n === name).length;

  const emitAck = (c, event, payload) => within(5000, new Promise((ok) => c.socket.emit(event, payload, ok)), event);

  test('the cookie pins a client to its node', async () => {
    assert.equal((await api('GET', '/readyz', '', undefined, 'n1')).servedBy, 'n1');
    assert.equal((await api('GET', '/readyz', '', undefined, 'n2')).servedBy, 'n2');
  });

  test('a 2.x polling patient on node 2 and a 4.x doctor on node 1: the queue flow and signaling', async () => {
    const doctorToken = token('doc', 'doctor');
    const patientToken = token('pat', 'patient');
    const doctor = await connect('v4', ['websocket'], doctorToken, 'n1');
    const patient = await connect('v2', ['polling'], patientToken, 'n2');
    try {
      // Each node holds one of the two sockets.
      for (const n of nodes) {
        const metrics = await (await fetch(`${n.url}/metrics`)).text();
        const line = metrics.split('\n').find((l) => l.startsWith('consultd_sockets_connected '));
        assert.equal(Number(line?.split(' ')[1]), 1, line);
      }
      let r = await api('POST', '/api/schedules', doctorToken, { date: '2026-11-21', startTime: '09:00', endTime: '17:00' }, 'n1');
      assert.equal(r.status, 201);
      const sid = r.body.data.id;
      r = await api('POST', `/api/schedules/${sid}/start`, doctorToken, undefined, 'n1');
      assert.equal(r.body.data.status, 'ONLINE');
      assert.equal((await patient.next('doctor_online')).scheduleId, sid);

      r = await api('POST', `/api/schedules/${sid}/join-queue`, patientToken, undefined, 'n2');
      assert.equal(r.status, 201);
      assert.equal(r.servedBy, 'n2');
      const eid = r.body.data.id;
      r = await api('POST', `/api/queue/${eid}/toggle-ready`, patientToken, { isReady: true }, 'n2');
      assert.equal(r.body.data.status, 'READY');
      for (;;) {
        const q = await doctor.next('queue_updated');
        if (q.queue[0]?.status === 'READY') break;
      }

      r = await api('POST', `/api/schedules/${sid}/start-call`, doctorToken, { patientId: 'pat' }, 'n1');
      assert.equal(r.status, 201);
      const call = r.body.data;
      assert.equal((await patient.next('call_invitation')).id, call.id);
      r = await api('POST', `/api/call-sessions/${call.id}/confirm`, patientToken, undefined, 'n2');
      assert.equal(r.body.data.status, 'CONFIRMED');
      for (const side of [doctor, patient]) assert.equal((await side.next('call_confirmed')).id, call.id);
      assert.equal(count(patient, 'call_invitation'), 0, 'one invitation only');

      // Signaling across the nodes, over polling on the patient's side.
      const room = call.roomId ?? call.id;
      let ack = await emitAck(doctor, 'webrtc:join_room', { roomId: room });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      ack = await emitAck(patient, 'webrtc:join_room', { roomId: room });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.deepEqual(ack.peers.map((p) => p.userId), ['doc']);
      assert.equal((await doctor.next('webrtc:peer_joined')).userId, 'pat');
      ack = await emitAck(doctor, 'webrtc:offer', { roomId: room, sdp: { type: 'offer', sdp: 'v=0' } });
      assert.equal(ack.ok, true);
      const offer = await patient.next('webrtc:offer');
      assert.equal(offer.sdp.sdp, 'v=0');
      assert.equal(offer.from, 'doc');

      r = await api('POST', `/api/call-sessions/${call.id}/end`, doctorToken, undefined, 'n1');
      assert.equal(r.body.data.status, 'ENDED');
      for (const side of [doctor, patient]) assert.equal((await side.next('call_ended')).status, 'ENDED');
    } finally {
      doctor.socket.close();
      patient.socket.close();
    }
  });
});
