// Hyper-parameters of a model, read from GGUF metadata in one place per architecture.
// Architectures differ only in the named switches below; the forward pass reads them.

import { CtxError } from '../errors.js';
import type { Metadata } from '../formats/gguf.js';

export type Arch = 'llama' | 'qwen2' | 'gemma3';
export const SUPPORTED_ARCHS: readonly Arch[] = ['llama', 'qwen2', 'gemma3'];

export interface RopeConfig {
  /** how many leading dims of each head are rotated */
  readonly dims: number;
  /** frequency base of global-attention layers */
  readonly base: number;
  /** frequency base of sliding-window layers (Gemma 3 uses 10,000 there) */
  readonly baseSliding: number;
  /** multiply positions by this (linear scaling: 1/factor) */
  readonly freqScale: number;
  /** NEOX rotates pairs (i, i + dims/2); the original GPT-J/llama style rotates (2i, 2i+1) */
  readonly neox: boolean;
}

export interface ModelConfig {
  readonly arch: Arch;
  readonly nLayers: number;
  readonly dim: number;
  readonly ffnDim: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  /** per-head size of queries and keys */
  readonly headDim: number;
  /** per-head size of values */
  readonly headDimV: number;
  readonly vocabSize: number;
  /** context length the model was trained with */
  readonly ctxTrain: number;
  readonly normEps: number;
  readonly rope: RopeConfig;
  /** score scale applied to q·k */
  readonly attnScale: number;
  /** MLP gate activation */
  readonly act: 'silu' | 'gelu';
  /** embeddings multiplied by this (Gemma: sqrt(dim)) */
  readonly embedScale: number;
  /** q, k, v have biases (Qwen2) */
  readonly qkvBias: boolean;
  /** per-head RMSNorm on q and k (Gemma 3) */
  readonly qkNorm: boolean;
  /** RMSNorm on the attention and MLP outputs before the residual add (Gemma 3) */
  readonly postNorms: boolean;
  /** sliding-window size in tokens (0 = none) and which layers use it */
  readonly slidingWindow: number;
  readonly slidingLayers: readonly boolean[];
  /** tanh soft-capping of final logits (0 = off) */
  readonly finalLogitSoftcap: number;
}

function mustBePositive(meta: Metadata, key: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new CtxError(`${meta.path}: metadata ${key} is ${v}, expected a positive integer`);
  return v;
}

/** Read the config of a GGUF model; `vocabSize` comes from the embedding tensor when metadata lacks it. */
export function configFromGGUF(meta: Metadata, embdRows: number): ModelConfig {
  const arch = meta.string('general.architecture');
  if (!(SUPPORTED_ARCHS as readonly string[]).includes(arch)) {
    throw new CtxError(`${meta.path}: unsupported architecture "${arch}" (supported: ${SUPPORTED_ARCHS.join(', ')})`);
  }
  const a = arch as Arch;
  const num = (k: string) => mustBePositive(meta, `${a}.${k}`, meta.number(`${a}.${k}`));
  const dim = num('embedding_length');
  const nHeads = num('attention.head_count');
  const nKvHeads = meta.has(`${a}.attention.head_count_kv`) ? num('attention.head_count_kv') : nHeads;
  if (nHeads % nKvHeads !== 0) throw new CtxError(`${meta.path}: ${a}.attention.head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}`);
  const headDim = meta.has(`${a}.attention.key_length`) ? num('attention.key_length') : dim / nHeads;
  if (!Number.isInteger(headDim)) throw new CtxError(`${meta.path}: embedding_length ${dim} is not divisible by head_count ${nHeads}`);
  const headDimV = meta.has(`${a}.attention.value_length`) ? num('attention.value_length') : headDim;
  const nLayers = num('block_count');
  const ropeDims = meta.has(`${a}.rope.dimension_count`) ? num('rope.dimension_count') : headDim;
  const base = meta.number(`${a}.rope.freq_base`, 10000);

  let freqScale = 1;
  const scalingType = meta.optString(`${a}.rope.scaling.type`);
  if (scalingType === 'linear') freqScale = 1 / meta.number(`${a}.rope.scaling.factor`, 1);
  else if (scalingType !== undefined && scalingType !== 'none') {
    throw new CtxError(`${meta.path}: ${a}.rope.scaling.type "${scalingType}" is not supported (supported: none, linear)`);
  }
  const vocabSize = meta.optNumber(`${a}.vocab_size`) ?? embdRows;

  const common = {
    arch: a, nLayers, dim, ffnDim: num('feed_forward_length'), nHeads, nKvHeads, headDim, headDimV,
    vocabSize, ctxTrain: num('context_length'), normEps: meta.number(`${a}.attention.layer_norm_rms_epsilon`),
    attnScale: 1 / Math.sqrt(headDim), act: 'silu' as const, embedScale: 1, qkvBias: false, qkNorm: false,
    postNorms: false, slidingWindow: 0, slidingLayers: new Array<boolean>(nLayers).fill(false),
    finalLogitSoftcap: meta.number(`${a}.final_logit_softcapping`, 0),
  };
  switch (a) {
    case 'llama':
      return { ...common, rope: { dims: ropeDims, base, baseSliding: base, freqScale, neox: false } };
    case 'qwen2':
      return { ...common, qkvBias: true, rope: { dims: ropeDims, base, baseSliding: base, freqScale, neox: true } };
    case 'gemma3': {
      const window = meta.number('gemma3.attention.sliding_window', 0);
      // Every `pattern`-th layer attends globally; the others use the sliding window.
      const pattern = meta.number('gemma3.attention.sliding_window_pattern', 6);
      const slidingLayers = Array.from({ length: nLayers }, (_, l) => window > 0 && l % pattern < pattern - 1);
      return {
        ...common, act: 'gelu', embedScale: Math.sqrt(dim), qkNorm: true, postNorms: true,
        slidingWindow: window, slidingLayers,
        rope: { dims: ropeDims, base, baseSliding: 10000, freqScale, neox: true },
      };
    }
  }
}
