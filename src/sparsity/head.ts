// The sparse output layer. The output matrix W (vocab × hidden) is most of the bytes a small model
// reads per token (Gemma-3-270M: 72%). A low-bit screening copy Ŵ scores every row; only the rows
// whose screened score could still be the winner are computed exactly from W. The screen
// (src/kernels/screen-layout.ts, asm/screen.ts) holds W's columns divided by c_j = (max_i |W_ij|)^0.75
// in 4-bit codes with one scale per row, and multiplies h ⊙ c, so it works in that scaled space:
//
//   s = Ŵ(h ⊙ c),  b = argmax s,  m = W_b·h (exact),  δ_i = c·k·r_i·‖h ⊙ c‖,
//   C = { i : s_i + δ_i ≥ m },  exact logits on C, −∞ elsewhere,
//
// r_i = ‖Ŵ_i − W_i ⊘ c‖ (the row's own quantization error, scaled space) and k the largest
// |s_i − W_i·h| / (r_i·‖h ⊙ c‖) seen in calibration (a cosine: the error vector's alignment with
// h ⊙ c). If every screen error |s_i − W_i·h| is at most δ_i, the argmax over C equals the dense
// argmax (the dense winner w has W_w·h ≥ m, so s_w + δ_w ≥ m). Per-row margins keep far fewer rows
// than one global margin δ = c·e·‖h ⊙ c‖ (e the largest error per unit ‖h ⊙ c‖; still available).
// e and k are measured on calibration text, so the guarantee is empirical, and c ≥ 1 is a safety
// factor.
//
// Sampling (temperature T > 0) keeps every row whose final logit could come within G of the best
// one, G = max(T, 1)·ln(V/ε): a row outside C then has exact logit below max − G, so at any
// temperature ≤ max(T,1) its probability is below ε/V, and all of them together below ε (again
// assuming the screen error ≤ δ). With min-p on and top-p off, rows below max + ln(min-p) are
// dropped by the sampler anyway, so G = min(G, −ln(min-p)). A repetition penalty only lowers
// logits; penalised rows are always computed exactly and the threshold uses the best row's
// penalised logit. Gemma's final softcap (monotonic) is applied to the exact logits and the
// threshold is mapped back through it.

import { dequantize } from '../quant/dequant.js';
import { orderColumns, SCREEN_BLOCK_BYTES, screenColScale, screenLayout, screenView, type ScreenView } from '../kernels/screen-layout.js';
import { CtxError } from '../errors.js';
import type { Kernels } from '../kernels/kernels.js';
import type { WasmKernels } from '../kernels/wasm/index.js';
import { ggmlRow, type QTensor } from '../model/tensor.js';
import { topLogits } from '../generate/sampler.js';
import type { Selection } from './policy.js';

/** The screening copy of a rows × cols matrix (rows padded to a multiple of 4; cols a multiple of 64). */
export type Screen = ScreenView;

export function screenBytes(rows: number, cols: number): number {
  return screenLayout(rows, cols).bytes;
}

const CANDIDATES = [-8, -8.5, -9, -7.5, 7, 7.5, 6.5];

/** round half up, clamped to the 4-bit range (asm/screen.ts does the same) */
function code(v: number, id: number): number {
  const c = Math.floor(v * id + 0.5);
  return c < -8 ? -8 : c > 7 ? 7 : c;
}

/**
 * The scale of one row of the screen (f32 values): with `search`, the one among a few candidates
 * (the largest magnitude mapped to −9…7) with the least squared error; otherwise Q4_0's rule (the
 * largest magnitude maps to −8). Rounded to f32.
 */
export function rowScale(x: Float32Array, search: boolean): number {
  let amax = 0, m = 0;
  for (let j = 0; j < x.length; j++) {
    const a = Math.abs(x[j]!);
    if (a > amax) { amax = a; m = x[j]!; }
  }
  if (amax === 0) return 0;
  let best = m / -8;
  if (search) {
    let bestErr = Infinity;
    for (const t of CANDIDATES) {
      const d = m / t, id = 1 / d;
      let err = 0;
      for (let j = 0; j < x.length; j++) {
        const e = x[j]! - code(x[j]!, id) * d;
        err += e * e;
      }
      if (err < bestErr) { bestErr = err; best = d; }
    }
  }
  return Math.fround(best);
}

/**
 * Build the one-stage screen of W into dst (screenBytes(W.rows, W.cols)), its columns ordered by
 * energy (screenOrder): in the wasm kernels when they can, else quantizeScreen.
 */
