// Driving the browser demo (examples/web) in Debian's headless Chromium:
// shared by the Socket.IO-signaling and the PeerJS browser tests.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const DEMO_DIR = resolve(import.meta.dirname, '../../examples/web');
const BUNDLES = ['socket.io-client/dist/socket.io.min.js', 'peerjs/dist/peerjs.min.js'].map((b) =>
  join(DEMO_DIR, 'node_modules', b),
);
export const REQUIRED = process.env.CONSULTD_BROWSER_TESTS === 'required';

/** What the browser tests need and this machine lacks. */
export const MISSING = [
  existsSync(CHROMIUM) ? null : `${CHROMIUM} (apt-get install chromium)`,
  ...BUNDLES.map((b) => (existsSync(b) ? null : `${b} (npm ci in examples/web)`)),
].filter(Boolean);

export const skip = !REQUIRED && MISSING.length > 0 ? `missing ${MISSING.join(', ')}` : false;

export async function launch() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
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
}

/** The patient's and the doctor's pages, each in its own browser context. */
export async function openPages(browser, server, query = '') {
  const pages = {};
  for (const role of ['patient', 'doctor']) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 1100 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/demo/?role=${role}${query}`);
    pages[role] = { page, errors };
  }
  return pages;
}

/** Phases 1 to 6 by clicking: online, queue, ready, invite, accept. */
export async function queueToCall(doctor, patient, assert) {
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
}

/** The call is connected on `page` and decodes the other side's video. */
export async function expectVideo(page, assert) {
  await page.waitForSelector('#call-state[data-state="connected"]', { timeout: 30_000 });
  assert.match(await iceState(page), /^(connected|completed)$/);
  await page.waitForFunction(() => Number(document.getElementById('frames').textContent) > 0, null, {
    timeout: 30_000,
  });
  assert.ok((await inboundVideoFrames(page)) > 0, 'inbound video frames');
}

export const iceState = (page) => page.evaluate(() => window.consultdDemo.pc.iceConnectionState);

/** Frames of video decoded from the other side, straight from the peer connection's stats. */
export const inboundVideoFrames = (page) =>
  page.evaluate(async () => {
    const stats = await window.consultdDemo.pc.getStats();
    let frames = 0;
    for (const r of stats.values()) if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded ?? 0;
    return frames;
  });

/** The local and remote candidate types of the pair the connection uses. */
export const selectedPair = (page) =>
  page.evaluate(async () => {
    const stats = await window.consultdDemo.pc.getStats();
    for (const r of stats.values()) {
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        const pair = stats.get(r.selectedCandidatePairId);
        return { local: stats.get(pair.localCandidateId)?.candidateType, remote: stats.get(pair.remoteCandidateId)?.candidateType };
      }
    }
    return null;
  });
