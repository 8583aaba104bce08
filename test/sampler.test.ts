// The sampler chain: greedy, the seeded RNG, top-k, top-p, min-p, temperature, repetition penalty.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng, Sampler, argmax, argmaxIn, topLogits } from '../src/generate/sampler.js';
import { mulberry32 } from './helpers.js';

const logits = () => Float32Array.from([1, 3, 2, 5, 4, 0, -1, 4.5]);

function histogram(s: Sampler, n: number, make = logits): Map<number, number> {
  const h = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const id = s.sample(make());
    h.set(id, (h.get(id) ?? 0) + 1);
  }
  return h;
}

test('temperature 0 is argmax of the raw logits', () => {
  const s = new Sampler({ temperature: 0 });
  assert.equal(s.sample(logits()), 3);
  assert.equal(argmax(logits()), 3);
});

test('topLogits returns the k largest, best first', () => {
  assert.deepEqual(topLogits(logits(), 3), { ids: [3, 7, 4], logits: [5, 4.5, 4] });
});

test('the same seed gives the same draws; another seed other draws', () => {
  const draw = (seed: number) => Array.from({ length: 50 }, (() => { const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed }); return () => s.sample(logits()); })());
  const a = draw(7);
  assert.deepEqual(a, draw(7));
  assert.notDeepEqual(a, draw(8));
  const r = new Rng(1);
  for (let i = 0; i < 1000; i++) {
    const v = r.next();
    assert.ok(v >= 0 && v < 1);
  }
});

test('top-k keeps only the k most likely tokens', () => {
  const h = histogram(new Sampler({ temperature: 5, topK: 2, topP: 1, minP: 0, seed: 1 }), 2000);
  assert.deepEqual([...h.keys()].sort(), [3, 7]);
});

test('top-p keeps the smallest set reaching p', () => {
  // softmax of [5, 4.5, 4, 3, ...]: 5 alone is ~0.44, with 4.5 ~0.71
  const h = histogram(new Sampler({ temperature: 1, topK: 0, topP: 0.6, minP: 0, seed: 2 }), 2000);
  assert.deepEqual([...h.keys()].sort(), [3, 7]);
});

test('min-p drops tokens below p × the top probability', () => {
  // p(4)/p(5) = e^-1 ≈ 0.37, p(4.5)/p(5) ≈ 0.61
  const h = histogram(new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0.5, seed: 3 }), 2000);
  assert.deepEqual([...h.keys()].sort(), [3, 7]);
});

test('sampling frequencies follow softmax(logits / T)', () => {
  const n = 20000;
  const h = histogram(new Sampler({ temperature: 2, topK: 0, topP: 1, minP: 0, seed: 4 }), n);
  const l = logits();
  const z = l.reduce((a, v) => a + Math.exp(v / 2), 0);
  for (let i = 0; i < l.length; i++) {
    const p = Math.exp(l[i]! / 2) / z;
    const got = (h.get(i) ?? 0) / n;
    assert.ok(Math.abs(got - p) < 4 * Math.sqrt((p * (1 - p)) / n) + 1e-3, `token ${i}: ${got} vs ${p}`);
  }
});

test('repetition penalty divides positive and multiplies negative logits of recent tokens', () => {
  const s = new Sampler({ temperature: 0, repeatPenalty: 2, repeatLastN: 2 });
  const l = Float32Array.from([1, 3, -1, 2.9]);
  // token 1 (3 → 1.5) and token 2 (-1 → -2) were seen recently; token 0 is outside the window
  assert.equal(s.sample(l, [0, 1, 2]), 3);
  assert.deepEqual(Array.from(l), [1, 1.5, -2, 2.9].map(Math.fround));
});

/**
 * Logits of V rows, −∞ except a random share of them (the sparse head's support) valued by `value`;
 * with `nonEmpty`, at least the last row is supported.
 */
function supported(rnd: () => number, V: number, share: number, value: () => number, nonEmpty = false):
  { logits: Float32Array; idx: number[]; support: { idx: Int32Array; n: number } } {
  const logits = new Float32Array(V).fill(-Infinity);
  const idx: number[] = [];
  for (let i = 0; i < V; i++) if (rnd() < share) idx.push(i);
  if (nonEmpty && idx.length === 0) idx.push(V - 1);
  for (const i of idx) logits[i] = value();
  return { logits, idx, support: { idx: Int32Array.from(idx), n: idx.length } };
}

test('greedy over a support (the sparse head rows) equals the full argmax when the rest is −∞', () => {
  const rnd = mulberry32(77);
  for (let trial = 0; trial < 200; trial++) {
    const V = 1 + Math.floor(rnd() * 300);
    // ties are common: values from a small set
    const { logits, idx, support } = supported(rnd, V, 0.1, () => Math.floor(rnd() * 4) - 2);
    assert.equal(argmaxIn(logits, support), argmax(logits), `trial ${trial}`);
    // the sampler: greedy with a repeat penalty on some rows, with and without the support
    const history = [idx[0] ?? 0, Math.floor(rnd() * V)];
    const s = new Sampler({ temperature: 0, repeatPenalty: 1.3, repeatLastN: 8 });
    assert.equal(s.sample(new Float32Array(logits), history, support), s.sample(new Float32Array(logits), history), `trial ${trial} sampler`);
  }
  // every supported row at −∞: the full scan's answer (row 0)
  const all = new Float32Array(5).fill(-Infinity);
  assert.equal(argmaxIn(all, { idx: Int32Array.from([2, 3]), n: 2 }), argmax(all));
  // no support: the full scan
  assert.equal(argmaxIn(Float32Array.from([1, 5, 5]), null), 1);
});

test('sampling over a support (the sparse head rows) draws what the full scan draws when the rest is −∞', () => {
  const rnd = mulberry32(78);
  for (let trial = 0; trial < 200; trial++) {
    const V = 2 + Math.floor(rnd() * 300);
    const { logits, idx, support } = supported(rnd, V, 0.15, () => Math.floor(rnd() * 6) - 3 + (rnd() < 0.5 ? 0 : rnd()), true);
    const history = [idx[0]!, Math.floor(rnd() * V)];
    // top-k below and above the support's size, top-k off (the full sort), top-p and min-p on and off
    const opts = { temperature: 0.3 + rnd() * 1.5, topK: [0, 3, 40][trial % 3]!, topP: trial % 2 ? 0.9 : 1, minP: trial % 4 < 2 ? 0.05 : 0, repeatPenalty: 1.2, repeatLastN: 8 };
    const a = new Sampler({ ...opts, seed: trial }), b = new Sampler({ ...opts, seed: trial });
    for (let d = 0; d < 5; d++) {
      assert.equal(a.sample(new Float32Array(logits), history, support), b.sample(new Float32Array(logits), history), `trial ${trial} draw ${d}`);
    }
  }
});
