// Choosing the next token: a chain of small steps over the logits, then a draw from a seeded
// RNG. Order as llama.cpp's default chain: repetition penalty → top-k → top-p → min-p →
// temperature → draw. Temperature ≤ 0 means greedy (argmax of the raw logits).

import type { Selection } from '../sparsity/policy.js';

export interface SamplerOptions {
  /** ≤ 0: greedy */
  readonly temperature?: number;
  /** keep the k most likely tokens (0 = off) */
  readonly topK?: number;
  /** keep the smallest set whose probability reaches p (1 = off) */
  readonly topP?: number;
  /** drop tokens whose probability is below minP × the top probability (0 = off) */
  readonly minP?: number;
  /** divide positive logits (multiply negative ones) of recently seen tokens by this (1 = off) */
  readonly repeatPenalty?: number;
  /** how many recent tokens the penalty looks at */
  readonly repeatLastN?: number;
  readonly seed?: number;
}

export const SAMPLER_DEFAULTS = {
  temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, repeatLastN: 64,
} as const;

/** xoshiro128** — small, fast, and the same sequence for the same seed everywhere. */
export class Rng {
  private s = new Uint32Array(4);

  constructor(seed: number) {
    // splitmix32 expands the seed into the state
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** uniform in [0, 1) */
  next(): number {
    return this.nextU32() / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * argmax(logits), reading only the rows in `support` when given (the rows that can hold a finite
 * logit, ascending, when the output layer computed only those — the sparse head): equal to the full scan when the
 * other rows are −∞ (ties: the lowest index, as the full scan; the support is ascending).
 */
export function argmaxIn(logits: Float32Array, support: Selection | null | undefined): number {
  if (!support || support.n === 0) return argmax(logits);
  let best = -1;
  let bv = -Infinity;
  for (let k = 0; k < support.n; k++) {
    const i = support.idx[k]!;
    if (logits[i]! > bv) {
      bv = logits[i]!;
      best = i;
    }
  }
  // every supported row at −∞ (or NaN): the full scan decides, as it would have
  return best < 0 ? argmax(logits) : best;
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i]! > bv) {
      bv = logits[i]!;
      best = i;
    }
  }
  return best;
}

/** The k largest logits, best first (ties: lower id first); with `among` (ascending ids), among those rows only. */
export function topLogits(logits: Float32Array, k: number, among?: Int32Array): { ids: number[]; logits: number[] } {
  const ids: number[] = [];
  const n = among ? among.length : logits.length;
  for (let t = 0; t < n; t++) {
    const i = among ? among[t]! : t;
    const v = logits[i]!;
    if (ids.length === k && v <= logits[ids[k - 1]!]!) continue;
    let j = ids.length < k ? ids.length : k - 1;
    while (j > 0 && logits[ids[j - 1]!]! < v) j--;
    ids.splice(j, 0, i);
    if (ids.length > k) ids.pop();
  }
  return { ids, logits: ids.map((i) => logits[i]!) };
}

export class Sampler {
  readonly opts: Required<Omit<SamplerOptions, 'seed'>>;
  private readonly rng: Rng;
  private probs = new Float64Array(0);

  constructor(opts: SamplerOptions = {}) {
    this.opts = {
      temperature: opts.temperature ?? SAMPLER_DEFAULTS.temperature,
      topK: opts.topK ?? SAMPLER_DEFAULTS.topK,
      topP: opts.topP ?? SAMPLER_DEFAULTS.topP,
      minP: opts.minP ?? SAMPLER_DEFAULTS.minP,
      repeatPenalty: opts.repeatPenalty ?? SAMPLER_DEFAULTS.repeatPenalty,
      repeatLastN: opts.repeatLastN ?? SAMPLER_DEFAULTS.repeatLastN,
    };
    this.rng = new Rng(opts.seed ?? (Math.random() * 2 ** 32) >>> 0);
  }

  get greedy(): boolean {
    return this.opts.temperature <= 0;
  }

  /**
   * Pick the next token. `logits` may be modified (penalties); `history` is the sequence so far;
   * `support`, when the output layer computed only some rows (the rest −∞), lets greedy picking
   * read those alone.
   */
  sample(logits: Float32Array, history: readonly number[] = [], support?: Selection | null): number {
    const o = this.opts;
    if (o.repeatPenalty !== 1 && o.repeatLastN > 0) {
      const seen = new Set(history.slice(-o.repeatLastN));
      for (const id of seen) {
        const v = logits[id]!;
        logits[id] = v > 0 ? v / o.repeatPenalty : v * o.repeatPenalty;
      }
    }
    if (this.greedy) return argmaxIn(logits, support);

    // top-k (a partial selection; a full sort only when top-k is off), over the supported rows
    // alone when the output layer computed only those (every other row is −∞: probability 0)
    const V = logits.length;
    const among = support && support.n > 0 ? support.idx.subarray(0, support.n) : undefined;
    const cand = o.topK > 0 && o.topK < V ? topLogits(logits, o.topK, among).ids
      : (among ? Array.from(among) : Array.from({ length: V }, (_, i) => i)).sort((a, b) => logits[b]! - logits[a]! || a - b);
    const max = logits[cand[0]!]!;

    // top-p on the probabilities of the raw logits over the candidates
    if (this.probs.length < cand.length) this.probs = new Float64Array(cand.length);
    const p = this.probs;
    let sum = 0;
    for (let i = 0; i < cand.length; i++) sum += p[i] = Math.exp(logits[cand[i]!]! - max);
    if (o.topP < 1) {
      let acc = 0;
      for (let i = 0; i < cand.length; i++) {
        acc += p[i]! / sum;
        if (acc >= o.topP) {
          cand.length = i + 1;
          break;
        }
      }
    }
    // min-p: p_i / p_max ≥ minP, candidates are sorted so cut at the first that fails
    if (o.minP > 0) {
      for (let i = 1; i < cand.length; i++) {
        if (p[i]! < o.minP) {
          cand.length = i;
          break;
        }
      }
    }

    // temperature, then draw
    let z = 0;
    for (let i = 0; i < cand.length; i++) z += p[i] = Math.exp((logits[cand[i]!]! - max) / o.temperature);
    let r = this.rng.next() * z;
    for (let i = 0; i < cand.length; i++) {
      r -= p[i]!;
      if (r < 0) return cand[i]!;
    }
    return cand[cand.length - 1]!;
  }
}
