// The training-free sparsity methods on stories260K (fast): calibration thresholds hit their
// levels on the calibration data, the policies realize them on held-out text, level 0 is exactly
// dense, profiles round-trip and refuse bad input, and the CLI runs calibrate → perplexity.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { perplexity } from '../src/eval/perplexity.js';
import { CtxError } from '../src/errors.js';
import { loadModel, type Model } from '../src/model/load.js';
import type { TapName } from '../src/model/forward.js';
import { calibrate, calibrationChunks, EVAL_CHUNKS, EVAL_CTX, type CalibrateOptions } from '../src/sparsity/calibrate.js';
import { Histogram } from '../src/sparsity/histogram.js';
import { fromProfile, linearParams, type MeasuredPolicy } from '../src/sparsity/index.js';
import { checkProfileModel, loadProfile, METHOD_SITES, profileJSON, saveProfile, type Allocation, type Method, type Profile } from '../src/sparsity/profile.js';
import { mulberry32, ROOT, sharedPath } from './helpers.js';

const F32 = sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf');
const Q8 = sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf');
const STORIES = sharedPath('eval', 'tinystories', 'tinystories_val_prefix.txt');
const WIKI = sharedPath('eval', 'wikitext-2-raw', 'wiki.test.raw');
const CLI = join(ROOT, 'bin', 'ctxsparse.js');
const text = readFileSync(STORIES, 'utf8');
// one thread: the model is tiny, and spinning worker threads fare badly on a busy machine
const model = loadModel(F32, { threads: 1 });
const tmp = mkdtempSync(join(tmpdir(), 'ctxsparse-sparsity-'));

// calibrate on tokens 8192.. of the stories text; the first 8192 are held out
const SKIP = 8192;
const base: Omit<CalibrateOptions, 'method' | 'sparsity'> = { text, dataName: 'tinystories_val_prefix.txt', skipTokens: SKIP, tokens: 4096, samples: 64 };
const profiles = new Map<string, Profile>();
let densePpl: number | undefined;
function profile(method: Method, sparsity: number, allocation: Allocation = 'uniform'): Profile {
  const key = `${method}/${sparsity}/${allocation}`;
  let p = profiles.get(key);
  if (!p) profiles.set(key, (p = calibrate(model, { ...base, method, sparsity, allocation })));
  return p;
}

/** Parameter-weighted mean level of one layer's TEAL/WINA sites. */
function meanLevelOf(e: Profile['layers'][number]): number {
  const p = linearParams(model.config);
  const w = { attn_in: p.q + p.k + p.v, attn_out: p.o, ffn_in: p.gate + p.up, ffn_down: p.down } as const;
  let s = 0;
  let t = 0;
  for (const [k, v] of Object.entries(w)) {
    s += v * e[k as keyof typeof w]!.level;
    t += v;
  }
  return s / t;
}

/** Run the dense model over the calibration chunks and ask `policy` at every site (without applying it). */
function densityOnCalibration(m: Model, p: Profile, policy: MeasuredPolicy): void {
  const tok = m.tokenizer;
  const chunks = calibrationChunks(tok.encode(text, { parseSpecial: false }), SKIP, p.calibration.tokens, p.calibration.chunk, tok.addBosDefault ? tok.bos : undefined);
  const f = m.createForward(64);
  const kv = m.createCache(p.calibration.chunk);
  const ask: Partial<Record<TapName, (l: number, x: Float32Array) => void>> = {
    attn_in: (l, x) => { policy.inputChannels(l, 'attn_in', x); policy.inputChannels(l, 'attn_q', x); },
    attn_out: (l, x) => policy.inputChannels(l, 'attn_out', x),
    ffn_in: (l, x) => policy.inputChannels(l, 'ffn_in', x),
    ffn_act: (l, x) => policy.inputChannels(l, 'ffn_down', x),
    ffn_gate_act: (l, x) => policy.neurons(l, x),
  };
  f.tap = (name, layer, data, rows, width) => {
    const fn = ask[name];
    if (fn) for (let r = 0; r < rows; r++) fn(layer, data.slice(r * width, (r + 1) * width));
  };
  for (const ch of chunks) {
    kv.truncate(0);
    f.run(kv, ch, 0, 'none');
  }
}

