// The evaluation harness behind `ctxsparse eval` and `ctxsparse sweep`: perplexity, multiple
// choice and LAMBADA tasks, optionally under a sparsity policy, with agreement against the dense
// model, the realized density and decode speed. Results are plain snake_case JSON (README "Evaluation").
//
// One Evaluator per loaded model: its forward passes and caches live in the kernels' memory,
// which is never freed, so a sweep reuses them for every point instead of making new ones.

import { benchModel } from '../bench/bench.js';
import { argmax } from '../generate/sampler.js';
import type { Forward } from '../model/forward.js';
import type { KVCache } from '../model/kv-cache.js';
import type { Model } from '../model/load.js';
import type { SparseHead } from '../sparsity/head.js';
import type { MeasuredPolicy, RealizedDensity, Site } from '../sparsity/measure.js';
import { SITES } from '../sparsity/measure.js';
import { densePolicy, type SparsityPolicy } from '../sparsity/policy.js';
import { encodeEval, percentWithStderr, scoreLambada, scoreMc } from './choice.js';
import { HeadAgreementMeter, type HeadAgreement } from './head-agreement.js';
import { perplexity } from './perplexity.js';
import type { Task } from './tasks.js';

export const EVAL_DEFAULTS = { ctx: 512, chunks: 100, batch: 64, cacheCtx: 2048, greedyPrompts: 20, greedyTokens: 64, benchGen: 64, benchReps: 3 } as const;

export interface SparsitySetup {
  readonly policy: MeasuredPolicy;
  /** what the JSON's `sparsity` records */
  readonly info: SparsityInfo;
}

export interface SparsityInfo {
  readonly profile: string;
  readonly method: string;
  readonly level: number;
  readonly allocation: string;
}

export interface EvalOptions {
  /** perplexity tasks: tokens per chunk (default 512) */
  readonly ctx?: number;
  /** perplexity tasks: chunks (default 100), capped by `limit` */
  readonly chunks?: number;
  /** the first `limit` items of each task (chunks for perplexity) */
  readonly limit?: number;
  /** greedy agreement prompts (with sparsity; default 20 prompts × 64 tokens; 0 prompts skips it) */
  readonly greedy?: { readonly source: string; readonly prompts: readonly string[]; readonly tokens: number };
  /** decode speed (default 64 tokens × 3 runs; nGen 0 skips it) */
  readonly bench?: { readonly nGen: number; readonly reps: number; readonly dense: boolean; readonly sparse: boolean };
  readonly threads?: number;
  /**
   * The sparse output layer to compare with the dense one (scores stay dense): at every scored
   * position of the perplexity tasks, and on the greedy prompts (sparse-head vs dense-head runs).
   */
  readonly head?: SparseHead;
  readonly onProgress?: (task: string, done: number, total: number) => void;
}

export interface PerplexityTaskResult {
  readonly kind: 'perplexity';
  readonly file: string;
  readonly ppl: number;
  readonly ppl_stderr: number;
  readonly chunks: number;
  readonly ctx: number;
  readonly tokens: number;
  readonly scored: number;
  readonly seconds: number;
  /** with sparsity: the dense model's perplexity on the same chunks */
  readonly dense_ppl?: number;
  /** with sparsity: realized linear density on this task */
  readonly density?: number;
}

export interface McTaskResult {
  readonly kind: 'multiple_choice';
  readonly file: string;
  readonly n: number;
  readonly acc: number;
  readonly acc_stderr: number;
  readonly acc_norm: number;
  readonly acc_norm_stderr: number;
  readonly seconds: number;
  readonly density?: number;
}

export interface LambadaTaskResult {
  readonly kind: 'lambada';
  readonly file: string;
  readonly n: number;
  readonly acc: number;
  readonly acc_stderr: number;
  /** exp(− mean over items of the continuation's summed log-probability), as lm-eval's lambada perplexity */
  readonly ppl: number;
  readonly seconds: number;
  readonly density?: number;
}

export type TaskResult = PerplexityTaskResult | McTaskResult | LambadaTaskResult;

export interface Agreement {
  /** next-token agreement over the scored positions of the perplexity tasks */
  readonly texts: string[];
  readonly positions: number;
  /** share of positions where the dense and sparse argmax agree */
  readonly top1: number;
  /** mean KL(dense ‖ sparse) in nats */
  readonly kl: number;
  readonly greedy: GreedyAgreement | null;
}

