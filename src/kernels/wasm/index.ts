// WebAssembly SIMD kernels (single-threaded), compiled from asm/kernels.ts by `npm run build:wasm`
// into kernels.wasm beside this module (dist/src/kernels/wasm/kernels.wasm).
//
// The kernels own one WebAssembly memory. The model loader asks `alloc(bytes)` for a view into it
// and reads the GGUF tensor data there, so the weights stay in their quantized blocks, in place,
// and are never copied. matvec/matmul take QTensors whose `data` is such a view; x and out are
// ordinary Float32Arrays, copied into / out of a scratch region of the same memory per call.
//
// The memory is shared (a SharedArrayBuffer): growing it never detaches the views handed out
// earlier (a plain memory's grow would), and worker threads can later run the same kernels on it.
// Every growth makes a new SharedArrayBuffer object over the same memory; all of them are
// remembered so that a tensor is recognised whichever one its view was made on.
//
// attention reads the KV cache in place: the cache's k / v arrays must be views of the same memory
// (KVCache built on `alloc`, which createCache does); otherwise it falls back to the reference.
//
// Types computed in wasm: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
// Q2_K and Q3_K fall back to the reference kernels (which read the same memory).
import { readFileSync } from 'node:fs';
import type { QTensor } from '../../model/tensor.js';
import { allQuantTypes } from '../../quant/types.js';
import type { AttentionArgs, Kernels, MatvecOptions } from '../kernels.js';
import { refKernels } from '../ref/index.js';

export interface WasmKernels extends Kernels {
  /** A zero-filled view of `bytes` bytes in the kernels' memory (64-byte aligned); never freed. */
  alloc(bytes: number): Uint8Array;
  /** Whether a ggml type id is computed in wasm (the others fall back to the reference kernels). */
  supports(typeId: number): boolean;
  /** Row `row` of W dequantized into dst[0..W.cols) by the wasm decoder (the one matmul uses). */
  dequantizeRow(W: QTensor, row: number, dst: Float32Array): void;
  /** Current size of the kernels' memory in bytes. */
  memoryBytes(): number;
}

export interface WasmKernelOptions {
  /** Upper bound of the memory (weights + scratch), bytes; default and maximum 4 GiB. */
  maxMemoryBytes?: number;
  /** threads that split each kernel call (default: the machine's cores) */
  threads?: number;
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
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface Exports {
  heapBase(): number;
  supports(type: number): number;
  matvec(type: number, w: number, rowBytes: number, cols: number, rowIdx: number, nRows: number, x: number, xs: number, out: number): void;
  matmul(type: number, w: number, rowBytes: number, cols: number, rows: number, X: number, nPad: number, Out: number, wbuf: number): void;
  dequantize(type: number, w: number, cols: number, dst: number): void;
  attention(q: number, k: number, v: number, kStride: number, vStride: number, n: number, headDim: number, headDimV: number,
    group: number, scale: number, out: number, heads: number, nh: number, scores: number): void;
}

const PAGE = 65536;
const MAX_PAGES = 65536;
/** X + Out bytes per matmul chunk of token rows: bounds the scratch for huge outputs (the vocabulary head). */
const MATMUL_CHUNK_BYTES = 16 << 20;

let compiled: object | null = null;

/** Path of the compiled kernels (built by `npm run build:wasm`). */
export const WASM_URL = new URL('./kernels.wasm', import.meta.url);

function wasmModule(): object {
  if (compiled) return compiled;
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(WASM_URL);
  } catch (e) {
    throw new Error(`wasm kernels: cannot read ${WASM_URL.pathname} (run \`npm run build:wasm\`): ${(e as Error).message}`);
  }
  compiled = new WA.Module(bytes);
  return compiled;
}

const align = (v: number, a: number): number => Math.ceil(v / a) * a;

