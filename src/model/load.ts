// Loading a model file (GGUF, or a llama2.c checkpoint with its tokenizer) into a ready Model.

import { closeSync, existsSync, readSync } from 'node:fs';
import { openForRead } from '../formats/files.js';
import { dirname, join } from 'node:path';
import { CtxError } from '../errors.js';
import { Metadata, readGGUFData, readGGUFHeader, type GGUFHeader } from '../formats/gguf.js';
import { readLlama2c } from '../formats/llama2c.js';
import { tokenizerFromGGUF, tokenizerFromLlama2c, type Tokenizer } from '../tokenizer/index.js';
import type { Kernels } from '../kernels/kernels.js';
import { refKernels } from '../kernels/ref/index.js';
import { createWasmKernels, relaxedSimdAvailable } from '../kernels/wasm/index.js';
import { configFromGGUF, type ModelConfig } from './config.js';
import { Forward } from './forward.js';
import { KVCache } from './kv-cache.js';
import { bindWeights, packWeights, type TensorSource, type Weights } from './weights.js';

export interface Model {
  readonly path: string;
  readonly format: 'gguf' | 'llama2c';
  readonly config: ModelConfig;
  readonly weights: Weights;
  readonly tokenizer: Tokenizer;
  /** the GGUF's `tokenizer.chat_template`, if any */
  readonly chatTemplate: string | undefined;
  /** GGUF header (metadata and tensor table); undefined for llama2.c checkpoints */
  readonly gguf: GGUFHeader | undefined;
  readonly kernels: Kernels;
  /** A forward pass with its own run state (one per concurrent sequence). */
  createForward(maxBatch?: number): Forward;
  /** A KV cache for `ctx` positions (default: the trained context, at most 4096). */
  createCache(ctx?: number): KVCache;
}

export interface LoadOptions {
  /** llama2.c checkpoints: the tokenizer file (default: tok512.bin beside the checkpoint) */
  readonly tokenizerPath?: string;
  /** default: WebAssembly SIMD kernels with their own memory; CTXSPARSE_KERNELS=ref selects the reference */
  readonly kernels?: Kernels;
  /** threads for the default kernels (default: the machine's cores); ignored when `kernels` is given */
  readonly threads?: number;
}

/**
 * The kernels a model gets unless told otherwise: a fresh WebAssembly SIMD instance (its memory
 * holds the weights). Environment: CTXSPARSE_KERNELS=wasm|ref, CTXSPARSE_ACTIVATIONS=q8|f32
 * (8-bit activations as llama.cpp, or exact), CTXSPARSE_SIMD=auto|relaxed|plain.
 */
export function defaultKernels(opts: { threads?: number } = {}): Kernels {
  const which = process.env.CTXSPARSE_KERNELS ?? 'wasm';
  if (which === 'ref') return refKernels;
  if (which !== 'wasm') throw new CtxError(`CTXSPARSE_KERNELS=${which}: expected wasm or ref`);
  const activations = process.env.CTXSPARSE_ACTIVATIONS ?? 'q8';
  if (activations !== 'q8' && activations !== 'f32') throw new CtxError(`CTXSPARSE_ACTIVATIONS=${activations}: expected q8 or f32`);
  const simd = process.env.CTXSPARSE_SIMD ?? 'auto';
  if (simd !== 'auto' && simd !== 'relaxed' && simd !== 'plain') throw new CtxError(`CTXSPARSE_SIMD=${simd}: expected auto, relaxed or plain`);
  if (simd === 'relaxed' && !relaxedSimdAvailable()) throw new CtxError('CTXSPARSE_SIMD=relaxed: this Node.js has no relaxed SIMD');
  const interleave = process.env.CTXSPARSE_INTERLEAVE ?? '1';
  if (interleave !== '0' && interleave !== '1') throw new CtxError(`CTXSPARSE_INTERLEAVE=${interleave}: expected 0 or 1`);
  return createWasmKernels({ activations, simd, interleave: interleave === '1', ...(opts.threads !== undefined && { threads: opts.threads }) });
}

function startsWithGGUF(path: string): boolean {
  const fd = openForRead(path);
  try {
    const b = new Uint8Array(4);
    const n = readSync(fd, b, 0, 4, 0);
    return n === 4 && String.fromCharCode(...b) === 'GGUF';
  } finally {
    closeSync(fd);
  }
}

function llama2cTokenizerPath(path: string, opts: LoadOptions): string {
  const tokPath = opts.tokenizerPath ?? join(dirname(path), 'tok512.bin');
  if (!existsSync(tokPath)) throw new CtxError(`${path}: llama2.c checkpoint needs a tokenizer file; ${tokPath} does not exist (pass --tokenizer)`);
  return tokPath;
}

/** Only the tokenizer of a model file (reads the GGUF header, no weights). */
export function loadTokenizer(path: string, opts: LoadOptions = {}): Tokenizer {
  if (!startsWithGGUF(path) && path.endsWith('.bin')) return tokenizerFromLlama2c(llama2cTokenizerPath(path, opts));
  const header = readGGUFHeader(path);
  return tokenizerFromGGUF(new Metadata(header.metadata, path));
}

export function loadModel(path: string, opts: LoadOptions = {}): Model {
  const kernels = opts.kernels ?? defaultKernels(opts.threads !== undefined ? { threads: opts.threads } : {});
  // weights are read once, straight into the kernels' memory when they have one
  const alloc = kernels.alloc?.bind(kernels);
  if (!startsWithGGUF(path) && path.endsWith('.bin')) {
    const ck = readLlama2c(path, alloc);
    const tokenizer = tokenizerFromLlama2c(llama2cTokenizerPath(path, opts));
    return makeModel(path, 'llama2c', ck.config, bindWeights(ck.source, ck.config), tokenizer, undefined, undefined, kernels);
  }
  const header = readGGUFHeader(path);
  const meta = new Metadata(header.metadata, path);
  const embd = header.tensorsByName.get('token_embd.weight');
  if (!embd) throw new CtxError(`${path}: missing tensor token_embd.weight`);
  const config = configFromGGUF(meta, embd.dims[1] ?? 0);
  const tokenizer = tokenizerFromGGUF(meta);
  const data = readGGUFData(header, alloc?.(header.dataSize));
  const source: TensorSource = {
    path,
    data,
    get: (name) => header.tensorsByName.get(name),
  };
  const bound = bindWeights(source, config);
  // the layer linears in the kernels' decode layout (the output matrix and the embeddings stay ggml rows)
  const weights = kernels.pack ? packWeights(bound, kernels.pack.bind(kernels)) : bound;
  return makeModel(path, 'gguf', config, weights, tokenizer, meta.optString('tokenizer.chat_template'), header, kernels);
}

function makeModel(path: string, format: Model['format'], config: ModelConfig, weights: Weights, tokenizer: Tokenizer,
  chatTemplate: string | undefined, gguf: GGUFHeader | undefined, kernels: Kernels): Model {
  const defaultCtx = Math.min(config.ctxTrain, 4096);
  return {
    path, format, config, weights, tokenizer, chatTemplate, gguf, kernels,
    createForward: (maxBatch = 32) => new Forward(config, weights, kernels, maxBatch),
    // in the kernels' memory when they have one (attention then reads it in place; never freed)
    createCache: (ctx = defaultCtx) => new KVCache(config, ctx, kernels.alloc?.bind(kernels)),
  };
}
