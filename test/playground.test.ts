// The playground in a real browser: Debian's headless Chromium driven by puppeteer-core (which
// never downloads a browser). A message is sent and the answer streams into the page.
// CTXSPARSE_SCREENSHOT=docs/playground.png also saves a screenshot there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import puppeteer from 'puppeteer-core';
import { loadModel } from '../src/model/load.js';
import { createWasmKernels } from '../src/kernels/wasm/index.js';
import { chatPromptIds } from '../src/generate/chat.js';
import { Session } from '../src/generate/session.js';
import { Server } from '../src/serve/server.js';
import { catalogModel } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

test('playground: a message sent in Chromium gets a streamed answer; live figures update', async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium (.ci/run does)`);
  const kernels = createWasmKernels({ threads: 1 });
  const model = loadModel(catalogModel('smollm2-135m-instruct'), { kernels });
  const server = new Server({ model, modelId: 'smollm2-135m-instruct', parallel: 2, ctx: 1024 });
  const { port } = await server.listen(0, '127.0.0.1');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 760 });
    await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'load' });
    await page.waitForFunction(() => document.getElementById('model')!.textContent === 'smollm2-135m-instruct');
    // greedy, so the page's answer can be checked against the engine's
    await page.$eval('#temperature', (e) => { (e as HTMLInputElement).value = '0'; });
    await page.$eval('#max_tokens', (e) => { (e as HTMLInputElement).value = '40'; });
    // count how often the answer's text changes while it streams
    await page.evaluate(() => {
      const w = window as unknown as { updates: number };
      w.updates = 0;
      new MutationObserver(() => { w.updates++; }).observe(document.getElementById('log')!, { subtree: true, childList: true, characterData: true });
    });
    const question = 'Write one sentence about the sea.';
    await page.type('#input', question);
    await page.keyboard.press('Enter');
    await page.waitForSelector('.msg.assistant[data-state="done"]', { timeout: 60_000 });
    const answer = await page.$eval('.msg.assistant', (e) => e.firstChild!.textContent!);
    const updates = await page.evaluate(() => (window as unknown as { updates: number }).updates);
    let expected = '';
    for (const ev of new Session(model, { ctx: 1024 }).generate(chatPromptIds(model, [{ role: 'user', content: question }]), { temperature: 0, maxTokens: 40 })) expected += ev.text;
    assert.equal(answer, expected);
    assert.ok(updates > 5, `the answer arrived in pieces (${updates} updates)`);
    assert.match(await page.$eval('#tps', (e) => e.textContent!), /^\d+(\.\d)?$/);
    // the server figures are polled from /metrics every second
    await page.waitForFunction(() => /^\d+ \/ 2$/.test(document.getElementById('s_active')!.textContent!), { timeout: 5000 });
    await page.waitForFunction(() => document.getElementById('s_density')!.textContent === '1.000', { timeout: 5000 });
    if (process.env.CTXSPARSE_SCREENSHOT) await page.screenshot({ path: process.env.CTXSPARSE_SCREENSHOT as `${string}.png` });
  } finally {
    await browser.close();
    server.http.closeAllConnections();
    await new Promise((r) => server.http.close(r));
    kernels.close();
  }
});
