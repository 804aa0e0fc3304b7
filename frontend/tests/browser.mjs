// Starts Debian's Chromium through playwright-core (no browser download) with a fresh profile, and opens
// the Attributions tab of a TensorBoard.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export const TAB_ID = 'tb_xai';

/** A browser with a fresh profile; close() stops it and removes the profile. */
export async function launch({ width = 1280, height = 900 } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-xai-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    viewport: { width, height },
    acceptDownloads: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Opens the tab at `baseUrl` (with an optional hash suffix) and returns the tab's iframe. */
export async function openTab(page, baseUrl, hashSuffix = '') {
  await page.goto(`${baseUrl.replace(/\/$/, '')}/#${TAB_ID}${hashSuffix}`);
  return tabFrame(page);
}

/** The tab's iframe once its module has rendered. */
export async function tabFrame(page) {
  const handle = await page.waitForSelector(`iframe#plugin-iframe-${TAB_ID}, iframe[src*="name=${TAB_ID}"]`, { timeout: 30000 });
  const frame = await handle.contentFrame();
  await frame.waitForSelector('main.tb-xai', { timeout: 30000 });
  return frame;
}