test('histogram quantiles are accurate to the bin width', () => {
  const rnd = mulberry32(7);
  const xs = Float32Array.from({ length: 100_000 }, () => (rnd() - 0.5) * Math.exp(6 * rnd() - 3));
  const h = new Histogram();
  h.add(xs, 0, xs.length);
  const sorted = Float32Array.from(xs, Math.abs).sort();
  for (const q of [0.1, 0.25, 0.5, 0.9, 0.99]) {
    const exact = sorted[Math.floor(q * sorted.length)]!;
    assert.ok(Math.abs(h.quantile(q) - exact) <= 0.005 * exact, `q ${q}: ${h.quantile(q)} vs ${exact}`);
  }
});

for (const method of ['teal', 'wina', 'cats', 'chess'] as const) {
  test(`${method}: uniform 0.5 thresholds drop half of each site on the calibration data, and about half on held-out text`, () => {
    const p = profile(method, 0.5);
    assert.equal(p.calibration.tokens, 4096);
    assert.equal(p.calibration.skip_tokens, SKIP);
    const policy = fromProfile(p, model);
    densityOnCalibration(model, p, policy);
    const cal = policy.realized();
    for (const site of METHOD_SITES[method]) {
      const d = cal.sites[site];
      assert.ok(d !== undefined && Math.abs(d - 0.5) <= (method === 'chess' && site === 'ffn_neurons' ? 0.03 : 0.01), `${site}: density ${d} on the calibration data`);
    }
    // held out: the first 8192 tokens, the sparse model run on them
    const held = fromProfile(p, model);
    const r = perplexity(model, text, { ctx: 128, chunks: 20, policy: held });
    const real = held.realized();
    for (const site of METHOD_SITES[method]) {
      const d = real.sites[site]!;
      assert.ok(Math.abs(d - 0.5) <= 0.1, `${site}: density ${d} on held-out text`);
    }
    assert.ok(Math.abs(real.linear - (1 - p.mean_level)) <= 0.08, `linear density ${real.linear}, mean level ${p.mean_level}`);
    const dense = (densePpl ??= perplexity(model, text, { ctx: 128, chunks: 20 }).ppl);
    assert.ok(r.ppl > dense * 0.98 && r.ppl < dense * 3, `ppl ${r.ppl} vs dense ${dense}`);
  });
}

for (const method of ['teal', 'wina'] as const) {
  test(`${method}: greedy allocation reaches the target mean level with uneven levels and realizes it on the calibration data`, () => {
    const p = profile(method, 0.5, 'greedy');
    assert.equal(p.allocation, 'greedy');
    assert.ok(Math.abs(p.mean_level - 0.5) <= 0.01, `mean level ${p.mean_level}`);
    const levels = p.layers.flatMap((e) => Object.values(e).map((s) => s!.level));
    assert.ok(Math.max(...levels) - Math.min(...levels) >= 0.05, `levels ${levels.join(' ')}`);
    const policy = fromProfile(p, model);
    densityOnCalibration(model, p, policy);
    assert.ok(Math.abs(policy.realized().linear - 0.5) <= 0.02, `linear density on calibration ${policy.realized().linear}`);
    // block-wise: every layer at the target
    const pl = profile(method, 0.5, 'greedy-layer');
    for (const [l, e] of pl.layers.entries()) {
      const mean = meanLevelOf(e);
      assert.ok(Math.abs(mean - 0.5) <= 0.02, `greedy-layer: layer ${l} mean level ${mean}`);
    }
    // (greedy is not better than uniform on stories260K's held-out perplexity: see the notes)
    const g = perplexity(model, text, { ctx: 128, chunks: 20, policy: fromProfile(p, model) }).ppl;
    assert.ok(Number.isFinite(g) && g < 30, `greedy ${g}`);
  });
}

