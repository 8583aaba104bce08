// The sparse output layer. The output matrix W (vocab × hidden) is most of the bytes a small model
// reads per token (Gemma-3-270M: 72%). A low-bit screening copy Ŵ (4-bit codes, 32-blocks, bf16
// scales, four rows interleaved: asm/screen.ts) scores every row; only the rows whose screened
// score could still be the winner are computed exactly from W:
//
//   s = Ŵh,  b = argmax s,  m = W_b·h (exact),  δ_i = c·k·r_i·‖h‖,
//   C = { i : s_i + δ_i ≥ m },  exact logits on C, −∞ elsewhere,
//
// r_i = ‖Ŵ_i − W_i‖ (the row's own quantization error) and k the largest |s_i − W_i·h| / (r_i·‖h‖)
// seen in calibration (a cosine: the error vector's alignment with h). If every screen error
// |s_i − W_i·h| is at most δ_i, the argmax over C equals the dense argmax (the dense winner w has
// W_w·h ≥ m, so s_w + δ_w ≥ m). Per-row margins keep far fewer rows than one global margin
// δ = c·e·‖h‖ (e the largest error per unit ‖h‖; still available: SmolLM2 median 19 vs 942 rows). e is the largest error per unit ‖h‖ seen on
// calibration text (measured, so the guarantee is empirical) and c ≥ 1 a safety factor.
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
import { f32ToBF16 } from '../quant/fp16.js';
import { CtxError } from '../errors.js';
import type { Kernels } from '../kernels/kernels.js';
import type { WasmKernels } from '../kernels/wasm/index.js';
import { ACT_Q8_0, quantizeActivation } from '../kernels/ref/q8.js';
import { ggmlRow, type QTensor } from '../model/tensor.js';
import type { Selection } from './policy.js';

/** bytes of one 32-block of four interleaved rows: 4 bf16 scales + 4 × 16 bytes of 4-bit codes */
export const SCREEN_GROUP_BYTES = 72;

/** The screening copy of a rows × cols matrix (rows padded to a multiple of 4). */
export interface Screen {
  readonly rows: number;
  readonly cols: number;
  /** 32-blocks per row */
  readonly nb: number;
  /** groups of four rows */
  readonly groups: number;
  readonly data: Uint8Array;
}

export function screenBytes(rows: number, cols: number): number {
  return Math.ceil(rows / 4) * (cols / 32) * SCREEN_GROUP_BYTES;
}

const bf16 = new Float32Array(1);
const bf16u = new Uint32Array(bf16.buffer);
function bf16ToNumber(h: number): number {
  bf16u[0] = h << 16;
  return bf16[0]!;
}

/**
 * Quantize one block of 32 values x[o..o+32) to 4-bit codes (0..15, value d·(code − 8)) in
 * codes[0..32); returns the bf16 bits of d. With `search`, the scale is the one among a few
 * candidates (the largest magnitude mapped to −9…7) with the least squared error; otherwise
 * Q4_0's rule (the largest magnitude maps to −8).
 */
export function quantizeBlock(x: Float32Array, o: number, codes: Uint8Array, search: boolean): number {
  let amax = 0, m = 0;
  for (let j = 0; j < 32; j++) {
    const a = Math.abs(x[o + j]!);
    if (a > amax) { amax = a; m = x[o + j]!; }
  }
  if (amax === 0) {
    codes.fill(8, 0, 32);
    return 0;
  }
  let best = m / -8;
  if (search) {
    let bestErr = Infinity;
    for (const t of CANDIDATES) {
      const d = m / t, id = 1 / d;
      let err = 0;
      for (let j = 0; j < 32; j++) {
        const v = x[o + j]!;
        const r = v - code(v, id) * d;
        err += r * r;
      }
      if (err < bestErr) { bestErr = err; best = d; }
    }
  }
  const h = f32ToBF16(best);
  const d = bf16ToNumber(h);
  const id = d === 0 ? 0 : 1 / d;
  for (let j = 0; j < 32; j++) codes[j] = code(x[o + j]!, id) + 8;
  return h;
}
/** round half up, clamped to the 4-bit range (asm/screen.ts does the same) */
function code(v: number, id: number): number {
  const c = Math.floor(v * id + 0.5);
  return c < -8 ? -8 : c > 7 ? 7 : c;
}
const CANDIDATES = [-8, -8.5, -9, -7.5, 7, 7.5, 6.5];

