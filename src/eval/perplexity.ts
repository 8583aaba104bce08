// Perplexity the way llama.cpp's perplexity tool computes it, so figures compare: the text is
// tokenized once (BOS by the model's rule), cut into chunks of `ctx` tokens, the first token of
// each chunk replaced by BOS when the model adds one, and only the second half of each chunk
// scored (each prediction then has at least ctx/2 tokens of context).

import { CtxError } from '../errors.js';
import type { Forward } from '../model/forward.js';
import type { KVCache } from '../model/kv-cache.js';
import type { Model } from '../model/load.js';
import type { HeadAgreementMeter } from './head-agreement.js';
import { densePolicy, type SparsityPolicy } from '../sparsity/policy.js';

export interface PerplexityOptions {
  readonly ctx: number;
  /** at most this many chunks (default: all) */
  readonly chunks?: number;
  /** tokens per forward batch */
  readonly batch?: number;
  readonly policy?: SparsityPolicy;
  readonly onChunk?: (done: number, total: number, pplSoFar: number) => void;
  /** reuse this forward pass and cache (caches in kernel memory are never freed: callers that run many evaluations pass their own) */
  readonly forward?: Forward;
  readonly kv?: KVCache;
  /**
   * Also run a reference forward (e.g. dense beside a sparse `policy`) on the same chunks and
   * compare its next-token distributions with the main one's at every scored position.
   */
  readonly reference?: { readonly policy: SparsityPolicy; readonly forward?: Forward; readonly kv?: KVCache };
  /**
   * Also run the sparse output layer on the final state of every scored position and compare its
   * greedy token with the (dense) logits scored here; the perplexity stays the dense head's.
   */
  readonly headMeter?: HeadAgreementMeter;
}

export interface Agreement {
  /** share of scored positions where both argmax tokens are the same */
  readonly top1: number;
  /** mean over scored positions of KL(reference ‖ main), nats */
  readonly kl: number;
  /** the reference's own perplexity on the same chunks */
  readonly referencePpl: number;
  readonly positions: number;
}

export interface PerplexityResult {
  readonly ppl: number;
  /** standard error of the ppl estimate, as llama.cpp reports it */
  readonly pplStderr: number;
  readonly chunks: number;
  readonly ctx: number;
  /** tokens fed through the model (chunks × ctx) */
  readonly tokens: number;
  /** predictions scored */
  readonly scored: number;
  readonly perChunk: number[];
  /** with `reference` */
  readonly agreement?: Agreement;
}

/** log-softmax(logits)[target] */
export function logProb(logits: Float32Array, offset: number, n: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[offset + i]! > max) max = logits[offset + i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[offset + i]! - max);
  return logits[offset + target]! - max - Math.log(sum);
}