test('at level 0 every method is exactly dense; at sparsity 0.001 the logits barely move', () => {
  const ids = model.tokenizer.encode(text.slice(0, 2000)).slice(0, 200);
  const run = (policy?: MeasuredPolicy): Float32Array => {
    const f = model.createForward(32);
    if (policy) f.policy = policy;
    return Float32Array.from(f.run(model.createCache(256), ids, 0, 'all')!);
  };
  const dense = run();
  for (const method of ['teal', 'wina', 'cats', 'chess'] as const) {
    const p = profile(method, 0.5);
    const zero: Profile = { ...p, layers: p.layers.map((e) => Object.fromEntries(Object.entries(e).map(([k, v]) => [k, { ...v!, level: 0 }]))) };
    const pol = fromProfile(zero, model);
    assert.deepEqual(run(pol), dense, `${method} at level 0`);
    assert.equal(pol.realized().linear, 1);
    const tiny = calibrate(model, { ...base, method, sparsity: 0.001 });
    const out = run(fromProfile(tiny, model));
    let m = 0;
    for (let i = 0; i < dense.length; i++) m = Math.max(m, Math.abs(out[i]! - dense[i]!));
    assert.ok(m < 0.05, `${method} at 0.001: max logit difference ${m}`);
  }
});

test('profiles round-trip through JSON; bad profiles are refused with the file and field named', () => {
  const p = profile('chess', 0.5);
  const file = join(tmp, 'chess.json');
  saveProfile(p, file);
  const back = loadProfile(file);
  assert.equal(profileJSON(back), readFileSync(file, 'utf8'));
  assert.equal(back.method, 'chess');
  assert.equal(back.layers[0]!.ffn_neurons!.channel_scale!.length, model.config.ffnDim);
  checkProfileModel(back, file, model);
  // another model file (same weights, other quantization): refused by sha256
  const q8 = loadModel(Q8, { threads: 1 });
  assert.throws(() => checkProfileModel(back, file, q8), (e: Error) => e instanceof CtxError && /calibrated for .*sha256/.test(e.message));

  const bad = (name: string, content: string, re: RegExp) => {
    const f = join(tmp, name);
    writeFileSync(f, content);
    assert.throws(() => loadProfile(f), (e: Error) => e instanceof CtxError && e.message.includes(f) && re.test(e.message) && !e.message.includes('\n'), name);
  };
  const j = JSON.parse(readFileSync(file, 'utf8'));
  bad('notjson.json', '{"method": ', /not valid JSON/);
  bad('method.json', JSON.stringify({ ...j, method: 'magic' }), /field method/);
  bad('sparsity.json', JSON.stringify({ ...j, sparsity: 1.5 }), /field sparsity: expected a number in \(0, 1\)/);
  bad('layers.json', JSON.stringify({ ...j, layers: j.layers.slice(1) }), /field layers/);
  bad('threshold.json', JSON.stringify({ ...j, layers: [{ ...j.layers[0], attn_q: { level: 0.5 } }, ...j.layers.slice(1)] }), /field layers\[0\]\.attn_q\.threshold/);
  bad('sha.json', JSON.stringify({ ...j, model: { ...j.model, sha256: 'xyz' } }), /field model\.sha256/);
  assert.throws(() => loadProfile(join(tmp, 'missing.json')), /cannot read: ENOENT/);
});

