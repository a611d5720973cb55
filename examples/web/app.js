// consultd's browser demo: the queue consultation app's flow (go online, queue, ready, invite,
// accept) and then a real WebRTC call whose offer, answer and ICE
// candidates go through consultd's `webrtc:*` relay, or, with
// `?media=peerjs`, through consultd's PeerJS broker as the seed's app does
// it (new Peer, set-peer-id, peer.call, answer). Plain JS on purpose:
// every line here is what a React or React Native client does too.
// `?relay=1` sends the media through TURN only (iceTransportPolicy "relay").
'use strict';

const params = new URLSearchParams(location.search);
const role = params.get('role');
const linkedSchedule = params.get('schedule');
const media = params.get('media') === 'peerjs' ? 'peerjs' : 'socket.io';
const relayOnly = params.get('relay') === '1';
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  me: null,
  socket: null,
  schedule: null, // the doctor's own schedule
  entry: null, // the patient's queue entry
  invitation: null, // the call the patient is invited to
  call: null, // the call in progress
  pc: null,
  peer: null, // the PeerJS peer (?media=peerjs)
  media: null, // its MediaConnection
  otherPeerId: null,
  local: null,
  remoteReady: false, // the remote description is set: candidates may be added
  queuedRemote: [], // candidates that arrived before it
  descriptionSent: false, // our offer/answer went out: our candidates may follow
  queuedLocal: [],
  statsTimer: null,
};
// For the browser test and for poking at the call from the console.
window.consultdDemo = state;

function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(li);
}

function setState(id, value) {
  $(id).textContent = value;
  $(id).dataset.state = value;
}

function show(id, visible = true) {
  $(id).hidden = !visible;
}

/** consultd's REST envelope: `data` on success, an Error with the code otherwise. */
async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${state.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!json.success) throw new Error(`${json.error.code}: ${json.error.message}`);
  return json.data;
}

/** Emits with an ack; rejects with the ack's error code. */
function request(event, payload) {
  return new Promise((resolve, reject) => {
    state.socket.emit(event, payload, (ack) =>
      ack?.ok ? resolve(ack) : reject(new Error(`${event}: ${ack?.error?.code ?? 'no ack'}`)),
    );
  });
}

function run(action) {
  return () => action().catch((e) => log(`error: ${e.message}`));
}

// ---------------------------------------------------------------- going online

async function goOnline() {
  const name = $('name').value.trim() || (role === 'doctor' ? 'Dr Demo' : 'Pat Demo');
  // Demo mode only: a real app gets its token from its own backend.
  const res = await fetch('/demo/token', { method: 'POST', body: JSON.stringify({ role, name }) });
  const minted = await res.json();
  if (!minted.success) throw new Error(minted.error.message);
  state.token = minted.data.token;
  state.me = minted.data.userId;
  $('go-online').disabled = true;
  $('name').disabled = true;
  $('whoami').textContent = `You are ${name} (${role}, user id ${state.me}).`;

  const socket = io({ auth: { token: state.token } });
  state.socket = socket;
  socket.on('connect', () => {
    setState('connection', 'online');
    log(`connected over ${socket.io.engine.transport.name}`);
    // As the seeds' hooks do: whatever must hold after a reconnect is emitted here.
    if (state.call) request('webrtc:join_room', { roomId: state.call.id }).catch((e) => log(e.message));
  });
  socket.on('disconnect', (reason) => {
    setState('connection', 'offline');
    log(`disconnected: ${reason}`);
  });
  socket.on('connect_error', (e) => log(`connect_error: ${e.message}`));
  socket.on('error', (e) => log(`error event: ${JSON.stringify(e)}`));
  listenForCalls(socket);
  listenForSignaling(socket);

  if (role === 'doctor') await startPractice(socket);
  else await lookForDoctors(socket);
}

// ---------------------------------------------------------------- the doctor

