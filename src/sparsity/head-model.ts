// Building a model's sparse output layer (head.ts): the screen, quantized at load from the output
// matrix or read from its cache file beside the model, its columns ordered by the energy of the
// final states of a short built-in text, its first stage's width chosen on those states, and the
// margins' error factors measured on them unless a profile gives them (`ctxsparse calibrate-head`).

import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { modelsDir } from '../models/catalog.js';
import { CtxError } from '../errors.js';
import { modelSha256 } from './profile.js';
import type { Model } from '../model/load.js';
import { buildScreen, DEFAULT_SAFETY, ROW_COST, SCATTER_COST, firstStageFactor, isWasm, rowNorms, scaledNorms, screenBytes, screenMatvecRef, secondNorms, SparseHead, viewF32, type Screen, type SparseHeadOptions } from './head.js';
import { SCREEN_FORMAT, screenView, splitScreen } from '../kernels/screen-layout.js';

import { HEAD_CALIBRATION_TEXT } from './head-calibration.js';

export { HEAD_CALIBRATION_TEXT };

export interface HeadBuildOptions extends Partial<SparseHeadOptions> {
  /** read / write the screen and its measured error in `<model>.ctxhead` (default true) */
  readonly cache?: boolean;
  /** choose each block's scale by least squared error (default true; false: Q4_0's absmax rule) */
  readonly search?: boolean;
  /** text to measure e on (default HEAD_CALIBRATION_TEXT) */
  readonly text?: string;
  /** per-row margins (default true); false: one global margin c·e·‖h‖ */
  readonly perRow?: boolean;
  /** the first stage's 64-column blocks (default: chosen on the calibration states); builds the screen again unless the cache has this width, and does not write the cache */
  readonly firstStage?: number;
  /** a profile's first-stage width: the screen must have it */
  readonly firstBlocks?: number;
  /** called when there is no usable cache and the screen is built and calibrated (tens of seconds) */
  readonly onBuild?: () => void;
}

// 4: columns in energy order, two stages (3: one stage in W's order; 2: a bf16 scale per 32-block)
const MAGIC = 'CTXHEAD4';
const HEADER_BYTES = 4096;

interface CacheHeader {
  size: number;
  mtimeMs: number;
  rows: number;
  cols: number;
  search: boolean;
  screen: string;
  textChars: number;
  /** the first stage's 64-column blocks */
  nb1: number;
  eUnit: number;
  kRow: number;
  kFirst: number;
}

type Measured = Pick<CacheHeader, 'nb1' | 'eUnit' | 'kRow' | 'kFirst'>;

/**
 * Where the cache may live: beside the model, else (a read-only model directory) in the model
 * cache's `heads/`, named by the file and a hash of its full path. Either is checked against the
 * model file's size and mtime (the header's key).
 */
function cachePaths(model: Model): string[] {
  const full = resolve(model.path);
  const id = createHash('sha256').update(full).digest('hex').slice(0, 16);
  return [`${model.path}.ctxhead`, join(modelsDir(), 'heads', `${basename(full)}-${id}.ctxhead`)];
}

/** The first valid cache (its measured factors and its path), read into dst; null when there is none. */
function readCache(model: Model, want: Omit<CacheHeader, keyof Measured>, dst: Uint8Array): { m: Measured; path: string } | null {
  for (const path of cachePaths(model)) {
    const m = readCacheFile(path, want, dst);
    if (m) return { m, path };
  }
  return null;
}

function readCacheFile(path: string, want: Omit<CacheHeader, keyof Measured>, dst: Uint8Array): Measured | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const head = new Uint8Array(HEADER_BYTES);
    if (readSync(fd, head, 0, HEADER_BYTES, 0) !== HEADER_BYTES) return null;
    const text = new TextDecoder().decode(head);
    if (!text.startsWith(MAGIC)) return null;
    const h = JSON.parse(text.slice(MAGIC.length, text.indexOf('\n'))) as CacheHeader;
    for (const k of Object.keys(want) as (keyof typeof want)[]) if (h[k] !== want[k]) return null;
    let got = 0;
    while (got < dst.length) {
      const n = readSync(fd, dst, got, Math.min(dst.length - got, 1 << 26), HEADER_BYTES + got);
      if (n <= 0) return null;
      got += n;
    }
    return { nb1: h.nb1, eUnit: h.eUnit, kRow: h.kRow, kFirst: h.kFirst };
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** Write the cache to the first place that takes it; returns that path, or null when none did. */
function writeCache(model: Model, h: CacheHeader, data: Uint8Array): string | null {
  const head = new Uint8Array(HEADER_BYTES);
  head.set(new TextEncoder().encode(`${MAGIC}${JSON.stringify(h)}\n`));
  for (const path of cachePaths(model)) {
    try {
      mkdirSync(dirname(path), { recursive: true });
      const fd = openSync(path, 'w');
      try {
        writeSync(fd, head);
        let off = 0;
        while (off < data.length) off += writeSync(fd, data, off, Math.min(data.length - off, 1 << 26));
      } finally {
        closeSync(fd);
      }
      return path;
    } catch {
      // not writable (or full): a partial file fails the read's length check; try the next place
    }
  }
  return null;
}

