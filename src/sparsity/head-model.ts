// Building a model's sparse output layer (head.ts): the screen, quantized at load from the output
// matrix or read from its cache file beside the model, and the screen error per unit ‖h ⊙ c‖, e,
// measured on a short built-in text unless a profile gives one (`ctxsparse calibrate --method head`).

import { closeSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { CtxError } from '../errors.js';
import { modelSha256 } from './profile.js';
import type { Model } from '../model/load.js';
import { buildScreen, rowErrorNorms, scaledNorm, screenBytes, SparseHead, type Screen, type SparseHeadOptions } from './head.js';
import { SCREEN_FORMAT, screenView } from '../kernels/screen-layout.js';

/** Mixed text (prose, dialogue, code, numbers) the default screen error is measured on. */
export const HEAD_CALIBRATION_TEXT = `The old lighthouse keeper climbed the stairs every evening, counting all one hundred and twelve steps. "Do you ever get tired of it?" his granddaughter asked. He laughed and said that the sea was never the same twice.
Question: What is the capital of France? Answer: The capital of France is Paris, which is also its largest city.
def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
In 1969, Apollo 11 landed on the Moon; the mission lasted 8 days, 3 hours and 18 minutes. Photosynthesis converts light energy into chemical energy stored in glucose.
User: Can you write a short poem about autumn leaves?
Assistant: Golden leaves drift slowly down, painting paths in red and brown.`;

export interface HeadBuildOptions extends Partial<SparseHeadOptions> {
  /** read / write the screen and its measured error in `<model>.ctxhead` (default true) */
  readonly cache?: boolean;
  /** choose each block's scale by least squared error (default true; false: Q4_0's absmax rule) */
  readonly search?: boolean;
  /** text to measure e on (default HEAD_CALIBRATION_TEXT) */
  readonly text?: string;
  /** per-row margins (default true); false: one global margin c·e·‖h‖ */
  readonly perRow?: boolean;
}

// 3: one scale per row of the column-scaled matrix, 64-column blocks (2: a bf16 scale per 32-block)
const MAGIC = 'CTXHEAD3';
const HEADER_BYTES = 4096;

interface CacheHeader {
  size: number;
  mtimeMs: number;
  rows: number;
  cols: number;
  search: boolean;
  screen: string;
  eUnit: number;
  kRow: number;
  textChars: number;
}

function cachePath(model: Model): string {
  return `${model.path}.ctxhead`;
}

function readCache(model: Model, want: Omit<CacheHeader, 'eUnit' | 'kRow'>, dst: Uint8Array): { eUnit: number; kRow: number } | null {
  let fd: number;
  try {
    fd = openSync(cachePath(model), 'r');
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
    return { eUnit: h.eUnit, kRow: h.kRow };
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

function writeCache(model: Model, h: CacheHeader, data: Uint8Array): void {
  try {
    const head = new Uint8Array(HEADER_BYTES);
    head.set(new TextEncoder().encode(`${MAGIC}${JSON.stringify(h)}\n`));
    const fd = openSync(cachePath(model), 'w');
    try {
      writeSync(fd, head);
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, Math.min(data.length - off, 1 << 26));
    } finally {
      closeSync(fd);
    }
  } catch {
    // a read-only model directory: build the screen at every load
  }
}

/**
 * Largest |screened − exact| logit per unit ‖h ⊙ c‖ over every row and every position of `tokens`
 * (exact = the dense mat-vec the model decodes with, before any softcap).
 */
export function measureScreenError(model: Model, head: SparseHead, tokens: readonly number[],
  opts: { chunk?: number; bos?: number; onProgress?: (done: number, total: number) => void } = {}): { eUnit: number; kRow: number; positions: number; perPosition: number[] } {
  const { config: cfg, kernels, weights: w } = model;
  const D = cfg.dim;
  const chunk = opts.chunk ?? tokens.length;
  const fwd = model.createForward(32);
  const kv = model.createCache(chunk + 1);
  let states: Float32Array[] = [];
  fwd.tap = (name, layer, data, rows, width) => {
    if (name === 'residual' && layer === cfg.nLayers - 1) for (let t = 0; t < rows; t++) states.push(data.slice(t * width, (t + 1) * width));
  };
  const h = new Float32Array(D);
  const z = new Float32Array(head.V);
  let eUnit = 0, kRow = 0;
  const R = head.rowErr;
  const perPosition: number[] = [];
  for (let c0 = 0; c0 < tokens.length; c0 += chunk) {
    const ids = tokens.slice(c0, c0 + chunk);
    if (opts.bos !== undefined) ids[0] = opts.bos;
    states = [];
    kv.truncate(0);
    fwd.run(kv, ids, 0, 'none');
    eUnit = Math.max(eUnit, errorsOf(states));
    opts.onProgress?.(Math.min(tokens.length, c0 + chunk), tokens.length);
  }
  return { eUnit, kRow, positions: perPosition.length, perPosition };

  function errorsOf(states: Float32Array[]): number {
  let eUnit = 0;
  for (const x of states) {
    kernels.rmsnorm(h, 0, x, 0, w.outputNorm, D, cfg.normEps);
    const norm = scaledNorm(head.screen, h);
    if (norm === 0) continue;
    kernels.matvec(w.output, h, z);
    const s = head.scores(h);
    let worst = 0, cos = 0;
    for (let i = 0; i < head.V; i++) {
      const e = Math.abs(s[i]! - z[i]!);
      if (e > worst) worst = e;
      if (R && e > cos * R[i]!) cos = e / R[i]!;
    }
    kRow = Math.max(kRow, cos / norm);
    perPosition.push(worst / norm);
    eUnit = Math.max(eUnit, worst / norm);
  }
  return eUnit;
  }
}

/** A head profile (`ctxsparse calibrate-head`): the screen error measured on calibration text for one model file. */
export interface HeadProfile {
  /** 2: the screen with one scale per row of the column-scaled matrix (1: per-block scales; refused) */
  readonly ctxsparse_head_profile: 2;
  readonly model: { readonly name: string; readonly sha256: string };
  /** largest |screened − exact| logit per unit ‖h ⊙ c‖ over all rows and positions */
  readonly e_unit: number;
  /** largest |screened − exact| / (‖Ŵ_i − W_i ⊘ c‖·‖h ⊙ c‖) over all rows and positions (the per-row margins' factor) */
  readonly k_row: number;
  /** the per-position worst errors' quantiles (per unit ‖h ⊙ c‖) */
  readonly quantiles: { readonly p50: number; readonly p99: number; readonly p999: number };
  readonly calibration: { readonly data: string; readonly skip_tokens: number; readonly tokens: number; readonly chunk: number };
  readonly screen: { readonly bits: 4; readonly search: boolean; readonly format: string };
}

export function loadHeadProfile(file: string, model: Model): HeadProfile {
  let j: HeadProfile;
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as HeadProfile;
  } catch (e) {
    throw new CtxError(`--head-profile ${file}: cannot read it as JSON: ${(e as Error).message}`);
  }
  if ((j?.ctxsparse_head_profile as number) === 1) throw new CtxError(`--head-profile ${file}: made for the previous screen format; measure it again with \`ctxsparse calibrate-head\``);
  if (j?.ctxsparse_head_profile !== 2 || !(typeof j.e_unit === 'number' && j.e_unit >= 0) || !(typeof j.k_row === 'number' && j.k_row >= 0)) throw new CtxError(`--head-profile ${file}: not a head profile (write one with \`ctxsparse calibrate-head\`)`);
  const sha = modelSha256(model.path);
  if (j.model?.sha256 !== sha) throw new CtxError(`--head-profile ${file}: calibrated for ${j.model?.name ?? 'another model'} (sha256 ${String(j.model?.sha256).slice(0, 12)}…), not ${model.path}`);
  if (j.screen?.format !== SCREEN_FORMAT) throw new CtxError(`--head-profile ${file}: made for another screen (${String(j.screen?.format)}); measure it again with \`ctxsparse calibrate-head\``);
  return j;
}

/** The model's sparse output layer, ready to set as `forward.outputHead`. */
export function buildSparseHead(model: Model, opts: HeadBuildOptions = {}): SparseHead {
  const W = model.weights.output;
  const search = opts.search ?? true;
  const bytes = screenBytes(W.rows, W.cols);
  // the screen, then the per-row error norms (f32), one allocation (and one cache read)
  const all = model.kernels.alloc ? model.kernels.alloc(bytes + 4 * W.rows) : new Uint8Array(bytes + 4 * W.rows);
  const data = all.subarray(0, bytes);
  const rowErr = new Float32Array(all.buffer, all.byteOffset + bytes, W.rows);
  const text = opts.text ?? HEAD_CALIBRATION_TEXT;
  const useCache = (opts.cache ?? true) && model.format === 'gguf';
  let st: { size: number; mtimeMs: number } = { size: 0, mtimeMs: 0 };
  try {
    st = statSync(model.path);
  } catch { /* not a file: no cache */ }
  const key = { size: st.size, mtimeMs: st.mtimeMs, rows: W.rows, cols: W.cols, search, screen: SCREEN_FORMAT, textChars: text.length };
  let cached = useCache ? readCache(model, key, all) : null;
  let screen: Screen;
  if (cached !== null) screen = screenView(W.rows, W.cols, data);
  else {
    screen = buildScreen(model.kernels, W, data, search);
    rowErr.set(rowErrorNorms(model.kernels, W, screen));
  }
  const perRow = opts.perRow ?? true;
  const make = (eUnit: number, kRow: number): SparseHead => new SparseHead(model.kernels, W, screen, model.config.finalLogitSoftcap, {
    eUnit, ...(perRow && { rowErr, kRow }),
    ...(opts.safety !== undefined && { safety: opts.safety }), ...(opts.epsilon !== undefined && { epsilon: opts.epsilon }),
    ...(opts.denseAbove !== undefined && { denseAbove: opts.denseAbove }),
  });
  if (cached === null) {
    const m = measureScreenError(model, make(0, 0), model.tokenizer.encode(text));
    cached = { eUnit: m.eUnit, kRow: m.kRow };
    if (useCache) writeCache(model, { ...key, ...cached }, all);
  }
  return make(opts.eUnit ?? cached.eUnit, opts.kRow ?? cached.kRow);
}
