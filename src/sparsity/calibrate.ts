// Calibration: run the dense model over calibration text, gather the magnitude statistics a method
// thresholds on, choose per-site levels (uniform, or TEAL's greedy allocation) and turn them into
// thresholds: a Profile.
//
// - Text: by default WikiText-2 test tokens after the first 100 chunks of 512 (the chunks that
//   `perplexity --ctx 512 --chunks 100` evaluates), in chunks of 512 with BOS first when the model
//   adds one (as perplexity feeds them).
// - Statistics (Forward's `tap`, dense policy): histograms of |x| at the inputs of q/k/v, o,
//   gate/up and down (TEAL), of |x_j|·‖W[:,j]‖₂ there (WINA), of |act(gate)| (CATS), and for CHESS
//   the mean |up_i| per neuron plus stored act(gate) samples; the allocation stores `samples`
//   token activations per site to estimate each linear's output error.
// - Greedy allocation (TEAL, WINA): every (layer, site) gets an error curve e(level) = mean over
//   the samples of ‖W(x⊙m) − Wx‖² / ‖Wx‖², m dropping what the level's threshold drops, levels
//   0, 0.01, …, 0.99; starting from 0 everywhere, repeatedly raise by 0.01 the site whose next step
//   adds the least error per parameter it removes, until the parameter-weighted mean level over
//   q, k, v, o, gate, up, down reaches the target.

import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CtxError } from '../errors.js';
import { Rng } from '../generate/sampler.js';
import type { TapName } from '../model/forward.js';
import type { Model } from '../model/load.js';
import { Histogram } from './histogram.js';
import { siteLinears, transposed } from './linears.js';
import { linearParams, type Site } from './measure.js';
import type { LinearSite } from './policy.js';
import { modelName, modelSha256, type Allocation, type LayerSettings, type Method, type Profile } from './profile.js';
import { TEAL_SITES } from './teal.js';
import { winaNorms, type SiteNorms } from './wina.js';

/** The evaluation that calibration must not see: `perplexity --ctx 512 --chunks 100`. */
export const EVAL_CTX = 512;
export const EVAL_CHUNKS = 100;
export const CALIBRATION_DEFAULTS = { tokens: 16384, chunk: 512, seed: 0, samples: 64, chessSamples: 128 } as const;

/** ../shared/eval/wikitext-2-raw/wiki.test.raw beside the project. */
export function defaultCalibrationFile(): string {
  // this file is dist/src/sparsity/calibrate.js
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'shared', 'eval', 'wikitext-2-raw', 'wiki.test.raw');
}

export interface CalibrateOptions {
  readonly method: Method;
  /** target share dropped, in (0, 1) */
  readonly sparsity: number;
  /** TEAL and WINA (default greedy: across all layers; greedy-layer: within each layer, every layer at the target); CATS and CHESS are uniform */
  readonly allocation?: Allocation;
  /** the calibration text and a name for it (recorded in the profile) */
  readonly text: string;
  readonly dataName: string;
  /** tokens of the text to skip first (default: EVAL_CHUNKS × EVAL_CTX) */
  readonly skipTokens?: number;
  /** calibration tokens (default 16384; fewer if the text ends first, whole chunks) */
  readonly tokens?: number;
  readonly chunk?: number;
  readonly seed?: number;
  /** token activations stored per site (default 64; 128 for CHESS) */
  readonly samples?: number;
  readonly onProgress?: (phase: 'statistics' | 'allocation', done: number, total: number) => void;
}

/**
 * The calibration chunks: `tokens` ids (whole chunks) from `skip` on, each chunk's first id
 * replaced by BOS when given.
 */
export function calibrationChunks(ids: readonly number[], skip: number, tokens: number, chunk: number, bos?: number): number[][] {
  const avail = ids.length - skip;
  const n = Math.floor(Math.min(tokens, Math.max(0, avail)) / chunk);
  if (n === 0) {
    throw new CtxError(`the calibration text has ${ids.length} tokens; after skipping ${skip} it needs at least one chunk of ${chunk}`);
  }
  const out: number[][] = [];
  for (let c = 0; c < n; c++) {
    const ch = ids.slice(skip + c * chunk, skip + (c + 1) * chunk);
    if (bos !== undefined) ch[0] = bos;
    out.push(ch);
  }
  return out;
}

