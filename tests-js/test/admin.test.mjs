// The live admin view (issue 20) at /admin/ in Debian's headless Chromium:
// an admin watches a queue, a call, a tutoring request and a chat appear
// and go, with screenshots; a doctor's token and a bad one are refused and
// see nothing. The page speaks Socket.IO by hand; the same feed is also
// read here with socket.io-client, and every ack and push is checked
// against /asyncapi.json (lib/clients.mjs). Neither the page nor any frame
// it receives may carry SDP, a candidate, a chat message or a concern.
// Skipped when Chromium is missing, unless CONSULTD_BROWSER_TESTS=required.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, REQUIRED, launch } from '../lib/demo.mjs';
import { emitAck, sleep, useConsultd } from '../lib/clients.mjs';
import { signHs256 } from '../lib/server.mjs';

const skip = !REQUIRED && !existsSync(CHROMIUM) ? `missing ${CHROMIUM}` : false;
const EVENTS = ['admin:snapshot', 'webrtc:offer', 'chat:new_message', 'session:status'];
const { client, api, token, url, secret } = useConsultd(EVENTS);
const shots = process.env.SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'consultd-admin-'));
mkdirSync(shots, { recursive: true });

// What must never reach an admin.
const SECRETS = ['SDP-SECRET-1', 'CANDIDATE-SECRET-2', 'CHAT-SECRET-3', 'CONCERN-SECRET-4'];
const XSS_ID = '<img src=x onerror="window.pwned=1">';

