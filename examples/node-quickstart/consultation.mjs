// the queue consultation app's whole consultation between a doctor and a patient, with
// socket.io-client 4.x, written the way the seeds' React hooks are: one
// socket per user with its listeners registered up front, REST for actions,
// events for news, and on the call page a second socket per user whose
// `connect` callback joins the room and relays `webrtc:*` messages (no
// browser here, so the SDP and candidates are stand-ins, relayed verbatim).
//
//   DOCTOR_TOKEN=$(consultd token --sub doc-1 --role doctor --name "Dr Node") \
//   PATIENT_TOKEN=$(consultd token --sub pat-1 --role patient --name "Pat Node") \
//   node consultation.mjs
//
// Without tokens it asks a server started with `--demo` for two.
import { io } from 'socket.io-client';

const url = process.env.CONSULTD_URL ?? 'http://localhost:4000';
const started = Date.now();
const phase = (n, text) => console.log(`[${String(Date.now() - started).padStart(5)} ms] phase ${n}: ${text}`);

/** consultd's REST envelope: `data`, or an Error carrying the code. */
async function api(token, method, path, body) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!json.success) throw new Error(`${method} ${path}: ${res.status} ${json.error.code}: ${json.error.message}`);
  return json.data;
}

async function tokenFor(role, name) {
  const given = process.env[`${role.toUpperCase()}_TOKEN`];
  if (given) return given;
  const res = await fetch(`${url}/demo/token`, { method: 'POST', body: JSON.stringify({ role, name }) });
  if (!res.ok) throw new Error(`set ${role.toUpperCase()}_TOKEN (or start consultd with --demo)`);
  return (await res.json()).data.token;
}