/** The final states (after the output norm) of every position of `tokens`, run in chunks from an empty cache. */
export function finalStates(model: Model, tokens: readonly number[], opts: { chunk?: number; bos?: number; onChunk?: (states: Float32Array[], done: number) => void } = {}): Float32Array[] {
  const { config: cfg, kernels, weights: w } = model;
  const D = cfg.dim;
  const chunk = opts.chunk ?? tokens.length;
  const fwd = model.createForward(32);
  const kv = model.createCache(chunk + 1);
  let states: Float32Array[] = [];
  fwd.tap = (name, layer, data, rows, width) => {
    if (name === 'residual' && layer === cfg.nLayers - 1) {
      for (let t = 0; t < rows; t++) {
        const h = new Float32Array(D);
        kernels.rmsnorm(h, 0, data.subarray(t * width, (t + 1) * width), 0, w.outputNorm, D, cfg.normEps);
        states.push(h);
      }
    }
  };
  const all: Float32Array[] = [];
  for (let c0 = 0; c0 < tokens.length; c0 += chunk) {
    const ids = tokens.slice(c0, c0 + chunk);
    if (opts.bos !== undefined) ids[0] = opts.bos;
    states = [];
    kv.truncate(0);
    fwd.run(kv, ids, 0, 'none');
    if (opts.onChunk) opts.onChunk(states, Math.min(tokens.length, c0 + chunk));
    else all.push(...states);
  }
  return all;
}

/** The error factors of a head's screen measured on final states (see measureScreenError). */
export interface ScreenErrors {
  eUnit: number;
  kRow: number;
  kFirst: number;
  /** each state's largest |screened − exact| per unit ‖h ⊙ c‖ */
  perPosition: number[];
}

/** states calibration computes the dense logits of at once (the mat-mat kernel reads each weight block once for all) */
const LOGIT_BATCH = 8;

/**
 * The exact logits (the dense head, before any softcap) of states[i0 .. i0 + n) into Z (n rows of
 * V), in one batched product: the kernels give each row of a batch the bits its own mat-vec gives.
 */
function denseLogits(model: Model, states: readonly Float32Array[], i0: number, n: number, Z: Float32Array): void {
  const D = model.config.dim;
  const X = new Float32Array(n * D);
  for (let j = 0; j < n; j++) X.set(states[i0 + j]!.subarray(0, D), j * D);
  if (n === 1) model.kernels.matvec(model.weights.output, X, Z);
  else model.kernels.matmul(model.weights.output, X, n, Z);
}

/** Fold the errors of `states` into acc: the largest ratios over every row (exact = the dense mat-vec, before any softcap). */
export function screenErrors(model: Model, head: SparseHead, states: readonly Float32Array[], acc: ScreenErrors = { eUnit: 0, kRow: 0, kFirst: 0, perPosition: [] }): ScreenErrors {
  const V = head.V;
  const Z = new Float32Array(Math.min(LOGIT_BATCH, states.length) * V);
  const R = head.rowErr, T = head.second;
  for (let i0 = 0; i0 < states.length; i0 += LOGIT_BATCH) {
    const nb = Math.min(LOGIT_BATCH, states.length - i0);
    denseLogits(model, states, i0, nb, Z);
    for (let j = 0; j < nb; j++) {
      const h = states[i0 + j]!, z = Z.subarray(j * V, (j + 1) * V);
      const { norm, second } = scaledNorms(head.screen, h);
      if (norm === 0) continue;
      let s: Float32Array;
      if (R && T) {
        // the first stage's factor, then its scores completed by the second stage
        acc.kFirst = firstStageFactor(head.firstScores(h), z, R, T, norm, second, acc.kFirst);
        s = head.completeScores(h);
      } else s = head.scores(h);
      let worst = 0, cos = 0;
      for (let i = 0; i < V; i++) {
        const e = Math.abs(s[i]! - z[i]!);
        if (e > worst) worst = e;
        if (R && e > cos * R[i]!) cos = e / R[i]!;
      }
      acc.kRow = Math.max(acc.kRow, cos / norm);
      acc.perPosition.push(worst / norm);
      acc.eUnit = Math.max(acc.eUnit, worst / norm);
    }
  }
  return acc;
}

