// The queue consultation's phases 7 to 9 as seed 001's app does them, with
// PeerJS, in two headless Chromium pages of the demo (`?media=peerjs`):
// each page opens `new Peer` on consultd's broker with a ticket, publishes
// its id with set-peer-id, the doctor calls the patient's id and the
// patient answers. With coturn here (CI installs it), the media is forced
// through TURN (`iceTransportPolicy: "relay"`) with credentials from
// `/api/ice-servers`: the call connecting proves they allocate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COTURN_MISSING, startCoturn } from '../lib/coturn.mjs';
import { DEMO_DIR, MISSING, expectVideo, launch, openPages, queueToCall, selectedPair, skip } from '../lib/demo.mjs';
import { startConsultd } from '../lib/server.mjs';

const TURN_REQUIRED = process.env.CONSULTD_TURN_TESTS === 'required';
const relay = TURN_REQUIRED || COTURN_MISSING.length === 0;

test(`doctor and patient hold a PeerJS call through consultd's broker${relay ? ', relayed by coturn' : ''}`, { skip, timeout: 120_000 }, async (t) => {
  assert.deepEqual(MISSING, [], 'CONSULTD_BROWSER_TESTS=required but something is missing');
  const shots = process.env.SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'consultd-demo-'));
  mkdirSync(shots, { recursive: true });
  const secret = 'browser-turn-secret';
  const turn = relay ? await startCoturn(secret) : null;
  const server = await startConsultd({
    DEMO: 'true',
    DEMO_DIR,
    ...(turn ? { TURN_URLS: `${turn.url}?transport=udp`, TURN_SECRET: secret } : {}),
  });
  const browser = await launch();
  let pages = {};
  try {
    pages = await openPages(browser, server, `&media=peerjs${turn ? '&relay=1' : ''}`);
    const doctor = pages.doctor.page;
    const patient = pages.patient.page;
    await queueToCall(doctor, patient, assert);

    for (const page of [doctor, patient]) {
      await expectVideo(page, assert);
      // The offer and answer went through the broker: PeerJS, not webrtc:*.
      assert.ok(await page.evaluate(() => window.consultdDemo.peer.open), 'the Peer is open on consultd');
      if (turn) assert.deepEqual(await selectedPair(page), { local: 'relay', remote: 'relay' });
    }
    // Phase 8 left both ids on the call, and they are the pages' own.
    const ids = await Promise.all([doctor, patient].map((p) => p.evaluate(() => window.consultdDemo.peer.id)));
    const call = await doctor.evaluate(() => window.consultdDemo.call.id);
    const token = await doctor.evaluate(() => window.consultdDemo.token);
    const read = await (await fetch(`${server.url}/api/call-sessions/${call}`, { headers: { authorization: `Bearer ${token}` } })).json();
    assert.deepEqual([read.data.doctorPeerId, read.data.patientPeerId], ids);
    await doctor.screenshot({ path: join(shots, 'doctor-peerjs-call.png') });
    await patient.screenshot({ path: join(shots, 'patient-peerjs-call.png') });

    // call_ended closes it on both sides: the media, and the Peer.
    await doctor.click('#end-call');
    for (const page of [doctor, patient]) {
      await page.waitForSelector('#call-state[data-state="ended"]');
      assert.equal(await page.evaluate(() => window.consultdDemo.peer), null);
    }
    for (const role of ['doctor', 'patient']) assert.deepEqual(pages[role].errors, [], `${role} page errors`);
    t.diagnostic(`screenshots: ${shots}`);
  } finally {
    await browser.close();
    await server.stop();
    await turn?.stop();
  }
});