/** A user's app-wide socket, like the seeds' `useSocket` hook: resolves once connected. */
function useSocket(token, onConnect = () => {}) {
  const socket = io(url, { auth: { token }, reconnection: false });
  const inbox = new Map();
  const waiting = new Map();
  socket.onAny((event, data) => {
    const w = waiting.get(event);
    if (w?.length) w.shift()(data);
    else inbox.set(event, [...(inbox.get(event) ?? []), data]);
  });
  /** The next `event`, whether it came already or comes later. */
  socket.next = (event) => {
    const queued = inbox.get(event);
    if (queued?.length) return Promise.resolve(queued.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} within 5 s`)), 5000);
      waiting.set(event, [...(waiting.get(event) ?? []), (data) => (clearTimeout(timer), resolve(data))]);
    });
  };
  return new Promise((resolve, reject) => {
    socket.on('connect', () => {
      onConnect(socket); // the seeds emit here; consultd never loses it
      resolve(socket);
    });
    socket.on('connect_error', (err) => reject(new Error(`refused: ${err.message}`)));
  });
}

/** The call page's hook (the WebRTC signaling app's `useWebRTC`): join in `connect`, then relay. */
async function useWebRTC(token, roomId) {
  let joined;
  const socket = await useSocket(token, (s) => {
    joined = new Promise((resolve, reject) =>
      s.emit('webrtc:join_room', { roomId }, (ack) => (ack.ok ? resolve(ack) : reject(new Error(ack.error.code)))),
    );
  });
  return { socket, joined: await joined };
}

async function main() {
  const doctorToken = await tokenFor('doctor', 'Dr Node');
  const patientToken = await tokenFor('patient', 'Pat Node');
  const doctor = await useSocket(doctorToken, (s) => s.emit('identify_as_doctor', {}));
  const patient = await useSocket(patientToken);

  const today = new Date().toISOString().slice(0, 10);
  const schedule = await api(doctorToken, 'POST', '/api/schedules', { date: today, startTime: '00:00', endTime: '23:59' });
  await api(doctorToken, 'POST', `/api/schedules/${schedule.id}/start`);
  const online = await patient.next('doctor_online');
  phase(1, `setup — the doctor is ONLINE; the patient heard doctor_online for schedule ${online.scheduleId}`);

  const entry = await api(patientToken, 'POST', `/api/schedules/${schedule.id}/join-queue`);
  let queue = (await doctor.next('queue_updated')).queue;
  phase(2, `queue join — the doctor's queue: ${queue.map((e) => `${e.patientName} ${e.status}`).join(', ')}`);

  await api(patientToken, 'POST', `/api/queue/${entry.id}/toggle-ready`, { isReady: true });
  queue = (await doctor.next('queue_updated')).queue;
  phase(3, `ready — the doctor's queue: ${queue.map((e) => `${e.patientName} ${e.status}`).join(', ')}`);

  const call = await api(doctorToken, 'POST', `/api/schedules/${schedule.id}/start-call`, { patientId: entry.patientId });
  const invitation = await patient.next('call_invitation');
  phase(4, `invitation — ${invitation.doctorName} invites ${invitation.patientName}, expires ${invitation.expiresAt}`);

  await api(patientToken, 'POST', `/api/call-sessions/${call.id}/confirm`);
  await Promise.all([doctor.next('call_confirmed'), patient.next('call_confirmed')]);
  phase(5, `confirmation — both heard call_confirmed for call ${call.id}`);

  const [forDoctor, forPatient] = await Promise.all([
    api(doctorToken, 'GET', `/api/call-sessions/${call.id}`),
    api(patientToken, 'GET', `/api/call-sessions/${call.id}`),
  ]);
  phase(6, `call room init — both loaded the call: ${forDoctor.status} / ${forPatient.status}`);

  // The doctor's call page opens first and offers before the patient is in
  // the room: consultd replays that offer to the patient when they join.
  const doctorRoom = await useWebRTC(doctorToken, call.roomId);
  doctorRoom.socket.emit('webrtc:offer', { roomId: call.roomId, sdp: { type: 'offer', sdp: 'v=0\r\n(offer)' } });
  doctorRoom.socket.emit('webrtc:ice_candidate', { roomId: call.roomId, candidate: { candidate: 'candidate:doctor', sdpMLineIndex: 0 } });
  const patientRoom = await useWebRTC(patientToken, call.roomId);
  phase(7, `media init — both joined room ${call.roomId}; the patient found ${patientRoom.joined.peers.map((p) => p.role).join(', ')} there`);

  await api(doctorToken, 'POST', `/api/call-sessions/${call.id}/set-peer-id`, { peerId: 'doctor-peer' });
  await api(patientToken, 'POST', `/api/call-sessions/${call.id}/set-peer-id`, { peerId: 'patient-peer' });
  const [toPatient, toDoctor] = await Promise.all([patient.next('peer_id_updated'), doctor.next('peer_id_updated')]);
  phase(8, `peer id exchange — the patient has ${toPatient.peerId}, the doctor has ${toDoctor.peerId}`);

  const offer = await patientRoom.socket.next('webrtc:offer');
  const candidate = await patientRoom.socket.next('webrtc:ice_candidate');
  patientRoom.socket.emit('webrtc:answer', { roomId: call.roomId, sdp: { type: 'answer', sdp: 'v=0\r\n(answer)' } });
  patientRoom.socket.emit('webrtc:ice_candidate', { roomId: call.roomId, candidate: { candidate: 'candidate:patient', sdpMLineIndex: 0 } });
  const answer = await doctorRoom.socket.next('webrtc:answer');
  const back = await doctorRoom.socket.next('webrtc:ice_candidate');
  await api(patientToken, 'POST', `/api/call-sessions/${call.id}/activate`);
  await api(doctorToken, 'POST', `/api/call-sessions/${call.id}/activate`); // both sides call it: a no-op
  const active = await doctor.next('call_activated');
  phase(
    9,
    `webrtc — offer from ${offer.from} (${candidate.candidate.candidate}), answer from ${answer.from} (${back.candidate.candidate}); call ${active.status}`,
  );

  await api(doctorToken, 'POST', `/api/call-sessions/${call.id}/end`);
  await Promise.all([doctor.next('call_ended'), patient.next('call_ended')]);
  await api(doctorToken, 'POST', `/api/schedules/${schedule.id}/end`);
  const offline = await patient.next('doctor_offline');
  phase('end', `call ENDED for both; schedule ${offline.scheduleId} COMPLETED and the patient heard doctor_offline`);

  for (const s of [doctor, patient, doctorRoom.socket, patientRoom.socket]) s.disconnect();
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