/**
 * Largest |screened − exact| logit per unit ‖h ⊙ c‖ (eUnit), and the per-row margins' factors
 * (kRow: full scores; kFirst: the first stage's), over every row and every position of `tokens`
 * (exact = the dense mat-vec the model decodes with, before any softcap).
 */
export function measureScreenError(model: Model, head: SparseHead, tokens: readonly number[],
  opts: { chunk?: number; bos?: number; onProgress?: (done: number, total: number) => void } = {}): { eUnit: number; kRow: number; kFirst: number; positions: number; perPosition: number[] } {
  const acc: ScreenErrors = { eUnit: 0, kRow: 0, kFirst: 0, perPosition: [] };
  finalStates(model, tokens, {
    ...(opts.chunk !== undefined && { chunk: opts.chunk }), ...(opts.bos !== undefined && { bos: opts.bos }),
    onChunk: (states, done) => {
      screenErrors(model, head, states, acc);
      opts.onProgress?.(done, tokens.length);
    },
  });
  return { ...acc, positions: acc.perPosition.length };
}

// The first stage's width is chosen with the sparse head's cost model (SCATTER_COST in head.ts).
/** calibration states the width is chosen on */
const SAMPLE_STATES = 320;

/**
 * The first stage's width for a one-stage screen S (columns in energy order), chosen on final
 * states in one pass: for each width nb1 of the last few, the first stage's error factor kFirst (as
 * screenErrors measures it), the 4-row groups its margins keep (safety c) against the exact logit
 * of the state's best first-stage row, and the cost groups·nb1 + kept·(SCATTER_COST·(nb − nb1) +
 * ROW_COST) (kept: the mean over the states). Also the chosen width's second-stage norms t_i.
 * `force`: that width, whatever it costs.
 */
export function chooseFirstStage(model: Model, S: Screen, rowErr: Float32Array, blocks: Float32Array, allStates: readonly Float32Array[], safety: number, force?: number):
  { nb1: number; second: Float32Array; costs: Map<number, number>; factors: Map<number, number> } {
  const { kernels } = model;
  const V = model.weights.output.rows, { nb, groups } = S;
  const wasm = isWasm(kernels) ? kernels : null;
  const s = wasm ? viewF32(kernels, 4 * groups) : new Float32Array(4 * groups);
  const widths: number[] = [];
  if (force !== undefined) {
    if (!(Number.isInteger(force) && force >= 1 && force <= nb)) throw new CtxError(`sparse head: a first stage of ${force} blocks (1..${nb})`);
    if (force < nb) widths.push(force);
  } else for (let w = nb - 1; w >= Math.max(1, Math.ceil(nb / 2), nb - 4); w--) widths.push(w);
  const T = new Map(widths.map((w) => [w, secondNorms(blocks, nb, w, new Float32Array(V))]));
  // every state's factors are measured once the width is chosen (screenErrors); the choice itself
  // looks at SAMPLE_STATES of them, evenly spaced
  const every = Math.max(1, Math.ceil(allStates.length / SAMPLE_STATES));
  const states = allStates.filter((_, i) => i % every === 0);
  const k1 = new Map(widths.map((w) => [w, 0]));
  // k₁ is known only after the last state, so each state's groups are counted for every k at once:
  // a histogram, per width, of the smallest factor at which the first stage keeps a group (one of
  // its rows has s¹_i + c·k·(r_i·‖h ⊙ c‖ + t_i·‖(h ⊙ c)₂‖) ≥ m, m the exact logit of the state's
  // best first-stage row), summed over the states
  const hist = new Map(widths.map((w) => [w, new Float64Array(FACTOR_BINS)]));
  let counted = 0;
  const Z = new Float32Array(Math.min(LOGIT_BATCH, states.length) * V);
  for (let i0 = 0; i0 < states.length; i0 += LOGIT_BATCH) {
    const n = Math.min(LOGIT_BATCH, states.length - i0);
    denseLogits(model, states, i0, n, Z);
    for (let j = 0; j < n; j++) {
      const h = states[i0 + j]!, z = Z.subarray(j * V, (j + 1) * V);
      const norm = scaledNorms(S, h).norm;
      if (norm === 0) continue;
      counted++;
      for (const w of widths) {
        let b = 0;
        if (wasm) b = wasm.screenMatvec(S, h, s, V, w);
        else {
          screenMatvecRef(S, h, s, 64 * w);
          for (let i = 1; i < V; i++) if (s[i]! > s[b]!) b = i;
        }
        const t = T.get(w)!, n2 = scaledNorms(S, h, 64 * w).second;
        k1.set(w, firstStageFactor(s, z, rowErr, t, norm, n2, k1.get(w)!));
        groupFactors(s, z[b]!, rowErr, t, safety * norm, safety * n2, V, hist.get(w)!);
      }
    }
  }
  const costs = new Map<number, number>([[nb, groups * nb]]);
  let best = force ?? nb;
  for (const w of widths) {
    const H = hist.get(w)!, top = Math.min(FACTOR_BINS - 1, Math.floor(k1.get(w)! * FACTOR_BINS / FACTOR_MAX));
    let kept = 0;
    for (let i = 0; i <= top; i++) kept += H[i]!;
    const mean = counted ? kept / counted : groups;
    costs.set(w, groups * w + mean * (SCATTER_COST * (nb - w) + ROW_COST));
    if (force === undefined && costs.get(w)! < costs.get(best)!) best = w;
  }
  const second = best < nb ? T.get(best)! : new Float32Array(V);
  return { nb1: best, second, costs, factors: k1 };
}

