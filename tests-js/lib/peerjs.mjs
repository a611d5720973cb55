// The PeerJS client's wire (its websocket URL and frames, as `peerjs` 1.5
// speaks them), with `ws` standing in for the browser's WebSocket, and the
// REST calls the PeerJS tests share.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { within } from './server.mjs';

/** A peer on the broker's websocket, recording every frame it is sent. */
export function peer(server, { id, token, key = 'peerjs', path = '/peerjs' }) {
  const params = new URLSearchParams();
  if (key !== null) params.set('key', key);
  if (id !== undefined) params.set('id', id);
  if (token !== undefined) params.set('token', token);
  params.set('version', '1.5.5');
  const ws = new WebSocket(`${server.url.replace('http', 'ws')}${path}/peerjs?${params}`);
  const frames = [];
  const waiters = [];
  const closed = new Promise((ok) => ws.on('close', ok));
  ws.on('message', (data) => {
    const frame = JSON.parse(data.toString());
    frames.push(frame);
    for (const w of waiters.splice(0)) w();
  });
  const p = {
    id,
    ws,
    frames,
    closed,
    /** The first frame of `type` (after those already taken), waiting up to `ms`. */
    async next(type, ms = 3000) {
      const find = () => frames.findIndex((f) => f.type === type);
      return within(
        ms,
        (async () => {
          for (;;) {
            const i = find();
            if (i >= 0) return frames.splice(i, 1)[0];
            await new Promise((ok) => waiters.push(ok));
          }
        })(),
        `${type} for ${id}`,
      );
    },
    send(frame) {
      ws.send(JSON.stringify(frame));
    },
    close() {
      ws.close();
      return closed;
    },
  };
  return p;
}

export const open = async (server, opts) => {
  const p = peer(server, opts);
  await p.next('OPEN');
  return p;
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function api(server, method, path, token, body) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** A live direct call between a patient and a doctor (CONTRACT §5). */
export async function liveCall(server, patient, doctorId) {
  const res = await api(server, 'POST', '/api/call-sessions/start', patient, {
    call_type: 'video',
    doctor_id: doctorId,
  });
  assert.ok([200, 201].includes(res.status), JSON.stringify(res.body));
  assert.equal(res.body.data.status, 'INVITED');
  return res.body.data.call_session_id;
}

