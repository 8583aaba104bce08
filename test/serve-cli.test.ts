// `ctxsparse serve` as a process: it binds to 127.0.0.1, and SIGTERM lets the requests in flight
// finish before it exits (new ones are refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

test('serve: SIGTERM drains the request in flight, refuses new ones, exits 0', async () => {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'ctxsparse.js'), 'serve', '-m', 'smollm2-135m-instruct', '--port', '0', '--threads', '1', '--ctx', '256'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const base = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /at (http:\/\/127\.0\.0\.1:\d+)\/ \(playground\)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
      child.on('exit', () => reject(new Error(`serve exited early: ${stderr}`)));
    });
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'smollm2-135m-instruct', prompt: 'Once upon a time', max_tokens: 60, ignore_eos: true, stream: true, temperature: 0 }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = (await reader.read().then((r) => dec.decode(r.value)));
    child.kill('SIGTERM');
    // wait until the server has stopped accepting, then a new request must fail
    await new Promise((r) => setTimeout(r, 200));
    const refused = await fetch(`${base}/health`).then((r) => r.status, () => 'refused');
    assert.ok(refused === 'refused' || refused === 503, `new request after SIGTERM: ${refused}`);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: { text: string; finish_reason: string | null }[] });
    assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'length');
    assert.ok(chunks.filter((c) => c.choices[0]!.text !== '').length >= 55, 'the whole answer arrived');
    assert.equal(await exited, 0);
    assert.match(stderr, /SIGTERM: draining 1 active/);
  } finally {
    child.kill('SIGKILL');
  }
});

test('serve: bad flags and an unusable port are one-line errors with exit code 1', () => {
  const cli = join(ROOT, 'bin', 'ctxsparse.js');
  const stories = join(ROOT, '..', 'shared', 'models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf');
  for (const [args, msg] of [
    [['--parallel', '0'], /--parallel: expected an integer ≥ 1/],
    [['--port', '70000'], /--port: expected a port number/],
    [['--api-key', ''], /--api-key: the key must not be empty/],
  ] as const) {
    const r = spawnSync(process.execPath, [cli, 'serve', '-m', stories, '--threads', '1', ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, msg);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  }
});
