// PeerJS relay latency through consultd's broker, on one node or two
// (PostgreSQL and Redis): PAIRS doctor/patient pairs sharing a live call,
// each doctor sending CANDIDATE frames at RATE per second for SECONDS; the
// patients measure the time from send to receipt and count losses and
// frames out of order. A development measure, not a CI step:
//
//   CONSULTD_BIN=target/release/consultd node tests-js/bench/peerjs-relay.mjs [one|two]
//
// Env: PAIRS (50), RATE (80, under the default EVENT_RATE of 100), SECONDS
// (10), RUNS (3), TEST_DATABASE_URL for `two`.
import WebSocket from 'ws';
import { liveCall } from '../lib/peerjs.mjs';
import { clusterSchema, startConsultd } from '../lib/server.mjs';

const mode = process.argv[2] ?? 'one';
const PAIRS = Number(process.env.PAIRS ?? 50);
const RATE = Number(process.env.RATE ?? 80);
const SECONDS = Number(process.env.SECONDS ?? 10);
const RUNS = Number(process.env.RUNS ?? 3);

const connect = (url, id, token) =>
  new Promise((ok, fail) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/peerjs/peerjs?key=peerjs&id=${id}&token=${token}&version=1.5.5`);
    ws.on('error', fail);
    ws.on('message', function opened(d) {
      if (JSON.parse(d).type === 'OPEN') {
        ws.off('message', opened);
        ok(ws);
      }
    });
  });

async function run(a, b, doctor, patient, round) {
  const latencies = [];
  let sent = 0;
  let received = 0;
  let outOfOrder = 0;
  const pairs = [];
  for (let i = 0; i < PAIRS; i++) {
    const d = await connect(a.url, `bench-d${round}-${i}`, doctor);
    const p = await connect(b.url, `bench-p${round}-${i}`, patient);
    let last = -1;
    p.on('message', (m) => {
      const f = JSON.parse(m);
      if (f.type !== 'CANDIDATE') return;
      received++;
      if (f.payload.n <= last) outOfOrder++;
      last = f.payload.n;
      latencies.push(performance.now() - f.payload.t);
    });
    pairs.push({ d, p, dst: `bench-p${round}-${i}`, n: 0 });
  }
  const end = performance.now() + SECONDS * 1000;
  await new Promise((done) => {
    const tick = setInterval(() => {
      if (performance.now() > end) {
        clearInterval(tick);
        setTimeout(done, 1000);
        return;
      }
      for (const pair of pairs) {
        pair.d.send(JSON.stringify({ type: 'CANDIDATE', dst: pair.dst, payload: { n: pair.n++, t: performance.now() } }));
        sent++;
      }
    }, 1000 / RATE);
  });
  for (const { d, p } of pairs) {
    d.close();
    p.close();
  }
  latencies.sort((x, y) => x - y);
  const q = (p) => Number(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]?.toFixed(2));
  return { sent, lost: sent - received, outOfOrder, perSecond: Math.round(received / SECONDS), p50: q(0.5), p99: q(0.99), max: q(1) };
}

let cluster;
let nodes;
if (mode === 'two') {
  cluster = clusterSchema(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', 't_bench', 'peerjs-bench-secret-long-enough-for-hs256');
  nodes = [await startConsultd(cluster.env), await startConsultd(cluster.env)];
} else {
  const one = await startConsultd();
  nodes = [one, one];
}
const [a, b] = nodes;
const doctor = a.token('bench-doc', 'doctor');
const patient = a.token('bench-pat', 'patient');
await liveCall(a, patient, 'bench-doc');
for (let round = 0; round < RUNS; round++) {
  console.log(JSON.stringify({ mode, pairs: PAIRS, rate: RATE, round, ...(await run(a, b, doctor, patient, round)) }));
}
await a.stop();
if (b !== a) await b.stop();
cluster?.drop();
