// Webhook chaos (CONTRACT §10, issue 20): the consultd binary delivers to a
// real HTTP receiver that answers 500 or hangs past WEBHOOK_TIMEOUT part of
// the time, while consultd is SIGKILLed and restarted again and again during
// a mixed workload (queue, direct calls, tutoring, chat). Afterwards every
// transition in the audit log must have reached the receiver (2xx) at least
// once, in order per entity, every request with a valid signature, and a
// tampered body must fail verification.
//
// On SQLite with one node; with TEST_DATABASE_URL also on PostgreSQL with two
// nodes sharing the outbox (Redis on 127.0.0.1:6379), one of them killed at a
// time. The numbers (events, retries, duplicates, losses) are printed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, clusterSchema, freePort, signHs256 } from '../lib/server.mjs';
import { nodeVerifier } from '../lib/webhook-docs.mjs';

const PG = process.env.TEST_DATABASE_URL;
const JWT = 'webhook-chaos-secret-long-enough-for-hs256!';
const WEBHOOK_SECRET = 'whsec_chaos';
const MIN_KILLS = 6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A deterministic PRNG (mulberry32), so a failing run can be replayed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The verification docs/webhooks.md gives receivers, taken from the page.
const verifySignature = await nodeVerifier();

/** A receiver that fails `failRate` and hangs `hangRate` of requests. */
async function startReceiver({ failRate, hangRate, seed }) {
  const random = prng(seed);
  const requests = [];
  let open = 0;
  const server = createServer((req, res) => {
    const chunks = [];
    open += 1;
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let event = null;
      try {
        event = JSON.parse(body);
      } catch {
        // recorded as unparsable
      }
      const r = random();
      const fate = r < hangRate ? 'hang' : r < hangRate + failRate ? 500 : 204;
      const record = {
        at: Date.now(),
        event,
        body,
        signature: req.headers['consultd-signature'],
        eventIdHeader: req.headers['consultd-event-id'],
        valid: verifySignature(req.headers['consultd-signature'], body, WEBHOOK_SECRET),
        fate,
      };
      requests.push(record);
      if (fate === 'hang') {
        // Past consultd's timeout, then the connection is dropped unanswered.
        setTimeout(() => {
          open -= 1;
          res.destroy();
        }, 2500);
        return;
      }
      open -= 1;
      res.writeHead(fate).end();
    });
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${port}/hooks/consultd`,
    requests,
    inFlight: () => open,
    close: () => new Promise((ok) => {
      server.closeAllConnections();
      server.close(ok);
    }),
  };
}

/** A consultd node that can be SIGKILLed and started again on its port. */
function node(env) {
  let child = null;
  let port = null;
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get up() {
      return child !== null && child.exitCode === null;
    },
    async start() {
      port ??= await freePort();
      child = spawn(BIN, [], {
        env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'error', ...env },
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`consultd exited with ${child.exitCode}`);
        try {
          if ((await fetch(`${this.url}/healthz`)).ok) return;
        } catch {
          // not yet
        }
        if (Date.now() > deadline) throw new Error('consultd did not become healthy');
        await sleep(30);
      }
    },
    async kill(signal = 'SIGKILL') {
      if (!this.up) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
}

const token = (sub, role) =>
  signHs256({ sub, role, name: `${role} ${sub}`, exp: Math.floor(Date.now() / 1000) + 3600 }, JWT);

/**
 * One REST step against whichever node is up, retried across kills. A
 * commit whose answer was lost shows as 409 on the retry: done either way.
 */
async function step(nodes, method, path, tok, body) {
  for (let attempt = 0; attempt < 60; attempt += 1) {
    const live = nodes.filter((n) => n.up);
    const n = live[attempt % Math.max(live.length, 1)];
    if (!n) {
      await sleep(100);
      continue;
    }
    try {
      const res = await fetch(`${n.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      const json = await res.json().catch(() => null);
      if (res.status === 429 || res.status >= 500) {
        await sleep(100);
        continue;
      }
      return { status: res.status, body: json, retried: attempt > 0 };
    } catch {
      await sleep(100);
    }
  }
  return { status: 0, body: null };
}

