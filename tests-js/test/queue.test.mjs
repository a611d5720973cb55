// The seed-001 flow with real socket.io clients, written the way the seed's
// React hooks are: listeners registered up front, REST for the actions,
// events for the news. Every client generation and transport, on each side.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PAIRS, label, useConsultd } from '../lib/clients.mjs';

const EVENTS = [
  'doctor_online',
  'doctor_offline',
  'queue_updated',
  'call_invitation',
  'call_confirmed',
  'peer_id_updated',
  'call_activated',
  'call_ended',
];
const { client, api, token } = useConsultd(EVENTS);

describe('queue consultation with real clients', () => {
  PAIRS.forEach(({ host, guest }, n) => {
    test(`doctor ${label(host)}, patient ${label(guest)}`, async () => {
      const doctorToken = token(`doc${n}`, 'doctor', 'Dr JS');
      const patientToken = token(`pat${n}`, 'patient', 'Pat JS');
      const doctor = await client(host, doctorToken);
      const patient = await client(guest, patientToken);
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
