// The browser demo (examples/web, served by `consultd --demo`) in Debian's
// headless Chromium: a doctor and a patient, each in their own browser
// context, go through the queue consultation app's flow by clicking, then hold a real WebRTC
// call through consultd's signaling with Chromium's fake camera, then end it.
// Skipped when Chromium or the demo's `npm ci` is missing, unless
// CONSULTD_BROWSER_TESTS=required (`.ci/run` sets it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startConsultd } from '../lib/server.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const DEMO_DIR = resolve(import.meta.dirname, '../../examples/web');
const BUNDLE = join(DEMO_DIR, 'node_modules/socket.io-client/dist/socket.io.min.js');
const REQUIRED = process.env.CONSULTD_BROWSER_TESTS === 'required';

const missing = [
  existsSync(CHROMIUM) ? null : `${CHROMIUM} (apt-get install chromium)`,
  existsSync(BUNDLE) ? null : `${BUNDLE} (npm ci in examples/web)`,
].filter(Boolean);

const skip = !REQUIRED && missing.length > 0 ? `missing ${missing.join(', ')}` : false;

test('doctor and patient hold a WebRTC call in Chromium through consultd', { skip, timeout: 120_000 }, async (t) => {
  assert.deepEqual(missing, [], 'CONSULTD_BROWSER_TESTS=required but something is missing');
  const { chromium } = await import('playwright-core');
  const shots = process.env.SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'consultd-demo-'));
  mkdirSync(shots, { recursive: true });
  console.log(`# screenshots of the demo go to ${shots}`);

  const server = await startConsultd({ DEMO: 'true', DEMO_DIR });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-background-networking',
    ],
  });
  const pages = {};
  try {
    for (const role of ['patient', 'doctor']) {
      const context = await browser.newContext({ viewport: { width: 1000, height: 1100 } });
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${server.url}/demo/?role=${role}`);
      pages[role] = { page, errors };
    }
    const doctor = pages.doctor.page;
    const patient = pages.patient.page;

    // The patient is online first and hears the doctor start the practice.
    await patient.fill('#name', 'Pat Browser');
    await patient.click('#go-online');
    await patient.waitForSelector('#connection[data-state="online"]');
    await doctor.fill('#name', 'Dr Browser');
    await doctor.click('#go-online');
    await doctor.waitForSelector('#connection[data-state="online"]');

    await patient.click('.join-queue');
    await doctor.waitForSelector('#queue li:has-text("Pat Browser — WAITING")');
    await patient.check('#ready');
    await doctor.click('#queue button.invite');
    await patient.waitForSelector('#invitation:not([hidden])');
    assert.match(await patient.textContent('#invitation-text'), /Dr Browser is calling you/);
    await patient.click('#accept');

    for (const page of [doctor, patient]) {
      await page.waitForSelector('#call-state[data-state="connected"]', { timeout: 30_000 });
      assert.match(await iceState(page), /^(connected|completed)$/);
      await page.waitForFunction(() => Number(document.getElementById('frames').textContent) > 0, null, {
        timeout: 30_000,
      });
      assert.ok((await inboundVideoFrames(page)) > 0, 'inbound video frames');
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

const iceState = (page) => page.evaluate(() => window.consultdDemo.pc.iceConnectionState);

/** Frames of video decoded from the other side, straight from the peer connection's stats. */
const inboundVideoFrames = (page) =>
  page.evaluate(async () => {
    const stats = await window.consultdDemo.pc.getStats();
    let frames = 0;
    for (const r of stats.values()) if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded ?? 0;
    return frames;
  });