async function startPractice(socket) {
  socket.on('queue_updated', ({ queue }) => renderQueue(queue));
  show('doctor');
  const today = new Date().toISOString().slice(0, 10);
  const schedule = await api('POST', '/api/schedules', { date: today, startTime: '00:00', endTime: '23:59' });
  state.schedule = await api('POST', `/api/schedules/${schedule.id}/start`);
  $('practice').textContent = `Online (schedule ${state.schedule.id}).`;
  $('patient-link').href = `/demo/?role=patient&schedule=${encodeURIComponent(state.schedule.id)}${media === 'peerjs' ? '&media=peerjs' : ''}`;
  renderQueue(await api('GET', `/api/schedules/${state.schedule.id}/queue`));
  log('practice started: patients are told you are online');
}

function renderQueue(queue) {
  const list = $('queue');
  list.replaceChildren();
  if (queue.length === 0) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'Nobody is waiting.';
    list.append(li);
  }
  for (const entry of queue) {
    const li = document.createElement('li');
    li.textContent = `${entry.patientName ?? entry.patientId} — ${entry.status} `;
    if (entry.status === 'READY') {
      const invite = document.createElement('button');
      invite.textContent = 'Invite';
      invite.className = 'invite';
      invite.disabled = Boolean(state.call);
      invite.onclick = run(() => invitePatient(entry));
      li.append(invite);
    }
    list.append(li);
  }
}

async function invitePatient(entry) {
  const call = await api('POST', `/api/schedules/${state.schedule.id}/start-call`, {
    patientId: entry.patientId,
    callType: 'video',
  });
  $('invite-state').textContent = `Inviting ${call.patientName ?? call.patientId}… (expires ${new Date(call.expiresAt).toLocaleTimeString()})`;
  log(`invited ${call.patientId} to call ${call.id}`);
}

// ---------------------------------------------------------------- the patient

async function lookForDoctors(socket) {
  show('patient');
  socket.on('doctor_online', ({ doctorId, scheduleId }) => addDoctor(doctorId, scheduleId));
  socket.on('doctor_offline', ({ scheduleId }) => {
    document.querySelector(`[data-schedule="${CSS.escape(scheduleId)}"]`)?.remove();
    log(`schedule ${scheduleId} closed`);
  });
  if (linkedSchedule) {
    const schedule = await api('GET', `/api/schedules/${encodeURIComponent(linkedSchedule)}`);
    if (schedule.status === 'ONLINE') addDoctor(schedule.doctorId, schedule.id);
    else log(`schedule ${schedule.id} is ${schedule.status}`);
  }
  $('ready').onchange = run(async () => {
    state.entry = await api('POST', `/api/queue/${state.entry.id}/toggle-ready`, { isReady: $('ready').checked });
    showEntry();
  });
}

function addDoctor(doctorId, scheduleId) {
  if (document.querySelector(`[data-schedule="${CSS.escape(scheduleId)}"]`)) return;
  $('doctors').querySelector('.empty')?.remove();
  const li = document.createElement('li');
  li.dataset.schedule = scheduleId;
  li.textContent = `Doctor ${doctorId} `;
  const join = document.createElement('button');
  join.textContent = 'Join queue';
  join.className = 'join-queue';
  join.onclick = run(async () => {
    state.entry = await api('POST', `/api/schedules/${scheduleId}/join-queue`);
    join.disabled = true;
    showEntry();
  });
  li.append(join);
  $('doctors').append(li);
  log(`doctor ${doctorId} is online`);
}

function showEntry() {
  show('my-entry');
  $('entry-state').textContent = `Your place: #${state.entry.position}, ${state.entry.status}.`;
  $('ready').checked = state.entry.status === 'READY';
}

// ---------------------------------------------------------------- invitations