/** The four apps' flows, each entity moved one step at a time. */
async function scenario(nodes, i) {
  const ok = (r) => r.status >= 200 && r.status < 300;
  switch (i % 4) {
    case 0: {
      const [doc, pat] = [token(`qd${i}`, 'doctor'), token(`qp${i}`, 'patient')];
      const s = await step(nodes, 'POST', '/api/schedules', doc, { date: '2026-12-07', startTime: '09:00', endTime: '17:00' });
      if (!ok(s)) return;
      const sid = s.body.data.id;
      await step(nodes, 'POST', `/api/schedules/${sid}/start`, doc);
      const e = await step(nodes, 'POST', `/api/schedules/${sid}/join-queue`, pat);
      if (!ok(e)) return;
      await step(nodes, 'POST', `/api/queue/${e.body.data.id}/toggle-ready`, pat, { isReady: true });
      const c = await step(nodes, 'POST', `/api/schedules/${sid}/start-call`, doc, { patientId: `qp${i}` });
      if (ok(c)) {
        const cid = c.body.data.id;
        await step(nodes, 'POST', `/api/call-sessions/${cid}/confirm`, pat);
        await step(nodes, 'POST', `/api/call-sessions/${cid}/activate`, pat);
        await step(nodes, 'POST', `/api/call-sessions/${cid}/end`, doc);
      }
      await step(nodes, 'POST', `/api/schedules/${sid}/end`, doc);
      return;
    }
    case 1: {
      const [doc, pat] = [token(`dd${i}`, 'doctor'), token(`dp${i}`, 'patient')];
      const c = await step(nodes, 'POST', '/api/call-sessions/start', pat, {
        call_type: 'voice',
        appointment_id: `appt-${i}`,
        doctor_id: `dd${i}`,
      });
      if (!ok(c)) return;
      const cid = c.body.data.id;
      await step(nodes, 'POST', `/api/call-sessions/${cid}/confirm`, doc);
      await step(nodes, 'POST', `/api/call-sessions/${cid}/end`, pat);
      return;
    }
    case 2: {
      const [teacher, learner] = [token(`tt${i}`, 'teacher'), token(`tl${i}`, 'learner')];
      const s = await step(nodes, 'POST', '/api/sessions', learner, { host_id: `tt${i}`, skill_name: 'Piano' });
      if (!ok(s)) return;
      await step(nodes, 'POST', `/api/sessions/${s.body.data.id}/accept`, teacher);
      await step(nodes, 'POST', `/api/sessions/${s.body.data.id}/end`, learner);
      return;
    }
    default: {
      const [customer, mechanic] = [token(`cc${i}`, 'customer'), token(`cm${i}`, 'mechanic')];
      const s = await step(nodes, 'POST', '/api/chat-sessions', customer, { concern: 'Brakes squeal' });
      if (!ok(s)) return;
      await step(nodes, 'POST', `/api/chat-sessions/${s.body.data.id}/accept`, mechanic);
      await step(nodes, 'POST', `/api/chat-sessions/${s.body.data.id}/end`, customer);
    }
  }
}

/** Every audit row (oldest first), from whichever node is up. */
async function auditRows(nodes) {
  const r = await step(nodes, 'GET', '/api/audit-logs?limit=1000', token('ops', 'admin'));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(r.body.data.length < 1000, 'the workload must stay under one audit page');
  return r.body.data.reverse();
}

/** Per entity: the audit row count, against the events the receiver took. */
function reconcile(audit, requests) {
  const expected = new Map();
  for (const row of audit) expected.set(row.entityId, (expected.get(row.entityId) ?? 0) + 1);
  const acked = new Map(); // event id → first 2xx time
  const byEntity = new Map(); // entity id → events in first-ack order
  for (const r of requests) {
    if (r.fate !== 204 || !r.event) continue;
    if (acked.has(r.event.id)) continue;
    acked.set(r.event.id, r.at);
    const list = byEntity.get(r.event.data.id) ?? [];
    list.push(r.event);
    byEntity.set(r.event.data.id, list);
  }
  let missing = 0;
  for (const [entity, count] of expected) missing += Math.max(0, count - (byEntity.get(entity)?.length ?? 0));
  return { expected, acked, byEntity, missing };
}

