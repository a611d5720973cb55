// the WebRTC signaling app's WebRTC signaling with real socket.io clients of both
// generations: join, offer/answer/candidates relayed verbatim, a late
// joiner's replay, legacy names, presence with two tabs, strangers refused.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MATRIX, PAIRS, emitAck, label, sleep, useConsultd } from '../lib/clients.mjs';

const EVENTS = [
  'webrtc:offer',
  'webrtc:answer',
  'webrtc:ice_candidate',
  'webrtc:peer_joined',
  'webrtc:peer_left',
  'webrtc_offer',
  'webrtc_answer',
  'webrtc_ice_candidate',
  'presence:join',
  'presence:leave',
  'presence:sync',
];
const { client, api, token } = useConsultd(EVENTS);

let n = 0;
async function liveCall() {
  n += 1;
  const doctorToken = token(`sig-doc${n}`, 'doctor', 'Dr Signal');
  const patientToken = token(`sig-pat${n}`, 'patient', 'Pat Signal');
  const r = await api('POST', '/api/call-sessions/start', patientToken, { doctor_id: `sig-doc${n}` });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { ...r.body.data, doctorToken, patientToken, doctorId: `sig-doc${n}`, patientId: `sig-pat${n}` };
}

// A 20 KB SDP with the characters SDPs carry (CRLF) and some they might.
const BIG_SDP = `v=0\r\n${'a=candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host\r\n'.repeat(360)}é"\\`;

describe('WebRTC signaling: signaling', () => {
  PAIRS.forEach(({ host, guest }) => {
    test(`doctor ${label(host)}, patient ${label(guest)}`, async () => {
      const call = await liveCall();
      const doctor = await client(host, call.doctorToken);
      let ack = await emitAck(doctor, 'webrtc:join_room', { roomId: call.room_id });
      assert.deepEqual(ack, { ok: true, roomId: call.room_id, peers: [] });
      // The doctor's offer goes out before the patient is there (the seed's lost offer).
      ack = await emitAck(doctor, 'webrtc:offer', { roomId: call.room_id, offer: { type: 'offer', sdp: BIG_SDP } });
      assert.deepEqual(ack, { ok: true });
      doctor.socket.emit('webrtc:ice_candidate', { roomId: call.room_id, candidate: { candidate: 'c1', sdpMLineIndex: 0 } });

      // The patient joins the way the seed's hook does: inside `connect`.
      const patient = await client(guest, call.patientToken);
      ack = await emitAck(patient, 'webrtc:join_room', { roomId: call.appointment_id });
      assert.deepEqual(ack.peers, [{ userId: call.doctorId, role: 'doctor' }]);
      const offer = await patient.next('webrtc:offer');
      assert.equal(offer.offer.sdp, BIG_SDP, '20 KB byte for byte');
      assert.equal(offer.from, call.doctorId);
      assert.equal(offer.fromSocketId, doctor.socket.id);
      const cand = await patient.next('webrtc:ice_candidate');
      assert.equal(cand.candidate.candidate, 'c1');

      const joined = await doctor.next('webrtc:peer_joined');
      assert.deepEqual(joined, { roomId: call.room_id, userId: call.patientId, role: 'patient' });
      patient.socket.emit('webrtc:answer', { roomId: call.appointment_id, answer: { type: 'answer', sdp: 'v=0\r\n' } });
      const answer = await doctor.next('webrtc:answer');
      assert.equal(answer.from, call.patientId);
      assert.equal(answer.roomId, call.appointment_id);

      // Candidates in order.
      for (let i = 0; i < 50; i += 1) patient.socket.emit('webrtc:ice_candidate', { roomId: call.appointment_id, candidate: i });
      for (let i = 0; i < 50; i += 1) assert.equal((await doctor.next('webrtc:ice_candidate')).candidate, i);

      patient.socket.disconnect();
      assert.deepEqual(await doctor.next('webrtc:peer_left'), { roomId: call.room_id, userId: call.patientId });
      doctor.socket.disconnect();
    });
  });

  MATRIX.forEach((config) => test(`a stranger on ${label(config)} is forbidden and hears nothing`, async () => {
    const call = await liveCall();
    const doctor = await client('v4', call.doctorToken, ['websocket']);
    const patient = await client('v4', call.patientToken, ['websocket']);
    const stranger = await client(config, token(`sig-stranger${n}`, 'patient'));
    await emitAck(doctor, 'webrtc:join_room', { roomId: call.room_id });
    await emitAck(patient, 'webrtc:join_room', { roomId: call.room_id });
    for (const roomId of [call.room_id, call.appointment_id]) {
      const ack = await emitAck(stranger, 'webrtc:join_room', { roomId });
      assert.equal(ack.error.code, 'forbidden');
    }
    const ack = await emitAck(stranger, 'webrtc:offer', { roomId: call.room_id, offer: 'x' });
    assert.equal(ack.error.code, 'forbidden');
    doctor.socket.emit('webrtc:offer', { roomId: call.room_id, offer: 'secret' });
    await patient.next('webrtc:offer');
    await sleep(300);
    assert.deepEqual(stranger.pending(), []);
    for (const c of [doctor, patient, stranger]) c.socket.disconnect();
  }));

  test('legacy names: join_consultation_room and webrtc_* both ways', async () => {
    const call = await liveCall();
    const doctor = await client('v2', call.doctorToken, ['websocket']);
    const patient = await client('v4', call.patientToken, ['websocket']);
    const ack = await emitAck(doctor, 'join_consultation_room', { appointmentId: call.appointment_id });
    assert.equal(ack.ok, true);
    await emitAck(patient, 'webrtc:join_room', { roomId: call.room_id });
    doctor.socket.emit('webrtc_offer', { appointmentId: call.appointment_id, offer: 'legacy' });
    assert.equal((await patient.next('webrtc:offer')).offer, 'legacy');
    patient.socket.emit('webrtc:answer', { roomId: call.room_id, answer: 'new' });
    assert.equal((await doctor.next('webrtc_answer')).answer, 'new');
    for (const c of [doctor, patient]) c.socket.disconnect();
  });

  test('presence: two tabs are one presence', async () => {
    const call = await liveCall();
    const doctor = await client('v4', call.doctorToken, ['websocket']);
    await emitAck(doctor, 'webrtc:join_room', { roomId: call.room_id });
    const tab1 = await client('v4', call.patientToken, ['websocket']);
    const tab2 = await client('v2', call.patientToken, ['polling']);
    await emitAck(tab1, 'webrtc:join_room', { roomId: call.room_id });
    assert.deepEqual(await doctor.next('presence:join'), { roomId: call.room_id, userId: call.patientId, role: 'patient' });
    await emitAck(tab2, 'webrtc:join_room', { roomId: call.room_id });
    await sleep(200);
    let syncs = [];
    while (doctor.pending().includes('presence:sync')) syncs.push(await doctor.next('presence:sync'));
    assert.equal(syncs.at(-1).users[call.patientId].connections, 2);
    tab1.socket.disconnect();
    await sleep(200);
    assert.ok(!doctor.pending().includes('presence:leave'), 'one tab left, the user is still here');
    tab2.socket.disconnect();
    assert.deepEqual(await doctor.next('presence:leave'), { roomId: call.room_id, userId: call.patientId });
    syncs = [];
    await sleep(100);
    while (doctor.pending().includes('presence:sync')) syncs.push(await doctor.next('presence:sync'));
    assert.deepEqual(Object.keys(syncs.at(-1).users), [call.doctorId]);
    doctor.socket.disconnect();
  });
});
