// Speed measurement in the manner of llama.cpp's llama-bench: prompt processing (pp: p random
// tokens fed in one forward call from an empty cache) and text generation (tg: n single-token
// steps from an empty cache), one warm-up run each, then `reps` timed runs; tokens per second
// as the mean ± sample standard deviation of the per-run rates (llama-bench's avg_ts/stddev_ts).
//
// The result object is what `ctxsparse bench --json` prints (snake_case field names, stable for
// scripts such as bench/vs-llama-cpp).

import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { basename } from 'node:path';
import { CtxError } from '../errors.js';
import { Rng } from '../generate/sampler.js';
import type { ModelConfig } from '../model/config.js';
import type { Forward } from '../model/forward.js';
import type { KVCache } from '../model/kv-cache.js';
import { loadModel, type LoadOptions, type Model } from '../model/load.js';
import type { SparsityPolicy } from '../sparsity/policy.js';
import type { OutputHead } from '../model/forward.js';

export interface Stats {
  readonly mean: number;
  /** sample standard deviation (n − 1 in the denominator; 0 for one sample), as llama-bench */
  readonly stdev: number;
  readonly samples: number[];
}

export interface BenchTestResult {
  readonly threads: number;
  /** `pp512`, `tg128`, … as llama-bench names its tests */
  readonly test: string;
  readonly n_prompt: number;
  readonly n_gen: number;
  readonly reps: number;
  readonly tokens_per_second: Stats;
  /** wall time of each timed run */
  readonly seconds: Stats;
  /** the process's RSS high-water mark (not this test's own use) when the test finished */
  readonly peak_rss_bytes: number;
  /** the kernels' name for this load (it may name the thread count) */
  readonly kernels: string;
}

export interface BenchLoad {
  readonly threads: number;
  readonly kernels: string;
  readonly load_seconds: number;
  /** the process's RSS high-water mark when this thread count's tests finished */
  readonly peak_rss_bytes: number;
}

export interface BenchReport {
  /** the catalog name given, else the file name without extension */
  readonly model: string;
  readonly path: string;
  readonly file_bytes: number;
  readonly arch: string;
  readonly results: BenchTestResult[];
  /** one entry per thread count: load time and RSS high-water mark after its tests */
  readonly loads: BenchLoad[];
  /** the process's RSS high-water mark over the whole run (process.resourceUsage().maxRSS) */
  readonly peak_rss_bytes: number;
  /** the KV cache for n_ctx = n_prompt + n_gen positions (f32 keys and values), bytes */
  readonly kv_cache_bytes: number;
  readonly n_ctx: number;
  /** tokens per forward batch in pp */
  readonly batch: number;
  readonly seed: number;
  /** the kernels' name (their distinct names, comma-separated, if they differ between thread counts) */
  readonly kernels: string;
}

export interface BenchProgress {
  readonly threads: number;
  readonly test: string;
  /** 0 = the warm-up run, 1..reps = timed runs */
  readonly run: number;
  readonly reps: number;
}

export interface BenchOptions {
  /** prompt tokens for pp (0 skips the test; default 512) */
  readonly nPrompt?: number;
  /** generated tokens for tg (0 skips the test; default 128) */
  readonly nGen?: number;
  /** timed runs per test (default 5) */
  readonly reps?: number;
  /** tokens per forward batch in pp (default 32, as Session) */
  readonly batch?: number;
  /** seed of the random token ids (default 1234) */
  readonly seed?: number;
  /** called before each run (warm-up included) */
  readonly onProgress?: (p: BenchProgress) => void;
  /** the sparsity policy of the forward pass (default dense) */
  readonly policy?: SparsityPolicy;
  /** reuse this forward pass and cache (at least n_prompt + n_gen positions) instead of making new ones in kernel memory */
  readonly forward?: Forward;
  readonly kv?: KVCache;
  /** the output layer for single-row logits (default dense; src/sparsity/head.ts) */
  readonly outputHead?: OutputHead | null;
}

export const BENCH_DEFAULTS = { nPrompt: 512, nGen: 128, reps: 5, batch: 32, seed: 1234 } as const;

/** Bytes of a KV cache of `ctx` positions: per layer, ctx × (keys + values) f32 numbers (KVCache's layout). */
export function kvCacheBytes(cfg: ModelConfig, ctx: number): number {
  return cfg.nLayers * ctx * (cfg.nKvHeads * cfg.headDim + cfg.nKvHeads * cfg.headDimV) * 4;
}

