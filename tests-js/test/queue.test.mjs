// The seed-001 flow with real socket.io clients, written the way the seed's
// React hooks are: listeners registered up front, REST for the actions,
// events for the news. One client per protocol generation on each side.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { io as io4 } from 'socket.io-client';
import io2 from 'socket.io-client-v2';
import { startConsultd, within } from '../lib/server.mjs';

let server;
before(async () => {
  server = await startConsultd();
});
after(async () => {
  await server?.stop();
});

/** A connected client that records every event it receives. */
async function client(kind, token, transports) {
  const opts = { reconnection: false, forceNew: true, timeout: 5000, transports };
  const socket =
    kind === 'v4' ? io4(server.url, { ...opts, auth: { token } }) : io2(server.url, { ...opts, query: { token } });
  const inbox = [];
  const waiters = [];
  const record = (name, data) => {
    inbox.push({ name, data });
    for (const w of waiters.splice(0)) w();
  };
  for (const name of [
    'doctor_online',
    'doctor_offline',
    'queue_updated',
    'call_invitation',
    'call_confirmed',
    'peer_id_updated',
    'call_activated',
    'call_ended',
  ]) {
    socket.on(name, (data) => record(name, data));
  }
  await within(5000, new Promise((ok, fail) => {
    socket.on('connect', ok);
    socket.on('connect_error', (e) => fail(new Error(`connect_error: ${e.message}`)));
  }), 'connect');
  return {
    socket,
    /** Resolves with the first `name` event not yet taken. */
    async next(name) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const i = inbox.findIndex((e) => e.name === name);
        if (i >= 0) return inbox.splice(i, 1)[0].data;
        if (Date.now() > deadline) throw new Error(`no ${name}; got ${inbox.map((e) => e.name)}`);
        await within(deadline - Date.now() + 10, new Promise((r) => waiters.push(r)), name).catch(() => {});
      }
    },
  };
}

async function api(method, path, token, body) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const CASES = [
  { doctor: ['v4', ['websocket']], patient: ['v2', ['polling']] },
  { doctor: ['v2', ['websocket']], patient: ['v4', ['polling', 'websocket']] },
];

describe('seed 001 with real clients', () => {
  CASES.forEach(({ doctor: [dk, dt], patient: [pk, pt] }, n) => {
    test(`doctor ${dk}/${dt.join('+')}, patient ${pk}/${pt.join('+')}`, async () => {
      const doctorToken = server.token(`doc${n}`, 'doctor', 'Dr JS');
      const patientToken = server.token(`pat${n}`, 'patient', 'Pat JS');
      const doctor = await client(dk, doctorToken, dt);
      const patient = await client(pk, patientToken, pt);
      try {
        let r = await api('POST', '/api/schedules', doctorToken, { date: '2026-11-21', startTime: '09:00', endTime: '17:00' });
        assert.equal(r.status, 201);
        const sid = r.body.data.id;
        r = await api('POST', `/api/schedules/${sid}/start`, doctorToken);
        assert.equal(r.body.data.status, 'ONLINE');
        assert.deepEqual(await patient.next('doctor_online'), { doctorId: `doc${n}`, scheduleId: sid });

        r = await api('POST', `/api/schedules/${sid}/join-queue`, patientToken);
        assert.equal(r.status, 201);
        const eid = r.body.data.id;
        assert.equal((await doctor.next('queue_updated')).queue[0].id, eid);
        r = await api('POST', `/api/queue/${eid}/toggle-ready`, patientToken, { isReady: true });
        assert.equal(r.body.data.status, 'READY');
        assert.equal((await doctor.next('queue_updated')).queue[0].status, 'READY');

        r = await api('POST', `/api/schedules/${sid}/start-call`, doctorToken, { patientId: `pat${n}` });
        assert.equal(r.status, 201);
        const call = r.body.data;
        assert.deepEqual(await patient.next('call_invitation'), call);
        assert.equal(call.doctorName, 'Dr JS');
        assert.equal(call.patientName, 'Pat JS');

        r = await api('POST', `/api/call-sessions/${call.id}/confirm`, patientToken);
        assert.equal(r.body.data.status, 'CONFIRMED');
        for (const side of [doctor, patient]) assert.equal((await side.next('call_confirmed')).id, call.id);

        await api('POST', `/api/call-sessions/${call.id}/set-peer-id`, doctorToken, { peerId: 'peer-doc' });
        assert.deepEqual(await patient.next('peer_id_updated'), { callSessionId: call.id, role: 'doctor', peerId: 'peer-doc' });

        r = await api('POST', `/api/call-sessions/${call.id}/activate`, patientToken);
        assert.equal(r.body.data.status, 'ACTIVE');
        for (const side of [doctor, patient]) assert.equal((await side.next('call_activated')).status, 'ACTIVE');

        r = await api('POST', `/api/call-sessions/${call.id}/end`, doctorToken);
        assert.equal(r.body.data.status, 'ENDED');
        for (const side of [doctor, patient]) assert.equal((await side.next('call_ended')).status, 'ENDED');

        r = await api('POST', `/api/schedules/${sid}/end`, doctorToken);
        assert.equal(r.body.data.status, 'COMPLETED');
        assert.equal((await patient.next('doctor_offline')).scheduleId, sid);
      } finally {
        doctor.socket.close();
        patient.socket.close();
      }
    });
  });
});