/** Build the screen of W into dst: in the wasm kernels when they can, else quantizeScreen. */
export function buildScreen(kernels: Kernels, W: QTensor, dst: Uint8Array, search = true): Screen {
  if (isWasm(kernels) && kernels.screenBuild(W, dst, search)) return { rows: W.rows, cols: W.cols, nb: W.cols / 32, groups: Math.ceil(W.rows / 4), data: dst };
  return quantizeScreen(W, dst, search);
}

/** Build the screen of W into dst (screenBytes(W.rows, W.cols) bytes), from W's dequantized rows (the reference). */
export function quantizeScreen(W: QTensor, dst: Uint8Array, search = true): Screen {
  const { rows, cols } = W;
  if (cols % 32 !== 0) throw new CtxError(`sparse head: ${W.name} has ${cols} columns, not a multiple of 32`);
  const nb = cols / 32;
  const groups = Math.ceil(rows / 4);
  if (dst.length < groups * nb * SCREEN_GROUP_BYTES) throw new RangeError(`quantizeScreen: need ${groups * nb * SCREEN_GROUP_BYTES} bytes`);
  const x = new Float32Array(4 * cols);
  const codes = new Uint8Array(32);
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let g = 0; g < groups; g++) {
    x.fill(0);
    for (let r = 0; r < 4 && 4 * g + r < rows; r++) {
      const row = ggmlRow(W, 4 * g + r);
      dequantize(W.type.id, row.data, row.offset, x, r * cols, cols);
    }
    for (let b = 0; b < nb; b++) {
      const o = (g * nb + b) * SCREEN_GROUP_BYTES;
      for (let r = 0; r < 4; r++) {
        dv.setUint16(o + 2 * r, quantizeBlock(x, r * cols + 32 * b, codes, search), true);
        const co = o + 8 + 16 * r;
        for (let j = 0; j < 16; j++) dst[co + j] = codes[j]! | (codes[j + 16]! << 4);
      }
    }
  }
  return { rows, cols, nb, groups, data: dst };
}

/** Row r of the screen, dequantized (tests, error statistics). */
export function screenRow(S: Screen, r: number, dst: Float32Array): void {
  const g = r >> 2, k = r & 3;
  const dv = new DataView(S.data.buffer, S.data.byteOffset, S.data.byteLength);
  for (let b = 0; b < S.nb; b++) {
    const o = (g * S.nb + b) * SCREEN_GROUP_BYTES;
    const d = bf16ToNumber(dv.getUint16(o + 2 * k, true));
    for (let j = 0; j < 16; j++) {
      const byte = S.data[o + 8 + 16 * k + j]!;
      dst[32 * b + j] = d * ((byte & 15) - 8);
      dst[32 * b + j + 16] = d * ((byte >> 4) - 8);
    }
  }
}

/**
 * Reference for asm/screen.ts: the screen's rows times x quantized to Q8_0 (as the kernel sees
 * it), summed in float64. out[0..rows).
 */
export function screenMatvecRef(S: Screen, x: Float32Array, out: Float32Array | Float64Array): void {
  const a = quantizeActivation(ACT_Q8_0, x.subarray(0, S.cols));
  const dv = new DataView(S.data.buffer, S.data.byteOffset, S.data.byteLength);
  for (let r = 0; r < S.rows; r++) {
    const g = r >> 2, k = r & 3;
    let acc = 0;
    for (let b = 0; b < S.nb; b++) {
      const o = (g * S.nb + b) * SCREEN_GROUP_BYTES;
      const d = bf16ToNumber(dv.getUint16(o + 2 * k, true));
      let s = 0;
      for (let j = 0; j < 16; j++) {
        const byte = S.data[o + 8 + 16 * k + j]!;
        s += ((byte & 15) - 8) * a.q[32 * b + j]! + ((byte >> 4) - 8) * a.q[32 * b + j + 16]!;
      }
      acc += s * d * a.d[b]!;
    }
    out[r] = acc;
  }
}

/**
 * r_i = ‖Ŵ_i − W_i‖ for every row, floored at 1% of the mean (a row the screen happens to hold
 * exactly still differs by summation order).
 */