/** Mean and sample standard deviation (llama-bench's formula; 0 for fewer than two samples). */
export function stats(samples: number[]): Stats {
  const n = samples.length;
  const mean = n > 0 ? samples.reduce((a, x) => a + x, 0) / n : NaN;
  const stdev = n > 1 ? Math.sqrt(samples.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, stdev, samples };
}

/** The RSS high-water mark of this process, bytes (maxRSS is in KiB). */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

function checkCounts(nPrompt: number, nGen: number, reps: number, batch: number): void {
  const isInt = (v: number, min: number) => Number.isInteger(v) && v >= min;
  if (!isInt(nPrompt, 0)) throw new CtxError(`bench: n_prompt must be an integer ≥ 0, got ${nPrompt}`);
  if (!isInt(nGen, 0)) throw new CtxError(`bench: n_gen must be an integer ≥ 0, got ${nGen}`);
  if (!isInt(reps, 1)) throw new CtxError(`bench: reps must be an integer ≥ 1, got ${reps}`);
  if (!isInt(batch, 1)) throw new CtxError(`bench: batch must be an integer ≥ 1, got ${batch}`);
  if (nPrompt === 0 && nGen === 0) throw new CtxError('bench: both the prompt and the generation test are 0 tokens: nothing to measure');
}

/**
 * Run pp and tg on a loaded model. `threads` only labels the results (the model's kernels were
 * built with their thread count at load time).
 */
export function benchModel(model: Model, threads: number, opts: BenchOptions = {}): BenchTestResult[] {
  const nPrompt = opts.nPrompt ?? BENCH_DEFAULTS.nPrompt;
  const nGen = opts.nGen ?? BENCH_DEFAULTS.nGen;
  const reps = opts.reps ?? BENCH_DEFAULTS.reps;
  const batch = opts.batch ?? BENCH_DEFAULTS.batch;
  checkCounts(nPrompt, nGen, reps, batch);
  const rng = new Rng(opts.seed ?? BENCH_DEFAULTS.seed);
  const V = model.config.vocabSize;
  const randomIds = (n: number): number[] => Array.from({ length: n }, () => rng.nextU32() % V);

  const forward = opts.forward ?? model.createForward(batch);
  if (opts.policy) forward.policy = opts.policy;
  // as in generation: the prompt is computed dense, decoding sparse
  forward.sparsePrefill = false;
  if (opts.outputHead) forward.outputHead = opts.outputHead;
  // one cache of n_prompt + n_gen positions, as llama-bench sizes its context, emptied before
  // every run (emptying is all a fresh cache means: attention reads only the first `length`
  // positions). Making a new one per run would leak: caches in kernel memory are never freed.
  const kv = opts.kv ?? model.createCache(nPrompt + nGen);

  const results: BenchTestResult[] = [];
  const measure = (test: string, tokens: number, nP: number, nG: number, once: () => void): void => {
    const secs: number[] = [];
    for (let run = 0; run <= reps; run++) {
      opts.onProgress?.({ threads, test, run, reps });
      kv.truncate(0);
      const t0 = performance.now();
      once();
      const s = (performance.now() - t0) / 1000;
      if (run > 0) secs.push(s); // run 0 is the warm-up
    }
    results.push({
      threads, test, n_prompt: nP, n_gen: nG, reps,
      tokens_per_second: stats(secs.map((s) => tokens / s)),
      seconds: stats(secs),
      peak_rss_bytes: peakRssBytes(),
      kernels: model.kernels.name,
    });
  };

  if (nPrompt > 0) {
    measure(`pp${nPrompt}`, nPrompt, nPrompt, 0, () => {
      forward.run(kv, randomIds(nPrompt), 0, 'last');
    });
  }
  if (nGen > 0) {
    measure(`tg${nGen}`, nGen, 0, nGen, () => {
      // like llama-bench's tg: from an empty context, one token at a time, each followed by
      // a fresh random id (the draw is part of the timed loop there too; it costs nanoseconds)
      for (let i = 0; i < nGen; i++) {
        forward.run(kv, [rng.nextU32() % V], i, 'last');
      }
    });
  }
  return results;
}

