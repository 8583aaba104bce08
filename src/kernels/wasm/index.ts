// WebAssembly SIMD kernels, compiled from asm/ by `npm run build:wasm` into kernels.wasm (plain
// SIMD) and kernels-relaxed.wasm (relaxed SIMD: 8-bit dot products) beside this module.
//
// The kernels own one WebAssembly memory. The model loader asks `alloc(bytes)` for a view into it
// and reads the GGUF tensor data there, so the weights stay in their quantized blocks, in place,
// and are never copied. Kernel calls take QTensors whose `data` is such a view; activations are
// ordinary Float32Arrays, copied into / out of a scratch region of the same memory per call.
//
// Activations: by default ('q8') each mat-vec input is quantized once to 8 bits in llama.cpp's
// formats and multiplied in integers (asm/q8.ts); 'f32' keeps exact f32 activations (slower; the
// reference tests use it). F32 / F16 / BF16 weights always use f32 activations.
//
// Threads: with threads > 1, worker threads run the same module on the same (shared) memory in
// lockstep (pool.ts); every call is one task list whose rows / heads are split evenly.
//
// The memory is shared (a SharedArrayBuffer): growing it never detaches the views handed out
// earlier, and every growth makes a new SharedArrayBuffer object over the same memory; all of them
// are remembered so that a tensor is recognised whichever one its view was made on.
//
// attention reads the KV cache in place: the cache's k / v arrays must be views of the same memory
// (KVCache built on `alloc`, which createCache does); otherwise it falls back to the reference.
// Q2_K and Q3_K fall back to the reference kernels (which read the same memory).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import type { QTensor } from '../../model/tensor.js';
import { allQuantTypes } from '../../quant/types.js';
import type { Selection } from '../../sparsity/policy.js';
import type { Activation, AttentionArgs, Kernels, MatvecOptions } from '../kernels.js';
import { orderColumns, screenColScale, screenView, type ScreenView } from '../screen-layout.js';
import { refKernels } from '../ref/index.js';
import { refOps } from '../ref/ops.js';
import { Pool } from './pool.js';

export type SimdFlavour = 'relaxed' | 'plain';

export interface WasmKernels extends Kernels {
  /** A zero-filled view of `bytes` bytes in the kernels' memory (64-byte aligned); never freed. */
  alloc(bytes: number): Uint8Array;
  /** Whether a ggml type id is computed in wasm (the others fall back to the reference kernels). */
  supports(typeId: number): boolean;
  /** Row `row` of W dequantized into dst[0..W.cols) by the wasm decoder (the one matmul uses). */
  dequantizeRow(W: QTensor, row: number, dst: Float32Array): void;
  /** W with its rows interleaved in fours (asm/r4.ts), in place; W itself when its type or shape has no such layout. */
  pack(W: QTensor): QTensor;
  /** Current size of the kernels' memory in bytes. */
  memoryBytes(): number;
  /** The activation format of the mat-vecs and the SIMD flavour of this instance. */
  readonly activations: 'q8' | 'f32';
  readonly simd: SimdFlavour;
  /** The 8-bit activation exactly as the mat-vecs see it, dequantized (tests): kind 0 Q8_0, 1 Q8_1, 2 Q8_K. */
  quantizedActivation(kind: number, x: Float32Array): { q: Int16Array; d: Float32Array; s32: Float32Array; s16: Int32Array };
  /**
   * The transposed copy input-channel sparsity reads for W (built now if it is not yet), as a
   * view of the memory, with its layout parameters (asm/sparse.ts); null for types without one.
   */
  transposedCopy(W: QTensor): { kind: number; Rp: number; panelWidth: number; panelBytes: number; bytes: Uint8Array } | null;
  /**
   * The sparse output layer's screen, first stage (asm/screen.ts; src/kernels/screen-layout.ts):
   * out[0..4·groups) = the screen's first `blocks` 64-column blocks (default S.nb1, at most S.nb1)
   * · x; the screen and out in this memory. Returns the index of the best score among the first
   * `rows` rows (default all; the first on ties). Keeps the activation for screenGroups.
   */
  screenMatvec(S: ScreenView, x: Float32Array, out: Float32Array, rows?: number, blocks?: number): number;
  /**
   * The second stage: out[4g..4g+4) += the second-stage blocks of the groups gidx[0..ng) · the
   * activation of the last screenMatvec (which must have been on S with its default blocks).
   * gidx and out are views of this memory.
   */
  screenGroups(S: ScreenView, gidx: Int32Array, ng: number, out: Float32Array): void;
  /**
   * The sparse head's candidate rows (asm/screen.ts screenSelect): i < n with
   * s[i] + kappa·r[i] + kappa2·t[i] ≥ base (r or t null: that term absent) and `always`,
   * ascending, into idx; returns their number. s, r, t and idx (n entries) are views of this memory.
   */
  screenSelect(s: Float32Array, r: Float32Array | null, n: number, kappa: number, base: number, always: number, idx: Int32Array, t?: Float32Array | null, kappa2?: number): number;
  /**
   * Build W's screen, one stage (nb1 = nb), into dst (a view of this memory of
   * screenLayout(W.rows, W.cols).bytes; head.ts quantizeScreen is the reference and gives the same
   * bytes), its columns ordered by screenOrder(colScale, energy) (energy absent: W's order); false
   * when W's type has no wasm decoder or W.cols is not a multiple of 64 (build it with the reference).
   */
  screenBuild(W: QTensor, dst: Uint8Array, search: boolean, energy?: ArrayLike<number>): boolean;
  /** A row gather with compacted results: out[k] = W[sel.idx[k]]·x for k < sel.n (the sparse head's exact rows). */
  rowDots(W: QTensor, x: Float32Array, sel: Selection, out: Float32Array): void;
  /** Whether a typed array is a view of this instance's memory. */
  owns(a: ArrayBufferView): boolean;
  close(): void;
}

export interface WasmKernelOptions {
  /** Upper bound of the memory (weights + scratch), bytes; default and maximum 4 GiB. */
  maxMemoryBytes?: number;
  /** threads that split each kernel call (default: the machine's cores) */
  threads?: number;
  /** 'q8' (default): 8-bit activations and integer dot products, as llama.cpp; 'f32': exact activations */
  activations?: 'q8' | 'f32';
  /** pack() interleaves four rows of Q4_0 / Q4_1 / Q5_0 / Q8_0 weights (asm/r4.ts; default true with 'q8') */
  interleave?: boolean;
  /** 'auto' (default): relaxed SIMD where the engine has it; or force one flavour */
  simd?: 'auto' | SimdFlavour;
}

// ---------------------------------------------------------------- the few WebAssembly JS API types we use
// (the project compiles without the DOM lib, which is where TypeScript declares them)

interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(deltaPages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { readonly exports: Record<string, unknown> };
  Memory: new (desc: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  validate(bytes: Uint8Array): boolean;
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface Exports {
  heapBase(): number;
  supports(type: number): number;
  dequantize(type: number, w: number, cols: number, dst: number): void;
  blockSums(x: number, cols: number, xs: number): void;
  needsSums(type: number): number;
  actKind(type: number): number;
  actBytes(n: number): number;
  qmatmulScratch(cols: number, nTok: number): number;
  r4matmulScratch(cols: number): number;
  quantizeAct(kind: number, x: number, n: number, dst: number): void;
  screenSelect(s: number, r: number, t: number, lo: number, hi: number, kappa: number, kappa2: number, base: number, always: number, idx: number): number;
  screenAct(x: number, c: number, perm: number, n: number, split: number, dst: number): void;
  screenGroups(w2: number, nb2: number, gidx: number, ng: number, xa: number, split: number, rs: number, out: number): void;
  setF16Table(p: number, fill: number): void;
  run(table: number, nTasks: number, tid: number, nth: number, claims: number, gen: number): number;
  rmsnorm(out: number, x: number, w: number, n: number, eps: number): void;
  activate(x: number, n: number, act: number): void;
  combine(a: number, b: number, n: number, op: number): void;
  rope(x: number, nHeads: number, headDim: number, dims: number, cs: number, neox: number): void;
  keepAbove(x: number, n: number, t: number, scale: number, idx: number): number;
  tkind(type: number): number;
  tpanelWidth(kind: number): number;
  tpanelBytes(kind: number, Rp: number): number;
  tbuild(type: number, src: number, rowBytes: number, cols: number, r0: number, r1: number, dst: number): void;
  tprepare(x: number, cols: number, idx: number, n: number, xs: number, qa: number): number;
  tplanBytes(cols: number): number;
  tplan(kind: number, cols: number, qa: number, idx: number, n: number, plan: number): void;
  r4supports(type: number): number;
  r4packable(type: number, w: number, rowBytes: number, rows: number): number;
  r4pack(type: number, w: number, rowBytes: number, rows: number, tmp: number): void;
  r4rows(type: number, w: number, rowBytes: number, r0: number, r1: number, dst: number): void;
}

// task list layout: asm/kernels.ts
const TASK_WORDS = 18;
const T_QMATVEC = 1;
const T_FMATVEC = 2;
const T_QMATMUL = 3;
const T_FMATMUL = 4;
const T_ATTN = 5;
const T_TMATVEC = 6;
const T_SCREEN = 7;
const T_SCREEN_BUILD = 8;
const T_TBUILD = 9;
const T_R4MATVEC = 10;
const T_SCREEN_GROUPS = 11;
const T_SCREEN_SELECT = 12;
const T_EW = 13;
const T_ATTN_SPLIT = 14;
/** bytes before attentionSplit's partials: one counter per kv head (asm/kernels.ts PART_HEAD) */
const PART_HEAD = 256;
/** elements per unit of an element-wise task (asm/kernels.ts EW_UNIT); below 2 units the op runs on the calling thread */
const EW_UNIT = 4096;
/** rows per unit of the threaded candidate scan (asm/screen.ts SELECT_UNIT) */
const SELECT_UNIT = 4096;
/** task lists of at most this many units (rows, or groups of four) run on the calling thread alone */
const TINY_UNITS = 8;
const L_R4 = 1;

const PAGE = 65536;
const MAX_PAGES = 65536;
/** X + Out bytes per matmul chunk of token rows: bounds the scratch for huge outputs (the vocabulary head). */
const MATMUL_CHUNK_BYTES = 16 << 20;

const compiled = new Map<SimdFlavour, object>();

/** Paths of the compiled kernels (built by `npm run build:wasm`). */
export const WASM_URL = new URL('./kernels.wasm', import.meta.url);
export const WASM_RELAXED_URL = new URL('./kernels-relaxed.wasm', import.meta.url);

function readWasm(url: URL): Uint8Array {
  try {
    return readFileSync(url);
  } catch (e) {
    throw new Error(`wasm kernels: cannot read ${url.pathname} (run \`npm run build:wasm\`): ${(e as Error).message}`);
  }
}

let relaxedOk: boolean | null = null;
/** Whether this engine runs relaxed SIMD (Node 20 needs a V8 flag, which is set here before compiling). */
export function relaxedSimdAvailable(): boolean {
  if (relaxedOk === null) {
    setFlagsFromString('--experimental-wasm-relaxed-simd');
    relaxedOk = WA.validate(readWasm(WASM_RELAXED_URL));
  }
  return relaxedOk;
}

function wasmModule(flavour: SimdFlavour): object {
  let m = compiled.get(flavour);
  if (!m) {
    m = new WA.Module(readWasm(flavour === 'relaxed' ? WASM_RELAXED_URL : WASM_URL));
    compiled.set(flavour, m);
  }
  return m;
}

const align = (v: number, a: number): number => Math.ceil(v / a) * a;

/**
 * Query heads per attention unit when all heads attend (asm/kernels.ts attendGroup): the largest
 * divisor of the group whose units (over `tasks` positions) give every one of nth threads a share,
 * an even one or at least four each. Heads of one unit read their kv head's cache once.
 */
export function headsPerUnit(group: number, nHeads: number, tasks: number, nth: number): number {
  for (let gs = group; gs > 1; gs--) {
    if (group % gs !== 0) continue;
    const units = (nHeads / gs) * tasks;
    if (units >= nth && (units % nth === 0 || units >= 4 * nth)) return gs;
  }
  return 1;
}

/** The bits of x rounded to f32, as an i32 (a task word). */
const bitsF32 = new Float32Array(1), bitsI32 = new Int32Array(bitsF32.buffer);
const f32Bits = (x: number): number => {
  bitsF32[0] = x;
  return bitsI32[0]!;
};

/** A query row's attention is split over its positions only in lists of at most this many rows (decode steps). */
const SPLIT_ROWS = 4;
/** the smallest chunk of positions, and the most chunks a row is split into */
const SPLIT_MIN = 64;
const SPLIT_MAX_CHUNKS = 8;

/**
 * Positions per chunk when a query row attends over its n positions in chunks (asm/kernels.ts
 * attentionSplit: every kv head's chunks in parallel, then merged), or 0 when it attends in one
 * piece. A decode step has one row: its heads alone give two threads a few units each, and every
 * unit of a kv head reads the whole cache; in chunks, each position is read once and shared by the
 * group's heads. Depends on n, the list's rows and the kv heads only, never on the threads, so any
 * number of threads gives the same bits.
 */
export function splitChunk(n: number, rows: number, nKvHeads: number): number {
  if (rows > SPLIT_ROWS || 4 * nKvHeads > PART_HEAD) return 0;
  const chunk = Math.max(SPLIT_MIN, 4 * Math.ceil(n / (4 * SPLIT_MAX_CHUNKS)));
  return chunk < n ? chunk : 0;
}

/**
 * Bytes of a split row's partials (asm/kernels.ts attentionSplit): the kv heads' counters, then per
 * kv head and chunk, per head of its group, m, Σe and the headDimV sums.
 */
function splitPartBytes(a: AttentionArgs, chunk: number): number {
  return PART_HEAD + a.nKvHeads * Math.ceil(a.n / chunk) * (a.nHeads / a.nKvHeads) * (a.headDimV + 2) * 4;
}

/** Create a kernel instance with its own memory and threads (synchronous: the module is small and compiled once). */
export function createWasmKernels(opts: WasmKernelOptions = {}): WasmKernels {
  const maxPages = Math.min(MAX_PAGES, Math.max(1, Math.ceil((opts.maxMemoryBytes ?? MAX_PAGES * PAGE) / PAGE)));
  const nth = Math.max(1, Math.floor(opts.threads ?? availableParallelism()));
  const activations = opts.activations ?? 'q8';
  const interleave = activations === 'q8' && (opts.interleave ?? true);
  const isR4 = (W: QTensor): boolean => W.layout === 'r4';
  const want = opts.simd ?? 'auto';
  if (want === 'relaxed' && !relaxedSimdAvailable()) throw new Error('wasm kernels: this JavaScript engine has no relaxed SIMD');
  const simd: SimdFlavour = want === 'plain' ? 'plain' : relaxedSimdAvailable() ? 'relaxed' : 'plain';
  const module = wasmModule(simd);
  const memory = new WA.Memory({ initial: 1, maximum: maxPages, shared: true });
  const instance = new WA.Instance(module, { env: { memory } });
  const ex = instance.exports as unknown as Exports;

  const ours = new WeakSet<ArrayBufferLike>();
  let buf = memory.buffer;
  ours.add(buf);
  let f32 = new Float32Array(buf);
  let i32 = new Int32Array(buf);
  let top = align(ex.heapBase(), 4096);

  const supported = new Set<number>();
  for (const t of allQuantTypes()) if (ex.supports(t.id)) supported.add(t.id);

  /** Bump-allocate `bytes` (64-aligned), growing the memory as needed. */
  function reserve(bytes: number): number {
    const p = align(top, 64);
    const end = p + Math.max(0, bytes);
    if (end > buf.byteLength) {
      const need = Math.ceil((end - buf.byteLength) / PAGE);
      // grow at least by an eighth of the current size, to keep the number of buffers small
      const cur = buf.byteLength / PAGE;
      const want = Math.min(maxPages - cur, Math.max(need, Math.ceil(cur / 8)));
      if (want < need) {
        throw new RangeError(`wasm kernels: out of memory: need ${end} bytes, the memory is limited to ${maxPages * PAGE} bytes`);
      }
      memory.grow(want);
      buf = memory.buffer;
      ours.add(buf);
      f32 = new Float32Array(buf);
      i32 = new Int32Array(buf);
    }
    top = end;
    return p;
  }

  const f16tab = reserve(65536 * 4);
  ex.setF16Table(f16tab, 1);

  // the threads' claim counters (asm/kernels.ts run), set by the pool before each dispatch
  const claims = reserve(64 + 4 * nth);
  const pool = nth > 1 ? new Pool(module, memory, nth, f16tab, simd === 'relaxed', claims, (t, n, gen) => ex.run(t, n, 0, nth, claims, gen)) : null;

  // One scratch region, carved up per call (nothing in it outlives a call).
  let scratchPtr = 0;
  let scratchCap = 0;
  let cursor = 0;
  function beginScratch(bytes: number): void {
    if (bytes > scratchCap) {
      scratchCap = Math.max(bytes, 2 * scratchCap, 1 << 16);
      scratchPtr = reserve(scratchCap);
    }
    cursor = scratchPtr;
  }
  /** The next `bytes` of the region begun with beginScratch (64-aligned; the caller sized it). */
  function take(bytes: number): number {
    const p = cursor;
    cursor += align(bytes, 64);
    return p;
  }

  /** Byte address of W's row 0 in the memory; throws unless W.data is a view of it. */
  function addressOf(W: QTensor): number {
    const b = W.data.buffer;
    if (!ours.has(b)) {
      throw new Error(`wasm kernels: tensor ${W.name}: its data is not in this kernel instance's WebAssembly memory `
        + '(read the weights into a view returned by kernels.alloc())');
    }
    const p = W.data.byteOffset + W.offset;
    if (W.offset < 0 || W.offset + W.rows * W.rowBytes > W.data.byteLength) {
      throw new RangeError(`wasm kernels: tensor ${W.name}: ${W.rows} rows of ${W.rowBytes} bytes at offset ${W.offset} exceed its view (${W.data.byteLength} bytes)`);
    }
    if (W.cols % W.type.blockSize !== 0) throw new Error(`wasm kernels: tensor ${W.name}: ${W.cols} columns is not a whole number of ${W.type.name} blocks`);
    return p;
  }

  /** The activation kind W is multiplied with on the integer path, or -1 (f32 activations). */
  const kindOf = (W: QTensor): number => (activations === 'q8' ? ex.actKind(W.type.id) : -1);

  // task list writer
  let table = 0;
  let nTasks = 0;
  function task(words: number[]): void {
    const o = (table >>> 2) + nTasks * TASK_WORDS;
    for (let i = 0; i < TASK_WORDS; i++) i32[o + i] = words[i] ?? 0;
    nTasks++;
  }
  function dispatch(): void {
    if (nTasks === 0) return;
    if (pool && !tiny()) pool.run(table, nTasks);
    else ex.run(table, nTasks, 0, 1, 0, 0);
  }
  /**
   * Whether the task list is a few rows of mat-vecs (the sparse head's exact rows): waking the
   * workers costs more than computing them here. Only tasks whose result does not depend on the
   * thread that computes it qualify.
   */
  function tiny(): boolean {
    let units = 0;
    for (let i = 0; i < nTasks; i++) {
      const o = (table >>> 2) + i * TASK_WORDS;
      const kind = i32[o]!;
      if (kind !== T_QMATVEC && kind !== T_R4MATVEC && kind !== T_FMATVEC) return false;
      units += i32[o + 5]!;
      if (units > TINY_UNITS) return false;
    }
    return true;
  }

  function checkRows(W: QTensor, sel: Selection): void {
    for (let i = 0; i < sel.n; i++) {
      const r = sel.idx[i]!;
      if (!(r >= 0 && r < W.rows)) throw new RangeError(`matvec ${W.name}: selected row ${r} outside 0..${W.rows - 1}`);
    }
  }

  const qaPtr = [0, 0, 0];
  /**
   * The common decode case without copies: dense mat-vecs on the integer path whose input and
   * outputs are already in the memory (the forward pass's run state). False = take the general path.
   */
  function direct(Ws: readonly QTensor[], x: Float32Array, outs: readonly Float32Array[]): boolean {
    if (activations !== 'q8' || !ours.has(x.buffer)) return false;
    const cols = Ws[0]!.cols;
    if (x.length < cols) return false;
    let kinds = 0;
    for (let i = 0; i < Ws.length; i++) {
      const W = Ws[i]!, out = outs[i]!;
      const k = supported.has(W.type.id) ? ex.actKind(W.type.id) : -1;
      if (k < 0 || W.cols !== cols || !ours.has(out.buffer) || out.length < W.rows) return false;
      kinds |= 1 << k;
    }
    const aBytes = align(ex.actBytes(cols), 64);
    beginScratch(3 * aBytes + TASK_WORDS * 4 * Ws.length + 64);
    for (let k = 0; k < 3; k++) {
      if (!(kinds & (1 << k))) continue;
      qaPtr[k] = take(aBytes);
      ex.quantizeAct(k, x.byteOffset, cols, qaPtr[k]!);
    }
    table = take(TASK_WORDS * 4 * Ws.length);
    nTasks = 0;
    for (let i = 0; i < Ws.length; i++) {
      const W = Ws[i]!;
      const qa = qaPtr[ex.actKind(W.type.id)]!;
      if (isR4(W)) task([T_R4MATVEC, W.type.id, addressOf(W), W.rowBytes, 0, W.rows >> 2, 0, qa, outs[i]!.byteOffset]);
      else task([T_QMATVEC, W.type.id, addressOf(W), W.rowBytes, cols, W.rows, 0, qa, outs[i]!.byteOffset]);
    }
    dispatch();
    return true;
  }

  /** x[0..cols) into the memory at byte xp; with a selection only its channels (the reference semantics: dropped channels count as zero). */
  function putInput(xp: number, x: Float32Array, cols: number, inputs: Selection | null): void {
    const xo = xp >>> 2;
    if (!inputs) {
      f32.set(x.length === cols ? x : x.subarray(0, cols), xo);
      return;
    }
    f32.fill(0, xo, xo + cols);
    const { idx, n } = inputs;
    for (let i = 0; i < n; i++) {
      const c = idx[i]!;
      f32[xo + c] = x[c]!;
    }
  }

  /**
   * Transposed copies for input-channel sparsity (asm/sparse.ts): built the first time a linear
   * is asked for with an input selection, so dense use costs nothing.
   */
  const transposed = new WeakMap<QTensor, { ptr: number; kind: number; Rp: number }>();
  function transposedOf(W: QTensor): { ptr: number; kind: number; Rp: number } {
    let t = transposed.get(W);
    if (!t) {
      const kind = ex.tkind(W.type.id);
      const Rp = (W.rows + 31) & ~31;
      const bytes = ex.tpanelBytes(kind, Rp) * (W.cols / ex.tpanelWidth(kind));
      const ptr = reserve(bytes);
      new Uint8Array(buf, ptr, bytes).fill(0);
      // built by all threads, tile by tile
      // interleaved weights: each thread turns 32 rows back into ggml rows at a time
      const r4Bytes = isR4(W) ? align(32 * W.rowBytes, 64) : 0;
      beginScratch(TASK_WORDS * 4 + 64 + nth * r4Bytes);
      table = take(TASK_WORDS * 4);
      const rowsBuf = take(nth * r4Bytes);
      nTasks = 0;
      task([T_TBUILD, W.type.id, addressOf(W), W.rowBytes, W.rows, Rp / 32, W.cols, ptr, isR4(W) ? L_R4 : 0, rowsBuf, r4Bytes]);
      dispatch();
      t = { ptr, kind, Rp };
      transposed.set(W, t);
    }
    return t;
  }
  /** Whether W's input sparsity goes through a transposed copy (the integer path only). */
  const transposableMemo = new WeakMap<QTensor, boolean>();
  const transposable = (W: QTensor): boolean => {
    let t = transposableMemo.get(W);
    if (t === undefined) transposableMemo.set(W, (t = activations === 'q8' && ex.tkind(W.type.id) >= 0 && W.cols % W.type.blockSize === 0));
    return t;
  };

  /**
   * What sparseInputs works out once per group of linears sharing an input (q/k/v, gate/up, ...):
   * their copies, the activation kinds with one plan each, the sizes. A decode step makes a hundred
   * or more such calls, so per-call work is kept to the plan and the task list.
   */
  interface SparseGroup {
    readonly Ws: readonly QTensor[];
    readonly Ts: readonly { ptr: number; kind: number; Rp: number }[];
    /** distinct kinds, and for each linear the index of its kind's plan */
    readonly kinds: readonly number[];
    readonly plan: readonly number[];
    readonly planBytes: number;
  }
  const sparseGroups = new WeakMap<QTensor, SparseGroup[]>();
  function sparseGroup(Ws: readonly QTensor[]): SparseGroup {
    let list = sparseGroups.get(Ws[0]!);
    if (list) {
      for (const g of list) if (g.Ws.length === Ws.length && g.Ws.every((W, i) => W === Ws[i])) return g;
    } else sparseGroups.set(Ws[0]!, (list = []));
    const cols = Ws[0]!.cols;
    for (const W of Ws) if (W.cols !== cols) throw new RangeError(`matvecs: ${W.name} has ${W.cols} columns, ${Ws[0]!.name} ${cols}`);
    const Ts = Ws.map(transposedOf);
    const kinds: number[] = [];
    for (const T of Ts) if (!kinds.includes(T.kind)) kinds.push(T.kind);
    const g: SparseGroup = { Ws: [...Ws], Ts, kinds, plan: Ts.map((T) => kinds.indexOf(T.kind)), planBytes: ex.tplanBytes(cols) };
    list.push(g);
    return g;
  }
  const planPtrs: number[] = [];
  const outPtrs: number[] = [];
  const directs: boolean[] = [];

  /** outs[i] = Ws[i]·(x with only the channels in `inputs`), each W transposable, from the transposed copies. */
  function sparseInputs(Ws: readonly QTensor[], x: Float32Array, outs: readonly Float32Array[], inputs: Selection): void {
    const g = sparseGroup(Ws);
    const cols = Ws[0]!.cols;
    if (x.length < cols) throw new RangeError(`matvec ${Ws[0]!.name}: x has ${x.length} elements, need ${cols}`);
    const { idx, n } = inputs;
    const { Ts, kinds, planBytes } = g;
    const inPlace = ours.has(x.buffer);
    let bytes = align(cols * 4, 64) * (inPlace ? 1 : 2) + align(ex.actBytes(cols), 64) + align(n * 4, 64)
      + 64 * TASK_WORDS * 4 + kinds.length * align(planBytes, 64);
    for (let i = 0; i < Ws.length; i++) {
      if (outs[i]!.length < Ws[i]!.rows) throw new RangeError(`matvec ${Ws[i]!.name}: out has ${outs[i]!.length} elements, need ${Ws[i]!.rows}`);
      bytes += align(Ts[i]!.Rp * 4, 64);
    }
    beginScratch(bytes);
    // x stays where it is when it already lives in the memory (the forward pass's run state)
    let xp = x.byteOffset;
    if (!inPlace) {
      xp = take(cols * 4);
      f32.set(x.length === cols ? x : x.subarray(0, cols), xp >>> 2);
    }
    const xs = take(cols * 4);
    const qa = take(ex.actBytes(cols));
    const idxp = take(n * 4);
    i32.set(idx.length === n ? idx : idx.subarray(0, n), idxp >>> 2);
    const bad = ex.tprepare(xp, cols, idxp, n, xs, qa);
    if (bad >= 0) throw new RangeError(`matvec ${Ws[0]!.name}: input selection must be ascending channels in 0..${cols - 1} (got ${idx[bad]} at ${bad})`);
    planPtrs.length = 0;
    for (const kind of kinds) {
      const plan = take(planBytes);
      ex.tplan(kind, cols, qa, idxp, n, plan);
      planPtrs.push(plan);
    }
    table = take(TASK_WORDS * 4 * Ws.length);
    nTasks = 0;
    outPtrs.length = 0;
    directs.length = 0;
    for (let i = 0; i < Ts.length; i++) {
      const T = Ts[i]!, plan = planPtrs[g.plan[i]!]!, o = outs[i]!;
      // outputs written in place when they live in the memory and the copy has no padding rows;
      // the threads split the tiles (rows) and write every row of theirs
      const direct = ours.has(o.buffer) && T.Rp === Ws[i]!.rows;
      directs.push(direct);
      const op = direct ? o.byteOffset : take(T.Rp * 4);
      const w = (table >>> 2) + nTasks * TASK_WORDS;
      i32.fill(0, w, w + TASK_WORDS);
      i32[w] = T_TMATVEC; i32[w + 1] = T.kind; i32[w + 2] = plan; i32[w + 3] = T.ptr;
      i32[w + 4] = cols / ex.tpanelWidth(T.kind); i32[w + 5] = T.Rp / 32; i32[w + 8] = op;
      nTasks++;
      outPtrs.push(op);
    }
    dispatch();
    for (let i = 0; i < Ws.length; i++) {
      if (!directs[i]) outs[i]!.set(f32.subarray(outPtrs[i]! >>> 2, (outPtrs[i]! >>> 2) + Ws[i]!.rows));
    }
  }

  /** set by rowDots: row gathers write their results compacted (out[k] = row idx[k]) */
  let compactRows = false;
  function rowDots(W: QTensor, x: Float32Array, sel: Selection, out: Float32Array): void {
    if (!supported.has(W.type.id)) {
      const full = new Float32Array(W.rows);
      refKernels.matvec(W, x, full, { inputs: null, rows: sel });
      for (let k = 0; k < sel.n; k++) out[k] = full[sel.idx[k]!]!;
      return;
    }
    compactRows = true;
    try {
      matvecs([W], x, [out], null, [sel]);
    } finally {
      compactRows = false;
    }
  }

  function matvecs(Ws: readonly QTensor[], x: Float32Array, outs: readonly Float32Array[], inputs?: Selection | null,
    rows?: readonly (Selection | null)[] | null): void {
    if (!inputs && !rows && direct(Ws, x, outs)) return;
    if (inputs && !rows && Ws.every(transposable)) {
      sparseInputs(Ws, x, outs, inputs);
      return;
    }
    if (inputs && Ws.some((W, i) => transposable(W) && !rows?.[i])) {
      const t = Ws.map((W, i) => transposable(W) && !rows?.[i]);
      sparseInputs(Ws.filter((_, i) => t[i]), x, outs.filter((_, i) => t[i]), inputs);
      if (t.every(Boolean)) return;
      const rest = Ws.map((_, i) => i).filter((i) => !t[i]);
      matvecs(rest.map((i) => Ws[i]!), x, rest.map((i) => outs[i]!), inputs, rows ? rest.map((i) => rows[i] ?? null) : null);
      return;
    }
    // types without a wasm kernel go to the reference one by one
    const fast: number[] = [];
    for (let i = 0; i < Ws.length; i++) {
      const W = Ws[i]!;
      if (supported.has(W.type.id)) fast.push(i);
      else refKernels.matvec(W, x, outs[i]!, { inputs: inputs ?? null, rows: rows?.[i] ?? null });
    }
    if (fast.length === 0) return;
    const cols = Ws[fast[0]!]!.cols;
    const kinds = new Set<number>();
    let sums = false;
    let bytes = align(cols * 4, 64) * 2 + 64 * TASK_WORDS * 4 * fast.length;
    for (const i of fast) {
      const W = Ws[i]!;
      if (W.cols !== cols) throw new RangeError(`matvecs: ${W.name} has ${W.cols} columns, ${Ws[fast[0]!]!.name} ${cols}`);
      if (x.length < cols) throw new RangeError(`matvec ${W.name}: x has ${x.length} elements, need ${cols}`);
      const need = compactRows ? rows?.[i]?.n ?? W.rows : W.rows;
      if (outs[i]!.length < need) throw new RangeError(`matvec ${W.name}: out has ${outs[i]!.length} elements, need ${need}`);
      const k = kindOf(W);
      if (k >= 0) kinds.add(k);
      else if (ex.needsSums(W.type.id)) sums = true;
      const sel = rows?.[i] ?? null;
      bytes += align((sel ? sel.n : W.rows) * 4, 64) * (sel ? 2 : 1);
    }
    bytes += kinds.size * align(ex.actBytes(cols), 64);
    beginScratch(bytes);
    const xp = take(cols * 4);
    const xsp = take(cols * 4);
    table = take(TASK_WORDS * 4 * fast.length);
    nTasks = 0;
    putInput(xp, x, cols, inputs ?? null);
    const qa = new Map<number, number>();
    for (const k of kinds) {
      const p = take(ex.actBytes(cols));
      ex.quantizeAct(k, xp, cols, p);
      qa.set(k, p);
    }
    if (sums) ex.blockSums(xp, cols, xsp);
    const outPtrs: number[] = [];
    for (const i of fast) {
      const W = Ws[i]!;
      const sel = rows?.[i] ?? null;
      let idxp = 0;
      if (sel) {
        checkRows(W, sel);
        idxp = take(sel.n * 4);
        i32.set(sel.idx.subarray(0, sel.n), idxp >>> 2);
      }
      const n = sel ? sel.n : W.rows;
      const op = take(n * 4);
      outPtrs.push(op);
      const k = kindOf(W);
      if (k >= 0 && isR4(W) && !sel) task([T_R4MATVEC, W.type.id, addressOf(W), W.rowBytes, 0, W.rows >> 2, 0, qa.get(k)!, op]);
      else if (k >= 0) task([T_QMATVEC, W.type.id, addressOf(W), W.rowBytes, cols, n, idxp, qa.get(k)!, op, isR4(W) ? L_R4 : 0]);
      else task([T_FMATVEC, W.type.id, addressOf(W), W.rowBytes, cols, n, idxp, xp, op, xsp]);
    }
    dispatch();
    fast.forEach((i, j) => {
      const W = Ws[i]!;
      const out = outs[i]!;
      const sel = rows?.[i] ?? null;
      const oo = outPtrs[j]! >>> 2;
      if (sel && compactRows) out.set(f32.subarray(oo, oo + sel.n));
      else if (sel) {
        out.fill(0, 0, W.rows);
        for (let s = 0; s < sel.n; s++) out[sel.idx[s]!] = f32[oo + s]!;
      } else {
        out.set(f32.subarray(oo, oo + W.rows));
      }
    });
  }

  function matmuls(Ws: readonly QTensor[], X: Float32Array, n: number, Outs: readonly Float32Array[]): void {
    if (n <= 0) return;
    const fast: number[] = [];
    for (let i = 0; i < Ws.length; i++) {
      const W = Ws[i]!;
      if (X.length < n * W.cols) throw new RangeError(`matmul ${W.name}: X has ${X.length} elements, need ${n}×${W.cols}`);
      if (Outs[i]!.length < n * W.rows) throw new RangeError(`matmul ${W.name}: Out has ${Outs[i]!.length} elements, need ${n}×${W.rows}`);
      if (supported.has(W.type.id)) fast.push(i);
      else refKernels.matmul(W, X, n, Outs[i]!);
    }
    if (fast.length === 0) return;
    const cols = Ws[fast[0]!]!.cols;
    let sumRows = 0;
    const kinds = new Set<number>();
    let anyF = false;
    for (const i of fast) {
      const W = Ws[i]!;
      if (W.cols !== cols) throw new RangeError(`matmuls: ${W.name} has ${W.cols} columns, ${Ws[fast[0]!]!.name} ${cols}`);
      sumRows += W.rows;
      const k = kindOf(W);
      if (k >= 0) kinds.add(k);
      else anyF = true;
    }
    const qaStride = align(ex.actBytes(cols), 64);
    // token rows per call: a multiple of 4 (the f32 micro-kernel's width), inputs + outputs within the budget
    const perToken = cols * 4 + kinds.size * qaStride + sumRows * 4;
    const chunk = Math.min(align(n, 4), Math.max(4, Math.floor(MATMUL_CHUNK_BYTES / perToken / 4) * 4));
    const wbBytes = anyF ? 2 * align(cols, 4) * 4 + 64 : 0;
    // per thread: the row-layout kernel's token scales, or an interleaved row group unpacked (asm/r4.ts)
    const q4Bytes = kinds.size > 0 ? align(Math.max(ex.qmatmulScratch(cols, chunk), ex.r4matmulScratch(cols)), 64) : 0;
    beginScratch(nth * (wbBytes + q4Bytes) + align(chunk * cols * 4, 64) + kinds.size * chunk * qaStride
      + fast.reduce((a, i) => a + align(chunk * Ws[i]!.rows * 4, 64), 0) + TASK_WORDS * 4 * fast.length + 64 * 8);
    const wbp = take(nth * wbBytes);
    const q4p = take(nth * q4Bytes);
    const Xp = take(chunk * cols * 4);
    const qaBase = new Map<number, number>();
    for (const k of kinds) qaBase.set(k, take(chunk * qaStride));
    const outPtrs = fast.map((i) => take(chunk * Ws[i]!.rows * 4));
    table = take(TASK_WORDS * 4 * fast.length);
    // inputs and outputs in the memory (the forward pass's run state) are read and written in
    // place by the quantized kernels: copies out of the shared memory cost ~3% of a prefill
    const overlaps = (a: Float32Array, b: Float32Array): boolean =>
      a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
    const outIn = fast.map((i) => kindOf(Ws[i]!) >= 0 && ours.has(Outs[i]!.buffer) && !overlaps(Outs[i]!, X));
    const xIn = !anyF && ours.has(X.buffer);
    for (let t0 = 0; t0 < n; t0 += chunk) {
      const m = Math.min(chunk, n - t0);
      const mPad = align(m, 4);
      const xo = Xp >>> 2;
      if (!xIn) {
        f32.set(X.subarray(t0 * cols, (t0 + m) * cols), xo);
        if (mPad > m) f32.fill(0, xo + m * cols, xo + mPad * cols);
      }
      const xs = xIn ? X.byteOffset + t0 * cols * 4 : Xp;
      for (const [k, p] of qaBase) for (let t = 0; t < m; t++) ex.quantizeAct(k, xs + t * cols * 4, cols, p + t * qaStride);
      nTasks = 0;
      fast.forEach((i, j) => {
        const W = Ws[i]!;
        const k = kindOf(W);
        const op = outIn[j] ? Outs[i]!.byteOffset + t0 * W.rows * 4 : outPtrs[j]!;
        // (interleaved weights: the units are groups of four rows)
        if (k >= 0) task([T_QMATMUL, W.type.id, addressOf(W), W.rowBytes, cols, isR4(W) ? W.rows >> 2 : W.rows, qaBase.get(k)!, qaStride, m, op, W.rows * 4, q4p, q4Bytes, isR4(W) ? L_R4 : 0]);
        else task([T_FMATMUL, W.type.id, addressOf(W), W.rowBytes, cols, W.rows, Xp, mPad, op, W.rows * 4, wbp, wbBytes]);
      });
      dispatch();
      fast.forEach((i, j) => {
        if (outIn[j]) return;
        const rowsW = Ws[i]!.rows;
        const o = outPtrs[j]! >>> 2;
        Outs[i]!.set(f32.subarray(o, o + m * rowsW), t0 * rowsW);
      });
    }
  }

  /** Interleave W's rows in place (asm/r4.ts) when its type has the layout and its rows come in fours. */
  function pack(W: QTensor): QTensor {
    if (!interleave || isR4(W) || !ex.r4supports(W.type.id) || W.rows % 4 !== 0 || W.cols % 32 !== 0 || !ours.has(W.data.buffer)) return W;
    const w = addressOf(W);
    if (!ex.r4packable(W.type.id, w, W.rowBytes, W.rows)) return W;
    beginScratch(4 * W.rowBytes + 64);
    ex.r4pack(W.type.id, w, W.rowBytes, W.rows, take(4 * W.rowBytes));
    return { ...W, layout: 'r4' };
  }

  function dequantizeRow(W: QTensor, row: number, dst: Float32Array): void {
    if (!supported.has(W.type.id)) throw new Error(`wasm kernels: no ${W.type.name} decoder`);
    const w = addressOf(W);
    if (!(row >= 0 && row < W.rows)) throw new RangeError(`dequantizeRow ${W.name}: row ${row} outside 0..${W.rows - 1}`);
    beginScratch(W.cols * 4 + W.rowBytes + 64);
    const p = take(W.cols * 4);
    let src = w + row * W.rowBytes;
    if (isR4(W)) {
      src = take(W.rowBytes);
      ex.r4rows(W.type.id, w, W.rowBytes, row, row + 1, src);
    }
    ex.dequantize(W.type.id, src, W.cols, p);
    dst.set(f32.subarray(p >>> 2, (p >>> 2) + W.cols));
  }

  /** Whether a Float32Array is a view of this instance's memory (so wasm can read it in place). */
  const inMemory = (a: Float32Array): boolean => ours.has(a.buffer);

  function attentions(list: readonly AttentionArgs[]): void {
    const fast: AttentionArgs[] = [];
    for (const a of list) {
      const { k, v, nHeads, nKvHeads, n } = a;
      // a cache outside the memory (e.g. built without alloc), uneven head groups, or nothing to attend to
      if (!inMemory(k) || !inMemory(v) || !(nKvHeads > 0) || nHeads % nKvHeads !== 0 || !(n > 0)) refKernels.attention(a);
      else fast.push(a);
    }
    if (fast.length === 0) return;
    // longest first: the threads claim attention's units one at a time (asm/kernels.ts run)
    fast.sort((a, b) => b.n - a.n);
    let bytes = TASK_WORDS * 4 * fast.length + 64;
    for (const a of fast) {
      const { q, qOffset, k, v, start, n, nHeads, nKvHeads, headDim, headDimV, out, outOffset, heads } = a;
      const kvDim = nKvHeads * headDim;
      const kvDimV = nKvHeads * headDimV;
      const qDim = nHeads * headDim;
      const outDim = nHeads * headDimV;
      if (!(start >= 0) || (start + n) * kvDim > k.length || (start + n) * kvDimV > v.length) {
        throw new RangeError(`attention: positions ${start}..${start + n - 1} exceed the cache (${k.length / kvDim} / ${v.length / kvDimV} positions)`);
      }
      if (!(qOffset >= 0) || qOffset + qDim > q.length) throw new RangeError(`attention: q has ${q.length} elements, need ${qOffset}+${qDim}`);
      if (!(outOffset >= 0) || outOffset + outDim > out.length) throw new RangeError(`attention: out has ${out.length} elements, need ${outOffset}+${outDim}`);
      if (heads) {
        for (let i = 0; i < heads.n; i++) {
          const h = heads.idx[i]!;
          if (!(h >= 0 && h < nHeads)) throw new RangeError(`attention: selected head ${h} outside 0..${nHeads - 1}`);
        }
      }
      bytes += align(qDim * 4, 64) + align(outDim * 4, 64) + (heads ? align(heads.n * 4, 64) : 0);
    }
    // rows split over their positions (decode steps), and heads per unit for the other tasks
    // without a head list: a whole kv head's group where that leaves every thread a fair share
    // (prefill), else smaller sub-groups
    const chunks = fast.map((a) => (a.heads ? 0 : splitChunk(a.n, fast.length, a.nKvHeads)));
    const dense = fast.filter((a, j) => !a.heads && !chunks[j]);
    const gsOf = new Map<number, number>();
    for (const a of dense) {
      const group = a.nHeads / a.nKvHeads;
      if (!gsOf.has(group)) gsOf.set(group, headsPerUnit(group, a.nHeads, dense.length, nth));
    }
    // per thread: the largest task's scores, their normalisers and its partial weighted sums (asm/kernels.ts attendGroup)
    let scoreFloats = 0;
    fast.forEach((a, j) => {
      const group = a.nHeads / a.nKvHeads;
      const gs = chunks[j] ? group : a.heads ? 1 : gsOf.get(group)!;
      scoreFloats = Math.max(scoreFloats, gs * (align(chunks[j] || a.n, 4) + 1 + a.headDimV));
      if (chunks[j]) bytes += align(splitPartBytes(a, chunks[j]!), 64);
    });
    const scoresBytes = align(scoreFloats * 4, 64);
    beginScratch(bytes + nth * scoresBytes);
    table = take(TASK_WORDS * 4 * fast.length);
    const scores = take(nth * scoresBytes);
    nTasks = 0;
    const outPtrs: number[] = [];
    fast.forEach((a, j) => {
      const { q, qOffset, k, v, start, n, nHeads, nKvHeads, headDim, headDimV, scale, heads } = a;
      const kvDim = nKvHeads * headDim;
      const kvDimV = nKvHeads * headDimV;
      const qDim = nHeads * headDim;
      const outDim = nHeads * headDimV;
      // q and out are used in place when they are in the memory (the forward pass's run state)
      const qIn = inMemory(q), outIn = inMemory(a.out);
      const qp = qIn ? q.byteOffset + qOffset * 4 : take(qDim * 4);
      const op = outIn ? a.out.byteOffset + a.outOffset * 4 : take(outDim * 4);
      outPtrs.push(outIn ? -1 : op);
      if (!qIn) f32.set(q.subarray(qOffset, qOffset + qDim), qp >>> 2);
      const kp = k.byteOffset + start * kvDim * 4, vp = v.byteOffset + start * kvDimV * 4;
      const group = nHeads / nKvHeads;
      const chunk = chunks[j]!;
      if (chunk) {
        const part = take(splitPartBytes(a, chunk));
        i32.fill(0, part >>> 2, (part >>> 2) + nKvHeads);
        task([T_ATTN_SPLIT, qp, kp, vp, kvDim * 4, kvDimV * 4, n, headDim, headDimV, group, f32Bits(scale), op, part,
          nKvHeads * Math.ceil(n / chunk), scores, scoresBytes, 0, chunk]);
        return;
      }
      let idxp = 0;
      const nh = heads ? heads.n : nHeads;
      if (heads) {
        idxp = take(nh * 4);
        i32.set(heads.idx.subarray(0, nh), idxp >>> 2);
        f32.fill(0, op >>> 2, (op >>> 2) + outDim);
      }
      const gs = heads ? 1 : gsOf.get(group)!;
      task([T_ATTN, qp, kp, vp, kvDim * 4, kvDimV * 4, n,
        headDim, headDimV, group, f32Bits(scale), op, idxp, heads ? nh : nHeads / gs, scores, scoresBytes, 0, gs]);
    });
    dispatch();
    fast.forEach((a, j) => {
      if (outPtrs[j]! < 0) return;
      const outDim = a.nHeads * a.headDimV;
      a.out.set(f32.subarray(outPtrs[j]! >>> 2, (outPtrs[j]! >>> 2) + outDim), a.outOffset);
    });
  }

  // ---- element-wise ops: in place on arrays in the memory; constant vectors from outside
  // (norm weights) are copied in once and remembered
  const copies = new WeakMap<Float32Array, number>();
  /** Byte address of a[o] if a is a view of the memory, else -1. */
  const addr = (a: Float32Array, o: number): number => (ours.has(a.buffer) ? a.byteOffset + o * 4 : -1);
  function constAddr(w: Float32Array, n: number): number {
    const p = addr(w, 0);
    if (p >= 0) return p;
    let c = copies.get(w);
    if (c === undefined || w.length < n) {
      c = reserve(w.length * 4);
      f32.set(w, c >>> 2);
      copies.set(w, c);
    }
    return c;
  }
  const ACT: Record<Activation, number> = { silu: 0, gelu: 1 };
  /** An element-wise op over n elements at pa (and pb) on all threads: 0 SiLU, 1 GELU, 2 multiply. */
  function elementwise(op: number, pa: number, pb: number, n: number): void {
    beginScratch(TASK_WORDS * 4 + 64);
    table = take(TASK_WORDS * 4);
    nTasks = 0;
    task([T_EW, op, pa, pb, n, Math.ceil(n / EW_UNIT)]);
    dispatch();
  }
  const ops = {
    rmsnorm(out: Float32Array, o: number, x: Float32Array, xo: number, w: Float32Array, n: number, eps: number): void {
      const po = addr(out, o), px = addr(x, xo);
      if (po < 0 || px < 0 || o + n > out.length || xo + n > x.length || w.length < n) return refOps.rmsnorm(out, o, x, xo, w, n, eps);
      ex.rmsnorm(po, px, constAddr(w, n), n, eps);
    },
    activate(x: Float32Array, o: number, n: number, act: Activation): void {
      const p = addr(x, o);
      if (p < 0 || o + n > x.length) return refOps.activate(x, o, n, act);
      // a batch's activations (prefill: 32 rows of the MLP) on all threads
      if (pool && n >= 2 * EW_UNIT) return elementwise(ACT[act]!, p, 0, n);
      ex.activate(p, n, ACT[act]);
    },
    mul(a: Float32Array, o: number, b: Float32Array, bo: number, n: number): void {
      const pa = addr(a, o), pb = addr(b, bo);
      if (pa < 0 || pb < 0 || o + n > a.length || bo + n > b.length) return refOps.mul(a, o, b, bo, n);
      if (pool && n >= 2 * EW_UNIT) return elementwise(2, pa, pb, n);
      ex.combine(pa, pb, n, 0);
    },
    add(a: Float32Array, o: number, b: Float32Array, bo: number, n: number): void {
      const pa = addr(a, o), pb = addr(b, bo);
      if (pa < 0 || pb < 0 || o + n > a.length || bo + n > b.length) return refOps.add(a, o, b, bo, n);
      ex.combine(pa, pb, n, 1);
    },
    rope(x: Float32Array, o: number, nHeads: number, headDim: number, dims: number, cs: Float32Array, neox: boolean): void {
      const px = addr(x, o), pc = addr(cs, 0);
      if (px < 0 || pc < 0 || o + nHeads * headDim > x.length || cs.length < dims) return refOps.rope(x, o, nHeads, headDim, dims, cs, neox);
      ex.rope(px, nHeads, headDim, dims, pc, neox ? 1 : 0);
    },
    keepAbove(x: Float32Array, t: number, scale: Float32Array | null, idx: Int32Array): number {
      const n = x.length;
      const px = addr(x, 0);
      if (px < 0 || idx.length < n || (scale && scale.length < n) || !(t >= 0)) return refOps.keepAbove(x, t, scale, idx);
      beginScratch(n * 4 + 64);
      const ip = take(n * 4);
      const k = ex.keepAbove(px, n, f32Below(t), scale ? constAddr(scale, n) : 0, ip);
      idx.set(i32.subarray(ip >>> 2, (ip >>> 2) + k));
      return k;
    },
  };
  /** The largest f32 ≤ t (t ≥ 0): comparing an f32 with it is comparing with t. */
  const fb = new Float32Array(1), ub = new Uint32Array(fb.buffer);
  function f32Below(t: number): number {
    fb[0] = t;
    if (fb[0]! > t) ub[0]! -= 1;
    return fb[0]!;
  }

  function quantizedActivation(kind: number, x: Float32Array): { q: Int16Array; d: Float32Array; s32: Float32Array; s16: Int32Array } {
    const n = x.length;
    const blk = kind === 2 ? 256 : 32;
    if (n % blk !== 0) throw new RangeError(`quantizedActivation: ${n} elements is not a whole number of ${blk}-blocks`);
    beginScratch(n * 4 + ex.actBytes(n) + 128);
    const xp = take(n * 4);
    const p = take(ex.actBytes(n));
    f32.set(x, xp >>> 2);
    ex.quantizeAct(kind, xp, n, p);
    // block layout: asm/q8.ts
    const QS = simd === 'relaxed' ? 1 : 2;
    const dv = new DataView(buf, p);
    const q = new Int16Array(n);
    const d = new Float32Array(n / blk);
    const s16 = new Int32Array(n / 16);
    const s32 = new Float32Array(n / 32);
    const blkBytes = blk === 256 ? 256 * QS + 112 : ex.actBytes(32);
    for (let b = 0; b < n / blk; b++) {
      const o = b * blkBytes;
      for (let i = 0; i < blk; i++) q[b * blk + i] = QS === 1 ? dv.getInt8(o + i) : dv.getInt16(o + 2 * i, true);
      const M = o + blk * QS;
      d[b] = dv.getFloat32(M, true);
      if (blk === 256) {
        for (let g = 0; g < 16; g++) {
          s16[b * 16 + g] = dv.getInt32(M + 16 + 4 * g, true);
          // the same sums as i16 (the K-quant kernels' copy)
          if (dv.getInt16(M + 80 + 2 * g, true) !== s16[b * 16 + g]) throw new Error(`quantizedActivation: block ${b}: i16 sum ${g} differs from the i32 one`);
        }
      } else {
        s32[b] = kind === 1 ? dv.getFloat32(M + 4, true) : dv.getInt32(M + 4, true);
        s16[2 * b] = dv.getInt32(M + 8, true);
        s16[2 * b + 1] = dv.getInt32(M + 12, true);
      }
    }
    return { q, d, s32, s16 };
  }

  /** below this many groups the second stage runs on the calling thread (waking the workers costs more) */
  const SCREEN_GROUPS_ALONE = 256;
  // the last screen activation (screenMatvec → screenGroups): its own region, outside the scratch
  let screenActPtr = 0, screenActBytes = 0, screenActOf: ScreenView | null = null;
  function screenMatvec(S: ScreenView, x: Float32Array, out: Float32Array, rows = 4 * S.groups, blocks = S.nb1): number {
    const { cols, groups } = S;
    if (!ours.has(S.data.buffer) || !ours.has(out.buffer)) throw new Error('screenMatvec: the screen and the output must be views of this kernel instance\'s memory');
    if (out.length < 4 * groups) throw new RangeError(`screenMatvec: out has ${out.length} elements, need ${4 * groups}`);
    if (x.length < cols) throw new RangeError(`screenMatvec: x has ${x.length} elements, need ${cols}`);
    if (!(Number.isInteger(blocks) && blocks >= 1 && blocks <= S.nb1)) throw new RangeError(`screenMatvec: ${blocks} blocks of a first stage of ${S.nb1}`);
    const aBytes = align(64 + cols * 2, 64);
    if (aBytes > screenActBytes) {
      screenActPtr = reserve(aBytes);
      screenActBytes = aBytes;
    }
    beginScratch(cols * 4 + TASK_WORDS * 4 + 32 * nth + 256);
    let xp = x.byteOffset;
    if (!ours.has(x.buffer)) {
      xp = take(cols * 4);
      f32.set(x.subarray(0, cols), xp >>> 2);
    }
    const xa = screenActPtr;
    ex.screenAct(xp, S.colScale.byteOffset, S.perm.byteOffset, cols, 64 * blocks, xa);
    screenActOf = blocks === S.nb1 ? S : null;
    table = take(TASK_WORDS * 4);
    nTasks = 0;
    // each thread's best row: (score, index), index −1 when its share holds none (32 bytes per
    // thread: the kernel passes its lanes through them)
    const best = take(32 * nth);
    for (let t = 0; t < nth; t++) i32[(best >>> 2) + 8 * t + 1] = -1;
    task([T_SCREEN, S.nb1, S.codes.byteOffset, S.rowScale.byteOffset, blocks, groups, 0, xa, out.byteOffset, rows, best]);
    dispatch();
    let bi = -1, bv = -Infinity;
    for (let t = 0; t < nth; t++) {
      const v = f32[(best >>> 2) + 8 * t]!, i = i32[(best >>> 2) + 8 * t + 1]!;
      // the threads took chunks in any order: the best score, the first row on ties
      if (i >= 0 && (bi < 0 || v > bv || (v === bv && i < bi))) { bv = v; bi = i; }
    }
    return bi;
  }

  function screenGroups(S: ScreenView, gidx: Int32Array, ng: number, out: Float32Array): void {
    if (screenActOf !== S) throw new Error('screenGroups: no first stage of this screen before it');
    if (!ours.has(gidx.buffer) || !ours.has(out.buffer)) throw new Error('screenGroups: gidx and out must be views of this kernel instance\'s memory');
    if (gidx.length < ng || out.length < 4 * S.groups) throw new RangeError(`screenGroups: gidx has ${gidx.length} entries (need ${ng}), out ${out.length} (need ${4 * S.groups})`);
    if (S.nb2 === 0 || ng === 0) return;
    // a few groups here; more on all threads (each keeps its own misses in flight: the groups are scattered)
    if (nth === 1 || ng < SCREEN_GROUPS_ALONE) ex.screenGroups(S.codes2.byteOffset, S.nb2, gidx.byteOffset, ng, screenActPtr, 64 * S.nb1, S.rowScale.byteOffset, out.byteOffset);
    else {
      beginScratch(TASK_WORDS * 4 + 64);
      table = take(TASK_WORDS * 4);
      nTasks = 0;
      task([T_SCREEN_GROUPS, S.codes2.byteOffset, S.nb2, gidx.byteOffset, screenActPtr, ng, 64 * S.nb1, S.rowScale.byteOffset, out.byteOffset]);
      dispatch();
    }
  }

  function screenSelect(s: Float32Array, r: Float32Array | null, n: number, kappa: number, base: number, always: number, idx: Int32Array, t: Float32Array | null = null, kappa2 = 0): number {
    if (!ours.has(s.buffer) || (r && !ours.has(r.buffer)) || (t && !ours.has(t.buffer)) || !ours.has(idx.buffer)) throw new Error('screenSelect: s, r, t and idx must be views of this kernel instance\'s memory');
    if (s.length < n || (r && r.length < n) || (t && t.length < n) || idx.length < n) throw new RangeError(`screenSelect: s, r, t and idx need ${n} entries`);
    const units = Math.ceil(n / SELECT_UNIT);
    if (nth === 1 || units < 4) return ex.screenSelect(s.byteOffset, r ? r.byteOffset : 0, t ? t.byteOffset : 0, 0, n, kappa, kappa2, base, always, idx.byteOffset);
    // on all threads, each unit's candidates in its own part of idx; then packed in order
    beginScratch(TASK_WORDS * 4 + 24 + 4 * units + 192);
    table = take(TASK_WORDS * 4);
    const p = take(24), counts = take(4 * units);
    new Float64Array(buf, p, 3).set([kappa, kappa2, base]);
    nTasks = 0;
    task([T_SCREEN_SELECT, s.byteOffset, r ? r.byteOffset : 0, t ? t.byteOffset : 0, n, units, p, always, idx.byteOffset, counts]);
    dispatch();
    let c = i32[counts >>> 2]!;
    for (let u = 1; u < units; u++) {
      const m = i32[(counts >>> 2) + u]!;
      if (m) idx.copyWithin(c, u * SELECT_UNIT, u * SELECT_UNIT + m);
      c += m;
    }
    return c;
  }

  function screenBuild(W: QTensor, dst: Uint8Array, search: boolean, energy?: ArrayLike<number>): boolean {
    if (!supported.has(W.type.id) || W.cols % 64 !== 0) return false;
    if (!ours.has(dst.buffer)) throw new RangeError(`screenBuild ${W.name}: dst must be a view of this memory`);
    const S = screenView(W.rows, W.cols, dst);
    const { cols, nb, groups } = S;
    // four rows in f32, a row to reorder them through, and for interleaved weights the group in ggml rows
    const xBytes = align(5 * cols * 4 + (isR4(W) ? 4 * W.rowBytes : 0), 64);
    const cmBytes = align(4 * cols, 64);
    beginScratch(nth * (xBytes + cmBytes) + 2 * TASK_WORDS * 4 + 256);
    const xb = take(nth * xBytes);
    const colmax = take(nth * cmBytes);
    f32.fill(0, colmax >>> 2, (colmax + nth * cmBytes) >>> 2);
    const words = [T_SCREEN_BUILD, W.type.id, addressOf(W), W.rowBytes, nb, groups, W.rows, S.codes.byteOffset, search ? 1 : 0, xb, xBytes, isR4(W) ? L_R4 : 0];
    // phase 0: each thread's column maxima (cmBytes apart); the column scales from their maximum
    table = take(TASK_WORDS * 4);
    nTasks = 0;
    task([...words, 0, colmax, 0, 0]);
    dispatch();
    const c = new Float32Array(cols);
    for (let j = 0; j < cols; j++) {
      let m = 0;
      for (let t = 0; t < nth; t++) m = Math.max(m, f32[((colmax + t * cmBytes) >>> 2) + j]!);
      c[j] = screenColScale(m);
    }
    orderColumns(S, c, energy);
    // phase 1: the codes and the row scales
    table = take(TASK_WORDS * 4);
    nTasks = 0;
    task([...words, 1, S.perm.byteOffset, S.colScale.byteOffset, S.rowScale.byteOffset]);
    dispatch();
    return true;
  }

  return {
    name: `wasm-${simd}-simd${activations === 'q8' ? '-q8' : ''}${nth > 1 ? `-${nth}t` : ''}`,
    threads: nth,
    activations,
    simd,
    transposedCopy: (W: QTensor) => {
      if (!transposable(W)) return null;
      const t = transposedOf(W);
      const panelWidth = ex.tpanelWidth(t.kind);
      const panelBytes = ex.tpanelBytes(t.kind, t.Rp);
      return { kind: t.kind, Rp: t.Rp, panelWidth, panelBytes, bytes: new Uint8Array(buf, t.ptr, panelBytes * (W.cols / panelWidth)) };
    },
    matvec: (W: QTensor, x: Float32Array, out: Float32Array, o?: MatvecOptions) => matvecs([W], x, [out], o?.inputs ?? null, o?.rows ? [o.rows] : null),
    matvecs,
    matmul: (W: QTensor, X: Float32Array, n: number, Out: Float32Array) => matmuls([W], X, n, [Out]),
    matmuls,
    attention: (a: AttentionArgs) => attentions([a]),
    attentions,
    ...ops,
    alloc(bytes: number): Uint8Array {
      if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`wasm kernels: alloc(${bytes})`);
      const p = reserve(bytes);
      // a grown memory is zero; scratch once reused below `top` is never handed out again
      return new Uint8Array(buf, p, bytes);
    },
    supports: (id) => supported.has(id),
    dequantizeRow,
    pack,
    memoryBytes: () => buf.byteLength,
    quantizedActivation,
    screenMatvec,
    screenGroups,
    screenSelect,
    rowDots,
    screenBuild,
    owns: (a: ArrayBufferView) => ours.has(a.buffer),
    close: () => pool?.close(),
  };
}
