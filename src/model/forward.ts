// The transformer forward pass, written to read like the math. One code path serves all
// architectures (their differences are the switches in ModelConfig), single-token decoding
// and batched prefill. Sparsity enters only through `policy`; intermediates can be observed
// by name through `tap` (golden comparisons, calibration statistics).

import { dequantize } from '../quant/dequant.js';
import type { AttentionArgs, Kernels } from '../kernels/kernels.js';
import { densePolicy, type LinearSite, type Selection, type SparsityPolicy } from '../sparsity/policy.js';
import type { ModelConfig } from './config.js';
import { f32On, type KVCache } from './kv-cache.js';
import { ggmlRow, type QTensor } from './tensor.js';
import type { Weights } from './weights.js';

/** Named intermediate activations, `rows` rows of `width` each, in `data`. */
export type TapName = 'attn_in' | 'q_lin' | 'k_lin' | 'v_lin' | 'q' | 'k' | 'v' | 'attn_out' | 'attn_proj' | 'ffn_in' | 'ffn_gate_act' | 'ffn_up' | 'ffn_act' | 'ffn_out' | 'residual' | 'final';
export type Tap = (name: TapName, layer: number, data: Float32Array, rows: number, width: number) => void;

export type LogitsWanted = 'last' | 'all' | 'none';

/** One row of a multi-sequence batch: `token` at `pos` of the sequence whose cache is `kv`. */
export interface BatchItem {
  readonly kv: KVCache;
  readonly token: number;
  readonly pos: number;
  /** compute this row's logits (default true) */
  readonly logits?: boolean;
}

/** An output layer that replaces the dense one for single-row logits (src/sparsity/head.ts). */
export interface OutputHead {
  /** Logits of the final normalised state h into out[0..vocab) (softcap applied). */
  logits(h: Float32Array, out: Float32Array): number;
  /** After logits(): the rows it computed (ascending; every other row is −∞), or null when all were. */
  readonly support: Selection | null;
}

export class Forward {
  policy: SparsityPolicy = densePolicy;
  /**
   * Whether batches of several tokens (prompt processing) use the policy too. Perplexity and
   * evaluation sparsify every token; generation keeps the prompt dense and sparsifies decoding.
   */
  sparsePrefill = true;
  tap: Tap | undefined;
  /** the policy of the batch being computed */
  private cur: SparsityPolicy = densePolicy;
  /** when set, steps that want one row of logits get them from it (the sparse head); null = dense */
  outputHead: OutputHead | null = null;
  /** rows the output head computed exactly in the last step that used it */
  headRows = 0;
  /** the rows of the last run's logits that can be finite (the output head's), or null: all of them */
  headSupport: Selection | null = null;

  // run state for up to `maxBatch` tokens; shapes in comments
  private readonly x: Float32Array;        // [B][dim] residual stream
  private readonly xn: Float32Array;       // [B][dim] normalised input of a block
  private readonly q: Float32Array;        // [B][nHeads*headDim]
  private readonly k: Float32Array;        // [B][nKv*headDim]
  private readonly v: Float32Array;        // [B][nKv*headDimV]
  private readonly att: Float32Array;      // [B][nHeads*headDimV] attention output
  private readonly proj: Float32Array;     // [B][dim] attention or MLP output
  private readonly gate: Float32Array;     // [B][ffn]
  private readonly up: Float32Array;       // [B][ffn]
  /** per RoPE base: [B][ropeDims/2 cos, then ropeDims/2 sin] of the current step's rows, and base^(2i/dims) */
  private readonly rope = new Map<number, { step: number; cs: Float32Array; denom: Float64Array }>();
  private stepNo = 0;
  private logitsBuf: Float32Array;         // [1 or B][vocab]
  private readonly embRow: Uint8Array;     // one embedding row in ggml blocks (when the table is interleaved)