export function rowErrorNorms(kernels: Kernels, W: QTensor, S: Screen): Float32Array {
  const r = new Float32Array(W.rows);
  const a = new Float32Array(W.cols), b = new Float32Array(W.cols);
  const wasm = isWasm(kernels) && kernels.supports(W.type.id);
  let sum = 0;
  for (let i = 0; i < W.rows; i++) {
    if (wasm) (kernels as WasmKernels).dequantizeRow(W, i, a);
    else { const g = ggmlRow(W, i); dequantize(W.type.id, g.data, g.offset, a, 0, W.cols); }
    screenRow(S, i, b);
    let e = 0;
    for (let j = 0; j < W.cols; j++) e += (a[j]! - b[j]!) ** 2;
    sum += r[i] = Math.sqrt(e);
  }
  const floor = (0.01 * sum) / Math.max(1, W.rows);
  for (let i = 0; i < W.rows; i++) if (r[i]! < floor) r[i] = floor;
  return r;
}

function isWasm(k: Kernels): k is WasmKernels {
  return typeof (k as Partial<WasmKernels>).screenMatvec === 'function' && typeof (k as Partial<WasmKernels>).alloc === 'function';
}

/** What the sampler will do with the logits: decides how many rows need exact logits. */
export interface HeadSampling {
  /** ≤ 0: greedy */
  readonly temperature: number;
  readonly topP?: number;
  readonly minP?: number;
  /** token ids whose logits the sampler penalises, and the penalty (1 = none) */
  readonly penalised?: ReadonlySet<number>;
  readonly repeatPenalty?: number;
}

export interface SparseHeadOptions {
  /** largest screen error per unit ‖h‖ (calibrated): the global margin δ = c·eUnit·‖h‖ */
  readonly eUnit: number;
  /**
   * per-row margins instead: δ_i = c·kRow·r_i·‖h‖, r_i = rowErr[i] (‖Ŵ_i − W_i‖, floored), kRow the
   * largest |s_i − W_i·h| / (r_i·‖h‖) seen in calibration
   */
  readonly rowErr?: Float32Array;
  readonly kRow?: number;
  /** safety factor on the margin (default DEFAULT_SAFETY) */
  readonly safety?: number;
  /** drawn probability mass that may be wrong when sampling (default 1e-4) */
  readonly epsilon?: number;
  /** above this share of the vocabulary, compute the dense head instead (default 0.4) */
  readonly denseAbove?: number;
}

export const DEFAULT_SAFETY = 1.25;

/** Per-step record of what the sparse head did. */
export interface HeadStats {
  steps: number;
  /** rows computed exactly (incl. the best screened row), one entry per step */
  rescored: number[];
  /** steps that fell back to the dense head */
  dense: number;
}

export class SparseHead {
  readonly V: number;
  readonly D: number;
  readonly eUnit: number;
  rowErr: Float32Array | null;
  readonly kRow: number;
  safety: number;
  readonly epsilon: number;
  readonly denseAbove: number;
  /** set by the caller before a step (Session.generate) */
  sampling: HeadSampling = { temperature: 0 };
  readonly stats: HeadStats = { steps: 0, rescored: [], dense: 0 };
  /** After logits(): the rows computed exactly (ascending; valid until the next call), or null when all were. */
  support: Selection | null = null;
  /** record stats (off by default: the array grows per step) */
  record = false;

  private readonly s: Float32Array;     // screened scores [4·groups]
  private readonly exact: Float32Array; // exact logits of the selected rows [V]
  private idx: Int32Array;
  /** with the wasm kernels: the scans (best screened row, candidates) run there, on these views */
  private readonly wasm: WasmKernels | null;
  private readonly one = { idx: new Int32Array(1), n: 1 };

