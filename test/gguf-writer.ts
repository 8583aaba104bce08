// A small GGUF writer for tests: builds valid files and lets tests break them on purpose.
import { GGUFValueType } from '../src/formats/gguf.js';

export type MetaValue =
  | { type: 'u32'; value: number } | { type: 'i32'; value: number } | { type: 'f32'; value: number }
  | { type: 'u8'; value: number } | { type: 'i8'; value: number } | { type: 'u16'; value: number } | { type: 'i16'; value: number }
  | { type: 'u64'; value: bigint } | { type: 'i64'; value: bigint } | { type: 'f64'; value: number }
  | { type: 'bool'; value: boolean } | { type: 'str'; value: string }
  | { type: 'arr'; elem: 'str'; value: string[] } | { type: 'arr'; elem: 'f32' | 'i32' | 'u8'; value: number[] }
  | { type: 'arr'; elem: 'arr'; value: MetaValue[] };

export interface TensorSpec {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
  /** override the offset written in the header */
  offset?: number;
}

class Buf {
  private chunks: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): void { this.chunks.push(b); this.length += b.length; }
  u8(v: number): void { this.push(Uint8Array.of(v)); }
  u32(v: number): void { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); this.push(b); }
  u64(v: number | bigint): void { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); this.push(b); }
  str(s: string): void { const b = new TextEncoder().encode(s); this.u64(b.length); this.push(b); }
  concat(): Uint8Array { const out = new Uint8Array(this.length); let o = 0; for (const c of this.chunks) { out.set(c, o); o += c.length; } return out; }
}

const typeIds = { u8: GGUFValueType.UINT8, i8: GGUFValueType.INT8, u16: GGUFValueType.UINT16, i16: GGUFValueType.INT16, u32: GGUFValueType.UINT32, i32: GGUFValueType.INT32, f32: GGUFValueType.FLOAT32, bool: GGUFValueType.BOOL, str: GGUFValueType.STRING, arr: GGUFValueType.ARRAY, u64: GGUFValueType.UINT64, i64: GGUFValueType.INT64, f64: GGUFValueType.FLOAT64 } as const;

function writeScalar(b: Buf, v: MetaValue): void {
  const dv = (n: number, f: (d: DataView) => void) => { const x = new Uint8Array(n); f(new DataView(x.buffer)); b.push(x); };
  switch (v.type) {
    case 'u8': b.u8(v.value); break;
    case 'i8': dv(1, (d) => d.setInt8(0, v.value)); break;
    case 'u16': dv(2, (d) => d.setUint16(0, v.value, true)); break;
    case 'i16': dv(2, (d) => d.setInt16(0, v.value, true)); break;
    case 'u32': b.u32(v.value); break;
    case 'i32': dv(4, (d) => d.setInt32(0, v.value, true)); break;
    case 'f32': dv(4, (d) => d.setFloat32(0, v.value, true)); break;
    case 'f64': dv(8, (d) => d.setFloat64(0, v.value, true)); break;
    case 'u64': b.u64(v.value); break;
    case 'i64': dv(8, (d) => d.setBigInt64(0, v.value, true)); break;
    case 'bool': b.u8(v.value ? 1 : 0); break;
    case 'str': b.str(v.value); break;
    case 'arr': writeArray(b, v); break;
  }
}

function writeArray(b: Buf, v: Extract<MetaValue, { type: 'arr' }>): void {
  b.u32(typeIds[v.elem]);
  b.u64(v.value.length);
  for (const e of v.value) {
    if (v.elem === 'arr') writeScalar(b, e as MetaValue);
    else writeScalar(b, { type: v.elem, value: e } as MetaValue);
  }
}

export function buildGGUF(meta: Record<string, MetaValue>, tensors: TensorSpec[], opts: { version?: number; alignment?: number } = {}): Uint8Array {
  const align = opts.alignment ?? 32;
  const b = new Buf();
  b.push(new TextEncoder().encode('GGUF'));
  b.u32(opts.version ?? 3);
  b.u64(tensors.length);
  b.u64(Object.keys(meta).length);
  for (const [k, v] of Object.entries(meta)) {
    b.str(k);
    b.u32(typeIds[v.type]);
    writeScalar(b, v);
  }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(off);
    off = Math.ceil((off + t.data.length) / align) * align;
  }
  tensors.forEach((t, i) => {
    b.str(t.name);
    b.u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(t.type);
    b.u64(t.offset ?? offsets[i]!);
  });
  const pad = (Math.ceil(b.length / align) * align) - b.length;
  b.push(new Uint8Array(pad));
  tensors.forEach((t, i) => {
    const next = i + 1 < tensors.length ? offsets[i + 1]! : Math.ceil((offsets[i]! + t.data.length) / align) * align;
    b.push(t.data);
    b.push(new Uint8Array(next - offsets[i]! - t.data.length));
  });
  return b.concat();
}