test('calibration text excludes the evaluation chunks: default skip is 100 chunks of 512', () => {
  assert.equal(EVAL_CHUNKS * EVAL_CTX, 51200);
  const wiki = readFileSync(WIKI, 'utf8');
  const ids = model.tokenizer.encode(wiki, { parseSpecial: false });
  const chunks = calibrationChunks(ids, 51200, 2048, 512, 1);
  assert.equal(chunks.length, 4);
  for (const [c, ch] of chunks.entries()) {
    assert.equal(ch[0], 1);
    assert.deepEqual(ch.slice(1), ids.slice(51200 + c * 512 + 1, 51200 + (c + 1) * 512));
  }
  // calibrate's default skip, recorded in the profile
  const p = calibrate(model, { method: 'cats', sparsity: 0.5, text: wiki, dataName: 'wiki.test.raw', tokens: 512 });
  assert.equal(p.calibration.skip_tokens, 51200);
  assert.throws(() => calibrationChunks(ids.slice(0, 51300), 51200, 2048, 512), CtxError);
  assert.throws(() => calibrate(model, { ...base, method: 'teal', sparsity: 1 }), /sparsity must be in \(0, 1\)/);
});

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
}

test('CLI: calibrate, then perplexity / generate / bench --sparsity; bad input is one line and exit 1', () => {
  const out = join(tmp, 'cli-teal.json');
  const c = cli('calibrate', '-m', F32, '--method', 'teal', '--sparsity', '0.5', '--data', STORIES, '--skip', '8192', '--tokens', '2048', '--out', out, '--threads', '1');
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stdout, /^teal 0\.5 \(greedy-layer\) on stories260K-F32\.gguf: 2048 tokens of tinystories_val_prefix\.txt after 8192; mean level 0\.5\d*/);
  assert.equal(loadProfile(out).model.layers, model.config.nLayers);

  const args = ['-m', F32, '-f', STORIES, '--ctx', '128', '--chunks', '10', '--json', '--threads', '1'];
  const dense = JSON.parse(cli('perplexity', ...args).stdout);
  const r = cli('perplexity', ...args, '--sparsity', out);
  assert.equal(r.status, 0, r.stderr);
  const sparse = JSON.parse(r.stdout);
  assert.equal(sparse.sparsity.method, 'teal');
  assert.ok(Math.abs(sparse.density.linear - 0.5) <= 0.1, JSON.stringify(sparse.density.sites));
  assert.equal(sparse.density.layers.length, model.config.nLayers);
  assert.ok(sparse.ppl > dense.ppl, `${sparse.ppl} vs ${dense.ppl}`);

  const g = cli('generate', '-m', F32, '--prompt', 'Once upon a time', '-n', '8', '--temperature', '0', '--json', '--threads', '1', '--sparsity', out);
  assert.equal(g.status, 0, g.stderr);
  assert.equal(JSON.parse(g.stdout).tokens.length, 8);
  const b = cli('bench', '-m', F32, '-p', '16', '-n', '8', '-r', '1', '-t', '1', '--json', '--sparsity', out);
  assert.equal(b.status, 0, b.stderr);
  assert.ok(JSON.parse(b.stdout).sparsity.density < 0.9);

  const fails: [string[], RegExp][] = [
    [['perplexity', ...args, '--sparsity', join(tmp, 'nope.json')], /nope\.json: cannot read/],
    [['perplexity', '-m', Q8, '-f', STORIES, '--chunks', '1', '--sparsity', out], /calibrated for stories260K-F32\.gguf/],
    [['calibrate', '-m', F32, '--method', 'teal', '--sparsity', '1.5', '--out', join(tmp, 'x.json')], /--sparsity: expected a number in \(0, 1\)/],
    [['calibrate', '-m', F32, '--method', 'relu', '--sparsity', '0.5', '--out', join(tmp, 'x.json')], /--method: expected one of/],
    [['generate', '-m', F32, '--prompt', 'x', '--sparsity', STORIES], /not valid JSON/],
  ];
  for (const [a, re] of fails) {
    const f = cli(...a);
    assert.equal(f.status, 1, `${a.join(' ')}: ${f.stderr}`);
    assert.match(f.stderr, re);
    assert.equal(f.stderr.trim().split('\n').length, 1, f.stderr);
  }
});
