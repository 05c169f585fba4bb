// The page of `efea serve` in headless Chromium: upload a photo, check the faces drawn on the
// canvas and listed beside it, save a screenshot. Run by run.sh, which starts the server and
// sets EFEA_URL, EFEA_IMAGE and EFEA_SCREENSHOT.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.EFEA_URL;
const image = process.env.EFEA_IMAGE;
const screenshot = process.env.EFEA_SCREENSHOT;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
assert.ok(url && image, 'EFEA_URL and EFEA_IMAGE must be set (use run.sh)');

let context;
let userDataDir;

before(async () => {
  userDataDir = mkdtempSync(path.join(tmpdir(), 'efea-e2e-profile-'));
  // A persistent context is the way to hand Chromium its own fresh --user-data-dir.
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // A synthetic camera (a moving test pattern) that needs no permission prompt.
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
    ],
    viewport: { width: 1280, height: 860 },
  });
});

after(async () => {
  await context?.close();
  rmSync(userDataDir, { recursive: true, force: true });
});

// A page that records every request leaving the server and every script error.
async function openPage() {
  const page = await context.newPage();
  const outside = [];
  const errors = [];
  page.on('request', (request) => {
    const target = request.url();
    if (!target.startsWith(url) && !target.startsWith('data:') && !target.startsWith('blob:')) {
      outside.push(target);
    }
  });
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('model').textContent.startsWith('model '));
  return { page, outside, errors };
}

async function upload(page, file) {
  await page.evaluate(() => {
    document.body.dataset.state = 'idle';
  });
  await page.setInputFiles('#file', file);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, {
    timeout: 180_000,
  });
  return page.evaluate(() => document.body.dataset.state);
}

function rgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

test('an uploaded photo comes back with its faces boxed, labelled and charted', async () => {
  const { page, outside, errors } = await openPage();
  const state = await upload(page, image);
  assert.equal(state, 'done', await page.textContent('#error'));

  const result = await page.evaluate(() => window.efea.last);
  const faces = result.faces.length;
  assert.ok(faces >= 20, `${faces} faces found in the group photo`);
  assert.equal(await page.getAttribute('#canvas', 'data-faces'), String(faces));
  // One card per face, one bar per class on each.
  assert.equal(await page.locator('#faces .face').count(), faces);
  const classes = await page.evaluate(() => window.efea.classes);
  assert.equal(await page.locator('#faces .face').first().locator('.bar').count(), classes.length);

  // The canvas holds the photo at its own size, and each box is stroked in its label's colour.
  const drawn = await page.evaluate(() => {
    const canvas = document.getElementById('canvas');
    const ctx = canvas.getContext('2d');
    const { faces } = window.efea.last;
    return {
      width: canvas.width,
      height: canvas.height,
      boxes: faces.map((face) => {
        const b = face.box;
        const line = Math.max(2, Math.round(b.width / 40));
        // Middle of the left and right edges of the stroke, outside the face (a neighbour's
        // label may cover one of them).
        const at = (x) => Array.from(ctx.getImageData(x, b.y + b.height / 2, 1, 1).data.slice(0, 3));
        const half = Math.ceil(line / 2);
        return { label: face.label, pixels: [at(b.x - half), at(b.x + b.width + half - 1)] };
      }),
    };
  });
  assert.deepEqual([drawn.width, drawn.height], [result.width, result.height]);
  const colors = await page.evaluate(() => window.efea.colors);
  for (const box of drawn.boxes) {
    const expected = rgb(colors[classes.indexOf(box.label) % colors.length]);
    const hit = box.pixels.some((p) => p.every((v, i) => v === expected[i]));
    assert.ok(hit, `box of a ${box.label} face: ${JSON.stringify(box.pixels)} vs ${expected}`);
  }
  const status = await page.textContent('#status');
  assert.match(status, new RegExp(`^${faces} faces in \\d+ ms`));

  assert.deepEqual(outside, [], 'the page loads nothing from elsewhere');
  assert.deepEqual(errors, []);
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: false });
  }
  await page.close();
});

test('Grad-CAM overlays come with the answer when asked for', async () => {
  const { page, errors } = await openPage();
  await page.check('#cam');
  const state = await upload(page, image);
  assert.equal(state, 'done', await page.textContent('#error'));
  const cams = await page.evaluate(() => window.efea.last.faces.map((f) => typeof f.cam));
  assert.ok(cams.length > 0 && cams.every((t) => t === 'string'));
  assert.match(await page.textContent('#status'), /Grad-CAM \d+/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a file that is not an image shows the server error, and the page recovers', async () => {
  const { page } = await openPage();
  const notImage = path.join(userDataDir, 'notes.txt');
  writeFileSync(notImage, 'this is not a photo\n');
  assert.equal(await upload(page, notImage), 'error');
  assert.match(await page.textContent('#error'), /not an image/);
  assert.equal(await upload(page, image), 'done');
  assert.equal(await page.isHidden('#error'), true);
  await page.close();
});

test('the webcam sends frames a few times a second until it is stopped', async () => {
  const { page, outside, errors } = await openPage();
  const frames = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().endsWith('/v1/predict')) {
      frames.push(Date.now());
    }
  });
  await page.evaluate(() => {
    document.body.dataset.state = 'idle';
  });
  await page.click('#webcam');
  await page.waitForFunction(
    () => document.getElementById('webcam').textContent === 'Stop webcam' || !document.getElementById('error').hidden,
    null,
    { timeout: 30_000 },
  );
  assert.equal(await page.textContent('#webcam'), 'Stop webcam', await page.textContent('#error'));
  // Three answered frames: the loop runs, not just its first tick.
  await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 60_000 });
  const deadline = Date.now() + 30_000;
  while (frames.length < 3 && Date.now() < deadline) {
    await page.waitForTimeout(100);
  }
  assert.ok(frames.length >= 3, `${frames.length} frames in 30 s`);
  const last = await page.evaluate(() => window.efea.last);
  assert.ok(Array.isArray(last.faces), JSON.stringify(last));
  await page.click('#webcam');
  assert.equal(await page.textContent('#webcam'), 'Start webcam');
  const stoppedAt = frames.length;
  await page.waitForTimeout(1500);
  assert.ok(frames.length <= stoppedAt + 1, `frames kept coming after stop: ${frames.length - stoppedAt}`);
  assert.equal(await page.isHidden('#error'), true, await page.textContent('#error'));
  assert.deepEqual(outside, []);
  assert.deepEqual(errors, []);
  await page.close();
});