function listenForCalls(socket) {
  socket.on('call_invitation', (call) => {
    if (state.call) return; // already in it (the reconnect resync re-sends live invitations)
    state.invitation = call;
    $('invitation-text').textContent = `${call.doctorName ?? call.doctorId} is calling you (until ${new Date(call.expiresAt).toLocaleTimeString()}).`;
    show('invitation');
    log(`invitation to call ${call.id}`);
  });
  socket.on('call_confirmed', (call) => run(() => startCall(call))());
  socket.on('call_declined', (call) => closeInvitation(call, 'declined'));
  socket.on('call_cancelled', (call) => closeInvitation(call, 'cancelled'));
  socket.on('call_expired', (call) => closeInvitation(call, 'expired'));
  socket.on('call_activated', (call) => log(`call ${call.id} is ACTIVE`));
  socket.on('peer_id_updated', ({ callSessionId, peerId }) => {
    if (state.call?.id !== callSessionId) return;
    log(`the other side's PeerJS id is ${peerId}`);
    state.otherPeerId = peerId;
    callPeer();
  });
  socket.on('call_ended', (call) => {
    if (state.call?.id === call.id) endLocally('the call ended');
  });
  $('accept').onclick = run(async () => {
    show('invitation', false);
    await api('POST', `/api/call-sessions/${state.invitation.id}/confirm`);
  });
  $('decline').onclick = run(async () => {
    show('invitation', false);
    await api('POST', `/api/call-sessions/${state.invitation.id}/decline`);
  });
}

function closeInvitation(call, how) {
  $('invite-state').textContent = `Call ${how}.`;
  if (state.invitation?.id === call.id) show('invitation', false);
  log(`call ${call.id} ${how}`);
}

// ---------------------------------------------------------------- the call

// Browsers expose the camera only to secure contexts: https, or localhost.
// Opened as http://<LAN address> (a phone on the same Wi-Fi), there is no
// navigator.mediaDevices at all.
const INSECURE =
  'The camera and microphone need a secure page: open the demo over https, or as http://localhost on this machine.';

function cameraAvailable() {
  return window.isSecureContext && Boolean(navigator.mediaDevices?.getUserMedia);
}

async function startCall(call) {
  if (state.call) return;
  state.call = call;
  state.invitation = null;
  $('invite-state').textContent = '';
  show('call');
  setState('call-state', 'connecting');
  const other = role === 'doctor' ? call.patientName ?? call.patientId : call.doctorName ?? call.doctorId;
  $('remote-name').textContent = other;
  log(`call ${call.id} confirmed: getting camera and microphone`);

  if (!cameraAvailable()) {
    setState('call-state', 'no camera');
    log(INSECURE);
    return;
  }
  state.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  $('local-video').srcObject = state.local;
  if (media === 'peerjs') return startPeerCall(call);
  const pc = new RTCPeerConnection(await rtcConfig());
  state.pc = pc;
  for (const track of state.local.getTracks()) pc.addTrack(track, state.local);
  pc.ontrack = (e) => {
    $('remote-video').srcObject = e.streams[0];
  };
  pc.onicecandidate = ({ candidate }) => {
    if (!candidate) return;
    // A candidate never goes out before our description: the server keeps
    // the order, so the other side never sees a candidate it cannot place.
    if (state.descriptionSent) signal('webrtc:ice_candidate', { candidate: candidate.toJSON() });
    else state.queuedLocal.push(candidate.toJSON());
  };
  pc.oniceconnectionstatechange = () => {
    $('ice-state').textContent = pc.iceConnectionState;
    if (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') {
      setState('call-state', 'connected');
      // Both sides call it; the second is a no-op (CONTRACT §4).
      api('POST', `/api/call-sessions/${call.id}/activate`).catch((e) => log(e.message));
    }
  };
  state.statsTimer = setInterval(countFrames, 500);

  const joined = await request('webrtc:join_room', { roomId: call.id });
  log(`joined room ${joined.roomId}; already there: ${joined.peers.map((p) => p.role).join(', ') || 'nobody'}`);
  // The doctor offers at once: if the patient joins later, consultd replays
  // the offer and its candidates to them (the seed's lost-offer bug).
  if (role === 'doctor') {
    await pc.setLocalDescription(await pc.createOffer());
    sendDescription('webrtc:offer');
  }
}