export interface GreedyAgreement {
  readonly source: string;
  readonly prompts: number;
  readonly tokens: number;
  /** share of the prompts × tokens greedy positions where dense and sparse chose the same token (each free-running) */
  readonly match: number;
  /** mean length of the identical prefix, as a share of `tokens` */
  readonly prefix: number;
}

/** The sparse output layer against the dense one, everything else equal (`eval --sparse-head`). */
export interface HeadEval {
  readonly safety: number;
  readonly screen_bytes: number;
  /** every scored position of the perplexity tasks: greedy token from the same final state */
  readonly text: HeadAgreement | null;
  /** free-running greedy continuations of the greedy prompts, sparse head vs dense head */
  readonly greedy: (GreedyAgreement & { readonly identical_prompts: number; readonly steps: HeadAgreement }) | null;
}

export interface DecodeSpeed {
  readonly n_gen: number;
  readonly reps: number;
  readonly threads: number | null;
  readonly dense: { mean: number; stdev: number; samples: number[] } | null;
  readonly sparse: { mean: number; stdev: number; samples: number[] } | null;
  /** set by bench/sweep-speed.mjs: re-measured after the sweep in one run, dense and every point taking turns */
  readonly interleaved?: boolean;
}

export interface EvalResult {
  readonly model: string;
  readonly model_path: string;
  readonly arch: string;
  readonly sparsity: SparsityInfo | null;
  readonly limit: number | null;
  readonly tasks: Record<string, TaskResult>;
  readonly agreement: Agreement | null;
  /** with `head` */
  readonly sparse_head?: HeadEval;
  readonly density: RealizedDensity | null;
  readonly decode_tok_s: DecodeSpeed | null;
  readonly started_at: string;
  readonly finished_at: string;
  readonly seconds: number;
}

const round = (x: number, d = 4): number => Number(x.toFixed(d));

/** Realized densities of several runs (each token is asked about at every site of every layer): token-weighted means. */
export function mergeDensity(parts: readonly RealizedDensity[]): RealizedDensity | null {
  const ps = parts.filter((p) => p.tokens > 0);
  if (ps.length === 0) return null;
  const total = ps.reduce((a, p) => a + p.tokens, 0);
  const mean = (get: (p: RealizedDensity) => number | undefined): number | undefined => {
    let s = 0;
    let w = 0;
    for (const p of ps) {
      const v = get(p);
      if (v !== undefined) { s += v * p.tokens; w += p.tokens; }
    }
    return w > 0 ? s / w : undefined;
  };
  const sites: Partial<Record<Site, number>> = {};
  for (const s of SITES) {
    const v = mean((p) => p.sites[s]);
    if (v !== undefined) sites[s] = v;
  }
  const L = ps[0]!.layers.length;
  const layers = Array.from({ length: L }, (_, l) => {
    const row: Partial<Record<Site, number>> = {};
    for (const s of SITES) {
      const v = mean((p) => p.layers[l]?.[s]);
      if (v !== undefined) row[s] = v;
    }
    return row;
  });
  return { linear: mean((p) => p.linear)!, sites, layers, tokens: total };
}

export class Evaluator {
  readonly forward: Forward;
  readonly kv: KVCache;
  private refForward: Forward | undefined;
  private refKv: KVCache | undefined;

  constructor(readonly model: Model, readonly name: string, opts: { cacheCtx?: number; batch?: number } = {}) {
    this.forward = model.createForward(opts.batch ?? EVAL_DEFAULTS.batch);
    this.kv = model.createCache(opts.cacheCtx ?? EVAL_DEFAULTS.cacheCtx);
  }

  /** The dense reference pass for agreement, made on first use. */
  private reference(): { forward: Forward; kv: KVCache } {
    this.refForward ??= this.model.createForward(this.forward.maxBatch);
    this.refKv ??= this.model.createCache(this.kv.ctx);
    return { forward: this.refForward, kv: this.refKv };
  }