/** Create a kernel instance with its own memory (synchronous: the module is small and compiled once). */
export function createWasmKernels(opts: WasmKernelOptions = {}): WasmKernels {
  const maxPages = Math.min(MAX_PAGES, Math.max(1, Math.ceil((opts.maxMemoryBytes ?? MAX_PAGES * PAGE) / PAGE)));
  const memory = new WA.Memory({ initial: 1, maximum: maxPages, shared: true });
  const instance = new WA.Instance(wasmModule(), { env: { memory } });
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

  let scratchPtr = 0;
  let scratchCap = 0;
  function scratch(bytes: number): number {
    if (bytes > scratchCap) {
      scratchCap = Math.max(bytes, 2 * scratchCap, 1 << 16);
      scratchPtr = reserve(scratchCap);
    }
    return scratchPtr;
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

  function matvec(W: QTensor, x: Float32Array, out: Float32Array, o?: MatvecOptions): void {
    const t = W.type.id;
    if (!supported.has(t)) {
      refKernels.matvec(W, x, out, o);
      return;
    }
    const w = addressOf(W);
    const { cols, rows } = W;
    if (x.length < cols) throw new RangeError(`matvec ${W.name}: x has ${x.length} elements, need ${cols}`);
    if (out.length < rows) throw new RangeError(`matvec ${W.name}: out has ${out.length} elements, need ${rows}`);
    const sel = o?.rows ?? null;
    const nOut = sel ? sel.n : rows;
    const xBytes = align(cols * 4, 64);
    const xsBytes = align(Math.ceil(cols / 32) * 4, 64);
    const idxBytes = sel ? align(sel.n * 4, 64) : 0;
    const base = scratch(xBytes + xsBytes + idxBytes + nOut * 4);
    const xp = base, xsp = xp + xBytes, idxp = xsp + xsBytes, outp = idxp + idxBytes;
    const xo = xp >>> 2;
    const inputs = o?.inputs ?? null;
    if (inputs) {
      // the reference semantics of input-channel sparsity: dropped channels count as zero
      f32.fill(0, xo, xo + cols);
      const { idx, n } = inputs;
      for (let i = 0; i < n; i++) {
        const c = idx[i]!;
        f32[xo + c] = x[c]!;
      }
    } else {
      f32.set(x.length === cols ? x : x.subarray(0, cols), xo);
    }
    if (sel) {
      for (let i = 0; i < sel.n; i++) {
        const r = sel.idx[i]!;
        if (!(r >= 0 && r < rows)) throw new RangeError(`matvec ${W.name}: selected row ${r} outside 0..${rows - 1}`);
      }
      i32.set(sel.idx.subarray(0, sel.n), idxp >>> 2);
    }
    ex.matvec(t, w, W.rowBytes, cols, sel ? idxp : 0, nOut, xp, xsp, outp);
    const oo = outp >>> 2;
    if (sel) {
      out.fill(0, 0, rows);
      for (let i = 0; i < sel.n; i++) out[sel.idx[i]!] = f32[oo + i]!;
    } else {
      out.set(f32.subarray(oo, oo + rows));
    }
  }

  function matmul(W: QTensor, X: Float32Array, n: number, Out: Float32Array): void {
    const t = W.type.id;
    if (!supported.has(t)) {
      refKernels.matmul(W, X, n, Out);
      return;
    }
    const w = addressOf(W);
    const { cols, rows } = W;
    if (X.length < n * cols) throw new RangeError(`matmul ${W.name}: X has ${X.length} elements, need ${n}×${cols}`);
    if (Out.length < n * rows) throw new RangeError(`matmul ${W.name}: Out has ${Out.length} elements, need ${n}×${rows}`);
    if (n <= 0) return;
    // token rows per call: a multiple of 4 (the micro-kernel's width), X + Out within the chunk budget
    const perToken = (cols + rows) * 4;
    const chunk = Math.min(align(n, 4), Math.max(4, Math.floor(MATMUL_CHUNK_BYTES / perToken / 4) * 4));
    const wbBytes = 2 * align(cols, 4) * 4;
    const xBytes = align(chunk * cols * 4, 64);
    const base = scratch(wbBytes + xBytes + chunk * rows * 4);
    const wbp = base, Xp = wbp + wbBytes, Op = Xp + xBytes;
    for (let t0 = 0; t0 < n; t0 += chunk) {
      const m = Math.min(chunk, n - t0);
      const mPad = align(m, 4);
      const xo = Xp >>> 2;
      f32.set(X.subarray(t0 * cols, (t0 + m) * cols), xo);
      if (mPad > m) f32.fill(0, xo + m * cols, xo + mPad * cols);
      ex.matmul(t, w, W.rowBytes, cols, rows, Xp, mPad, Op, wbp);
      Out.set(f32.subarray(Op >>> 2, (Op >>> 2) + m * rows), t0 * rows);
    }
  }

  function dequantizeRow(W: QTensor, row: number, dst: Float32Array): void {
    if (!supported.has(W.type.id)) throw new Error(`wasm kernels: no ${W.type.name} decoder`);
    const w = addressOf(W);
    if (!(row >= 0 && row < W.rows)) throw new RangeError(`dequantizeRow ${W.name}: row ${row} outside 0..${W.rows - 1}`);
    const p = scratch(W.cols * 4);
    ex.dequantize(W.type.id, w + row * W.rowBytes, W.cols, p);
    dst.set(f32.subarray(p >>> 2, (p >>> 2) + W.cols));
  }

  /** Whether a Float32Array is a view of this instance's memory (so wasm can read it in place). */
  const inMemory = (a: Float32Array): boolean => ours.has(a.buffer);

  function attention(a: AttentionArgs): void {
    const { q, qOffset, k, v, start, n, nHeads, nKvHeads, headDim, headDimV, scale, out, outOffset, heads } = a;
    // a cache outside the memory (e.g. built without alloc), uneven head groups, or nothing to attend to
    if (!inMemory(k) || !inMemory(v) || !(nKvHeads > 0) || nHeads % nKvHeads !== 0 || !(n > 0)) {
      refKernels.attention(a);
      return;
    }
    const kvDim = nKvHeads * headDim;
    const kvDimV = nKvHeads * headDimV;
    const qDim = nHeads * headDim;
    const outDim = nHeads * headDimV;
    if (!(start >= 0) || (start + n) * kvDim > k.length || (start + n) * kvDimV > v.length) {
      throw new RangeError(`attention: positions ${start}..${start + n - 1} exceed the cache (${k.length / kvDim} / ${v.length / kvDimV} positions)`);
    }
    if (!(qOffset >= 0) || qOffset + qDim > q.length) throw new RangeError(`attention: q has ${q.length} elements, need ${qOffset}+${qDim}`);
    if (!(outOffset >= 0) || outOffset + outDim > out.length) throw new RangeError(`attention: out has ${out.length} elements, need ${outOffset}+${outDim}`);
    const nh = heads ? heads.n : nHeads;
    if (heads) {
      for (let i = 0; i < nh; i++) {
        const h = heads.idx[i]!;
        if (!(h >= 0 && h < nHeads)) throw new RangeError(`attention: selected head ${h} outside 0..${nHeads - 1}`);
      }
      if (nh === 0) {
        out.fill(0, outOffset, outOffset + outDim);
        return;
      }
    }
    const qBytes = align(qDim * 4, 64);
    const oBytes = align(outDim * 4, 64);
    const idxBytes = heads ? align(nh * 4, 64) : 0;
    const base = scratch(qBytes + oBytes + idxBytes + align(n, 4) * 4);
    const qp = base, op = qp + qBytes, idxp = op + oBytes, sp = idxp + idxBytes;
    f32.set(q.subarray(qOffset, qOffset + qDim), qp >>> 2);
    if (heads) {
      i32.set(heads.idx.subarray(0, nh), idxp >>> 2);
      f32.fill(0, op >>> 2, (op >>> 2) + outDim);
    }
    ex.attention(qp, k.byteOffset + start * kvDim * 4, v.byteOffset + start * kvDimV * 4, kvDim * 4, kvDimV * 4, n,
      headDim, headDimV, nHeads / nKvHeads, scale, op, heads ? idxp : 0, nh, sp);
    out.set(f32.subarray(op >>> 2, (op >>> 2) + outDim), outOffset);
  }

  return {
    name: 'wasm-simd',
    matvec,
    matmul,
    attention,
    alloc(bytes: number): Uint8Array {
      if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`wasm kernels: alloc(${bytes})`);
      const p = reserve(bytes);
      // a grown memory is zero; scratch once reused below `top` is never handed out again
      return new Uint8Array(buf, p, bytes);
    },
    supports: (id) => supported.has(id),
    dequantizeRow,
    memoryBytes: () => buf.byteLength,
  };
}
