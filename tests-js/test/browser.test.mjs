// The browser demo (examples/web, served by `consultd --demo`) in Debian's
// headless Chromium: a doctor and a patient, each in their own browser
// context, go through the queue consultation app's flow by clicking, then hold a real WebRTC
// call through consultd's signaling with Chromium's fake camera, then end it.
// Skipped when Chromium or the demo's `npm ci` is missing, unless
// CONSULTD_BROWSER_TESTS=required (`.ci/run` sets it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO_DIR, MISSING, expectVideo, launch, openPages, queueToCall, skip } from '../lib/demo.mjs';
import { startConsultd } from '../lib/server.mjs';

test('doctor and patient hold a WebRTC call in Chromium through consultd', { skip, timeout: 120_000 }, async (t) => {
  assert.deepEqual(MISSING, [], 'CONSULTD_BROWSER_TESTS=required but something is missing');
  const shots = process.env.SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'consultd-demo-'));
  mkdirSync(shots, { recursive: true });
  console.log(`# screenshots of the demo go to ${shots}`);

  const server = await startConsultd({ DEMO: 'true', DEMO_DIR });
  const browser = await launch();
  let pages = {};
  try {
    pages = await openPages(browser, server);
    const doctor = pages.doctor.page;
    const patient = pages.patient.page;
    await queueToCall(doctor, patient, assert);

    for (const page of [doctor, patient]) {
      await expectVideo(page, assert);
    }
    await doctor.screenshot({ path: join(shots, 'doctor-in-call.png') });
    await patient.screenshot({ path: join(shots, 'patient-in-call.png') });
    // The toggles act on the local tracks.
    await doctor.click('#toggle-mic');
    assert.equal(await doctor.textContent('#toggle-mic'), 'Unmute microphone');
    assert.equal(await doctor.evaluate(() => window.consultdDemo.local.getAudioTracks()[0].enabled), false);
    await doctor.click('#toggle-camera');
    assert.equal(await doctor.textContent('#toggle-camera'), 'Turn camera on');
    assert.equal(await doctor.evaluate(() => window.consultdDemo.local.getVideoTracks()[0].enabled), false);
    await doctor.click('#toggle-camera');
    assert.equal(await doctor.evaluate(() => window.consultdDemo.local.getVideoTracks()[0].enabled), true);

    await patient.click('#end-call');
    for (const page of [doctor, patient]) {
      await page.waitForSelector('#call-state[data-state="ended"]');
      assert.equal(await page.evaluate(() => window.consultdDemo.pc), null);
    }
    await doctor.screenshot({ path: join(shots, 'doctor-ended.png') });
    await patient.screenshot({ path: join(shots, 'patient-ended.png') });
    for (const role of ['doctor', 'patient']) assert.deepEqual(pages[role].errors, [], `${role} page errors`);
    t.diagnostic(`screenshots: ${shots}`);
  } finally {
    await browser.close();
    await server.stop();
  }
});
