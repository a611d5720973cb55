#!/usr/bin/env node
// Drives N call flows over REST against a running consultd and prints one
// JSON line: requests per second and per-request latency. Each of C workers
// is a host who, per flow, serves a new guest:
//   queue    (seed 001, 6 requests): join, ready, invite, confirm, activate, end
//   direct   (seed 000, 4 requests): start, confirm, activate, end
//   tutoring (seed 003, 3 requests): request, accept, end
//
//   CONSULTD_DATA_DIR=/tmp/b PORT=4711 target/release/consultd &
//   node scripts/rest-flow-bench.mjs http://127.0.0.1:4711 target/release/consultd /tmp/b 400 8 [queue|direct|tutoring]
//
// Tokens are minted with `consultd token` against the same data directory
// (the generated secret), before timing starts. Needs Node 18+ (fetch).
import { execFileSync } from 'node:child_process';

const [url, bin, dataDir, flows = '200', workers = '8', flow = 'queue'] = process.argv.slice(2);
if (!url || !bin || !dataDir || !['queue', 'direct', 'tutoring'].includes(flow)) {
  console.error('usage: rest-flow-bench.mjs URL CONSULTD_BIN DATA_DIR [FLOWS] [WORKERS] [queue|direct|tutoring]');
  process.exit(2);
}
const env = { ...process.env, CONSULTD_DATA_DIR: dataDir, LOG_LEVEL: 'error' };
const mint = (sub, role) =>
  execFileSync(bin, ['token', '--sub', sub, '--role', role, '--ttl', '1h'], { env, stdio: ['ignore', 'pipe', 'ignore'] })
    .toString()
    .trim();

const latencies = [];
async function api(method, path, token, body) {
  const started = performance.now();
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  const json = await res.json();
  latencies.push(performance.now() - started);
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json.data;
}

const [hostRole, guestRole] = flow === 'tutoring' ? ['teacher', 'learner'] : ['doctor', 'patient'];
const doctors = Array.from({ length: +workers }, (_, i) => mint(`bench-d${i}`, hostRole));
const patients = Array.from({ length: +flows }, (_, i) => mint(`bench-p${i}`, guestRole));

async function directWorker(w) {
  for (let i = w; i < +flows; i += +workers) {
    const call = await api('POST', '/api/call-sessions/start', patients[i], { doctor_id: `bench-d${w}`, call_type: 'video' });
    await api('POST', `/api/call-sessions/${call.id}/confirm`, doctors[w]);
    await api('POST', `/api/call-sessions/${call.id}/activate`, doctors[w]);
    await api('POST', `/api/call-sessions/${call.id}/end`, patients[i]);
  }
}

async function tutoringWorker(w) {
  for (let i = w; i < +flows; i += +workers) {
    const session = await api('POST', '/api/sessions', patients[i], { host_id: `bench-d${w}`, skill_name: 'Piano' });
    await api('POST', `/api/sessions/${session.id}/accept`, doctors[w]);
    await api('POST', `/api/sessions/${session.id}/end`, patients[i]);
  }
}

async function queueWorker(w) {
  const doctor = doctors[w];
  const schedule = await api('POST', '/api/schedules', doctor, { date: '2026-11-21', startTime: '09:00', endTime: '17:00' });
  await api('POST', `/api/schedules/${schedule.id}/start`, doctor);
  for (let i = w; i < +flows; i += +workers) {
    const patient = patients[i];
    const entry = await api('POST', `/api/schedules/${schedule.id}/join-queue`, patient);
    await api('POST', `/api/queue/${entry.id}/toggle-ready`, patient, { isReady: true });
    const call = await api('POST', `/api/schedules/${schedule.id}/start-call`, doctor, { patientId: `bench-p${i}` });
    await api('POST', `/api/call-sessions/${call.id}/confirm`, patient);
    await api('POST', `/api/call-sessions/${call.id}/activate`, doctor);
    await api('POST', `/api/call-sessions/${call.id}/end`, patient);
  }
}

const t0 = performance.now();
const worker = { queue: queueWorker, direct: directWorker, tutoring: tutoringWorker }[flow];
await Promise.all(doctors.map((_, w) => worker(w)));
const secs = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const q = (p) => +latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(2);
console.log(
  JSON.stringify({
    flow,
    flows: +flows,
    workers: +workers,
    requests: latencies.length,
    secs: +secs.toFixed(2),
    rps: Math.round(latencies.length / secs),
    p50_ms: q(0.5),
    p99_ms: q(0.99),
    max_ms: +latencies.at(-1).toFixed(2),
  }),
);
