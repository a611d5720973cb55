// Real socket.io clients (4.x with `auth.token`, 2.x with `?token=`) that
// record every event they are told to listen for, and a REST helper.
import { after, before } from 'node:test';
import { io as io4 } from 'socket.io-client';
import io2 from 'socket.io-client-v2';
import { startConsultd, within } from './server.mjs';

/**
 * One consultd for the calling test file (started before its tests, stopped
 * after), and helpers bound to it: `client(kind, token, transports)` records
 * `events`; `api(method, path, token, body)`; `token(sub, role, name)`.
 */
export function useConsultd(events) {
  let server;
  before(async () => {
    server = await startConsultd();
  });
  after(async () => {
    await server?.stop();
  });
  return {
    client: (kind, token, transports) => client(server, kind, token, transports, events),
    api: (method, path, token, body) => api(server, method, path, token, body),
    token: (sub, role, name) => server.token(sub, role, name),
  };
}

/** Emits with an ack; resolves with the answer. */
export const emitAck = (c, event, payload) => new Promise((ok) => c.socket.emit(event, payload, ok));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A connected client recording `events`; `next(name)` takes the first unseen one. */
export async function client(server, kind, token, transports, events) {
  const opts = { reconnection: false, forceNew: true, timeout: 5000, transports };
  const socket =
    kind === 'v4' ? io4(server.url, { ...opts, auth: { token } }) : io2(server.url, { ...opts, query: { token } });
  const inbox = [];
  const waiters = [];
  const record = (name, data) => {
    inbox.push({ name, data });
    for (const w of waiters.splice(0)) w();
  };
  for (const name of events) socket.on(name, (data) => record(name, data));
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
    /** The names of every recorded event not yet taken. */
    pending() {
      return inbox.map((e) => e.name);
    },
  };
}

/** A REST call with `Authorization: Bearer`; the status and the JSON body. */
export async function api(server, method, path, token, body) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}