/** The admin page, logged in with `tok`; every WebSocket frame it receives is kept. */
async function adminPage(browser, tok) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 1500 } });
  const page = await context.newPage();
  const errors = [];
  const frames = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(String(f.payload))));
  const res = await page.goto(`${url()}/admin/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /script-src 'self'/);
  await page.fill('#token', tok);
  await page.click('#connect');
  return { page, errors, frames };
}

const ok = (r, status = 200) => {
  assert.equal(r.status, status, JSON.stringify(r.body));
  return r.body.data;
};
const cells = (page, selector) => page.$$eval(`${selector} td`, (tds) => tds.map((td) => td.textContent));

test('an admin watches a queue, a call, a tutoring request and a chat appear and go', { skip, timeout: 90_000 }, async (t) => {
  const browser = await launch();
  try {
    const admin = await adminPage(browser, token('ops-1', 'admin'));
    const { page } = admin;
    await page.waitForSelector('#status[data-state="live"]');
    await page.waitForSelector('#sockets tr[data-id="admin"]');
    await page.screenshot({ path: join(shots, 'admin-live-empty.png'), fullPage: true });

    // A queue: a doctor's schedule online, one patient ready, another waiting.
    const doctor = token('adm-d1', 'doctor', 'Dr Admin');
    const patient = token('adm-p1', 'patient', 'Pat');
    const second = token('adm-p2', 'patient', 'Sam');
    const today = new Date().toISOString().slice(0, 10);
    const sid = ok(await api('POST', '/api/schedules', doctor, { date: today, startTime: '08:00', endTime: '20:00' }), 201).id;
    ok(await api('POST', `/api/schedules/${sid}/start`, doctor));
    const entry = ok(await api('POST', `/api/schedules/${sid}/join-queue`, patient, {}), 201).id;
    ok(await api('POST', `/api/schedules/${sid}/join-queue`, second, {}), 201);
    ok(await api('POST', `/api/queue/${entry}/toggle-ready`, patient, { isReady: true }));
    await page.waitForSelector(`#schedules tr[data-id="${sid}"]`);
    await page.waitForFunction(
      (id) => [...document.querySelectorAll(`#schedules tr[data-id="${id}"] td`)].slice(3).map((td) => td.textContent).join() === 'ONLINE,1,1,0',
      sid,
    );

    // The call: invited, then confirmed; both join its room and signal.
    const call = ok(await api('POST', `/api/schedules/${sid}/start-call`, doctor, { patientId: 'adm-p1' }), 201);
    await page.waitForSelector(`#calls tr[data-id="${call.id}"]:has-text("INVITED")`);
    ok(await api('POST', `/api/call-sessions/${call.id}/confirm`, patient));
    await page.waitForSelector(`#calls tr[data-id="${call.id}"]:has-text("CONFIRMED")`);
    assert.deepEqual((await cells(page, `#calls tr[data-id="${call.id}"]`)).slice(1, 5), ['queue', 'CONFIRMED', 'adm-d1', 'adm-p1']);
    await page.waitForFunction(
      (id) => [...document.querySelectorAll(`#schedules tr[data-id="${id}"] td`)].slice(4).map((td) => td.textContent).join() === '1,0,1',
      sid,
    );
    const d = await client('v4', doctor, ['websocket']);
    const p = await client('v4', patient, ['websocket']);
    for (const c of [d, p]) assert.equal((await emitAck(c, 'webrtc:join_room', { roomId: call.roomId })).ok, true);
    await emitAck(d, 'webrtc:offer', { roomId: call.roomId, sdp: { type: 'offer', sdp: `v=0 ${SECRETS[0]}` } });
    await emitAck(d, 'webrtc:ice_candidate', { roomId: call.roomId, candidate: { candidate: `candidate:${SECRETS[1]}` } });
    assert.equal((await p.next('webrtc:offer')).sdp.sdp, `v=0 ${SECRETS[0]}`);
    await page.waitForSelector('#sockets tr[data-id="doctor"]');
    await page.waitForSelector('#sockets tr[data-id="patient"]');

    // A tutoring request, and a chat that goes live with a message in it.
    const learner = token('adm-l1', 'learner', 'Lee');
    const session = ok(await api('POST', '/api/sessions', learner, { host_id: 'adm-t1', skill_name: 'Piano' }), 201);
    await page.waitForSelector(`#tutoring tr[data-id="${session.id}"]`);
    const customer = token('adm-c1', 'customer', 'Cat');
    const mechanic = token('adm-m1', 'mechanic', 'Mo');
    const chat = ok(await api('POST', '/api/chat-sessions', customer, { concern: SECRETS[3] }), 201);
    await page.waitForSelector(`#chats tr[data-id="${chat.id}"]:has-text("pending")`);
    ok(await api('POST', `/api/chat-sessions/${chat.id}/accept`, mechanic));
    const c = await client('v4', customer, ['websocket']);
    const m = await client('v4', mechanic, ['websocket']);
    for (const x of [c, m]) assert.equal((await emitAck(x, 'chat:join_room', { roomId: chat.id })).ok, true);
    const sent = await emitAck(c, 'chat:send_message', { roomId: chat.id, content: SECRETS[2] });
    assert.equal(sent.ok, true);
    assert.equal((await m.next('chat:new_message')).content, SECRETS[2]);
    await page.waitForSelector(`#chats tr[data-id="${chat.id}"]:has-text("live")`);

    // A user id that looks like HTML is shown as text.
    const odd = token(XSS_ID, 'doctor');
    const oddSid = ok(await api('POST', '/api/schedules', odd, { date: today, startTime: '08:00', endTime: '09:00' }), 201).id;
    ok(await api('POST', `/api/schedules/${oddSid}/start`, odd));
    await page.waitForSelector(`#schedules tr[data-id="${oddSid}"]`);
    assert.equal((await cells(page, `#schedules tr[data-id="${oddSid}"]`))[1], XSS_ID);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.equal(await page.$$eval('#board img', (imgs) => imgs.length), 0);

    // Sockets by role, the latest transitions, the metrics.
    await page.waitForFunction(() => /call\.confirm/.test(document.querySelector('#transitions').textContent));
    for (const role of ['admin', 'doctor', 'patient', 'customer', 'mechanic']) {
      assert.equal((await cells(page, `#sockets tr[data-id="${role}"]`))[1], '1', role);
    }
    assert.equal(await page.$$eval('#metrics [data-metric]', (ms) => ms.length), 3);
    await page.screenshot({ path: join(shots, 'admin-live.png'), fullPage: true });

    // The same feed through socket.io-client (checked against /asyncapi.json).
    const watcher = await client('v4', token('ops-2', 'admin'), ['websocket']);
    const ack = await emitAck(watcher, 'admin:subscribe', {});
    assert.equal(ack.ok, true);
    assert.ok(ack.snapshot.board.calls.items.some((x) => x.id === call.id));
    const pushed = await watcher.next('admin:snapshot');
    assert.deepEqual(pushed.node.socketsByRole, { admin: 2, customer: 1, doctor: 1, mechanic: 1, patient: 1 });
    assert.equal(pushed.node.sockets, 6);

    // The call ends: it leaves the board; so does the chat.
    ok(await api('POST', `/api/call-sessions/${call.id}/end`, doctor));
    ok(await api('POST', `/api/chat-sessions/${chat.id}/end`, customer));
    await page.waitForSelector(`#calls tr[data-id="${call.id}"]`, { state: 'detached' });
    await page.waitForSelector(`#chats tr[data-id="${chat.id}"]`, { state: 'detached' });
    await page.waitForFunction(() => /call\.end/.test(document.querySelector('#transitions').textContent));
    await page.screenshot({ path: join(shots, 'admin-after-end.png'), fullPage: true });

    const seen = (await page.evaluate(() => document.body.innerText)) + admin.frames.join('\n');
    assert.ok(admin.frames.some((f) => f.startsWith('42["admin:snapshot"')), 'the page received pushes');
    for (const secret of SECRETS) assert.ok(!seen.includes(secret), `${secret} reached the admin view`);
    assert.deepEqual(admin.errors, []);
    for (const x of [d, p, c, m, watcher]) x.socket.disconnect();
    t.diagnostic(`screenshots: ${shots}`);
  } finally {
    await browser.close();
  }
});

