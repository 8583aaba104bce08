// The ggml tensor types this engine knows: one row per type, keyed by the GGUF type id.
// Loader, `inspect`, tests and kernels all loop over this table; adding a type is one row
// here plus its dequantizer in dequant.ts.

export const GGMLType = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  BF16: 30,
} as const;
export type GGMLType = (typeof GGMLType)[keyof typeof GGMLType];

export interface QuantInfo {
  readonly id: GGMLType;
  readonly name: string;
  /** elements per block */
  readonly blockSize: number;
  /** bytes per block */
  readonly blockBytes: number;
}

const rows: QuantInfo[] = [
  { id: GGMLType.F32, name: 'F32', blockSize: 1, blockBytes: 4 },
  { id: GGMLType.F16, name: 'F16', blockSize: 1, blockBytes: 2 },
  { id: GGMLType.BF16, name: 'BF16', blockSize: 1, blockBytes: 2 },
  { id: GGMLType.Q4_0, name: 'Q4_0', blockSize: 32, blockBytes: 2 + 16 },
  { id: GGMLType.Q4_1, name: 'Q4_1', blockSize: 32, blockBytes: 2 + 2 + 16 },
  { id: GGMLType.Q5_0, name: 'Q5_0', blockSize: 32, blockBytes: 2 + 4 + 16 },
  { id: GGMLType.Q5_1, name: 'Q5_1', blockSize: 32, blockBytes: 2 + 2 + 4 + 16 },
  { id: GGMLType.Q8_0, name: 'Q8_0', blockSize: 32, blockBytes: 2 + 32 },
  { id: GGMLType.Q2_K, name: 'Q2_K', blockSize: 256, blockBytes: 16 + 64 + 2 + 2 },
  { id: GGMLType.Q3_K, name: 'Q3_K', blockSize: 256, blockBytes: 32 + 64 + 12 + 2 },
  { id: GGMLType.Q4_K, name: 'Q4_K', blockSize: 256, blockBytes: 2 + 2 + 12 + 128 },
  { id: GGMLType.Q5_K, name: 'Q5_K', blockSize: 256, blockBytes: 2 + 2 + 12 + 32 + 128 },
  { id: GGMLType.Q6_K, name: 'Q6_K', blockSize: 256, blockBytes: 128 + 64 + 16 + 2 },
];

const byId = new Map<number, QuantInfo>(rows.map((r) => [r.id, r]));

/** Names of ggml types we recognise but cannot compute with (for clear error messages). */
const knownUnsupported: Record<number, string> = {
  9: 'Q8_1', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL',
  21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64',
  29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

export function quantInfo(id: number): QuantInfo | undefined {
  return byId.get(id);
}

export function allQuantTypes(): readonly QuantInfo[] {
  return rows;
}

/** Human name of a type id, also for ids we do not support. */
export function typeName(id: number): string {
  return byId.get(id)?.name ?? knownUnsupported[id] ?? `type#${id}`;
}

/** Bytes taken by `n` elements of a type; n must be a whole number of blocks. */
export function bytesFor(info: QuantInfo, n: number): number {
  return (n / info.blockSize) * info.blockBytes;
}
