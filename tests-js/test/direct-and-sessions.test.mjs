// The direct call app (a patient's "Talk Now" direct call) and the tutoring request app (a learner's
// tutoring request) with real socket.io clients of both generations.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PAIRS, label, useConsultd } from '../lib/clients.mjs';

const EVENTS = [
  'call_invitation',
  'call_confirmed',
  'call_cancelled',
  'call_ended',
  'session:incoming',
  'session:accepted',
  'session:updated',
];
const { client, api, token } = useConsultd(EVENTS);

const SNAKE = ['appointment_id', 'call_session_id', 'call_type', 'status', 'doctor_id', 'patient_id', 'room_id', 'expires_at'];

// The tutoring request app is not in the compatibility matrix: two mixed pairs suffice.
const CASES = PAIRS.filter((_, i) => i % 3 === 0);

describe('direct call: direct calls', () => {
  PAIRS.forEach(({ host, guest }, n) => {
    test(`doctor ${label(host)}, patient ${label(guest)}`, async () => {
      const doctorId = 7700 + n;
      const doctorToken = token(String(doctorId), 'doctor', 'Dr Direct');
      const patientToken = token(`direct-pat${n}`, 'patient', 'Pat Direct');
      const doctor = await client(host, doctorToken);
      const patient = await client(guest, patientToken);
      try {
        // The seed's sessionCreationService, verbatim.
        const appointmentId = `direct_session_${Date.now()}`;
        let r = await api('POST', '/api/call-sessions/start', patientToken, {
          call_type: 'voice',
          appointment_id: appointmentId,
          doctor_id: doctorId,
        });
        assert.equal(r.status, 201);
        assert.equal(r.body.success, true);
        const data = r.body.data;
        // `data.data?.appointment_id || appointmentId` never needs its fallback.
        assert.equal(data.appointment_id, appointmentId);
        for (const field of SNAKE) assert.ok(data[field] != null, field);
        assert.equal(data.doctor_id, String(doctorId));
        const invitation = await doctor.next('call_invitation');
        for (const field of SNAKE) assert.deepEqual(invitation[field], data[field], field);

        r = await api('POST', `/api/call-sessions/${data.call_session_id}/confirm`, doctorToken);
        assert.equal(r.body.data.status, 'CONFIRMED');
        for (const side of [doctor, patient]) {
          assert.equal((await side.next('call_confirmed')).appointment_id, appointmentId);
        }
        r = await api('POST', `/api/call-sessions/${data.call_session_id}/end`, patientToken);
        assert.equal(r.body.data.status, 'ENDED');
        for (const side of [doctor, patient]) assert.equal((await side.next('call_ended')).status, 'ENDED');
        assert.deepEqual(patient.pending().filter((e) => e === 'call_invitation'), []);
      } finally {
        doctor.socket.close();
        patient.socket.close();
      }
    });
  });
});

describe('tutoring request: tutoring sessions', () => {
  CASES.forEach(({ host, guest }, n) => {
    test(`teacher ${label(host)}, learner ${label(guest)}`, async () => {
      const teacherToken = token(`teacher${n}`, 'teacher', 'Ms T');
      const learnerToken = token(`learner${n}`, 'learner', 'Lee');
      const teacher = await client(host, teacherToken);
      const learner = await client(guest, learnerToken);
      try {
        let r = await api('POST', '/api/sessions', learnerToken, { host_id: `teacher${n}`, skill_name: 'Piano' });
        assert.equal(r.status, 201);
        const row = r.body.data;
        assert.equal(row.status, 'pending');
        assert.equal(row.room_id, null);
        assert.deepEqual(await teacher.next('session:incoming'), row);
        r = await api('GET', '/api/sessions?status=pending', teacherToken);
        assert.deepEqual(r.body.data, [row]);

        r = await api('POST', `/api/sessions/${row.id}/accept`, teacherToken);
        assert.equal(r.status, 200);
        const accepted = r.body.data;
        assert.equal(accepted.status, 'accepted');
        assert.match(accepted.room_id, /^room-/);
        assert.deepEqual(await learner.next('session:accepted'), accepted);
        for (const side of [teacher, learner]) assert.deepEqual(await side.next('session:updated'), accepted);

        r = await api('POST', `/api/sessions/${row.id}/accept`, teacherToken);
        assert.equal(r.status, 409);
        assert.equal(r.body.error.code, 'conflict');

        r = await api('POST', `/api/sessions/${row.id}/end`, teacherToken);
        assert.equal(r.body.data.status, 'ended');
        for (const side of [teacher, learner]) {
          assert.equal((await side.next('session:updated')).end_reason, 'ended');
        }
      } finally {
        teacher.socket.close();
        learner.socket.close();
      }
    });
  });
});