  constructor(readonly cfg: ModelConfig, readonly w: Weights, readonly kernels: Kernels, readonly maxBatch = 32) {
    const B = maxBatch;
    // the run state lives in the kernels' memory when they have one, so their element-wise ops
    // work on it in place
    const make = (n: number): Float32Array => (kernels.alloc ? f32On(kernels.alloc.bind(kernels), n) : new Float32Array(n));
    this.x = make(B * cfg.dim);
    this.xn = make(B * cfg.dim);
    this.q = make(B * cfg.nHeads * cfg.headDim);
    this.k = make(B * cfg.nKvHeads * cfg.headDim);
    this.v = make(B * cfg.nKvHeads * cfg.headDimV);
    this.att = make(B * cfg.nHeads * cfg.headDimV);
    this.proj = make(B * cfg.dim);
    this.gate = make(B * cfg.ffnDim);
    this.up = make(B * cfg.ffnDim);
    for (const base of new Set([cfg.rope.base, cfg.rope.baseSliding])) {
      const denom = Float64Array.from({ length: cfg.rope.dims / 2 }, (_, i) => Math.pow(base, (2 * i) / cfg.rope.dims));
      this.rope.set(base, { step: -1, cs: make(B * cfg.rope.dims), denom });
    }
    // one row in the kernels' memory: the output layer's mat-vec writes it in place (a copy of the
    // whole vocabulary per step otherwise); more rows (a prompt's 'all') grow it in the JS heap
    this.logitsBuf = make(cfg.vocabSize);
    this.embRow = new Uint8Array(w.tokenEmbd.rowBytes);
  }

  /**
   * Feed `tokens` at positions pos, pos+1, … (the cache must hold pos entries already).
   * Returns logits: of the last token ([vocab]), of every token ([n][vocab]), or null. A result
   * of at most one batch is a view of the run state, overwritten by the next call.
   */
  run(kv: KVCache, tokens: ArrayLike<number>, pos: number, want: LogitsWanted = 'last'): Float32Array | null {
    const n = tokens.length;
    kv.ensureRoom(pos, n);
    if (kv.length < pos) throw new Error(`forward: cache holds ${kv.length} positions, cannot start at ${pos}`);
    const V = this.cfg.vocabSize;
    // one batch's logits are returned as a view of the run state (valid until the next call);
    // longer 'all' requests get a fresh array
    const all = want === 'all' && n > this.maxBatch ? new Float32Array(n * V) : null;
    for (let s = 0; s < n; s += this.maxBatch) {
      const T = Math.min(this.maxBatch, n - s);
      const chunk = Array.from({ length: T }, (_, i) => tokens[s + i]!);
      const last = s + T === n;
      const rowsWanted = want === 'all' ? T : want === 'last' && last ? 1 : 0;
      this.step(chunk.map((token, i) => ({ kv, token, pos: pos + s + i })), rowsWanted, T > 1 && !this.sparsePrefill ? densePolicy : this.policy);
      if (all) all.set(this.logitsBuf.subarray(0, T * V), s * V);
    }
    if (want === 'none') return null;
    return all ?? this.logitsBuf.subarray(0, (want === 'all' ? n : 1) * V);
  }

  /**
   * Several sequences in one pass (batched decoding): each item is one token of one sequence at
   * its own position, with its own cache (a sequence may give several rows at consecutive
   * positions, e.g. a prompt chunk). The linears are one matmul over all rows, so each weight is
   * read once per step for all of them. Returns the logits of the rows that want them, in item
   * order ([m][vocab], a view of the run state valid until the next call). At most maxBatch items.
   * The policy applies to every row (each its own selection) unless `dense` (e.g. prompt chunks).
   */
  runBatch(items: readonly BatchItem[], dense = false): Float32Array {
    if (items.length > this.maxBatch) throw new Error(`forward: batch of ${items.length} rows exceeds maxBatch ${this.maxBatch}`);
    for (const it of items) {
      it.kv.ensureRoom(it.pos, 1);
      if (it.kv.length < it.pos && !items.some((o) => o.kv === it.kv && o.pos === it.pos - 1)) {
        throw new Error(`forward: cache holds ${it.kv.length} positions, cannot start at ${it.pos}`);
      }
    }
    // rows are independent apart from their caches (every row's k and v are stored before any row
    // attends), so the rows that want logits go last, where step() computes them
    const order = [...items.filter((it) => it.logits === false), ...items.filter((it) => it.logits !== false)];
    const m = items.length - items.filter((it) => it.logits === false).length;
    this.step(order, m, dense ? densePolicy : this.policy);
    return this.logitsBuf.subarray(0, m * this.cfg.vocabSize);
  }