export function buildScreen(kernels: Kernels, W: QTensor, dst: Uint8Array, search = true, energy?: ArrayLike<number>): Screen {
  if (W.cols % 64 !== 0) throw new CtxError(`sparse head: ${W.name} has ${W.cols} columns, not a multiple of 64`);
  if (isWasm(kernels) && kernels.screenBuild(W, dst, search, energy)) return screenView(W.rows, W.cols, dst);
  return quantizeScreen(W, dst, search, energy);
}

/** Row i of W, dequantized (f32). */
function wRow(W: QTensor, i: number, dst: Float32Array): void {
  const row = ggmlRow(W, i);
  dequantize(W.type.id, row.data, row.offset, dst, 0, W.cols);
}

/**
 * Build the one-stage screen of W into dst (screenBytes(W.rows, W.cols) bytes), from W's
 * dequantized rows, its columns ordered by energy (the reference).
 */
export function quantizeScreen(W: QTensor, dst: Uint8Array, search = true, energy?: ArrayLike<number>): Screen {
  const { rows, cols } = W;
  if (cols % 64 !== 0) throw new CtxError(`sparse head: ${W.name} has ${cols} columns, not a multiple of 64`);
  const S = screenView(rows, cols, dst);
  const x = new Float32Array(cols);
  const colmax = new Float32Array(cols);
  for (let i = 0; i < rows; i++) {
    wRow(W, i, x);
    for (let j = 0; j < cols; j++) colmax[j] = Math.max(colmax[j]!, Math.abs(x[j]!));
  }
  orderColumns(S, colmax.map(screenColScale), energy);
  const y = new Float32Array(cols);
  for (let i = 0; i < 4 * S.groups; i++) {
    if (i < rows) {
      wRow(W, i, x);
      for (let j = 0; j < cols; j++) y[j] = x[S.perm[j]!]! / S.colScale[j]!;
    } else y.fill(0);
    const d = rowScale(y, search);
    S.rowScale[i] = d;
    const id = d === 0 ? 0 : 1 / d;
    const g = i >> 2, r = i & 3;
    for (let b = 0; b < S.nb; b++) {
      const o = (g * S.nb + b) * SCREEN_BLOCK_BYTES + 32 * r;
      for (let j = 0; j < 32; j++) {
        const col = 64 * b + 32 * (j >> 4) + (j & 15);
        S.codes[o + j] = (code(y[col]!, id) + 8) | ((code(y[col + 16]!, id) + 8) << 4);
      }
    }
  }
  return S;
}

/** Row r of the screen, dequantized, in the screen's column order (it approximates W_r,perm ⊘ c). */
export function screenRow(S: Screen, r: number, dst: Float32Array): void {
  const g = r >> 2, k = r & 3;
  const d = S.rowScale[r]!;
  for (let b = 0; b < S.nb; b++) {
    const o = b < S.nb1 ? (g * S.nb1 + b) * SCREEN_BLOCK_BYTES + 32 * k : S.codes2At + (g * S.nb2 + b - S.nb1) * SCREEN_BLOCK_BYTES + 32 * k;
    for (let j = 0; j < 32; j++) {
      const byte = S.data[o + j]!;
      const col = 64 * b + 32 * (j >> 4) + (j & 15);
      dst[col] = d * ((byte & 15) - 8);
      dst[col + 16] = d * ((byte >> 4) - 8);
    }
  }
}