  evaluate(tasks: readonly Task[], sparse: SparsitySetup | undefined, opts: EvalOptions = {}): EvalResult {
    const t0 = performance.now();
    const startedAt = new Date().toISOString();
    const { model } = this;
    const tok = model.tokenizer;
    const V = model.config.vocabSize;
    const policy: SparsityPolicy = sparse?.policy ?? densePolicy;
    const ctx = opts.ctx ?? EVAL_DEFAULTS.ctx;
    const chunks = Math.min(opts.chunks ?? EVAL_DEFAULTS.chunks, opts.limit ?? Infinity);
    const results: Record<string, TaskResult> = {};
    const densities: RealizedDensity[] = [];
    let agreePositions = 0;
    let agreeTop1 = 0;
    let agreeKl = 0;
    const agreeTexts: string[] = [];
    const { forward, kv } = this;
    const headText = opts.head ? new HeadAgreementMeter(opts.head) : undefined;

    for (const task of tasks) {
      const ts = performance.now();
      // scoring sparsifies every token, batches included (the bench and greedy runs below keep
      // generation's convention: prompt dense, decoding sparse)
      forward.sparsePrefill = true;
      sparse?.policy.resetCounts();
      const progress = (done: number, total: number) => opts.onProgress?.(task.name, done, total);
      let r: TaskResult;
      const d = task.data;
      if (d.kind === 'perplexity') {
        const ref = sparse ? this.reference() : undefined;
        const p = perplexity(model, d.text, {
          ctx, chunks, batch: forward.maxBatch, policy, forward, kv,
          ...(ref && { reference: { policy: densePolicy, forward: ref.forward, kv: ref.kv } }),
          ...(headText && { headMeter: headText }),
          onChunk: (done, total) => progress(done, total),
        });
        if (p.agreement) {
          agreeTexts.push(task.name);
          agreePositions += p.agreement.positions;
          agreeTop1 += p.agreement.top1 * p.agreement.positions;
          agreeKl += p.agreement.kl * p.agreement.positions;
        }
        r = {
          kind: 'perplexity', file: task.file, ppl: p.ppl, ppl_stderr: p.pplStderr, chunks: p.chunks, ctx: p.ctx, tokens: p.tokens,
          scored: p.scored, seconds: round((performance.now() - ts) / 1000, 2), ...(p.agreement && { dense_ppl: p.agreement.referencePpl }),
        };
      } else if (d.kind === 'multiple_choice') {
        forward.policy = policy;
        const items = d.items.slice(0, opts.limit ?? d.items.length);
        let hits = 0;
        let hitsNorm = 0;
        items.forEach((item, i) => {
          const p = scoreMc(forward, kv, tok, V, item);
          if (p.pred === item.gold) hits++;
          if (p.predNorm === item.gold) hitsNorm++;
          progress(i + 1, items.length);
        });
        const acc = percentWithStderr(hits, items.length);
        const accNorm = percentWithStderr(hitsNorm, items.length);
        r = {
          kind: 'multiple_choice', file: task.file, n: items.length, acc: acc.value, acc_stderr: acc.stderr,
          acc_norm: accNorm.value, acc_norm_stderr: accNorm.stderr, seconds: round((performance.now() - ts) / 1000, 2),
        };
      } else {
        forward.policy = policy;
        const items = d.items.slice(0, opts.limit ?? d.items.length);
        let hits = 0;
        let lpSum = 0;
        items.forEach((item, i) => {
          const s = scoreLambada(forward, kv, tok, V, item);
          if (s.greedy) hits++;
          lpSum += s.logprob;
          progress(i + 1, items.length);
        });
        const acc = percentWithStderr(hits, items.length);
        r = {
          kind: 'lambada', file: task.file, n: items.length, acc: acc.value, acc_stderr: acc.stderr,
          ppl: Math.exp(-lpSum / items.length), seconds: round((performance.now() - ts) / 1000, 2),
        };
      }
      if (sparse) {
        const dens = sparse.policy.realized();
        densities.push(dens);
        r = { ...r, density: dens.linear };
      }
      results[task.name] = r;
    }

    let greedy: GreedyAgreement | null = null;
    if (sparse && opts.greedy && opts.greedy.prompts.length > 0) greedy = this.greedyAgreement(sparse.policy, opts.greedy);
    const agreement: Agreement | null = sparse
      ? {
        texts: agreeTexts, positions: agreePositions,
        top1: agreePositions > 0 ? agreeTop1 / agreePositions : NaN, kl: agreePositions > 0 ? agreeKl / agreePositions : NaN, greedy,
      }
      : null;
    const density = sparse ? mergeDensity(densities) : null;
    let headEval: HeadEval | undefined;
    if (opts.head) {
      const g = opts.greedy && opts.greedy.prompts.length > 0 ? this.headGreedy(policy, opts.head, opts.greedy) : null;
      headEval = {
        safety: opts.head.safety, screen_bytes: opts.head.screenBytes,
        text: headText && headText.result().positions > 0 ? headText.result() : null, greedy: g,
      };
    }

    let decode: DecodeSpeed | null = null;
    const b = opts.bench ?? { nGen: EVAL_DEFAULTS.benchGen, reps: EVAL_DEFAULTS.benchReps, dense: true, sparse: true };
    if (b.nGen > 0 && (b.dense || (b.sparse && sparse))) {
      const run = (p: SparsityPolicy) => {
        const tg = benchModel(model, opts.threads ?? 0, { nPrompt: 0, nGen: b.nGen, reps: b.reps, policy: p, forward, kv })[0]!;
        return tg.tokens_per_second;
      };
      decode = {
        n_gen: b.nGen, reps: b.reps, threads: opts.threads ?? null,
        dense: b.dense ? run(densePolicy) : null,
        sparse: b.sparse && sparse ? run(sparse.policy) : null,
      };
    }
    forward.policy = densePolicy;
    forward.sparsePrefill = true;

    return {
      model: this.name, model_path: model.path, arch: model.config.arch, sparsity: sparse?.info ?? null, limit: opts.limit ?? null,
      tasks: results, agreement, ...(headEval && { sparse_head: headEval }), density, decode_tok_s: decode,
      started_at: startedAt, finished_at: new Date().toISOString(), seconds: round((performance.now() - t0) / 1000, 2),
    };
  }