  /** One batch of T ≤ maxBatch rows with `policy`; computes logits for the last `logitRows` of them. */
  private step(rows: readonly BatchItem[], logitRows: number, policy: SparsityPolicy): void {
    const { cfg, w } = this;
    const T = rows.length;
    const D = cfg.dim;
    const tap = this.tap;
    this.cur = policy;
    this.headSupport = null;
    this.stepNo++;

    // token embeddings
    const E = w.tokenEmbd;
    for (let t = 0; t < T; t++) {
      const tok = rows[t]!.token;
      if (!(tok >= 0 && tok < cfg.vocabSize)) throw new Error(`forward: token id ${tok} is outside the vocabulary (${cfg.vocabSize})`);
      const e = ggmlRow(E, tok, this.embRow);
      dequantize(E.type.id, e.data, e.offset, this.x, t * D, D);
      if (cfg.embedScale !== 1) for (let i = 0; i < D; i++) this.x[t * D + i]! *= cfg.embedScale;
    }

    for (let l = 0; l < cfg.nLayers; l++) {
      const L = w.layers[l]!;
      // ---- attention block
      for (let t = 0; t < T; t++) this.kernels.rmsnorm(this.xn, t * D, this.x, t * D, L.attnNorm, D, cfg.normEps);
      tap?.('attn_in', l, this.xn, T, D);
      const qkvIn = this.select(l, 'attn_in', this.xn, T, D);
      // a policy may thin q's input apart from k and v's ('attn_q'), which keeps the KV cache exact
      const qIn = this.select(l, 'attn_q', this.xn, T, D);
      if (!qIn) this.linear([L.wq, L.wk, L.wv], this.xn, T, [this.q, this.k, this.v], qkvIn);
      else {
        this.linear([L.wq], this.xn, T, [this.q], qIn.map((s, t) => s ?? qkvIn?.[t] ?? null));
        this.linear([L.wk, L.wv], this.xn, T, [this.k, this.v], qkvIn);
      }
      // the projections as computed, before biases, norms and rotation ('q', 'k', 'v' come after)
      if (tap) {
        tap('q_lin', l, this.q, T, cfg.nHeads * cfg.headDim);
        tap('k_lin', l, this.k, T, cfg.nKvHeads * cfg.headDim);
        tap('v_lin', l, this.v, T, cfg.nKvHeads * cfg.headDimV);
      }
      this.attention(l, rows);
      const attWidth = cfg.nHeads * cfg.headDimV;
      tap?.('attn_out', l, this.att, T, attWidth);
      this.linear([L.wo], this.att, T, [this.proj], this.select(l, 'attn_out', this.att, T, attWidth));
      if (L.postAttnNorm) for (let t = 0; t < T; t++) this.kernels.rmsnorm(this.proj, t * D, this.proj, t * D, L.postAttnNorm, D, cfg.normEps);
      tap?.('attn_proj', l, this.proj, T, D);
      this.kernels.add(this.x, 0, this.proj, 0, T * D);

      // ---- MLP block: down( act(gate·x) ⊙ (up·x) )
      for (let t = 0; t < T; t++) this.kernels.rmsnorm(this.xn, t * D, this.x, t * D, L.ffnNorm, D, cfg.normEps);
      tap?.('ffn_in', l, this.xn, T, D);
      this.mlp(l, T);
      if (L.postFfnNorm) for (let t = 0; t < T; t++) this.kernels.rmsnorm(this.proj, t * D, this.proj, t * D, L.postFfnNorm, D, cfg.normEps);
      tap?.('ffn_out', l, this.proj, T, D);
      this.kernels.add(this.x, 0, this.proj, 0, T * D);
      tap?.('residual', l, this.x, T, D);
    }

    if (logitRows === 0) return;
    const V = cfg.vocabSize;
    if (this.logitsBuf.length < logitRows * V) this.logitsBuf = new Float32Array(logitRows * V);
    const first = T - logitRows;
    for (let t = first; t < T; t++) this.kernels.rmsnorm(this.xn, (t - first) * D, this.x, t * D, w.outputNorm, D, cfg.normEps);
    tap?.('final', cfg.nLayers, this.xn, logitRows, D);
    if (logitRows === 1 && this.outputHead) {
      this.headRows = this.outputHead.logits(this.xn, this.logitsBuf);
      this.headSupport = this.outputHead.support;
      return;
    }
    if (logitRows === 1) this.kernels.matvec(w.output, this.xn, this.logitsBuf);
    else this.kernels.matmul(w.output, this.xn, logitRows, this.logitsBuf);
    const cap = cfg.finalLogitSoftcap;
    if (cap > 0) for (let i = 0; i < logitRows * V; i++) this.logitsBuf[i] = cap * Math.tanh(this.logitsBuf[i]! / cap);
  }