test('a doctor, a patient and a bad token are refused and see nothing', { skip, timeout: 60_000 }, async () => {
  const browser = await launch();
  try {
    const refusals = [
      [token('adm-d9', 'doctor'), 'refused: forbidden', 'admin-refused-doctor.png'],
      [token('adm-p9', 'patient'), 'refused: forbidden', null],
      ['not-a-token', 'refused: unauthorized', 'admin-refused-bad-token.png'],
    ];
    // Something live to not be shown.
    ok(await api('POST', '/api/chat-sessions', token('adm-c9', 'customer'), { concern: SECRETS[3] }), 201);
    for (const [tok, text, shot] of refusals) {
      const { page, frames, errors } = await adminPage(browser, tok);
      await page.waitForSelector('#status[data-state="refused"]');
      assert.equal(await page.textContent('#status'), text);
      assert.equal(await page.isHidden('#board'), true);
      await sleep(2_500); // longer than one push interval
      assert.ok(!frames.some((f) => f.includes('admin:snapshot') || f.includes('"board"')), frames.join('\n'));
      assert.equal(await page.$$eval('#chats tbody tr', (rows) => rows.length), 0);
      assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
      if (shot) await page.screenshot({ path: join(shots, shot), fullPage: true });
      assert.deepEqual(errors, []);
      await page.context().close();
    }
    // And through socket.io-client: `forbidden`, then no push.
    const doctor = await client('v4', token('adm-d10', 'doctor'), ['websocket']);
    const ack = await emitAck(doctor, 'admin:subscribe', {});
    assert.equal(ack.error.code, 'forbidden');
    await sleep(2_500);
    assert.ok(!doctor.pending().includes('admin:snapshot'));
    doctor.socket.disconnect();
  } finally {
    await browser.close();
  }
});

test('the page is cut off when its token expires, and says so', { skip, timeout: 60_000 }, async () => {
  const browser = await launch();
  try {
    const exp = Math.floor(Date.now() / 1000) + 4;
    const short = signHs256({ sub: 'ops-short', role: 'admin', exp }, secret());
    const { page, errors } = await adminPage(browser, short);
    await page.waitForSelector('#status[data-state="live"]');
    // Disconnected at the first push after `exp`; the retry is refused.
    await page.waitForSelector('#status[data-state="refused"]', { timeout: 15_000 });
    assert.equal(await page.textContent('#status'), 'refused: token_expired');
    assert.ok(Date.now() / 1000 >= exp, 'not before the token expired');
    assert.equal(await page.isHidden('#board'), true);
    await page.screenshot({ path: join(shots, 'admin-token-expired.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
