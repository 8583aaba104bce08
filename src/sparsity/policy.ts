// The one seam through which sparsity enters the forward pass. The forward pass asks the
// policy, at a few named sites, which input channels, neurons and heads to compute; the
// dense policy answers "everything" (null). A method is one file implementing this.

/** The input of a group of linear layers that share it. */
export type LinearSite =
  | 'attn_in'   // input of q, k, v
  | 'attn_q'    // input of q alone, when it should differ from k and v's (null: q uses attn_in's)
  | 'attn_out'  // input of the attention output projection
  | 'ffn_in'    // input of gate and up
  | 'ffn_down'; // input of down

/** Indices of the kept elements, ascending, in idx[0..n). */
export interface Selection {
  readonly idx: Int32Array;
  readonly n: number;
}

export interface SparsityPolicy {
  readonly name: string;
  /** Which input channels of the linears at `site` to use for this token's activation `x` (null = all). */
  inputChannels(layer: number, site: LinearSite, x: Float32Array): Selection | null;
  /** Which MLP neurons to compute, given the gate activation act(gate·x) (null = all). */
  neurons(layer: number, gateAct: Float32Array): Selection | null;
  /**
   * Whether `neurons` can ever select (CATS, CHESS). When false, the forward pass computes gate and
   * up together, as dense does, without asking. Absent = true.
   */
  readonly selectsNeurons?: boolean;
  /** Which attention heads to compute, given the layer's normalised input (null = all). */
  heads(layer: number, x: Float32Array): Selection | null;
}

export const densePolicy: SparsityPolicy = {
  name: 'dense',
  selectsNeurons: false,
  inputChannels: () => null,
  neurons: () => null,
  heads: () => null,
};