  /** Ask the policy which input channels each row of X ([T][cols]) uses at `site`; null when all rows are dense. */
  private select(layer: number, site: LinearSite, X: Float32Array, T: number, cols: number): (Selection | null)[] | null {
    let any = false;
    const sels: (Selection | null)[] = [];
    for (let t = 0; t < T; t++) {
      const sel = this.cur.inputChannels(layer, site, X.subarray(t * cols, (t + 1) * cols));
      sels.push(sel);
      if (sel) any = true;
    }
    return any ? sels : null;
  }

  /**
   * Apply the linears `Ws` that share the input X ([T][cols]). Dense batches use matmul, which
   * decodes each weight block once for all rows; decode steps and batches a policy thins out go
   * row by row through matvec with the row's input selection and output rows.
   */
  private linear(Ws: QTensor[], X: Float32Array, T: number, outs: Float32Array[], inputs: (Selection | null)[] | null, rows: (Selection | null)[] | null = null): void {
    const cols = Ws[0]!.cols;
    if (!inputs && !rows && T > 1) {
      this.kernels.matmuls(Ws, X, T, outs);
      return;
    }
    for (let t = 0; t < T; t++) {
      const x = X.subarray(t * cols, (t + 1) * cols);
      const o = outs.map((out, i) => out.subarray(t * Ws[i]!.rows, (t + 1) * Ws[i]!.rows));
      const r = rows?.[t] ?? null;
      this.kernels.matvecs(Ws, x, o, inputs?.[t] ?? null, r ? Ws.map(() => r) : null);
    }
  }

  /** q, k, v are computed; add biases, normalise and rotate q and k, append k and v to each row's cache, attend. */
  private attention(l: number, rows: readonly BatchItem[]): void {
    const T = rows.length;
    const { cfg, w } = this;
    const L = w.layers[l]!;
    const { nHeads, nKvHeads, headDim, headDimV } = cfg;
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const kvDimV = nKvHeads * headDimV;
    const sliding = cfg.slidingLayers[l]!;
    const base = sliding ? cfg.rope.baseSliding : cfg.rope.base;
    const angles = this.ropeAngles(rows, base);
    const dims = cfg.rope.dims;
    for (let t = 0; t < T; t++) {
      const { kv, pos: p } = rows[t]!;
      const qo = t * qDim;
      const ko = t * kvDim;
      const vo = t * kvDimV;
      if (L.bq) for (let i = 0; i < qDim; i++) this.q[qo + i]! += L.bq[i]!;
      if (L.bk) for (let i = 0; i < kvDim; i++) this.k[ko + i]! += L.bk[i]!;
      if (L.bv) for (let i = 0; i < kvDimV; i++) this.v[vo + i]! += L.bv[i]!;
      if (L.qNorm) for (let h = 0; h < nHeads; h++) this.kernels.rmsnorm(this.q, qo + h * headDim, this.q, qo + h * headDim, L.qNorm, headDim, cfg.normEps);
      if (L.kNorm) for (let h = 0; h < nKvHeads; h++) this.kernels.rmsnorm(this.k, ko + h * headDim, this.k, ko + h * headDim, L.kNorm, headDim, cfg.normEps);
      const cs = angles.subarray(t * dims, (t + 1) * dims);
      this.kernels.rope(this.q, qo, nHeads, headDim, dims, cs, cfg.rope.neox);
      this.kernels.rope(this.k, ko, nKvHeads, headDim, dims, cs, cfg.rope.neox);
      kv.k[l]!.set(this.k.subarray(ko, ko + kvDim), p * kvDim);
      kv.v[l]!.set(this.v.subarray(vo, vo + kvDimV), p * kvDimV);
      kv.length = Math.max(kv.length, p + 1);
    }
    if (this.tap) {
      this.tap('q', l, this.q, T, qDim);
      this.tap('k', l, this.k, T, kvDim);
      this.tap('v', l, this.v, T, kvDimV);
    }

    const D = cfg.dim;
    const args: AttentionArgs[] = [];
    for (let t = 0; t < T; t++) {
      const { kv, pos: p } = rows[t]!;
      const start = sliding ? Math.max(0, p - cfg.slidingWindow + 1) : 0;
      args.push({
        q: this.q, qOffset: t * qDim, k: kv.k[l]!, v: kv.v[l]!, start, n: p - start + 1,
        nHeads, nKvHeads, headDim, headDimV, scale: cfg.attnScale,
        out: this.att, outOffset: t * nHeads * headDimV,
        heads: this.cur.heads(l, this.xn.subarray(t * D, (t + 1) * D)),
      });
    }
    this.kernels.attentions(args);
  }