/** the factor histogram's range [0, FACTOR_MAX) and bins (the factors are ~0.3; a group beyond is never kept) */
const FACTOR_MAX = 4;
const FACTOR_BINS = 1 << 16;

/**
 * Add to H, for each 4-row group of rows < V, one count in the bin of the smallest k at which one of
 * its rows has s_i + k·(a·r_i + b·t_i) ≥ m (bin 0 when a row is there at k = 0; none when that k is
 * FACTOR_MAX or more).
 */
function groupFactors(s: Float32Array, m: number, r: Float32Array, t: Float32Array, a: number, b: number, V: number, H: Float64Array): void {
  const scale = FACTOR_BINS / FACTOR_MAX;
  for (let g0 = 0; g0 < V; g0 += 4) {
    let k = Infinity;
    for (let i = g0; i < Math.min(V, g0 + 4); i++) {
      const gap = m - s[i]!;
      if (gap <= 0) { k = 0; break; }
      const u = a * r[i]! + b * t[i]!;
      if (gap < FACTOR_MAX * u) k = Math.min(k, gap / u);
    }
    if (k < FACTOR_MAX) H[Math.floor(k * scale)]!++;
  }
}

/** A head profile (`ctxsparse calibrate-head`): the screen error measured on calibration text for one model file. */
export interface HeadProfile {
  /** 3: the two-stage screen in energy order (2: one stage in W's order; 1: per-block scales; both refused) */
  readonly ctxsparse_head_profile: 3;
  readonly model: { readonly name: string; readonly sha256: string };
  /** largest |screened − exact| logit per unit ‖h ⊙ c‖ over all rows and positions */
  readonly e_unit: number;
  /** largest |screened − exact| / (‖Ŵ_i − W_i ⊘ c‖·‖h ⊙ c‖) over all rows and positions (the per-row margins' factor) */
  readonly k_row: number;
  /** the first stage's: largest |first-stage score − exact| / (r_i·‖h ⊙ c‖ + t_i·‖(h ⊙ c)₂‖) (0: one stage) */
  readonly k_first: number;
  /** the per-position worst errors' quantiles (per unit ‖h ⊙ c‖) */
  readonly quantiles: { readonly p50: number; readonly p99: number; readonly p999: number };
  readonly calibration: { readonly data: string; readonly skip_tokens: number; readonly tokens: number; readonly chunk: number };
  /** first_blocks: the first stage's 64-column blocks (k_first holds for that width only) */
  readonly screen: { readonly bits: 4; readonly search: boolean; readonly format: string; readonly first_blocks: number };
}

export function loadHeadProfile(file: string, model: Model): HeadProfile {
  let j: HeadProfile;
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as HeadProfile;
  } catch (e) {
    throw new CtxError(`--head-profile ${file}: cannot read it as JSON: ${(e as Error).message}`);
  }
  const v = j?.ctxsparse_head_profile as number;
  if (v === 1 || v === 2) throw new CtxError(`--head-profile ${file}: made for a previous screen format; measure it again with \`ctxsparse calibrate-head\``);
  const num = (x: unknown): boolean => typeof x === 'number' && x >= 0 && Number.isFinite(x);
  if (v !== 3 || !num(j.e_unit) || !num(j.k_row) || !num(j.k_first) || !Number.isInteger(j.screen?.first_blocks)) throw new CtxError(`--head-profile ${file}: not a head profile (write one with \`ctxsparse calibrate-head\`)`);
  const sha = modelSha256(model.path);
  if (j.model?.sha256 !== sha) throw new CtxError(`--head-profile ${file}: calibrated for ${j.model?.name ?? 'another model'} (sha256 ${String(j.model?.sha256).slice(0, 12)}…), not ${model.path}`);
  if (j.screen?.format !== SCREEN_FORMAT) throw new CtxError(`--head-profile ${file}: made for another screen (${String(j.screen?.format)}); measure it again with \`ctxsparse calibrate-head\``);
  return j;
}