/** Which tap feeds which site's statistics, per method. */
function tapSites(method: Method): Partial<Record<TapName, Site>> {
  switch (method) {
    case 'teal':
    case 'wina':
      return { attn_in: 'attn_in', attn_out: 'attn_out', ffn_in: 'ffn_in', ffn_act: 'ffn_down' };
    case 'cats':
      return { ffn_gate_act: 'ffn_neurons' };
    case 'chess':
      return { attn_in: 'attn_q', attn_out: 'attn_out', ffn_gate_act: 'ffn_neurons' };
  }
}

/** Parameters each site's level applies to. */
function siteParams(model: Model, site: Site): number {
  const p = linearParams(model.config);
  switch (site) {
    case 'attn_in': return p.q + p.k + p.v;
    case 'attn_q': return p.q;
    case 'attn_out': return p.o;
    case 'ffn_in': return p.gate + p.up;
    case 'ffn_down': return p.down;
    case 'ffn_neurons': return p.up + p.down;
  }
}

/** Parameter-weighted mean level over all seven linears of every layer. */
export function meanLevel(model: Model, layers: readonly LayerSettings[]): number {
  const p = linearParams(model.config);
  const perLayer = p.q + p.k + p.v + p.o + p.gate + p.up + p.down;
  let s = 0;
  for (const e of layers) for (const [site, v] of Object.entries(e)) s += siteParams(model, site as Site) * v!.level;
  return s / (perLayer * layers.length);
}

const GRID = 100; // levels 0, 0.01, …, 0.99

/**
 * Mean relative output error ‖W(x⊙m) − Wx‖² / ‖Wx‖² of the stacked linears WT (transposed, R
 * rows) over the samples X (S rows of C), for each level g whose threshold is thr[g] on the
 * score |x_j|·(scale_j or 1). The dropped part W(x⊙(1−m)) grows one column at a time as the
 * threshold rises, so all levels cost one mat-vec per sample.
 */
export function errorCurve(WT: Float32Array, R: number, C: number, X: Float32Array, S: number, scale: Float32Array | undefined, thr: Float64Array): Float64Array {
  const G = thr.length - 1;
  const acc = new Float64Array(G + 1);
  const errs = new Float64Array(G + 1);
  const e = new Float64Array(R);
  const score = new Float32Array(C);
  const order = new Int32Array(C);
  let used = 0;
  const sumsq = (): number => {
    let s = 0;
    for (let r = 0; r < R; r++) s += e[r]! * e[r]!;
    return s;
  };
  for (let s = 0; s < S; s++) {
    const x = X.subarray(s * C, (s + 1) * C);
    for (let j = 0; j < C; j++) {
      score[j] = Math.abs(x[j]!) * (scale ? scale[j]! : 1);
      order[j] = j;
    }
    order.sort((a, b) => score[a]! - score[b]!);
    e.fill(0);
    let p = 0;
    const drop = (j: number): void => {
      const xj = x[j]!;
      if (xj === 0) return;
      for (let r = 0, o = j * R; r < R; r++, o++) e[r]! += xj * WT[o]!;
    };
    for (let g = 1; g <= G; g++) {
      const t = thr[g]!;
      while (p < C && score[order[p]!]! <= t) drop(order[p++]!);
      errs[g] = sumsq();
    }
    while (p < C) drop(order[p++]!);
    const yy = sumsq();
    if (!(yy > 0)) continue;
    used++;
    for (let g = 1; g <= G; g++) acc[g]! += errs[g]! / yy;
  }
  if (used > 0) for (let g = 1; g <= G; g++) acc[g]! /= used;
  return acc;
}

interface Candidate {
  readonly layer: number;
  readonly site: LinearSite;
  readonly share: number;
  readonly thr: Float64Array;
  readonly err: Float64Array;
  cur: number;
}

/** TEAL's greedy allocation over the candidates' error curves; returns the mean level reached. */
export function greedyAllocate(cands: Candidate[], target: number): number {
  let mean = 0;
  while (mean < target - 1e-12) {
    let best: Candidate | undefined;
    let bestCost = Infinity;
    for (const c of cands) {
      if (c.cur >= GRID - 1) continue;
      const cost = (c.err[c.cur + 1]! - c.err[c.cur]!) / c.share;
      if (cost < bestCost) {
        bestCost = cost;
        best = c;
      }
    }
    if (!best) break;
    best.cur++;
    mean += best.share / GRID;
  }
  return mean;
}

