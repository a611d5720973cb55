// Real socket.io clients (4.x with `auth.token`, 2.x with `?token=`) that
// record every event they are told to listen for, and a REST helper. Every
// REST answer, push and ack they see is checked against the server's
// /openapi.json and /asyncapi.json (lib/conformance.mjs).
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { checkAck, checkPush, checkRest, conformance, loadDocuments } from './conformance.mjs';
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
    await loadDocuments(server.url);
  });
  after(async () => {
    await server?.stop();
    const { counts, violations } = conformance();
    console.log(`checked against /openapi.json and /asyncapi.json: ${JSON.stringify(counts)}`);
    assert.deepEqual(violations, [], 'what the server sent is not what its documents say');
  });
  return {
    /** `client({kind, transport}, token)` or `client(kind, token, transports)`. */
    client: (kind, token, transports) =>
      typeof kind === 'object'
        ? client(server, kind.kind, token, TRANSPORTS[kind.transport], events)
        : client(server, kind, token, transports, events),
    api: (method, path, token, body) => api(server, method, path, token, body),
    token: (sub, role, name) => server.token(sub, role, name),
    /** The server's base URL (once `before` has run). */
    url: () => server.url,
    /** The server's generated JWT secret, to sign tokens of any shape. */
    secret: () => server.secret(),
  };
}

/** The three ways a client reaches the server: CONTRACT §1. */
export const TRANSPORTS = {
  websocket: ['websocket'],
  polling: ['polling'],
  upgrade: ['polling', 'websocket'],
};

/** Every client generation over every transport: the compatibility matrix. */
export const MATRIX = ['v4', 'v2'].flatMap((kind) => Object.keys(TRANSPORTS).map((transport) => ({ kind, transport })));

/**
 * Each configuration of the matrix as the host, facing a guest of the other
 * generation on the next transport, so every configuration plays both sides
 * and every pair mixes generations.
 */
export const PAIRS = MATRIX.map(({ kind, transport }) => {
  const names = Object.keys(TRANSPORTS);
  const other = { kind: kind === 'v4' ? 'v2' : 'v4', transport: names[(names.indexOf(transport) + 1) % names.length] };
  return { host: { kind, transport }, guest: other };
});

export const label = ({ kind, transport }) => `${kind}/${transport}`;

/** Emits with an ack; resolves with the answer. */
export const emitAck = (c, event, payload) =>
  new Promise((ok) =>
    c.socket.emit(event, payload, (answer) => {
      checkAck(event, answer);
      ok(answer);
    }),
  );

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A connected client recording `events`; `next(name)` takes the first unseen
 * one. `extra` adds client options (say, `extraHeaders`).
 */
export async function client(server, kind, token, transports, events, extra = {}) {
  const opts = { reconnection: false, forceNew: true, timeout: 5000, transports, ...extra };
  const socket =
    kind === 'v4' ? io4(server.url, { ...opts, auth: { token } }) : io2(server.url, { ...opts, query: { token } });
  const inbox = [];
  const waiters = [];
  const record = (name, data) => {
    inbox.push({ name, data });
    for (const w of waiters.splice(0)) w();
  };
  for (const name of events) socket.on(name, (data) => record(name, data));
  // Every push, listened for or not, against /asyncapi.json.
  if (kind === 'v4') {
    socket.onAny((name, data) => checkPush(name, data));
  } else {
    const onevent = socket.onevent;
    socket.onevent = function (packet) {
      checkPush(packet.data?.[0], packet.data?.[1]);
      return onevent.call(this, packet);
    };
  }
  await within(5000, new Promise((ok, fail) => {
    socket.on('connect', ok);
    socket.on('connect_error', (e) => fail(new Error(`connect_error: ${e.message}`)));
  }), 'connect');
  if (transports.length > 1 && socket.io.engine.transport.name !== 'websocket') {
    // An upgrade case is only one once the upgrade happened.
    await within(5000, new Promise((ok) => socket.io.engine.once('upgrade', ok)), 'upgrade');
  }
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
  const answer = { status: res.status, body: await res.json() };
  checkRest(method, path, answer.status, answer.body);
  return answer;
}
