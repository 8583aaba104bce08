// `ctxsparse bench`: the JSON contract and flag errors, on the tiny stories260K model (fast; no timing assertions).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { kvCacheBytes, stats } from '../src/bench/bench.js';
import { loadModel } from '../src/model/load.js';
import { ROOT, sharedPath } from './helpers.js';

const CLI = join(ROOT, 'bin', 'ctxsparse.js');
const GGUF = sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf');
const BIN = sharedPath('models', 'stories260K', 'stories260K.bin');

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, 'bench', ...args], { encoding: 'utf8' });
}

function positiveFinite(x: unknown, what: string): void {
  assert.ok(typeof x === 'number' && Number.isFinite(x) && x > 0, `${what}: ${String(x)}`);
}

test('bench --json: model, sizes, one pp and one tg result per thread count, positive finite rates', () => {
  const r = cli('-m', GGUF, '-p', '8', '-n', '4', '-r', '2', '--threads', '1,2', '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no progress output when stderr is not a terminal');
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'one JSON object on one line');
  const j = JSON.parse(lines[0]!);
  assert.equal(j.model, 'stories260K-Q8_0');
  assert.equal(j.path, GGUF);
  assert.equal(j.file_bytes, statSync(GGUF).size);
  assert.equal(typeof j.kernels, 'string');
  assert.ok(j.kernels.length > 0);
  positiveFinite(j.peak_rss_bytes, 'peak_rss_bytes');
  assert.equal(j.n_ctx, 12);
  // stories260K: 5 layers, 4 kv heads of 8 → 5 × 12 × (32 + 32) × 4 bytes
  assert.equal(j.kv_cache_bytes, 5 * 12 * 64 * 4);

  assert.deepEqual(j.results.map((x: { threads: number; test: string }) => `${x.threads}:${x.test}`), ['1:pp8', '1:tg4', '2:pp8', '2:tg4']);
  for (const x of j.results) {
    assert.equal(x.reps, 2);
    assert.deepEqual([x.n_prompt, x.n_gen], x.test === 'pp8' ? [8, 0] : [0, 4]);
    const ts = x.tokens_per_second;
    assert.equal(ts.samples.length, 2);
    for (const s of ts.samples) positiveFinite(s, `${x.test} sample`);
    positiveFinite(ts.mean, `${x.test} mean`);
    assert.ok(Number.isFinite(ts.stdev) && ts.stdev >= 0, `${x.test} stdev ${ts.stdev}`);
    assert.ok(Math.abs(ts.mean - (ts.samples[0] + ts.samples[1]) / 2) <= 1e-9 * ts.mean, 'mean of the samples');
    positiveFinite(x.peak_rss_bytes, 'result peak_rss_bytes');
    assert.ok(x.peak_rss_bytes <= j.peak_rss_bytes, 'a high-water mark only grows');
  }
  assert.deepEqual(j.loads.map((l: { threads: number }) => l.threads), [1, 2]);
});

test('bench: -p 0 or -n 0 skips that test; the table names model, threads and tests', () => {
  const tg = JSON.parse(cli('-m', GGUF, '-p', '0', '-n', '3', '-r', '1', '--threads', '1', '--json').stdout);
  assert.deepEqual(tg.results.map((x: { test: string }) => x.test), ['tg3']);
  const pp = JSON.parse(cli('-m', GGUF, '-p', '5', '-n', '0', '-r', '1', '--threads', '1', '--json').stdout);
  assert.deepEqual(pp.results.map((x: { test: string }) => x.test), ['pp5']);

  const r = cli('-m', BIN, '-p', '8', '-n', '4', '-r', '1', '--threads', '1');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\| model .*\| threads \| test \|/);
  assert.match(r.stdout, /stories260K .*\| +1 \| +pp8 \| +[\d.]+ ± [\d.]+ \|/);
  assert.match(r.stdout, /\| +tg4 \|/);
  assert.match(r.stdout, /peak RSS [\d.]+ MB/);
});

test('bench: bad flags give one line on stderr and exit 1', () => {
  const bad: [string[], RegExp][] = [
    [['--threads', '0'], /--threads/],
    [['--threads', '1,,2'], /--threads/],
    [['--threads', 'two'], /--threads/],
    [['-p', '-1'], /--n-prompt/],
    [['-n', '2.5'], /--n-gen/],
    [['-r', '0'], /--repetitions/],
    [['-b', '0'], /--batch/],
    [['-p', '0', '-n', '0'], /nothing to measure/],
  ];
  for (const [args, re] of bad) {
    const r = cli('-m', GGUF, ...args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0]!, /^error: /);
    assert.match(lines[0]!, re);
  }
  const missing = cli('-m', '/no/such/model.gguf', '-r', '1');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^error: model file not found/);
});

test('bench library: stats as llama-bench, KV cache bytes match the cache object', () => {
  const s = stats([1, 2, 3, 4]);
  assert.equal(s.mean, 2.5);
  assert.ok(Math.abs(s.stdev - Math.sqrt(5 / 3)) < 1e-12);
  assert.equal(stats([7]).stdev, 0);
  const model = loadModel(GGUF);
  assert.equal(kvCacheBytes(model.config, 40), model.createCache(40).bytes);
});
