// A session owns one sequence: its KV cache, its forward-pass state and the tokens fed so far.
// Feeding reuses the longest common prefix with what the cache already holds (multi-turn chat
// re-renders the whole conversation and only the new tokens are computed).

import type { Model } from '../model/load.js';
import type { Forward } from '../model/forward.js';
import type { KVCache } from '../model/kv-cache.js';
import { densePolicy, type SparsityPolicy } from '../sparsity/policy.js';
import type { SparseHead } from '../sparsity/head.js';
import { StreamDecoder } from '../tokenizer/index.js';
import { Sampler, topLogits, type SamplerOptions } from './sampler.js';

export interface SessionOptions {
  /** context length in tokens (default: the model's trained context, at most 4096) */
  readonly ctx?: number;
  /** prompt tokens per forward batch */
  readonly batch?: number;
  readonly policy?: SparsityPolicy;
  /** sparsify prompt batches too (default false: the prompt is computed dense, decoding sparse) */
  readonly sparsePrefill?: boolean;
  /** the sparse output layer (src/sparsity/head.ts) for single-row logits; default dense */
  readonly sparseHead?: SparseHead | null;
}

export interface GenerateOptions extends SamplerOptions {
  readonly maxTokens?: number;
  /** record the k largest raw logits before each generated token */
  readonly topLogits?: number;
  /** stop when the generated text contains one of these (the text up to it is kept) */
  readonly stop?: readonly string[];
}

export interface TokenEvent {
  readonly id: number;
  /** the text this token completes (may be empty while a UTF-8 character is incomplete) */
  readonly text: string;
  readonly topLogits?: { ids: number[]; logits: number[] };
}

export type FinishReason = 'stop' | 'length' | 'context';

export class Session {
  readonly forward: Forward;
  readonly kv: KVCache;
  /** tokens whose keys and values are in the cache */
  readonly tokens: number[] = [];
  finishReason: FinishReason | undefined;

  constructor(readonly model: Model, opts: SessionOptions = {}) {
    this.forward = model.createForward(opts.batch ?? 32);
    this.forward.policy = opts.policy ?? densePolicy;
    this.forward.sparsePrefill = opts.sparsePrefill ?? false;
    this.sparseHead = opts.sparseHead ?? null;
    this.forward.outputHead = this.sparseHead;
    this.kv = model.createCache(opts.ctx);
  }

  readonly sparseHead: SparseHead | null;

  /** Tell the sparse head how the next logits will be sampled (which rows can matter). */
  private headFor(sampler: Sampler, history: readonly number[]): void {
    if (!this.sparseHead) return;
    const o = sampler.opts;
    const penalised = o.repeatPenalty !== 1 && o.repeatLastN > 0 ? new Set(history.slice(-o.repeatLastN)) : undefined;
    this.sparseHead.sampling = {
      temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP, repeatPenalty: o.repeatPenalty, ...(penalised && { penalised }),
    };
  }

  /** Forget everything. */
  reset(): void {
    this.tokens.length = 0;
    this.kv.truncate(0);
  }

  /** Drop cached positions from `n` on (used by multi-turn prefix reuse and by verifiers). */
  truncate(n: number): void {
    this.tokens.length = Math.min(this.tokens.length, n);
    this.kv.truncate(n);
  }

  /**
   * Make the cache hold exactly `ids` and return the logits after the last one. Only the part
   * after the common prefix with the cached tokens is computed.
   */
  prefill(ids: readonly number[]): Float32Array {
    if (ids.length === 0) throw new Error('prefill: no tokens');
    let common = 0;
    while (common < ids.length && common < this.tokens.length && ids[common] === this.tokens[common]) common++;
    if (common === ids.length) common--; // recompute the last token to get its logits
    this.truncate(common);
    return this.append(ids.slice(common));
  }

  /** Feed tokens after the cached ones; returns the logits after the last. */
  append(ids: readonly number[]): Float32Array {
    const logits = this.forward.run(this.kv, ids, this.tokens.length, 'last')!;
    this.tokens.push(...ids);
    return logits;
  }

  /** Generate after `promptIds`, yielding each token as it is chosen. */
  *generate(promptIds: readonly number[], opts: GenerateOptions = {}): Generator<TokenEvent, void, void> {
    const maxTokens = opts.maxTokens ?? 256;
    const sampler = new Sampler(opts);
    const tok = this.model.tokenizer;
    const decoder = new StreamDecoder(tok);
    const stops = opts.stop?.filter((s) => s.length > 0) ?? [];
    this.finishReason = undefined;
    let text = '';
    this.headFor(sampler, promptIds);
    let logits = this.prefill(promptIds);
    for (let i = 0; i < maxTokens; i++) {
      const top = opts.topLogits ? topLogits(logits, opts.topLogits) : undefined;
      const id = sampler.sample(logits, this.tokens, this.forward.headSupport);
      if (tok.eog.has(id)) {
        this.finishReason = 'stop';
        return;
      }
      let piece = decoder.push(id);
      if (stops.length) {
        const before = text.length;
        text += piece;
        const at = firstStop(text, stops, Math.max(0, before - maxLen(stops)));
        if (at >= 0) {
          piece = text.slice(before, Math.max(before, at));
          yield { id, text: piece, ...(top && { topLogits: top }) };
          this.finishReason = 'stop';
          return;
        }
      }
      yield { id, text: piece, ...(top && { topLogits: top }) };
      if (i === maxTokens - 1) break;
      if (this.tokens.length >= this.kv.ctx) {
        this.finishReason = 'context';
        return;
      }
      this.headFor(sampler, [...this.tokens.slice(-sampler.opts.repeatLastN), id]);
      logits = this.append([id]);
    }
    this.finishReason = 'length';
  }
}

function maxLen(stops: readonly string[]): number {
  return stops.reduce((a, s) => Math.max(a, s.length), 0);
}

function firstStop(text: string, stops: readonly string[], from: number): number {
  let best = -1;
  for (const s of stops) {
    const at = text.indexOf(s, from);
    if (at >= 0 && (best < 0 || at < best)) best = at;
  }
  return best;
}