  private mlp(l: number, T: number): void {
    const { cfg, w } = this;
    const L = w.layers[l]!;
    const F = cfg.ffnDim;
    // gate first: neuron-sparsity methods decide from act(gate·x) which rows of up and down to use
    const inputs = this.select(l, 'ffn_in', this.xn, T, cfg.dim);
    // a policy that selects no neurons (dense, TEAL, WINA): gate and up go in one kernel call
    const dense = this.cur.selectsNeurons === false;
    if (dense) this.linear([L.gate, L.up], this.xn, T, [this.gate, this.up], inputs);
    else this.linear([L.gate], this.xn, T, [this.gate], inputs);
    this.kernels.activate(this.gate, 0, T * F, cfg.act === 'gelu' ? 'gelu' : 'silu');
    this.tap?.('ffn_gate_act', l, this.gate, T, F);
    let neurons: (Selection | null)[] | null = null;
    for (let t = 0; t < T && !dense; t++) {
      const sel = this.cur.neurons(l, this.gate.subarray(t * F, (t + 1) * F));
      if (sel) (neurons ??= new Array<Selection | null>(T).fill(null))[t] = sel;
    }
    // rows of up that are not computed stay 0, so the product is 0 for dropped neurons
    if (!dense) this.linear([L.up], this.xn, T, [this.up], inputs, neurons);
    this.tap?.('ffn_up', l, this.up, T, F);
    this.kernels.mul(this.gate, 0, this.up, 0, T * F);
    this.tap?.('ffn_act', l, this.gate, T, F);
    // down reads only the kept neurons unless the policy thins its input further
    const thinned = this.select(l, 'ffn_down', this.gate, T, F);
    const downInputs = thinned && neurons ? thinned.map((s, t) => s ?? neurons![t] ?? null) : thinned ?? neurons;
    this.linear([L.down], this.gate, T, [this.proj], downInputs);
  }

  /**
   * cos/sin of each row's position for each rotated pair ([T][dims/2 cos, dims/2 sin]): every layer
   * of a step rotates at the same positions, so once per step and base (the trigonometry per row
   * and layer was 6% of a Gemma prefill).
   */
  private ropeAngles(rows: readonly BatchItem[], base: number): Float32Array {
    const r = this.rope.get(base)!;
    if (r.step === this.stepNo) return r.cs;
    r.step = this.stepNo;
    const { dims, freqScale } = this.cfg.rope;
    const ff = this.w.ropeFreqFactors;
    const half = dims / 2;
    for (let t = 0; t < rows.length; t++) {
      const p = rows[t]!.pos, o = t * dims;
      for (let i = 0; i < half; i++) {
        let theta = (p * freqScale) / r.denom[i]!;
        if (ff) theta /= ff[i]!;
        r.cs[o + i] = Math.cos(theta);
        r.cs[o + half + i] = Math.sin(theta);
      }
    }
    return r.cs;
  }
}