async function chaos({ label, envFor, nodeCount, scenarios, seed }) {
  const receiver = await startReceiver({ failRate: 0.2, hangRate: 0.05, seed });
  const made = await envFor(receiver.url);
  const env = {
    JWT_SECRET: JWT,
    WEBHOOK_URL: receiver.url,
    WEBHOOK_SECRET,
    WEBHOOK_TIMEOUT: '1s',
    WEBHOOK_RETRY_MIN: '100ms',
    WEBHOOK_RETRY_MAX: '1s',
    REST_BURST: '100000',
    REST_RATE: '100000',
    ...made.env,
  };
  const nodes = Array.from({ length: nodeCount }, () => node(env));
  for (const n of nodes) await n.start();
  const random = prng(seed + 1);
  let kills = 0;
  let killsMidDelivery = 0;
  let running = true;
  const killer = (async () => {
    // Through the workload and on into the drain, until enough kills.
    while (running || kills < MIN_KILLS) {
      await sleep(700 + random() * 900);
      const victim = nodes[Math.floor(random() * nodes.length)];
      if (receiver.inFlight() > 0) killsMidDelivery += 1;
      await victim.kill();
      kills += 1;
      await sleep(100 + random() * 300);
      await victim.start();
    }
  })();
  try {
    // Four at a time, so the receiver always has something in flight.
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < scenarios) {
          await scenario(nodes, next++);
          await sleep(200);
        }
      }),
    );
    running = false;
    await killer;
    for (const n of nodes) if (!n.up) await n.start();

    const audit = await auditRows(nodes);
    // Drain: a killed node's leases (WEBHOOK_TIMEOUT + 5 s) run out, and
    // backoff retries come due.
    let result = reconcile(audit, receiver.requests);
    const deadline = Date.now() + 90_000;
    while (result.missing > 0 && Date.now() < deadline) {
      await sleep(250);
      result = reconcile(audit, receiver.requests);
    }
    await sleep(500); // late duplicates, if any, are counted too
    result = reconcile(audit, receiver.requests);

    const requests = receiver.requests;
    const answered = requests.filter((r) => r.fate === 204);
    const stats = {
      label,
      transitions: audit.length,
      eventsDelivered: result.acked.size,
      requests: requests.length,
      failed500: requests.filter((r) => r.fate === 500).length,
      hung: requests.filter((r) => r.fate === 'hang').length,
      retries: requests.length - new Set(requests.map((r) => r.event?.id)).size,
      duplicates: answered.length - result.acked.size,
      losses: result.missing,
      kills,
      killsMidDelivery,
    };
    console.log(`webhook chaos: ${JSON.stringify(stats)}`);

    assert.equal(result.missing, 0, 'every committed transition reached the receiver');
    assert.ok(audit.length >= scenarios * 3, `the workload made ${audit.length} transitions`);
    assert.ok(kills >= MIN_KILLS && killsMidDelivery > 0, `${kills} kills, ${killsMidDelivery} mid-delivery`);
    assert.ok(stats.failed500 > 0 && stats.hung > 0, 'the receiver failed and hung');
    // Nothing but committed transitions: every event's entity is in the audit log.
    assert.equal(result.acked.size, audit.length, 'one event per audit row, no more');
    for (const r of requests) {
      assert.ok(r.valid, `invalid signature on ${r.body.slice(0, 80)}`);
      assert.equal(r.eventIdHeader, r.event.id);
      assert.match(r.event.type, /^(call|tutoring_session|queue_entry|schedule|chat_session)\.[a-z_]+$/);
      assert.equal(r.event.type.split('.')[1], String(r.event.data.status).toLowerCase());
    }
    // A tampered body (or signature) fails the same verification.
    const sample = answered[0];
    assert.equal(verifySignature(sample.signature, sample.body.replace('"data":{', '"data":{"x":1,'), WEBHOOK_SECRET), false);
    assert.equal(verifySignature(sample.signature, sample.body, 'not-the-secret'), false);

    // In order per entity: each event was first sent only after the one
    // before it was answered 2xx, and their `at`s never go back.
    const firstSent = new Map();
    for (const r of requests) if (!firstSent.has(r.event.id)) firstSent.set(r.event.id, r.at);
    for (const [entity, events] of result.byEntity) {
      for (let k = 1; k < events.length; k += 1) {
        const prev = events[k - 1];
        const cur = events[k];
        assert.ok(cur.at >= prev.at, `${entity}: ${prev.type}@${prev.at} then ${cur.type}@${cur.at}`);
        assert.ok(
          firstSent.get(cur.id) >= result.acked.get(prev.id),
          `${entity}: ${cur.type} was sent before ${prev.type} was taken`,
        );
      }
    }
    const perEntity = new Map();
    for (const row of audit) perEntity.set(row.entityId, [...(perEntity.get(row.entityId) ?? []), row.action]);
    for (const [entity, actions] of perEntity) {
      assert.deepEqual(
        result.byEntity.get(entity).map((e) => e.action),
        actions,
        `${entity}: the events' actions are the audit log's, in its order`,
      );
    }
  } finally {
    running = false;
    for (const n of nodes) await n.kill('SIGTERM');
    await receiver.close();
    made.cleanup();
  }
}

describe('webhooks under chaos', () => {
  test('SQLite, one node SIGKILLed mid-delivery, a receiver that fails and hangs', { timeout: 240_000 }, async () => {
    await chaos({
      label: 'sqlite-1-node',
      nodeCount: 1,
      scenarios: 100,
      seed: 20261207,
      envFor: async () => {
        const dir = mkdtempSync(join(tmpdir(), 'consultd-hooks-'));
        return { env: { CONSULTD_DATA_DIR: dir }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
      },
    });
  });

  test('PostgreSQL, two nodes sharing the outbox, one SIGKILLed at a time', { skip: !PG && 'needs TEST_DATABASE_URL', timeout: 240_000 }, async () => {
    await chaos({
      label: 'postgres-2-nodes',
      nodeCount: 2,
      scenarios: 100,
      seed: 71202620,
      envFor: async () => {
        const cluster = clusterSchema(PG, 't_hooks', JWT);
        return { env: cluster.env, cleanup: cluster.drop };
      },
    });
  });
});