export function calibrate(model: Model, opts: CalibrateOptions): Profile {
  return calibrateLevels(model, opts, [opts.sparsity])[0]!;
}

/**
 * One profile per target sparsity from one pass of statistics (and one set of error curves):
 * the levels of a sweep cost one calibration. `opts.sparsity` is ignored.
 */
export function calibrateLevels(model: Model, opts: CalibrateOptions, targets: readonly number[]): Profile[] {
  const t0 = performance.now();
  const { method } = opts;
  for (const target of targets) if (!(target > 0 && target < 1)) throw new CtxError(`sparsity must be in (0, 1), got ${target}`);
  const cfg = model.config;
  const L = cfg.nLayers;
  // default: TEAL's block-wise form; the model-wide greedy pushes first and last layers too far on SmolLM2
  // (a linear's own error does not show how far it spreads): 35.5 vs 33.4 perplexity at 0.4
  const allocation: Allocation = method === 'teal' || method === 'wina' ? (opts.allocation ?? 'greedy-layer') : 'uniform';
  const chunk = Math.min(opts.chunk ?? CALIBRATION_DEFAULTS.chunk, cfg.ctxTrain);
  const skip = opts.skipTokens ?? EVAL_CHUNKS * EVAL_CTX;
  const seed = opts.seed ?? CALIBRATION_DEFAULTS.seed;
  const tok = model.tokenizer;
  const ids = tok.encode(opts.text, { parseSpecial: false });
  const chunks = calibrationChunks(ids, skip, opts.tokens ?? CALIBRATION_DEFAULTS.tokens, chunk, tok.addBosDefault ? tok.bos : undefined);
  const nTok = chunks.length * chunk;

  // token activations kept for the allocation (and CHESS's neuron scores): distinct random
  // positions, never a chunk's first (BOS) token
  const greedy = allocation === 'greedy' || allocation === 'greedy-layer';
  const needSamples = greedy || method === 'chess';
  let S = needSamples ? opts.samples ?? (method === 'chess' ? CALIBRATION_DEFAULTS.chessSamples : CALIBRATION_DEFAULTS.samples) : 0;
  S = Math.min(S, nTok - chunks.length);
  const slot = new Int32Array(nTok).fill(-1);
  const rng = new Rng(seed);
  for (let s = 0; s < S;) {
    const g = rng.nextU32() % nTok;
    if (g % chunk === 0 || slot[g] !== -1) continue;
    slot[g] = s++;
  }

  const sites = tapSites(method);
  const norms: SiteNorms | undefined = method === 'wina' ? winaNorms(model, TEAL_SITES) : undefined;
  const hists = new Map<Site, Histogram[]>();
  const samples = new Map<Site, Float32Array[]>();
  for (const site of Object.values(sites) as Site[]) {
    // CHESS scores neurons by |act(gate)|·E|up|, known only at the end: from samples, not a histogram
    if (!(method === 'chess' && site === 'ffn_neurons')) hists.set(site, Array.from({ length: L }, () => new Histogram()));
    if (S > 0 && (greedy || site === 'ffn_neurons')) samples.set(site, []);
  }
  const upSum = method === 'chess' ? Array.from({ length: L }, () => new Float64Array(cfg.ffnDim)) : undefined;

  const forward = model.createForward(64);
  const kv = model.createCache(chunk);
  let base = 0;
  forward.tap = (name, layer, data, rows, width) => {
    if (name === 'ffn_up') {
      if (!upSum) return;
      const u = upSum[layer]!;
      for (let r = 0; r < rows; r++) for (let j = 0, o = r * width; j < width; j++, o++) u[j]! += Math.abs(data[o]!);
      return;
    }
    const site = sites[name];
    if (!site) return;
    const h = hists.get(site)?.[layer];
    if (h) {
      const scale = norms?.[layer]?.[site as LinearSite];
      if (scale) for (let r = 0; r < rows; r++) h.add(data, r * width, width, scale);
      else h.add(data, 0, rows * width);
    }
    const smp = samples.get(site);
    if (smp) {
      const buf = (smp[layer] ??= new Float32Array(S * width));
      for (let r = 0; r < rows; r++) {
        const s = slot[base + r]!;
        if (s >= 0) buf.set(data.subarray(r * width, (r + 1) * width), s * width);
      }
    }
  };
  const B = forward.maxBatch;
  try {
    for (const [c, ch] of chunks.entries()) {
      kv.truncate(0);
      for (let b = 0; b < chunk; b += B) {
        base = c * chunk + b;
        forward.run(kv, ch.slice(b, b + B), b, 'none');
      }
      opts.onProgress?.('statistics', c + 1, chunks.length);
    }
  } finally {
    forward.tap = undefined;
  }

  const quantileOf = (site: Site, l: number, q: number): number => hists.get(site)![l]!.quantile(q);
  // the allocation's error curves do not depend on the target: computed once
  const cands: Candidate[] = [];
  if (greedy) {
    const totalParams = L * TEAL_SITES.reduce((a, s) => a + siteParams(model, s), 0);
    for (let l = 0; l < L; l++) {
      for (const site of TEAL_SITES) {
        const thr = new Float64Array(GRID);
        for (let g = 1; g < GRID; g++) thr[g] = quantileOf(site, l, g / GRID);
        const { WT, rows, cols } = transposed(siteLinears(model, l, site));
        const err = errorCurve(WT, rows, cols, samples.get(site)![l]!, S, norms?.[l]?.[site], thr);
        cands.push({ layer: l, site, share: siteParams(model, site) / totalParams, thr, err, cur: 0 });
      }
      opts.onProgress?.('allocation', l + 1, L);
    }
  }
  const upMean = upSum?.map((u) => Float32Array.from(u, (v) => v / nTok));
  const seconds = Math.round((performance.now() - t0) / 100) / 10;

  return targets.map((target): Profile => {
    const layers: LayerSettings[] = Array.from({ length: L }, () => ({}));
    if (method === 'teal' || method === 'wina') {
      if (allocation === 'uniform') {
        for (let l = 0; l < L; l++) for (const site of TEAL_SITES) layers[l]![site] = { level: target, threshold: quantileOf(site, l, target) };
      } else {
        for (const c of cands) c.cur = 0;
        if (allocation === 'greedy') greedyAllocate(cands, target);
        else {
          // TEAL's block-wise form: each layer reaches the target, its sites share it greedily
          for (let l = 0; l < L; l++) {
            const mine = cands.filter((c) => c.layer === l);
            const total = mine.reduce((a, c) => a + c.share, 0);
            const local = mine.map((c) => ({ ...c, share: c.share / total, cur: 0 }));
            greedyAllocate(local, target);
            for (const [i, c] of mine.entries()) c.cur = local[i]!.cur;
          }
        }
        for (const c of cands) layers[c.layer]![c.site] = { level: c.cur / GRID, threshold: c.thr[c.cur]! };
      }
    } else if (method === 'cats') {
      for (let l = 0; l < L; l++) layers[l]!.ffn_neurons = { level: target, threshold: quantileOf('ffn_neurons', l, target) };
    } else {
      const F = cfg.ffnDim;
      for (let l = 0; l < L; l++) {
        layers[l]!.attn_q = { level: target, threshold: quantileOf('attn_q', l, target) };
        layers[l]!.attn_out = { level: target, threshold: quantileOf('attn_out', l, target) };
        const up = upMean![l]!;
        const acts = samples.get('ffn_neurons')![l]!;
        const scores = new Float32Array(S * F);
        for (let s = 0; s < S; s++) for (let i = 0; i < F; i++) scores[s * F + i] = Math.abs(acts[s * F + i]!) * up[i]!;
        scores.sort();
        // drop the share `target` of the sampled scores: T between the last dropped and the first kept
        const pos = target * scores.length;
        const k = Math.min(scores.length - 1, Math.floor(pos));
        const threshold = k > 0 ? scores[k - 1]! + (pos - k) * (scores[k]! - scores[k - 1]!) : scores[0]!;
        layers[l]!.ffn_neurons = { level: target, threshold, channel_scale: Array.from(up) };
      }
    }
    return {
      ctxsparse_profile: 1,
      method,
      sparsity: target,
      allocation,
      model: { name: modelName(model.path), sha256: modelSha256(model.path), arch: cfg.arch, layers: L },
      calibration: { data: opts.dataName, skip_tokens: skip, tokens: nTok, chunk, seed, samples: S, seconds },
      mean_level: meanLevel(model, layers),
      layers,
    };
  });
}