export function perplexity(model: Model, text: string, opts: PerplexityOptions): PerplexityResult {
  const { ctx } = opts;
  if (ctx < 4) throw new CtxError(`--ctx ${ctx} is too small for perplexity`);
  const tok = model.tokenizer;
  const ids = tok.encode(text, { parseSpecial: false });
  const available = Math.floor(ids.length / ctx);
  if (available === 0) throw new CtxError(`the text has ${ids.length} tokens, fewer than one chunk of --ctx ${ctx}`);
  const nChunks = Math.min(available, opts.chunks ?? available);
  const batch = opts.batch ?? 64;
  const forward = opts.forward ?? model.createForward(batch);
  forward.policy = opts.policy ?? densePolicy;
  const kv = opts.kv ?? model.createCache(ctx);
  const ref = opts.reference;
  const refForward = ref && (ref.forward ?? model.createForward(batch));
  const refKv = ref && (ref.kv ?? model.createCache(ctx));
  if (refForward) refForward.policy = ref.policy;
  let agreeTop1 = 0;
  let klSum = 0;
  let refNll = 0;
  const V = model.config.vocabSize;
  const first = ctx >> 1;
  const bos = tok.addBosDefault ? tok.bos : undefined;
  // with headMeter: the final normalised states of the batch being scored, copied by a tap
  const meter = opts.headMeter;
  const D = model.config.dim;
  const states = meter ? new Float32Array(batch * D) : null;
  let filled = 0; // rows of `states` written in this batch (the forward may split it)
  const prevTap = forward.tap;
  if (states) {
    forward.tap = (name, layer, data, rows, width) => {
      prevTap?.(name, layer, data, rows, width);
      if (name === 'final') {
        states.set(data.subarray(0, rows * width), filled * D);
        filled += rows;
      }
    };
  }

  let nll = 0;
  let nll2 = 0;
  let count = 0;
  const perChunk: number[] = [];
  try {
    for (let c = 0; c < nChunks; c++) {
      const chunk = ids.slice(c * ctx, (c + 1) * ctx);
      if (bos !== undefined) chunk[0] = bos;
      kv.truncate(0);
      refKv?.truncate(0);
      // the first half only builds context; its logits are not needed
      forward.run(kv, chunk.slice(0, first), 0, 'none');
      refForward?.run(refKv!, chunk.slice(0, first), 0, 'none');
      // the second half in batches, each scored as soon as its logits exist (one batch of logits in memory)
      for (let b = first; b < ctx; b += batch) {
        const e = Math.min(ctx, b + batch);
        filled = 0;
        const logits = forward.run(kv, chunk.slice(b, e), b, 'all')!;
        const refLogits = refForward?.run(refKv!, chunk.slice(b, e), b, 'all');
        for (let j = b; j < Math.min(e, ctx - 1); j++) {
          const lp = logProb(logits, (j - b) * V, V, chunk[j + 1]!);
          nll -= lp;
          nll2 += lp * lp;
          count++;
          if (refLogits) {
            const c = compare(refLogits, logits, (j - b) * V, V);
            klSum += c.kl;
            if (c.sameTop1) agreeTop1++;
            refNll -= logProb(refLogits, (j - b) * V, V, chunk[j + 1]!);
          }
          meter?.compare(states!, (j - b) * D, logits, (j - b) * V);
        }
      }
      const ppl = Math.exp(nll / count);
      perChunk.push(ppl);
      opts.onChunk?.(c + 1, nChunks, ppl);
    }
  } finally {
    forward.tap = prevTap;
  }
  const mean = nll / count;
  const ppl = Math.exp(mean);
  const variance = nll2 / count - mean * mean;
  const pplStderr = count > 1 && variance > 0 ? ppl * Math.sqrt(variance / (count - 1)) : 0;
  return {
    ppl, pplStderr, chunks: nChunks, ctx, tokens: nChunks * ctx, scored: count, perChunk,
    ...(ref && { agreement: { top1: agreeTop1 / count, kl: klSum / count, referencePpl: Math.exp(refNll / count), positions: count } }),
  };
}

/** KL(P ‖ Q) of the softmaxes of p and q (rows at `offset`, n wide), and whether their argmaxes agree. */
export function compare(p: Float32Array, q: Float32Array, offset: number, n: number): { kl: number; sameTop1: boolean } {
  let pMax = -Infinity;
  let qMax = -Infinity;
  let pArg = 0;
  let qArg = 0;
  for (let i = 0; i < n; i++) {
    const a = p[offset + i]!;
    const b = q[offset + i]!;
    if (a > pMax) { pMax = a; pArg = i; }
    if (b > qMax) { qMax = b; qArg = i; }
  }
  let pSum = 0;
  let qSum = 0;
  let cross = 0; // Σ e^(p_i − pMax) (p_i − q_i)
  for (let i = 0; i < n; i++) {
    const a = p[offset + i]!;
    const e = Math.exp(a - pMax);
    pSum += e;
    qSum += Math.exp(q[offset + i]! - qMax);
    cross += e * (a - q[offset + i]!);
  }
  // KL = Σ P_i (log P_i − log Q_i) = Σ P_i (p_i − q_i) − (pMax + log pSum) + (qMax + log qSum)
  const kl = cross / pSum - pMax - Math.log(pSum) + qMax + Math.log(qSum);
  return { kl: Math.max(0, kl), sameTop1: pArg === qArg };
}