export interface BenchFileOptions extends BenchOptions {
  /** thread counts to measure, each with its own load of the model (default: the machine's cores) */
  readonly threads?: readonly number[];
  /** the name reported as `model` (default: the file name without extension) */
  readonly name?: string;
  /** llama2.c checkpoints: the tokenizer file */
  readonly tokenizerPath?: string;
  /** called after each thread count's model is loaded */
  readonly onLoad?: (threads: number, seconds: number) => void;
  /** a sparsity policy for each loaded model (default dense) */
  readonly makePolicy?: (model: Model) => SparsityPolicy;
  /** the sparse output layer for each loaded model, built as part of the load (its time counts) */
  readonly makeHead?: (model: Model) => OutputHead | null;
}

/**
 * Benchmark a model file at each thread count: load, pp and tg, drop the model, next. Async only
 * so that a dropped model's worker threads can end (and its memory be freed) before the next load.
 */
export async function bench(path: string, opts: BenchFileOptions = {}): Promise<BenchReport> {
  const nPrompt = opts.nPrompt ?? BENCH_DEFAULTS.nPrompt;
  const nGen = opts.nGen ?? BENCH_DEFAULTS.nGen;
  const batch = opts.batch ?? BENCH_DEFAULTS.batch;
  const seed = opts.seed ?? BENCH_DEFAULTS.seed;
  checkCounts(nPrompt, nGen, opts.reps ?? BENCH_DEFAULTS.reps, batch);
  const threadList = opts.threads ?? [defaultThreads()];
  if (threadList.length === 0) throw new CtxError('bench: no thread counts given');
  for (const t of threadList) if (!(Number.isInteger(t) && t >= 1)) throw new CtxError(`bench: thread counts must be integers ≥ 1, got ${t}`);

  let fileBytes: number;
  try {
    fileBytes = statSync(path).size;
  } catch (e) {
    throw new CtxError(`cannot read model file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }

  const results: BenchTestResult[] = [];
  const loads: BenchLoad[] = [];
  let arch = '';
  const kernels: string[] = [];
  let kvBytes = 0;
  for (const [i, threads] of threadList.entries()) {
    const t0 = performance.now();
    const loadOpts: LoadOptions = { threads, ...(opts.tokenizerPath !== undefined && { tokenizerPath: opts.tokenizerPath }) };
    let model: Model | undefined = loadModel(path, loadOpts);
    const outputHead = opts.makeHead?.(model) ?? null;
    const loadSeconds = (performance.now() - t0) / 1000;
    opts.onLoad?.(threads, loadSeconds);
    arch = model.config.arch;
    if (!kernels.includes(model.kernels.name)) kernels.push(model.kernels.name);
    kvBytes = kvCacheBytes(model.config, nPrompt + nGen);
    // the same token ids at every thread count
    results.push(...benchModel(model, threads, { ...opts, seed, ...(opts.makePolicy && { policy: opts.makePolicy(model) }), outputHead }));
    loads.push({ threads, kernels: model.kernels.name, load_seconds: Math.round(loadSeconds * 1000) / 1000, peak_rss_bytes: peakRssBytes() });
    // drop the model before the next load: end the kernels' worker threads, which hold its memory
    // (close(), where the kernels have one; the workers take a few ms to exit), and collect it. V8
    // would not collect before the next load, and the next peak RSS would include both models
    // (seen: SmolLM2 at threads 2,2 gave 197 then 315 MB without this).
    (model.kernels as { close?: () => void }).close?.();
    model = undefined;
    if (i < threadList.length - 1) {
      for (const ms of [0, 20, 50]) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        collectGarbage();
      }
    }
  }
  return {
    model: opts.name ?? basename(path).replace(/\.(gguf|bin)$/i, ''),
    path, file_bytes: fileBytes, arch, results, loads,
    peak_rss_bytes: peakRssBytes(),
    kv_cache_bytes: kvBytes, n_ctx: nPrompt + nGen, batch, seed, kernels: kernels.join(', '),
  };
}

/**
 * A full garbage collection: global.gc with --expose-gc, else the same function fetched by turning
 * the flag on for a moment (a common Node idiom); a no-op if neither works.
 */
export function collectGarbage(): void {
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
      setFlagsFromString('--no-expose-gc');
    } catch {
      return;
    }
  }
  gc?.();
}

/** The default thread count: os.availableParallelism(), as the kernels' own default. */
export function defaultThreads(): number {
  return availableParallelism();
}