/** The ICE servers consultd hands out (STUN, and TURN with expiring credentials). */
async function rtcConfig() {
  const { iceServers } = await api('GET', '/api/ice-servers');
  // `?stun=stun:host:port` adds one more.
  const stun = params.get('stun');
  if (stun) iceServers.push({ urls: stun });
  log(`ICE servers: ${iceServers.map((s) => s.urls).flat().join(', ') || 'none (host candidates only)'}`);
  return { iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' };
}

// ---------------------------------------------------------------- the call, over PeerJS

/**
 * The seed's phases 7 to 9 with consultd as the PeerJS server: each side
 * opens a Peer (its token a ticket from consultd, so the JWT stays out of
 * the URL), publishes its id with set-peer-id, and the doctor calls the
 * patient's id once both are known.
 */
async function startPeerCall(call) {
  const [{ token }, config] = await Promise.all([api('POST', '/api/peerjs/ticket'), rtcConfig()]);
  const secure = location.protocol === 'https:';
  const peer = new Peer({
    host: location.hostname,
    port: Number(location.port) || (secure ? 443 : 80),
    path: '/peerjs',
    secure,
    token,
    config,
  });
  state.peer = peer;
  peer.on('open', (id) =>
    run(async () => {
      log(`PeerJS id ${id}`);
      const updated = await api('POST', `/api/call-sessions/${call.id}/set-peer-id`, { peerId: id });
      // Phase 8: whichever id the other side published first is here already.
      state.otherPeerId ??= role === 'doctor' ? updated.patientPeerId : updated.doctorPeerId;
      callPeer();
    })(),
  );
  peer.on('call', (incoming) => {
    log(`PeerJS call from ${incoming.peer}`);
    incoming.answer(state.local);
    watchPeerMedia(incoming);
  });
  peer.on('error', (e) => log(`PeerJS ${e.type}: ${e.message}`));
  state.statsTimer = setInterval(countFrames, 500);
}

/** The doctor calls once their own peer is open and the patient's id is known. */
function callPeer() {
  if (role !== 'doctor' || !state.peer?.open || !state.otherPeerId || state.media) return;
  log(`calling ${state.otherPeerId}`);
  watchPeerMedia(state.peer.call(state.otherPeerId, state.local));
}

function watchPeerMedia(connection) {
  state.media = connection;
  state.pc = connection.peerConnection;
  connection.on('stream', (remote) => {
    $('remote-video').srcObject = remote;
  });
  connection.on('iceStateChanged', (ice) => {
    $('ice-state').textContent = ice;
    if (ice === 'connected' || ice === 'completed') {
      setState('call-state', 'connected');
      api('POST', `/api/call-sessions/${state.call.id}/activate`).catch((e) => log(e.message));
    }
  });
}

function signal(event, payload) {
  state.socket.emit(event, { roomId: state.call.id, ...payload }, (ack) => {
    if (!ack?.ok) log(`${event} refused: ${ack?.error?.code}`);
  });
}

function sendDescription(event) {
  signal(event, { sdp: state.pc.localDescription.toJSON() });
  state.descriptionSent = true;
  for (const candidate of state.queuedLocal.splice(0)) signal('webrtc:ice_candidate', { candidate });
  log(`sent ${event.slice(7)}`);
}

async function acceptRemoteDescription(sdp) {
  await state.pc.setRemoteDescription(sdp);
  state.remoteReady = true;
  for (const candidate of state.queuedRemote.splice(0)) await addCandidate(candidate);
}

async function addCandidate(candidate) {
  try {
    await state.pc.addIceCandidate(candidate);
  } catch (e) {
    log(`candidate skipped: ${e.message}`);
  }
}

function listenForSignaling(socket) {
  socket.on('webrtc:offer', (msg) =>
    run(async () => {
      const pc = state.pc;
      if (!pc || msg.roomId !== state.call?.id) return;
      // A re-join after a reconnect replays the same offer: nothing to redo.
      if (pc.remoteDescription?.sdp === msg.sdp.sdp) return;
      log(`offer from ${msg.from}`);
      await acceptRemoteDescription(msg.sdp);
      await pc.setLocalDescription(await pc.createAnswer());
      sendDescription('webrtc:answer');
    })(),
  );
  socket.on('webrtc:answer', (msg) =>
    run(async () => {
      const pc = state.pc;
      if (!pc || msg.roomId !== state.call?.id || pc.signalingState !== 'have-local-offer') return;
      log(`answer from ${msg.from}`);
      await acceptRemoteDescription(msg.sdp);
    })(),
  );
  socket.on('webrtc:ice_candidate', (msg) =>
    run(async () => {
      if (!state.pc || msg.roomId !== state.call?.id) return;
      if (state.remoteReady) await addCandidate(msg.candidate);
      else state.queuedRemote.push(msg.candidate);
    })(),
  );
  socket.on('webrtc:peer_joined', ({ role: who }) => log(`${who} joined the room`));
  socket.on('webrtc:peer_left', ({ userId }) => log(`${userId} left the room`));
}

async function countFrames() {
  state.pc ??= state.media?.peerConnection ?? null;
  if (!state.pc) return;
  const stats = await state.pc.getStats();
  for (const report of stats.values()) {
    if (report.type === 'inbound-rtp' && report.kind === 'video') {
      $('frames').textContent = String(report.framesDecoded ?? report.framesReceived ?? 0);
    }
  }
}

function toggleTrack(kind, button, on, off) {
  const track = state.local?.getTracks().find((t) => t.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  button.textContent = track.enabled ? on : off;
  log(`${kind} ${track.enabled ? 'on' : 'off'}`);
}

/** Stops media and the connection; the server already knows the call ended. */
function endLocally(why) {
  clearInterval(state.statsTimer);
  state.media?.close();
  state.peer?.destroy();
  state.pc?.close();
  for (const track of state.local?.getTracks() ?? []) track.stop();
  if (state.call) state.socket.emit('webrtc:leave_room', { roomId: state.call.id });
  Object.assign(state, {
    call: null,
    pc: null,
    peer: null,
    media: null,
    otherPeerId: null,
    local: null,
    remoteReady: false,
    queuedRemote: [],
    descriptionSent: false,
    queuedLocal: [],
  });
  setState('call-state', 'ended');
  $('ice-state').textContent = 'closed';
  $('toggle-mic').textContent = 'Mute microphone';
  $('toggle-camera').textContent = 'Turn camera off';
  log(why);
  if (role === 'patient') {
    show('my-entry', false);
    for (const b of document.querySelectorAll('.join-queue')) b.disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

if (!cameraAvailable()) {
  $('insecure').textContent = INSECURE;
  show('insecure');
}
if (typeof io === 'undefined' || typeof Peer === 'undefined') {
  $('whoami').textContent = 'socket.io-client or peerjs is missing: run `npm ci` in examples/web, then reload.';
} else if (role === 'doctor' || role === 'patient') {
  show('pick', false);
  show('online');
  $('name').value = role === 'doctor' ? 'Dr Demo' : 'Pat Demo';
  $('media-path').textContent = `Media signaling: ${media === 'peerjs' ? "consultd's PeerJS broker" : 'webrtc:* over Socket.IO'}.`;
  $('go-online').onclick = run(goOnline);
  $('toggle-mic').onclick = () => toggleTrack('audio', $('toggle-mic'), 'Mute microphone', 'Unmute microphone');
  $('toggle-camera').onclick = () => toggleTrack('video', $('toggle-camera'), 'Turn camera off', 'Turn camera on');
  $('end-call').onclick = run(async () => {
    if (state.call) await api('POST', `/api/call-sessions/${state.call.id}/end`);
  });
}