  /** Dense and sparse greedy continuations (argmax, no stop at EOS; the prompt dense, as in generation) of each prompt, compared position by position. */
  private greedyAgreement(policy: SparsityPolicy, g: NonNullable<EvalOptions['greedy']>): GreedyAgreement {
    const ref = this.reference();
    let same = 0;
    let prefix = 0;
    for (const prompt of g.prompts) {
      const ids = encodeEval(this.model.tokenizer, prompt);
      const dense = greedyRun(ref.forward, ref.kv, densePolicy, ids, g.tokens);
      const sparse = greedyRun(this.forward, this.kv, policy, ids, g.tokens);
      let p = 0;
      while (p < g.tokens && dense[p] === sparse[p]) p++;
      prefix += p;
      for (let i = 0; i < g.tokens; i++) if (dense[i] === sparse[i]) same++;
    }
    const total = g.prompts.length * g.tokens;
    return { source: g.source, prompts: g.prompts.length, tokens: g.tokens, match: same / total, prefix: prefix / total };
  }

  /** Greedy continuations with the sparse output layer vs the dense one, both with `policy`, compared position by position. */
  private headGreedy(policy: SparsityPolicy, head: SparseHead, g: NonNullable<EvalOptions['greedy']>): NonNullable<HeadEval['greedy']> {
    const ref = this.reference();
    const meter = new HeadAgreementMeter(head);
    let same = 0;
    let prefix = 0;
    let identical = 0;
    for (const prompt of g.prompts) {
      const ids = encodeEval(this.model.tokenizer, prompt);
      const dense = greedyRun(ref.forward, ref.kv, policy, ids, g.tokens);
      const rows: number[] = [];
      const bytes0 = head.bytesRead;
      const sparse = greedyRun(this.forward, this.kv, policy, ids, g.tokens, { head, rows });
      let p = 0;
      while (p < g.tokens && dense[p] === sparse[p]) p++;
      prefix += p;
      if (p === g.tokens) identical++;
      let eq = 0;
      for (let i = 0; i < g.tokens; i++) if (dense[i] === sparse[i]) eq++;
      same += eq;
      meter.add(g.tokens, eq, rows, head.bytesRead - bytes0);
    }
    const total = g.prompts.length * g.tokens;
    return {
      source: g.source, prompts: g.prompts.length, tokens: g.tokens, match: same / total, prefix: prefix / total,
      identical_prompts: identical, steps: meter.result(),
    };
  }
}

/**
 * Greedy decoding as generation runs it: the prompt computed dense, every generated token with
 * `policy`; with `head`, every step's logits from the sparse output layer (its rows per step into `rows`).
 */
function greedyRun(forward: Forward, kv: KVCache, policy: SparsityPolicy, prompt: readonly number[], n: number,
  head?: { readonly head: SparseHead; readonly rows: number[] }): number[] {
  forward.policy = policy;
  forward.sparsePrefill = false;
  forward.outputHead = head?.head ?? null;
  kv.truncate(0);
  const out: number[] = [];
  try {
    let logits = forward.run(kv, prompt, 0, 'last')!;
    for (let i = 0; i < n; i++) {
      head?.rows.push(forward.headRows);
      const id = argmax(logits);
      out.push(id);
      if (i < n - 1) logits = forward.run(kv, [id], prompt.length + i, 'last')!;
    }
  } finally {
    forward.outputHead = null;
  }
  return out;
}
