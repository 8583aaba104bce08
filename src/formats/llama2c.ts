// llama2.c checkpoints (version 0, float32): a header of seven int32s, then the weights in a
// fixed order. The file is read once into one buffer and exposed under GGUF tensor names, so
// the rest of the engine does not know where the weights came from.

import { closeSync, readSync, statSync } from 'node:fs';
import { openForRead } from './files.js';
import { CtxError } from '../errors.js';
import { GGMLType, quantInfo } from '../quant/types.js';
import type { ModelConfig } from '../model/config.js';
import type { TensorEntry, TensorSource } from '../model/weights.js';

export interface Llama2cCheckpoint {
  readonly config: ModelConfig;
  readonly source: TensorSource;
}

const HEADER_BYTES = 7 * 4;

/** `alloc` places the file's bytes (e.g. in a WebAssembly memory); default a fresh buffer. */
export function readLlama2c(path: string, alloc: (bytes: number) => Uint8Array = (n) => new Uint8Array(n)): Llama2cCheckpoint {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new CtxError(`${path}: cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (size < HEADER_BYTES) throw new CtxError(`${path}: truncated llama2.c checkpoint: ${size} bytes, the header alone is ${HEADER_BYTES}`);
  const data = alloc(size);
  const fd = openForRead(path);
  try {
    for (let got = 0; got < size;) {
      const n = readSync(fd, data, got, size - got, got);
      if (n === 0) throw new CtxError(`${path}: truncated while reading at offset ${got}`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  const hv = new DataView(data.buffer, data.byteOffset, HEADER_BYTES);
  const [dim, hidden, nLayers, nHeads, nKvHeads, vocabSigned, seqLen] = Array.from({ length: 7 }, (_, i) => hv.getInt32(i * 4, true)) as [number, number, number, number, number, number, number];
  if (hv.getUint32(0, true) === 0x616b3432) {
    throw new CtxError(`${path}: llama2.c version-2 (int8, "ak42") checkpoints are not supported; use the float32 .bin or a GGUF`);
  }
  const vocab = Math.abs(vocabSigned);
  const shared = vocabSigned > 0;
  const fields: Record<string, number> = { dim, hidden_dim: hidden, n_layers: nLayers, n_heads: nHeads, n_kv_heads: nKvHeads, vocab_size: vocab, seq_len: seqLen };
  for (const [k, v] of Object.entries(fields)) {
    if (!(v > 0 && v < 1 << 24)) throw new CtxError(`${path}: not a llama2.c checkpoint: header field ${k} is ${v}`);
  }
  if (dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
    throw new CtxError(`${path}: not a llama2.c checkpoint: dim ${dim}, n_heads ${nHeads}, n_kv_heads ${nKvHeads} are inconsistent`);
  }
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;

  const f32 = quantInfo(GGMLType.F32)!;
  const entries = new Map<string, TensorEntry>();
  let off = HEADER_BYTES;
  const take = (name: string | null, ...dims: number[]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    if (name) entries.set(name, { type: f32, dims, offset: off });
    off += n * 4;
  };
  const perLayer = (suffix: string, ...dims: number[]) => {
    for (let l = 0; l < nLayers; l++) take(`blk.${l}.${suffix}`, ...dims);
  };
  take('token_embd.weight', dim, vocab);
  perLayer('attn_norm.weight', dim);
  perLayer('attn_q.weight', dim, dim);
  perLayer('attn_k.weight', dim, kvDim);
  perLayer('attn_v.weight', dim, kvDim);
  perLayer('attn_output.weight', dim, dim);
  perLayer('ffn_norm.weight', dim);
  perLayer('ffn_gate.weight', dim, hidden);
  perLayer('ffn_down.weight', hidden, dim);
  perLayer('ffn_up.weight', dim, hidden);
  take('output_norm.weight', dim);
  take(null, seqLen, headDim / 2); // freq_cis_real: RoPE tables, recomputed instead
  take(null, seqLen, headDim / 2); // freq_cis_imag
  if (!shared) take('output.weight', dim, vocab);
  if (off !== size) {
    throw new CtxError(`${path}: llama2.c checkpoint size mismatch: the header (dim ${dim}, ${nLayers} layers, vocab ${vocab}) implies ${off} bytes, the file has ${size}`);
  }

  const config: ModelConfig = {
    arch: 'llama', nLayers, dim, ffnDim: hidden, nHeads, nKvHeads, headDim, headDimV: headDim, vocabSize: vocab,
    ctxTrain: seqLen, normEps: 1e-5, rope: { dims: headDim, base: 10000, baseSliding: 10000, freqScale: 1, neox: false },
    attnScale: 1 / Math.sqrt(headDim), act: 'silu', embedScale: 1, qkvBias: false, qkNorm: false, postNorms: false,
    slidingWindow: 0, slidingLayers: new Array<boolean>(nLayers).fill(false), finalLogitSoftcap: 0,
  };
  return { config, source: { path, data, get: (name) => entries.get(name) } };
}

/** True when the file starts like a llama2.c checkpoint rather than a GGUF. */
export function looksLikeLlama2c(head: Uint8Array): boolean {
  return head.length >= 4 && !(head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46);
}
