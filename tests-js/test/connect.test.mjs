// socket.io-client 4.x and 2.x, over websocket, polling and the
// polling→websocket upgrade: tokens from `consultd token` connect and get an
// ack for an event emitted inside the `connect` callback; bad tokens are
// refused with the contract's words.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { io as io4 } from 'socket.io-client';
import io2 from 'socket.io-client-v2';
import { badTokens, startConsultd, within } from '../lib/server.mjs';

let server;
before(async () => {
  server = await startConsultd();
});
after(async () => {
  await server?.stop();
});

const TRANSPORTS = {
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
  upgrade: { transports: ['polling', 'websocket'] },
};

function base(options) {
  return { reconnection: false, forceNew: true, timeout: 5000, ...options };
}

/** Connects, emits `identify_as_doctor` inside the connect callback, returns the ack. */
function identifyOnConnect(socket) {
  return within(
    5000,
    new Promise((ok, fail) => {
      socket.on('connect', () => {
        socket.emit('identify_as_doctor', {}, (ack) => ok(ack));
      });
      socket.on('connect_error', (e) => fail(new Error(`connect_error: ${e.message}`)));
      socket.on('error', (e) => fail(new Error(`error: ${JSON.stringify(e)}`)));
    }),
    'ack',
  );
}

function waitUpgrade(socket, legacy) {
  const engine = legacy ? socket.io.engine : socket.io.engine;
  if (engine.transport.name === 'websocket') return Promise.resolve();
  return within(5000, new Promise((ok) => engine.once('upgrade', () => ok())), 'upgrade');
}

describe('socket.io-client 4.x', () => {
  for (const [name, transport] of Object.entries(TRANSPORTS)) {
    test(`connects with auth.token over ${name} and gets its ack`, async () => {
      const socket = io4(server.url, base({ ...transport, auth: { token: server.token(11, 'doctor', 'Dr JS') } }));
      try {
        assert.deepEqual(await identifyOnConnect(socket), { ok: true });
        if (name === 'upgrade') {
          await waitUpgrade(socket, false);
          assert.equal(socket.io.engine.transport.name, 'websocket');
          const again = await within(5000, socket.emitWithAck('identify_as_doctor', {}), 'ack after upgrade');
          assert.deepEqual(again, { ok: true });
        } else {
          assert.equal(socket.io.engine.transport.name, name);
        }
      } finally {
        socket.disconnect();
      }
    });
  }

  test('connects with ?token= and with an Authorization header', async () => {
    const token = server.token(12, 'patient');
    for (const options of [{ query: { token } }, { extraHeaders: { Authorization: `Bearer ${token}` } }]) {
      const socket = io4(server.url, base({ transports: ['polling'], ...options }));
      try {
        const ack = await identifyOnConnect(socket);
        assert.equal(ack.ok, false);
        assert.equal(ack.error.code, 'forbidden');
      } finally {
        socket.disconnect();
      }
    }
  });

  for (const [name, transport] of Object.entries(TRANSPORTS)) {
    test(`bad tokens are refused over ${name} with the contract's words`, async () => {
      for (const [what, token, word] of badTokens(server)) {
        const socket = io4(server.url, base({ ...transport, auth: { token } }));
        const err = await within(
          5000,
          new Promise((ok) => socket.on('connect_error', ok)),
          `connect_error for ${what}`,
        );
        socket.disconnect();
        assert.equal(err.message, word, what);
        assert.equal(socket.connected, false);
      }
      const missing = io4(server.url, base(transport));
      const err = await within(5000, new Promise((ok) => missing.on('connect_error', ok)), 'no token');
      missing.disconnect();
      assert.equal(err.message, 'unauthorized');
    });
  }
});

describe('socket.io-client 2.x', () => {
  for (const [name, transport] of Object.entries(TRANSPORTS)) {
    test(`connects with ?token= over ${name} and gets its ack`, async () => {
      const token = server.token(21, 'doctor');
      const socket = io2(server.url, base({ ...transport, query: { token } }));
      try {
        assert.deepEqual(await identifyOnConnect(socket), { ok: true });
        if (name === 'upgrade') {
          await waitUpgrade(socket, true);
          assert.equal(socket.io.engine.transport.name, 'websocket');
        } else {
          assert.equal(socket.io.engine.transport.name, name);
        }
      } finally {
        socket.close();
      }
    });
  }

  test('connects with an Authorization header (polling and websocket)', async () => {
    const token = server.token(22, 'mechanic');
    for (const transports of [['polling'], ['websocket']]) {
      const headers = { Authorization: `Bearer ${token}` };
      const socket = io2(
        server.url,
        base({ transports, extraHeaders: headers, transportOptions: { polling: { extraHeaders: headers } } }),
      );
      try {
        assert.deepEqual(await identifyOnConnect(socket), { ok: true }, transports.join());
      } finally {
        socket.close();
      }
    }
  });

  for (const [name, transport] of Object.entries(TRANSPORTS)) {
    test(`bad tokens are refused over ${name} with the word in the error event`, async () => {
      for (const [what, token, word] of badTokens(server)) {
        const socket = io2(server.url, base({ ...transport, query: { token } }));
        let connected = false;
        socket.on('connect', () => {
          connected = true;
        });
        const err = await within(5000, new Promise((ok) => socket.on('error', ok)), `error for ${what}`);
        socket.close();
        const message = typeof err === 'string' ? err : err?.message;
        assert.equal(message, word, `${what}: ${JSON.stringify(err)}`);
        assert.equal(connected, false, what);
      }
    });
  }
});
