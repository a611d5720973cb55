// The refusal cases over every client generation and transport: bad
// payloads, unknown events, events without an ack (the `error` event),
// oversized frames, wrong roles; and the queue consultation app's refusals (decline, a second
// invitation, toggling off while invited, someone else's call) reaching
// clients of every kind.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MATRIX, PAIRS, emitAck, label, useConsultd } from '../lib/clients.mjs';

const { client, api, token } = useConsultd(['error', 'call_invitation', 'call_declined', 'queue_updated']);

describe('socket refusals', () => {
  MATRIX.forEach((config, n) => {
    test(`${label(config)}: bad input gets the contract's codes and changes nothing`, async () => {
      const patient = await client(config, token(`ref-pat${n}`, 'patient'));
      try {
        for (const payload of [{ roomId: 1.5 }, { roomId: true }, { roomId: ['x'] }, {}, 'room', null, { roomId: '' }]) {
          const ack = await emitAck(patient, 'webrtc:join_room', payload);
          assert.equal(ack.ok, false, JSON.stringify(payload));
          assert.equal(ack.error.code, 'bad_request', JSON.stringify(payload));
        }
        assert.equal((await emitAck(patient, 'no_such_event', {})).error.code, 'bad_request');
        assert.equal((await emitAck(patient, 'identify_as_doctor', {})).error.code, 'forbidden');
        assert.equal((await emitAck(patient, 'webrtc:join_room', { roomId: 'forged-room' })).error.code, 'forbidden');
        // Without an ack, the same whole object arrives as an `error` event.
        patient.socket.emit('webrtc:offer', { roomId: 'forged-room', sdp: 'x' });
        const err = await patient.next('error');
        assert.equal(err.ok, false);
        assert.equal(err.error.code, 'forbidden');
        assert.equal(typeof err.error.message, 'string');
        const big = await emitAck(patient, 'webrtc:offer', { roomId: 'forged-room', sdp: 'x'.repeat(70 * 1024) });
        assert.equal(big.error.code, 'too_large');
        // Still connected and answering.
        assert.equal((await emitAck(patient, 'no_such_event', {})).error.code, 'bad_request');
      } finally {
        patient.socket.disconnect();
      }
    });
  });
});

describe('queue consultation refusals', () => {
  PAIRS.forEach(({ host, guest }, n) => {
    test(`doctor ${label(host)}, patient ${label(guest)}: decline, double invite, toggle while invited, a stranger`, async () => {
      const doctorToken = token(`ref-doc${n}`, 'doctor', 'Dr No');
      const patientToken = token(`ref-p${n}`, 'patient', 'Pat No');
      const strangerToken = token(`ref-s${n}`, 'patient');
      const doctor = await client(host, doctorToken);
      const patient = await client(guest, patientToken);
      try {
        const sid = (await api('POST', '/api/schedules', doctorToken, { date: '2026-11-21', startTime: '09:00', endTime: '17:00' })).body.data.id;
        await api('POST', `/api/schedules/${sid}/start`, doctorToken);
        const eid = (await api('POST', `/api/schedules/${sid}/join-queue`, patientToken)).body.data.id;
        await api('POST', `/api/queue/${eid}/toggle-ready`, patientToken, { isReady: true });

        // Inviting someone who is not READY in this queue, and a guest inviting: refused.
        let r = await api('POST', `/api/schedules/${sid}/start-call`, doctorToken, { patientId: `ref-s${n}` });
        assert.ok([404, 409].includes(r.status), `${r.status}`);
        r = await api('POST', `/api/schedules/${sid}/start-call`, patientToken, { patientId: `ref-p${n}` });
        assert.equal(r.status, 403);
        assert.equal(r.body.error.code, 'forbidden');

        r = await api('POST', `/api/schedules/${sid}/start-call`, doctorToken, { patientId: `ref-p${n}` });
        assert.equal(r.status, 201);
        const call = r.body.data;
        assert.equal((await patient.next('call_invitation')).id, call.id);
        r = await api('POST', `/api/schedules/${sid}/start-call`, doctorToken, { patientId: `ref-p${n}` });
        assert.equal(r.status, 409, 'a second invitation for the same entry');
        r = await api('POST', `/api/queue/${eid}/toggle-ready`, patientToken, { isReady: false });
        assert.equal(r.status, 409, 'toggling off while invited');
        for (const path of ['confirm', 'decline', 'end']) {
          r = await api('POST', `/api/call-sessions/${call.id}/${path}`, strangerToken);
          assert.equal(r.status, 404, `a stranger's ${path}: existence is not leaked`);
        }
        r = await api('POST', `/api/call-sessions/${call.id}/confirm`, doctorToken);
        assert.ok([403, 404].includes(r.status), `the inviter cannot confirm: ${r.status}`);

        r = await api('POST', `/api/call-sessions/${call.id}/decline`, patientToken);
        assert.equal(r.body.data.status, 'DECLINED');
        assert.equal((await doctor.next('call_declined')).id, call.id);
        r = await api('POST', `/api/call-sessions/${call.id}/confirm`, patientToken);
        assert.equal(r.status, 409, 'confirming a declined call');
        r = await api('GET', `/api/queue/${eid}`, patientToken);
        assert.equal(r.body.data.status, 'WAITING', 'a decline returns the entry to WAITING');
      } finally {
        doctor.socket.close();
        patient.socket.close();
      }
    });
  });
});