  /** The margin of row i for a state of norm ‖h‖ (tests). */
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
    this.safety = opts.safety ?? DEFAULT_SAFETY;
    this.epsilon = opts.epsilon ?? 1e-4;
    this.denseAbove = opts.denseAbove ?? 0.4;
    this.s = kernels.alloc ? viewF32(kernels, 4 * screen.groups) : new Float32Array(4 * screen.groups);
    this.exact = kernels.alloc ? viewF32(kernels, this.V) : new Float32Array(this.V);
    this.wasm = isWasm(kernels) ? kernels : null;
    if (this.wasm) {
      // the candidate scan reads the row errors and writes the indices in the kernels' memory
      if (this.rowErr && !this.wasm.owns(this.rowErr)) {
        const r = viewF32(kernels, this.V);
        r.set(this.rowErr.subarray(0, this.V));
        this.rowErr = r;
      }
      const u = kernels.alloc!(4 * this.V);
      this.idx = new Int32Array(u.buffer, u.byteOffset, this.V);
    } else this.idx = new Int32Array(1024);
  }

  /** Bytes of the screen (the extra memory). */
  get screenBytes(): number {
    return this.screen.groups * this.screen.nb * SCREEN_GROUP_BYTES;
  }

  /** Screened scores of all rows for h (s[0..V)). */
  scores(h: Float32Array): Float32Array {
    const S = this.screen;
    if (isWasm(this.kernels)) this.kernels.screenMatvec(S.data, S.nb, S.groups, h, this.s);
    else screenMatvecRef(S, h, this.s);
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

  /** The gap below the best final logit within which rows must be exact (0 = greedy). */
  gap(): number {
    const o = this.sampling;
    if (!(o.temperature > 0)) return 0;
    let G = Math.max(o.temperature, 1) * Math.log(this.V / this.epsilon);
    if ((o.minP ?? 0) > 0 && (o.topP ?? 1) >= 1) G = Math.min(G, -Math.log(o.minP!));
    return G;
  }

  /**
   * Logits for h into out[0..V): exact (softcapped) on the candidate rows, −∞ elsewhere.
   * Returns the number of rows computed exactly.
   */
  logits(h: Float32Array, out: Float32Array): number {
    const { V, kernels, W } = this;
    this.support = null;
    let nn = 0;
    for (let i = 0; i < this.D; i++) nn += h[i]! * h[i]!;
    const delta = this.safety * this.eUnit * Math.sqrt(nn);
    const S = this.screen;
    const s = this.s;
    let b = 0;
    if (this.wasm) b = Math.max(0, this.wasm.screenMatvec(S.data, S.nb, S.groups, h, s, V));
    else {
      screenMatvecRef(S, h, s);
      let sb = -Infinity;
      for (let i = 0; i < V; i++) if (s[i]! > sb) { sb = s[i]!; b = i; }
    }
    const o = this.sampling;
    const pen = o.penalised && (o.repeatPenalty ?? 1) !== 1 ? o.penalised : null;
    // the best screened row exactly, as the sampler will see it (softcap, penalty)
    this.one.idx[0] = b;
    let fb: number;
    if (this.wasm) {
      this.wasm.rowDots(W, h, this.one, this.exact);
      fb = this.cap(this.exact[0]!);
    } else {
      kernels.matvecs([W], h, [this.exact], null, [this.one]);
      fb = this.cap(this.exact[b]!);
    }
    if (pen?.has(b)) fb = fb > 0 ? fb / o.repeatPenalty! : fb * o.repeatPenalty!;
    const base = this.uncap(fb - this.gap());
    // per-row margins: s_i + κ·r_i ≥ base; global: s_i ≥ base − δ
    const R = this.rowErr;
    const kappa = this.safety * this.kRow * Math.sqrt(nn);
    const tau = base - delta;
    // candidates: s_i ≥ τ, plus every penalised row
    let n = 0;
    let idx = this.idx;
    if (this.wasm) n = this.wasm.screenSelect(s, R, V, R ? kappa : 0, R ? base : tau, b, idx);
    else {
      for (let i = 0; i < V; i++) {
        if ((R ? s[i]! + kappa * R[i]! >= base : s[i]! >= tau) || i === b) {
          if (n === idx.length) { const g = new Int32Array(2 * n); g.set(idx); idx = this.idx = g; }
          idx[n++] = i;
        }
      }
    }
    if (pen) {
      const extra: number[] = [];
      for (const id of pen) if (id >= 0 && id < V && !(R ? s[id]! + kappa * R[id]! >= base : s[id]! >= tau) && id !== b) extra.push(id);
      if (extra.length) {
        const all = Array.from(idx.subarray(0, n)).concat(extra).sort((x, y) => x - y);
        if (all.length > idx.length) idx = this.idx = new Int32Array(all.length * 2);
        idx.set(all);
        n = all.length;
      }
    }
    this.stats.steps++;
    if (n > this.denseAbove * V) {
      kernels.matvec(W, h, out);
      for (let i = 0; i < V; i++) out[i] = this.cap(out[i]!);
      this.stats.dense++;
      if (this.record) this.stats.rescored.push(V);
      return V;
    }
    const sel: Selection = { idx, n };
    this.support = sel;
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
}

function viewF32(k: Kernels, n: number): Float32Array {
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