/** The screen's activation as asm/screen.ts screenAct makes it: codes of (h ⊙ c) in the screen's column order, one scale d. */
export function screenActivation(S: Screen, x: Float32Array): { q: Int8Array; d: number } {
  const n = S.cols;
  const xs = new Float32Array(n);
  let amax = 0;
  for (let j = 0; j < n; j++) {
    xs[j] = x[S.perm[j]!]! * S.colScale[j]!;
    amax = Math.max(amax, Math.abs(xs[j]!));
  }
  const id = amax !== 0 ? Math.fround(127 / amax) : 0;
  const q = new Int8Array(n);
  for (let j = 0; j < n; j++) q[j] = roundEven(Math.fround(xs[j]! * id));
  return { q, d: Math.fround(amax / 127) };
}
function roundEven(v: number): number {
  const f = Math.floor(v), r = v - f;
  return r > 0.5 || (r === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/**
 * ‖h ⊙ c‖ (the norm the margins scale with) and the norm of its part the first stage leaves out
 * (the screen's columns from `split` on; default 64·nb1).
 */
export function scaledNorms(S: Screen, h: Float32Array, split = 64 * S.nb1): { norm: number; second: number } {
  let all = 0, second = 0;
  for (let j = 0; j < S.cols; j++) {
    const v = h[S.perm[j]!]! * S.colScale[j]!;
    all += v * v;
    if (j >= split) second += v * v;
  }
  return { norm: Math.sqrt(all), second: Math.sqrt(second) };
}

/** ‖h ⊙ c‖: the norm the margins scale with. */
export function scaledNorm(S: Screen, h: Float32Array): number {
  return scaledNorms(S, h).norm;
}

/**
 * Reference for asm/screen.ts: the screen's rows over its first `cols` columns (default all; the
 * first stage: 64·nb1) times h ⊙ c quantized as the kernel quantizes it, summed in float64.
 * out[0..rows).
 */
export function screenMatvecRef(S: Screen, x: Float32Array, out: Float32Array | Float64Array, cols = S.cols): void {
  const a = screenActivation(S, x);
  const row = new Float32Array(S.cols);
  for (let r = 0; r < S.rows; r++) {
    screenRow(S, r, row);
    let acc = 0;
    for (let j = 0; j < cols; j++) acc += row[j]! * a.q[j]!;
    out[r] = acc * a.d;
  }
}

/**
 * Per row of the screen: r_i = ‖Ŵ_i − W_i,perm ⊘ c‖ (its quantization error), floored at 1% of the
 * mean (a row the screen happens to hold exactly still differs by summation order), and the
 * squared norms of Ŵ_i's 64-column blocks (blocks[i·nb + b]: the second stage's part of a row, for
 * any split, from them: secondNorms).
 */
export function rowNorms(kernels: Kernels, W: QTensor, S: Screen): { err: Float32Array; blocks: Float32Array } {
  const r = new Float32Array(W.rows), blocks = new Float32Array(W.rows * S.nb);
  const a = new Float32Array(W.cols), b = new Float32Array(W.cols);
  const wasm = isWasm(kernels) && kernels.supports(W.type.id);
  let sum = 0;
  for (let i = 0; i < W.rows; i++) {
    if (wasm) (kernels as WasmKernels).dequantizeRow(W, i, a);
    else wRow(W, i, a);
    screenRow(S, i, b);
    let e = 0;
    for (let j = 0; j < W.cols; j++) {
      e += (a[S.perm[j]!]! / S.colScale[j]! - b[j]!) ** 2;
      blocks[i * S.nb + (j >> 6)] += b[j]! * b[j]!;
    }
    sum += r[i] = Math.sqrt(e);
  }
  const floor = (0.01 * sum) / Math.max(1, W.rows);
  for (let i = 0; i < W.rows; i++) if (r[i]! < floor) r[i] = floor;
  return { err: r, blocks };
}

/** r_i = ‖Ŵ_i − W_i,perm ⊘ c‖ for every row (rowNorms). */
export function rowErrorNorms(kernels: Kernels, W: QTensor, S: Screen): Float32Array {
  return rowNorms(kernels, W, S).err;
}

/** t_i = the norm of row i's blocks from nb1 on (of rowNorms' blocks, nb per row), into dst. */
export function secondNorms(blocks: Float32Array, nb: number, nb1: number, dst: Float32Array): Float32Array {
  for (let i = 0; i < dst.length; i++) {
    let t = 0;
    for (let b = nb1; b < nb; b++) t += blocks[i * nb + b]!;
    dst[i] = Math.sqrt(t);
  }
  return dst;
}

/** Whether the kernels are the wasm ones (the screen's kernels run there). */
export function isWasm(k: Kernels): k is WasmKernels {
  return typeof (k as Partial<WasmKernels>).screenMatvec === 'function' && typeof (k as Partial<WasmKernels>).alloc === 'function';
}

/**
 * The largest |s¹_i − z_i| / (r_i·norm + t_i·second) over the rows, at least k: the first stage's
 * error factor on one state (s¹ its scores, z the exact logits, norm and second scaledNorms').
 */
export function firstStageFactor(s1: Float32Array, z: Float32Array, r: Float32Array, t: Float32Array, norm: number, second: number, k = 0): number {
  for (let i = 0; i < z.length; i++) {
    const e = Math.abs(s1[i]! - z[i]!), u = r[i]! * norm + t[i]! * second;
    if (e > k * u) k = e / u;
  }
  return k;
}

/** What the sampler will do with the logits: decides how many rows need exact logits. */
export interface HeadSampling {
  /** ≤ 0: greedy */
  readonly temperature: number;
  /** the sampler keeps only the k largest logits (0 or absent: off) */
  readonly topK?: number;
  readonly topP?: number;
  readonly minP?: number;
  /** token ids whose logits the sampler penalises, and the penalty (1 = none) */
  readonly penalised?: ReadonlySet<number>;
  readonly repeatPenalty?: number;
}

export interface SparseHeadOptions {
  /** largest screen error per unit ‖h ⊙ c‖ (calibrated): the global margin δ = c·eUnit·‖h ⊙ c‖ */
  readonly eUnit: number;
  /**
   * per-row margins instead: δ_i = c·kRow·r_i·‖h ⊙ c‖, r_i = rowErr[i] (‖Ŵ_i − W_i ⊘ c‖, floored), kRow the
   * largest |s_i − W_i·h| / (r_i·‖h ⊙ c‖) seen in calibration (s_i the full screened score)
   */
  readonly rowErr?: Float32Array;
  readonly kRow?: number;
  /**
   * with per-row margins and a screen of two stages: the first stage's margin is
   * c·kFirst·(r_i·‖h ⊙ c‖ + t_i·‖(h ⊙ c)₂‖), t_i = second[i] (the norm of Ŵ_i's second-stage part),
   * (h ⊙ c)₂ the state's second-stage part, kFirst the largest |s¹_i − W_i·h| over that sum seen in
   * calibration (s¹_i the first stage's score)
   */
  readonly second?: Float32Array;
  readonly kFirst?: number;
  /** safety factor on the margin (default DEFAULT_SAFETY) */
  readonly safety?: number;
  /** drawn probability mass that may be wrong when sampling (default 1e-4) */
  readonly epsilon?: number;
  /** above this share of the vocabulary, compute the dense head instead (default: where the exact rows' GATHER_COST reaches the dense head's) */
  readonly denseAbove?: number;
}

export const DEFAULT_SAFETY = 1.25;

/** Per-step record of what the sparse head did. */
export interface HeadStats {
  steps: number;
  /** rows computed exactly (incl. the best screened row), one entry per step */
  rescored: number[];
  /** rows the first stage kept (two-stage screens), one entry per screened step */
  first: number[];
  /** steps that fell back to the dense head (after screening, or without: `skipped`) */
  dense: number;
  /** of those, steps served by the dense head without screening (see SparseHead.skip) */
  skipped: number;
}

/**
 * A step's cost is counted in units of one 128-byte screen block of a 4-row group streamed by the
 * first stage (all threads), as the width chooser counts (head-model.ts): measured on Gemma-3-270M's
 * screen at two threads (WikiText-2 states), a second-stage block of a kept group costs
 * SCATTER_COST units (the groups are scattered: each is a cache miss), each kept group ROW_COST
 * more in the candidate scan and the host's bookkeeping, and an exact row GATHER_COST (~0.2 µs:
 * random rows at two threads took 0.16–0.52 µs each on the three models). The dense head streams
 * its bytes at about the screen's rate: V·rowBytes/128 units.
 */
export const SCATTER_COST = 6.4;
export const ROW_COST = 14;
const GATHER_COST = 50;
/**
 * Some stretches need a large share of the vocabulary on every step — sampling with only the gap to
 * bound the rows (temperature > 0, top-k off), or flat next-token distributions (random token ids,
 * as `bench` feeds) — and then the screen is paid for little or nothing. After COSTLY_BEFORE_SKIP
 * steps in a row cost more than COSTLY of the dense head, the next SKIP_STEPS use the dense head
 * without screening (it is exact: the tokens do not change, only the time); then one screened step
 * decides whether to skip again.
 */
const COSTLY = 0.8;
const COSTLY_BEFORE_SKIP = 4;
const SKIP_STEPS = 16;

export class SparseHead {
  readonly V: number;
  readonly D: number;
  // the margins' error factors (buildSparseHead sets them after measuring them with the head)
  eUnit: number;
  readonly rowErr: Float32Array | null;
  kRow: number;
  /** t_i and kFirst of a two-stage screen (null / 0 when the screen has one stage or margins are global) */
  readonly second: Float32Array | null;
  kFirst: number;
  safety: number;
  readonly epsilon: number;
  readonly denseAbove: number;
  /** set by the caller before a step (Session.generate) */
  sampling: HeadSampling = { temperature: 0 };
  readonly stats: HeadStats = { steps: 0, rescored: [], first: [], dense: 0, skipped: 0 };
  private costly = 0;
  /** after a skip: one costly screened step starts the next */
  private probation = false;
  /** the dense head's cost (see SCATTER_COST) */
  private readonly denseUnits: number;
  /** skip the screen for a while after costly steps in a row (false: screen every step, as the agreement checks need) */
  adaptive = true;
  /** the file its screen was read from or written to (buildSparseHead; null: none) */
  cacheFile: string | null = null;
  private skip = 0;
  /** After logits(): the rows computed exactly (ascending; valid until the next call), or null when all were. */
  support: Selection | null = null;
  /** record stats (off by default: the array grows per step) */
  record = false;

  private readonly s: Float32Array;     // screened scores [4·groups]
  private readonly exact: Float32Array; // exact logits of the selected rows [V]
  private idx: Int32Array;
  private readonly groupIdx: Int32Array;   // the second stage's groups
  /** with the wasm kernels: the scans (best screened row, candidates) run there, on these views */
  private readonly wasm: WasmKernels | null;
  private readonly one = { idx: new Int32Array(1), n: 1 };

  /** The (full score's) margin of row i for a state h with ‖h ⊙ c‖ = norm (tests). */
  margin(i: number, norm: number): number {
    return this.rowErr ? this.safety * this.kRow * this.rowErr[i]! * norm : this.safety * this.eUnit * norm;
  }

  constructor(readonly kernels: Kernels, readonly W: QTensor, readonly screen: Screen, readonly softcap: number, opts: SparseHeadOptions) {
    this.V = W.rows;
    this.D = W.cols;
    if (!(opts.eUnit >= 0 && Number.isFinite(opts.eUnit))) throw new CtxError(`sparse head: screen error per unit norm ${opts.eUnit} is not a finite number ≥ 0`);
    this.eUnit = opts.eUnit;
    this.rowErr = opts.rowErr && opts.kRow !== undefined ? opts.rowErr : null;
    this.kRow = opts.kRow ?? 0;
    if (this.rowErr && !(this.kRow >= 0 && Number.isFinite(this.kRow))) throw new CtxError(`sparse head: per-row error factor ${this.kRow} is not a finite number ≥ 0`);
    let second = this.rowErr && screen.nb2 > 0 ? opts.second ?? null : null;
    if (this.rowErr && screen.nb2 > 0 && (!second || opts.kFirst === undefined)) throw new CtxError('sparse head: a two-stage screen needs its rows\' second-stage norms and the first stage\'s error factor');
    this.kFirst = second ? opts.kFirst! : 0;
    if (second && !(this.kFirst >= 0 && Number.isFinite(this.kFirst))) throw new CtxError(`sparse head: first-stage error factor ${this.kFirst} is not a finite number ≥ 0`);
    this.safety = opts.safety ?? DEFAULT_SAFETY;
    this.epsilon = opts.epsilon ?? 1e-4;
    this.denseAbove = opts.denseAbove ?? W.rowBytes / (SCREEN_BLOCK_BYTES * GATHER_COST);
    this.denseUnits = (this.V * W.rowBytes) / SCREEN_BLOCK_BYTES;
    this.s = kernels.alloc ? viewF32(kernels, 4 * screen.groups) : new Float32Array(4 * screen.groups);
    this.exact = kernels.alloc ? viewF32(kernels, this.V) : new Float32Array(this.V);
    this.wasm = isWasm(kernels) ? kernels : null;
    if (this.wasm) {
      // the candidate scan reads the row norms and writes the indices in the kernels' memory
      const inMemory = (a: Float32Array): Float32Array => {
        if (this.wasm!.owns(a)) return a;
        const r = viewF32(kernels, this.V);
        r.set(a.subarray(0, this.V));
        return r;
      };
      if (this.rowErr) this.rowErr = inMemory(this.rowErr);
      if (second) second = inMemory(second);
      const u = kernels.alloc!(4 * this.V);
      this.idx = new Int32Array(u.buffer, u.byteOffset, this.V);
      const g = kernels.alloc!(4 * screen.groups);
      this.groupIdx = new Int32Array(g.buffer, g.byteOffset, screen.groups);
    } else {
      this.idx = new Int32Array(1024);
      this.groupIdx = new Int32Array(screen.groups);
    }
    this.second = second;
  }

  /** Bytes of the screen (the extra memory). */
  get screenBytes(): number {
    return this.screen.bytes;
  }

  /** Screened scores (both stages: the full screen) of all rows for h (s[0..V)). */
  scores(h: Float32Array): Float32Array {
    const S = this.screen;
    this.bytesStep += S.rowScaleAt + 16 * S.groups;
    if (this.wasm) {
      this.wasm.screenMatvec(S, h, this.s);
      if (S.nb2 > 0) {
        for (let g = 0; g < S.groups; g++) this.groupIdx[g] = g;
        this.wasm.screenGroups(S, this.groupIdx, S.groups, this.s);
      }
    } else screenMatvecRef(S, h, this.s);
    return this.s;
  }

  /** the wasm kernel's best first-stage row of the last firstScores */
  private firstBest = -1;

  /** The first stage's scores of all rows for h (s[0..V); the full screen's for a one-stage screen). */
  firstScores(h: Float32Array): Float32Array {
    const S = this.screen;
    this.bytesStep += S.codes2At + 16 * S.groups;
    if (this.wasm) this.firstBest = this.wasm.screenMatvec(S, h, this.s, this.V);
    else screenMatvecRef(S, h, this.s, 64 * S.nb1);
    return this.s;
  }

  /**
   * The full screen's scores from the last firstScores(h) (its array, completed in place): the
   * second stage over every group — what scores(h) gives, without streaming the first stage again.
   */
  completeScores(h: Float32Array): Float32Array {
    const S = this.screen;
    if (S.nb2 === 0) return this.s;
    this.bytesStep += S.rowScaleAt - S.codes2At;
    if (this.wasm) {
      for (let g = 0; g < S.groups; g++) this.groupIdx[g] = g;
      this.wasm.screenGroups(S, this.groupIdx, S.groups, this.s);
    } else screenMatvecRef(S, h, this.s);
    return this.s;
  }

  private cap(z: number): number {
    return this.softcap > 0 ? this.softcap * Math.tanh(z / this.softcap) : z;
  }
  /** inverse of cap: the raw logit whose capped value is y (−∞ below the cap's range) */
  private uncap(y: number): number {
    const c = this.softcap;
    if (!(c > 0)) return y;
    if (y <= -c) return -Infinity;
    if (y >= c) return Infinity;
    return c * Math.atanh(y / c);
  }

  /**
   * A raw threshold below which no row can be among the sampler's k largest final (softcapped,
   * penalised) logits. The k + |penalised| rows of best screened score and the penalised rows are
   * computed exactly; the k-th largest of their final logits is at most the k-th largest final
   * logit of all rows, so an unpenalised row in the top k has s_i + δ_i ≥ z_i ≥ its uncapped value.
   * −∞ when there is no bound.
   */
  private topKFloor(k: number, h: Float32Array, s: Float32Array, pen: ReadonlySet<number> | null, penalty: number): number {
    const V = this.V;
    const m = k + (pen ? pen.size : 0);
    if (m >= V) return -Infinity;
    // the m best screened rows
    const ids = new Set<number>(topLogits(s.subarray(0, V), m).ids);
    if (pen) for (const id of pen) if (id >= 0 && id < V) ids.add(id);
    const sel = Int32Array.from(ids).sort();
    const z = this.exactRows(h, sel);
    const fin: number[] = [];
    for (let j = 0; j < sel.length; j++) {
      const c = this.cap(z[j]!);
      fin.push(pen?.has(sel[j]!) ? (c > 0 ? c / penalty : c * penalty) : c);
    }
    if (fin.length < k) return -Infinity;
    fin.sort((x, y) => y - x);
    const t = this.uncap(fin[k - 1]!);
    return Number.isFinite(t) ? t : -Infinity;
  }

  /** The dense head (softcapped): all V rows exact. */
  private dense(h: Float32Array, out: Float32Array): number {
    this.bytesStep += this.V * this.W.rowBytes;
    this.kernels.matvec(this.W, h, out);
    for (let i = 0; i < this.V; i++) out[i] = this.cap(out[i]!);
    this.stats.dense++;
    if (this.record) this.stats.rescored.push(this.V);
    return this.V;
  }

  /** Exact raw logits of the rows idx (ascending), in order. */
  private exactRows(h: Float32Array, idx: Int32Array): Float32Array {
    this.bytesStep += idx.length * this.W.rowBytes;
    if (this.wasm) {
      const u = this.idx.subarray(0, idx.length);
      u.set(idx);
      this.wasm.rowDots(this.W, h, { idx: u, n: idx.length }, this.exact);
      return this.exact.subarray(0, idx.length);
    }
    this.kernels.matvecs([this.W], h, [this.exact], null, [{ idx, n: idx.length }]);
    return Float32Array.from(idx, (i) => this.exact[i]!);
  }

  /** The gap below the best final logit within which rows must be exact (0 = greedy). */
  gap(): number {
    const o = this.sampling;
    if (!(o.temperature > 0)) return 0;
    let G = Math.max(o.temperature, 1) * Math.log(this.V / this.epsilon);
    if ((o.minP ?? 0) > 0 && (o.topP ?? 1) >= 1) G = Math.min(G, -Math.log(o.minP!));
    return G;
  }

  /** bytes of the screen and of W the last logits() read (weights only: codes, row scales, exact rows) */
  lastBytes = 0;
  /** their sum over every logits() call */
  bytesRead = 0;
  /** rows the first stage of a two-stage screen kept in the last logits() (−1: it did not run) */
  lastFirst = -1;
  private bytesStep = 0;

  /**
   * Logits for h into out[0..V): exact (softcapped) on the candidate rows, −∞ elsewhere.
   * Returns the number of rows computed exactly.
   */
  logits(h: Float32Array, out: Float32Array): number {
    this.bytesStep = 0;
    this.lastFirst = -1;
    const n = this.step(h, out);
    this.lastBytes = this.bytesStep;
    this.bytesRead += this.bytesStep;
    return n;
  }

  private step(h: Float32Array, out: Float32Array): number {
    const { V, kernels, W } = this;
    this.support = null;
    const o = this.sampling;
    // top-k when it bounds the rows (sampling, 0 < k < V); sampling without it has only the gap
    const topK = o.temperature > 0 && (o.topK ?? 0) > 0 && o.topK! < V ? o.topK! : 0;
    if (this.skip > 0) {
      this.skip--;
      this.stats.steps++;
      this.stats.skipped++;
      return this.dense(h, out);
    }
    const S = this.screen;
    const { norm, second: norm2 } = scaledNorms(S, h);
    const R = this.rowErr, T = this.second;
    // this step's cost so far (see SCATTER_COST)
    let work = S.groups * (R ? S.nb1 : S.nb);
    // the global margin compares full scores; per-row margins screen with the first stage (the whole
    // screen when it has one stage) and refine its candidates with the second
    const s = R ? this.firstScores(h) : this.scores(h);
    let b = 0;
    {
      let sb = -Infinity;
      if (this.wasm && R) b = Math.max(0, this.firstBest);
      else for (let i = 0; i < V; i++) if (s[i]! > sb) { sb = s[i]!; b = i; }
    }
    const pen = o.penalised && (o.repeatPenalty ?? 1) !== 1 ? o.penalised : null;
    const final = (i: number, z: number): number => {
      const c = this.cap(z);
      return pen?.has(i) ? (c > 0 ? c / o.repeatPenalty! : c * o.repeatPenalty!) : c;
    };
    // the best screened row exactly, as the sampler will see it (softcap, penalty)
    const fb = final(b, this.exactOne(h, b));
    const G = this.gap();
    let base = this.uncap(fb - G);
    // with top-k sampling, a row whose bound is below the k-th largest exact logit of the
    // best-screened rows cannot be among the k the sampler keeps
    if (topK > 0) base = Math.max(base, this.topKFloor(topK, h, s, pen, o.repeatPenalty ?? 1));
    let n = 0;
    let idx = this.idx;
    const grow = (): void => { const g = new Int32Array(2 * idx.length); g.set(idx); idx = this.idx = g; };
    if (!R) {
      // global margin: s_i ≥ base − δ
      const tau = base - this.safety * this.eUnit * norm;
      if (this.wasm) n = this.wasm.screenSelect(s, null, V, 0, tau, b, idx);
      else for (let i = 0; i < V; i++) if (s[i]! >= tau || i === b) { if (n === idx.length) grow(); idx[n++] = i; }
    } else {
      const kappa = this.safety * this.kRow * norm;
      if (!T) {
        // one stage: s_i + κ·r_i ≥ base
        if (this.wasm) n = this.wasm.screenSelect(s, R, V, kappa, base, b, idx);
        else for (let i = 0; i < V; i++) if (s[i]! + kappa * R[i]! >= base || i === b) { if (n === idx.length) grow(); idx[n++] = i; }
      } else {
        // first stage: s¹_i + κ1·r_i + κ1'·t_i ≥ base
        const k1 = this.safety * this.kFirst * norm, k1t = this.safety * this.kFirst * norm2;
        if (this.wasm) n = this.wasm.screenSelect(s, R, V, k1, base, b, idx, T, k1t);
        else for (let i = 0; i < V; i++) if (s[i]! + k1 * R[i]! + k1t * T[i]! >= base || i === b) { if (n === idx.length) grow(); idx[n++] = i; }
        this.lastFirst = n;
        if (this.record) this.stats.first.push(n);
        // second stage on the kept rows' groups: their full scores
        const gi = this.groupIdx;
        let ng = 0;
        for (let k = 0; k < n; k++) {
          const g = idx[k]! >> 2;
          if (ng === 0 || gi[ng - 1] !== g) gi[ng++] = g;
        }
        this.bytesStep += ng * S.nb2 * SCREEN_BLOCK_BYTES;
        work += ng * (SCATTER_COST * S.nb2 + ROW_COST);
        if (this.wasm) this.wasm.screenGroups(S, gi, ng, s);
        else {
          const full = new Float64Array(V);
          screenMatvecRef(S, h, full);
          for (let k = 0; k < ng; k++) for (let i = 4 * gi[k]!; i < Math.min(V, 4 * gi[k]! + 4); i++) s[i] = full[i]!;
        }
        // the best full score among them, exactly: it may raise the threshold
        let b2 = b;
        for (let k = 0; k < n; k++) if (s[idx[k]!]! > s[b2]!) b2 = idx[k]!;
        if (b2 !== b) base = Math.max(base, this.uncap(final(b2, this.exactOne(h, b2)) - G));
        // keep s_i + κ·r_i ≥ base (and b, b2), in place
        let m = 0;
        for (let k = 0; k < n; k++) {
          const i = idx[k]!;
          if (s[i]! + kappa * R[i]! >= base || i === b || i === b2) idx[m++] = i;
        }
        n = m;
      }
    }
    if (pen) {
      // every penalised row exactly
      const have = new Set(idx.subarray(0, n));
      const extra: number[] = [];
      for (const id of pen) if (id >= 0 && id < V && !have.has(id)) extra.push(id);
      if (extra.length) {
        const all = Array.from(idx.subarray(0, n)).concat(extra).sort((x, y) => x - y);
        if (all.length > idx.length) idx = this.idx = new Int32Array(all.length * 2);
        idx.set(all);
        n = all.length;
      }
    }
    this.stats.steps++;
    const fallback = n > this.denseAbove * V;
    work += fallback ? this.denseUnits : n * GATHER_COST;
    if (work > COSTLY * this.denseUnits) {
      if (this.adaptive && (this.probation || ++this.costly >= COSTLY_BEFORE_SKIP)) {
        this.skip = SKIP_STEPS;
        this.costly = 0;
        this.probation = true;
      }
    } else {
      this.costly = 0;
      this.probation = false;
    }
    if (fallback) return this.dense(h, out);
    const sel: Selection = { idx, n };
    this.support = sel;
    this.bytesStep += n * W.rowBytes;
    out.fill(-Infinity, 0, V);
    if (this.wasm) {
      this.wasm.rowDots(W, h, sel, this.exact);
      for (let k = 0; k < n; k++) out[idx[k]!] = this.cap(this.exact[k]!);
    } else {
      kernels.matvecs([W], h, [this.exact], null, [sel]);
      for (let k = 0; k < n; k++) {
        const i = idx[k]!;
        out[i] = this.cap(this.exact[i]!);
      }
    }
    if (this.record) this.stats.rescored.push(n);
    return n;
  }

  /** The exact raw logit of row i. */
  private exactOne(h: Float32Array, i: number): number {
    this.bytesStep += this.W.rowBytes;
    this.one.idx[0] = i;
    if (this.wasm) {
      this.wasm.rowDots(this.W, h, this.one, this.exact);
      return this.exact[0]!;
    }
    this.kernels.matvecs([this.W], h, [this.exact], null, [this.one]);
    return this.exact[i]!;
  }
}

/** A Float32Array of n in the kernels' memory. */
export function viewF32(k: Kernels, n: number): Float32Array {
  const u = k.alloc!(4 * n);
  return new Float32Array(u.buffer, u.byteOffset, n);
}

/** Median and 99th percentile of a list of counts. */
export function percentiles(xs: readonly number[]): { median: number; p99: number; mean: number } {
  if (xs.length === 0) return { median: 0, p99: 0, mean: 0 };
  const a = [...xs].sort((x, y) => x - y);
  const at = (q: number): number => a[Math.min(a.length - 1, Math.floor(q * (a.length - 1) + 0.5))]!;
  return { median: at(0.5), p99: at(0.99), mean: a.reduce((x, y) => x + y, 0) / a.length };
}
