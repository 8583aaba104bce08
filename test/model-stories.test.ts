// stories260K against the shared golden file (an independent fp32 re-implementation of run.c)
// and llama.cpp's behaviour on the same weights as GGUF in four tensor types.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadModel, type Model } from '../src/model/load.js';
import { Session } from '../src/generate/session.js';
import { fixturePath, sharedPath } from './helpers.js';

interface Golden {
  prompt: string;
  prompt_ids: number[];
  logits_prompt: number[][];
  ffn_act_absmean_prompt_last: number[];
  greedy_ids: number[];
  greedy_text: string;
}
const golden = JSON.parse(readFileSync(sharedPath('golden', 'stories260K_golden.json'), 'utf8')) as Golden;
const dir = sharedPath('models', 'stories260K');

function promptLogits(model: Model): Float32Array[] {
  const s = new Session(model);
  return golden.prompt_ids.map((id, i) => {
    const l = s.append([id]);
    assert.equal(s.tokens.length, i + 1);
    return Float32Array.from(l);
  });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function greedyText(model: Model, n = golden.greedy_ids.length): { ids: number[]; text: string } {
  const s = new Session(model);
  const ids: number[] = [];
  let text = '';
  for (const ev of s.generate(golden.prompt_ids, { temperature: 0, maxTokens: n })) {
    ids.push(ev.id);
    text += ev.text;
  }
  return { ids, text };
}

const models = {
  bin: () => loadModel(`${dir}/stories260K.bin`),
  F32: () => loadModel(`${dir}/gguf/stories260K-F32.gguf`),
  F16: () => loadModel(`${dir}/gguf/stories260K-F16.gguf`),
  Q8_0: () => loadModel(`${dir}/gguf/stories260K-Q8_0.gguf`),
  Q4_0: () => loadModel(`${dir}/gguf/stories260K-Q4_0.gguf`),
};

test('stories260K prompt tokenizes as the golden file says (llama2.c .bin and GGUF vocab)', () => {
  for (const load of [models.bin, models.F32]) {
    const m = load();
    assert.deepEqual(m.tokenizer.encode(golden.prompt), golden.prompt_ids);
  }
});

for (const kind of ['bin', 'F32'] as const) {
  test(`stories260K ${kind}: logits within 1e-4 of the golden fp32 run, greedy ids and text identical`, () => {
    const m = models[kind]();
    const logits = promptLogits(m);
    const err = Math.max(...logits.map((l, i) => maxAbsDiff(l, golden.logits_prompt[i]!)));
    assert.ok(err < 1e-4, `max |logit error| ${err}`);
    const g = greedyText(m);
    assert.deepEqual(g.ids, golden.greedy_ids);
    assert.equal(golden.prompt + g.text, golden.greedy_text);
  });
}

test('stories260K F16: logits within 1e-4 of an f64 reference on the same F16 weights, the same greedy text', () => {
  // The issue asks for 1e-2 of the fp32 golden; the F16 weights alone move one logit by 0.0113
  // (scripts/make-stories-reference.py computes that in float64), so no exact engine can meet it.
  // We check the tighter, attainable property instead, and report the distance to fp32 below.
  const ref = JSON.parse(readFileSync(fixturePath('stories260K-F16-logits.json'), 'utf8')) as { logits: number[][]; max_abs_diff_vs_fp32_golden: number[] };
  const m = models.F16();
  const logits = promptLogits(m);
  const err = Math.max(...logits.map((l, i) => maxAbsDiff(l, ref.logits[i]!)));
  assert.ok(err < 1e-4, `max |logit error| vs the f64 F16 reference ${err}`);
  const vsGolden = Math.max(...logits.map((l, i) => maxAbsDiff(l, golden.logits_prompt[i]!)));
  const inherent = Math.max(...ref.max_abs_diff_vs_fp32_golden);
  assert.ok(Math.abs(vsGolden - inherent) < 1e-4, `distance to the fp32 golden ${vsGolden}, weight rounding alone ${inherent}`);
  assert.deepEqual(greedyText(m).ids, golden.greedy_ids);
});

test('stories260K Q8_0: the same greedy text', () => {
  assert.deepEqual(greedyText(models.Q8_0()).ids, golden.greedy_ids);
});

test('stories260K Q4_0: the same text up to where llama.cpp\'s own Q4_0 run parts from it', () => {
  // DATA.md: llama.cpp's Q4_0 run diverges after "...play outside in the"
  const anchor = 'play outside in the';
  const upTo = golden.greedy_text.indexOf(anchor) + anchor.length;
  const g = greedyText(models.Q4_0());
  const text = golden.prompt + g.text;
  assert.equal(text.slice(0, upTo), golden.greedy_text.slice(0, upTo));
});

test('the ffn_act tap sees the golden mean |activation| at the last prompt position', () => {
  const m = models.bin();
  const s = new Session(m);
  const seen: number[] = [];
  s.forward.tap = (name, layer, data, rows, width) => {
    if (name !== 'ffn_act') return;
    let sum = 0;
    const o = (rows - 1) * width;
    for (let i = 0; i < width; i++) sum += Math.abs(data[o + i]!);
    seen[layer] = sum / width;
  };
  s.append(golden.prompt_ids); // batched: the tap's last row is the last prompt position
  assert.ok(maxAbsDiff(seen, golden.ffn_act_absmean_prompt_last) < 1e-5, `${seen} vs ${golden.ffn_act_absmean_prompt_last}`);
});

test('batched prefill gives the same logits as token-by-token decoding', () => {
  const m = models.Q8_0();
  const one = promptLogits(m).at(-1)!;
  const s = new Session(m);
  const batched = s.append(golden.prompt_ids);
  assert.ok(maxAbsDiff(one, batched) < 1e-4);
});