/** The model's sparse output layer, ready to set as `forward.outputHead`. */
export function buildSparseHead(model: Model, opts: HeadBuildOptions = {}): SparseHead {
  const W = model.weights.output, V = W.rows;
  const search = opts.search ?? true;
  const bytes = screenBytes(V, W.cols);
  // the screen, then the per-row error norms and second-stage norms (f32), one allocation (and one cache read)
  const all = model.kernels.alloc ? model.kernels.alloc(bytes + 8 * V) : new Uint8Array(bytes + 8 * V);
  const data = all.subarray(0, bytes);
  const rowErr = new Float32Array(all.buffer, all.byteOffset + bytes, V);
  const second = new Float32Array(all.buffer, all.byteOffset + bytes + 4 * V, V);
  const text = opts.text ?? HEAD_CALIBRATION_TEXT;
  const useCache = (opts.cache ?? true) && model.format === 'gguf';
  let st: { size: number; mtimeMs: number } = { size: 0, mtimeMs: 0 };
  try {
    st = statSync(model.path);
  } catch { /* not a file: no cache */ }
  const key = { size: st.size, mtimeMs: st.mtimeMs, rows: V, cols: W.cols, search, screen: SCREEN_FORMAT, textChars: text.length };
  const found = useCache ? readCache(model, key, all) : null;
  let cached = found && !(opts.firstStage !== undefined && found.m.nb1 !== opts.firstStage) ? found.m : null;
  let cacheFile = cached ? found!.path : null;
  let screen: Screen;
  let states: Float32Array[] = [];
  if (cached !== null) screen = screenView(V, W.cols, data, cached.nb1);
  else {
    opts.onBuild?.();
    // the columns in the order of the calibration states' energy, then the first stage's width
    states = finalStates(model, model.tokenizer.encode(text));
    const energy = new Float64Array(W.cols);
    for (const h of states) for (let j = 0; j < W.cols; j++) energy[j] += h[j]! * h[j]!;
    const one = buildScreen(model.kernels, W, data, search, energy);
    const norms = rowNorms(model.kernels, W, one);
    rowErr.set(norms.err);
    const c = chooseFirstStage(model, one, rowErr, norms.blocks, states, opts.safety ?? DEFAULT_SAFETY, opts.firstStage);
    second.set(c.second);
    screen = splitScreen(one, c.nb1);
  }
  if (opts.firstBlocks !== undefined && opts.firstBlocks !== screen.nb1) {
    throw new CtxError(`--head-profile: made for a first stage of ${opts.firstBlocks} blocks; this model's screen has ${screen.nb1} (measure it again with \`ctxsparse calibrate-head\`)`);
  }
  const perRow = opts.perRow ?? true;
  const head = new SparseHead(model.kernels, W, screen, model.config.finalLogitSoftcap, {
    eUnit: 0, ...(perRow && { rowErr, kRow: 0, second, kFirst: 0 }),
    ...(opts.safety !== undefined && { safety: opts.safety }), ...(opts.epsilon !== undefined && { epsilon: opts.epsilon }),
    ...(opts.denseAbove !== undefined && { denseAbove: opts.denseAbove }),
  });
  if (cached === null) {
    // the margins' factors on the screen as it runs (measured with per-row margins whatever perRow says)
    const probe = perRow ? head : new SparseHead(model.kernels, W, screen, 0, { eUnit: 0, rowErr, kRow: 0, second, kFirst: 0 });
    const e = screenErrors(model, probe, states);
    cached = { nb1: screen.nb1, eUnit: e.eUnit, kRow: e.kRow, kFirst: e.kFirst };
    // (a forced width is an experiment: the cache keeps the chosen one)
    if (useCache && opts.firstStage === undefined) cacheFile = writeCache(model, { ...key, ...cached }, all);
  }
  head.cacheFile = cacheFile;
  head.eUnit = opts.eUnit ?? cached.eUnit;
  if (perRow) {
    head.kRow = opts.kRow ?? cached.kRow;
    if (head.second) head.kFirst = opts.kFirst ?? cached.kFirst;
  }
  return head;
}
