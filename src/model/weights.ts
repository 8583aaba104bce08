// Binds a model's tensors by name and role, checking every shape against the config.
// Matrices stay quantized views (QTensor); the small norm and bias vectors become f32.

import { CtxError } from '../errors.js';
import { dequantize } from '../quant/dequant.js';
import type { QuantInfo } from '../quant/types.js';
import type { ModelConfig } from './config.js';
import { rowBytes, type QTensor } from './tensor.js';

/** The roles a matrix plays; sparsity methods target roles, not names. */
export type Role = 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_gate' | 'ffn_up' | 'ffn_down' | 'output';

export interface LayerWeights {
  readonly attnNorm: Float32Array;
  readonly wq: QTensor;
  readonly wk: QTensor;
  readonly wv: QTensor;
  readonly wo: QTensor;
  readonly bq?: Float32Array;
  readonly bk?: Float32Array;
  readonly bv?: Float32Array;
  readonly qNorm?: Float32Array;
  readonly kNorm?: Float32Array;
  readonly postAttnNorm?: Float32Array;
  readonly ffnNorm: Float32Array;
  readonly gate: QTensor;
  readonly up: QTensor;
  readonly down: QTensor;
  readonly postFfnNorm?: Float32Array;
}

export interface Weights {
  readonly tokenEmbd: QTensor;
  readonly layers: readonly LayerWeights[];
  readonly outputNorm: Float32Array;
  /** the output matrix (token_embd when tied) */
  readonly output: QTensor;
  readonly tiedOutput: boolean;
  /** per-frequency divisors of RoPE (Llama 3 style rope_freqs), if the model has them */
  readonly ropeFreqFactors?: Float32Array;
}

export interface TensorEntry {
  readonly type: QuantInfo;
  /** ggml order: dims[0] is the row length */
  readonly dims: readonly number[];
  /** byte offset in `data` */
  readonly offset: number;
}

/** Where tensors come from: a GGUF file or a llama2.c checkpoint, both viewed in one buffer. */
export interface TensorSource {
  readonly path: string;
  readonly data: Uint8Array;
  get(name: string): TensorEntry | undefined;
}

export const ROLE_TENSORS: Record<Exclude<Role, 'output'>, string> = {
  attn_q: 'attn_q', attn_k: 'attn_k', attn_v: 'attn_v', attn_output: 'attn_output',
  ffn_gate: 'ffn_gate', ffn_up: 'ffn_up', ffn_down: 'ffn_down',
};

class Binder {
  constructor(private readonly src: TensorSource) {}

  private entry(name: string): TensorEntry {
    const e = this.src.get(name);
    if (!e) throw new CtxError(`${this.src.path}: missing tensor ${name}`);
    return e;
  }

  has(name: string): boolean {
    return this.src.get(name) !== undefined;
  }

  matrix(name: string, cols: number, rows: number): QTensor {
    const e = this.entry(name);
    const [c, r = 1, ...rest] = e.dims;
    if (c !== cols || r !== rows || rest.some((d) => d !== 1)) {
      throw new CtxError(`${this.src.path}: tensor ${name} has shape ${e.dims.join('x')}, expected ${cols}x${rows}`);
    }
    return { name, type: e.type, rows, cols, data: this.src.data, offset: e.offset, rowBytes: rowBytes(e.type, cols) };
  }

  vector(name: string, n: number): Float32Array {
    const e = this.entry(name);
    const total = e.dims.reduce((a, b) => a * b, 1);
    if (total !== n || e.dims[0] !== n) throw new CtxError(`${this.src.path}: tensor ${name} has shape ${e.dims.join('x')}, expected ${n}`);
    const out = new Float32Array(n);
    dequantize(e.type.id, this.src.data, e.offset, out, 0, n);
    return out;
  }

  optVector(name: string, n: number): Float32Array | undefined {
    return this.has(name) ? this.vector(name, n) : undefined;
  }
}

/**
 * The layer linears and the output layer rearranged by `pack` (the kernels' fastest layout; same
 * bytes, in place). A tied output layer is the token embedding too: both name the packed tensor.
 */
export function packWeights(w: Weights, pack: (W: QTensor) => QTensor): Weights {
  const layers = w.layers.map((L) => ({
    ...L, wq: pack(L.wq), wk: pack(L.wk), wv: pack(L.wv), wo: pack(L.wo), gate: pack(L.gate), up: pack(L.up), down: pack(L.down),
  }));
  const output = pack(w.output);
  return { ...w, layers, output, tokenEmbd: w.tiedOutput ? output : w.tokenEmbd };
}

export function bindWeights(src: TensorSource, cfg: ModelConfig): Weights {
  const b = new Binder(src);
  const { dim, ffnDim, nHeads, nKvHeads, headDim, headDimV, vocabSize } = cfg;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const p = `blk.${l}.`;
    const need = (name: string, n: number) => b.vector(p + name, n);
    const lw: LayerWeights = {
      attnNorm: need('attn_norm.weight', dim),
      wq: b.matrix(`${p}attn_q.weight`, dim, nHeads * headDim),
      wk: b.matrix(`${p}attn_k.weight`, dim, nKvHeads * headDim),
      wv: b.matrix(`${p}attn_v.weight`, dim, nKvHeads * headDimV),
      wo: b.matrix(`${p}attn_output.weight`, nHeads * headDimV, dim),
      ...(cfg.qkvBias && {
        bq: need('attn_q.bias', nHeads * headDim),
        bk: need('attn_k.bias', nKvHeads * headDim),
        bv: need('attn_v.bias', nKvHeads * headDimV),
      }),
      ...(cfg.qkNorm && { qNorm: need('attn_q_norm.weight', headDim), kNorm: need('attn_k_norm.weight', headDim) }),
      ...(cfg.postNorms && { postAttnNorm: need('post_attention_norm.weight', dim), postFfnNorm: need('post_ffw_norm.weight', dim) }),
      ffnNorm: need('ffn_norm.weight', dim),
      gate: b.matrix(`${p}ffn_gate.weight`, dim, ffnDim),
      up: b.matrix(`${p}ffn_up.weight`, dim, ffnDim),
      down: b.matrix(`${p}ffn_down.weight`, ffnDim, dim),
    };
    layers.push(lw);
  }
  const tokenEmbd = b.matrix('token_embd.weight', dim, vocabSize);
  const tiedOutput = !b.has('output.weight');
  const output = tiedOutput ? tokenEmbd : b.matrix('output.weight', dim, vocabSize);
  const ropeFreqFactors = b.optVector('rope_freqs.weight', cfg.rope.dims / 2);
  return {
    tokenEmbd, layers, outputNorm: b.vector('output_norm.weight', dim), output, tiedOutput,
    ...(ropeFreqFactors && { ropeFreqFactors }),
  };
}
