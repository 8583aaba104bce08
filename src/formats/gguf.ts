// GGUF reader (versions 2 and 3, little-endian). The header (metadata and tensor infos) is
// parsed from the file in chunks; tensor data is then read once, straight into a buffer the
// caller provides, so the file is never held twice in memory. Everything is validated before
// any tensor data is touched, and every error names the file and the key or tensor at fault.

import { closeSync, fstatSync, readSync } from 'node:fs';
import { CtxError } from '../errors.js';
import { openForRead } from './files.js';
import { bytesFor, quantInfo, typeName, type QuantInfo } from '../quant/types.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32

export const GGUFValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

/** A metadata value. Numeric arrays become typed arrays; 64-bit integers become numbers when exact, else bigints. */
export type GGUFValue =
  | number | bigint | boolean | string
  | string[] | boolean[] | GGUFValue[]
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array;

export interface GGUFTensorInfo {
  readonly name: string;
  /** ggml order: dims[0] is the innermost (row length), dims[1] the number of rows, … */
  readonly dims: readonly number[];
  readonly type: QuantInfo;
  /** offset of the tensor's bytes relative to the start of the data section */
  readonly offset: number;
  readonly nElements: number;
  readonly nBytes: number;
}

export interface GGUFHeader {
  readonly path: string;
  readonly version: number;
  readonly fileSize: number;
  readonly alignment: number;
  readonly metadata: Map<string, GGUFValue>;
  /** value type id of each key, for `inspect` */
  readonly metadataTypes: Map<string, string>;
  readonly tensors: GGUFTensorInfo[];
  readonly tensorsByName: Map<string, GGUFTensorInfo>;
  /** absolute file offset where tensor data begins */
  readonly dataOffset: number;
  /** bytes from dataOffset to the end of the last tensor */
  readonly dataSize: number;
}

const typeNames = Object.fromEntries(Object.entries(GGUFValueType).map(([k, v]) => [v, k])) as Record<number, string>;
const utf8 = new TextDecoder('utf-8');

/** Reads little-endian values from a file through a window that grows on demand. */
class FileCursor {
  pos = 0;
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0;

  constructor(private readonly fd: number, readonly size: number, private readonly path: string) {}

  private need(n: number, what: string): number {
    if (this.pos + n > this.size) {
      throw new CtxError(`${this.path}: truncated file: ${what} at offset ${this.pos} needs ${n} bytes but the file ends at ${this.size}`);
    }
    const rel = this.pos - this.bufStart;
    if (rel + n <= this.buf.length) return rel;
    const want = Math.min(this.size - this.pos, Math.max(n, 1 << 20));
    const buf = new Uint8Array(want);
    let got = 0;
    while (got < want) {
      const r = readSync(this.fd, buf, got, want - got, this.pos + got);
      if (r === 0) break;
      got += r;
    }
    this.buf = buf;
    this.view = new DataView(buf.buffer);
    this.bufStart = this.pos;
    return 0;
  }

  u8(what: string): number { const o = this.need(1, what); this.pos += 1; return this.buf[o]!; }
  i8(what: string): number { const o = this.need(1, what); this.pos += 1; return this.view.getInt8(o); }
  u16(what: string): number { const o = this.need(2, what); this.pos += 2; return this.view.getUint16(o, true); }
  i16(what: string): number { const o = this.need(2, what); this.pos += 2; return this.view.getInt16(o, true); }
  u32(what: string): number { const o = this.need(4, what); this.pos += 4; return this.view.getUint32(o, true); }
  i32(what: string): number { const o = this.need(4, what); this.pos += 4; return this.view.getInt32(o, true); }
  f32(what: string): number { const o = this.need(4, what); this.pos += 4; return this.view.getFloat32(o, true); }
  f64(what: string): number { const o = this.need(8, what); this.pos += 8; return this.view.getFloat64(o, true); }
  u64(what: string): bigint { const o = this.need(8, what); this.pos += 8; return this.view.getBigUint64(o, true); }
  i64(what: string): bigint { const o = this.need(8, what); this.pos += 8; return this.view.getBigInt64(o, true); }

  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  count(what: string): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CtxError(`${this.path}: ${what} at offset ${at} is ${v}, which is not a plausible size`);
    return Number(v);
  }

  bytes(n: number, what: string): Uint8Array {
    const o = this.need(n, what);
    this.pos += n;
    return this.buf.subarray(o, o + n);
  }

  string(what: string): string {
    const at = this.pos;
    const len = this.count(`length of ${what}`);
    if (len > this.size - this.pos) throw new CtxError(`${this.path}: ${what} at offset ${at} claims ${len} bytes, past the end of the file (${this.size})`);
    return utf8.decode(this.bytes(len, what));
  }
}

function exactNumber(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

function readValue(c: FileCursor, type: number, key: string, path: string): GGUFValue {
  const what = `value of ${key}`;
  switch (type) {
    case GGUFValueType.UINT8: return c.u8(what);
    case GGUFValueType.INT8: return c.i8(what);
    case GGUFValueType.UINT16: return c.u16(what);
    case GGUFValueType.INT16: return c.i16(what);
    case GGUFValueType.UINT32: return c.u32(what);
    case GGUFValueType.INT32: return c.i32(what);
    case GGUFValueType.FLOAT32: return c.f32(what);
    case GGUFValueType.FLOAT64: return c.f64(what);
    case GGUFValueType.UINT64: return exactNumber(c.u64(what));
    case GGUFValueType.INT64: return exactNumber(c.i64(what));
    case GGUFValueType.BOOL: {
      const at = c.pos;
      const b = c.u8(what);
      if (b > 1) throw new CtxError(`${path}: metadata ${key} at offset ${at}: bool byte is ${b}, expected 0 or 1`);
      return b === 1;
    }
    case GGUFValueType.STRING: return c.string(what);
    case GGUFValueType.ARRAY: return readArray(c, key, path);
    default:
      throw new CtxError(`${path}: metadata ${key} at offset ${c.pos - 4}: unknown value type ${type}`);
  }
}

const elemBytes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function readArray(c: FileCursor, key: string, path: string): GGUFValue {
  const at = c.pos;
  const et = c.u32(`element type of ${key}`);
  const n = c.count(`length of ${key}`);
  const eb = elemBytes[et];
  if (eb !== undefined) {
    if (n * eb > c.size - c.pos) throw new CtxError(`${path}: metadata array ${key} at offset ${at} claims ${n} elements, past the end of the file`);
    // Copy out of the cursor's window into an aligned buffer of its own.
    const raw = c.bytes(n * eb, `elements of ${key}`).slice();
    const ab = raw.buffer;
    switch (et) {
      case GGUFValueType.UINT8: return raw;
      case GGUFValueType.INT8: return new Int8Array(ab);
      case GGUFValueType.UINT16: return new Uint16Array(ab);
      case GGUFValueType.INT16: return new Int16Array(ab);
      case GGUFValueType.UINT32: return new Uint32Array(ab);
      case GGUFValueType.INT32: return new Int32Array(ab);
      case GGUFValueType.FLOAT32: return new Float32Array(ab);
      case GGUFValueType.FLOAT64: return new Float64Array(ab);
      case GGUFValueType.UINT64: return new BigUint64Array(ab);
      case GGUFValueType.INT64: return new BigInt64Array(ab);
      case GGUFValueType.BOOL: {
        const out: boolean[] = new Array(n);
        for (let i = 0; i < n; i++) {
          if (raw[i]! > 1) throw new CtxError(`${path}: metadata array ${key}[${i}]: bool byte is ${raw[i]}, expected 0 or 1`);
          out[i] = raw[i] === 1;
        }
        return out;
      }
    }
  }
  if (et === GGUFValueType.STRING) {
    // each string takes at least its 8-byte length
    if (n * 8 > c.size - c.pos) throw new CtxError(`${path}: metadata array ${key} at offset ${at} claims ${n} strings, past the end of the file`);
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = c.string(`${key}[${i}]`);
    return out;
  }
  if (et === GGUFValueType.ARRAY) {
    if (n * 12 > c.size - c.pos) throw new CtxError(`${path}: metadata array ${key} at offset ${at} claims ${n} arrays, past the end of the file`);
    const out: GGUFValue[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = readArray(c, `${key}[${i}]`, path);
    return out;
  }
  throw new CtxError(`${path}: metadata array ${key} at offset ${at}: unknown element type ${et}`);
}

/** Parse and validate a GGUF file's header; no tensor data is read. */
export function readGGUFHeader(path: string): GGUFHeader {
  const fd = openForRead(path);
  try {
    const size = fstatSync(fd).size;
    return parseHeader(new FileCursor(fd, size, path), path);
  } finally {
    closeSync(fd);
  }
}

function parseHeader(c: FileCursor, path: string): GGUFHeader {
  if (c.size < 4) throw new CtxError(`${path}: not a GGUF file: only ${c.size} bytes`);
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const got = Buffer.from([magic & 255, (magic >> 8) & 255, (magic >> 16) & 255, magic >>> 24]);
    throw new CtxError(`${path}: not a GGUF file: magic is ${JSON.stringify(got.toString('latin1'))} (0x${magic.toString(16).padStart(8, '0')}), expected "GGUF"`);
  }
  const version = c.u32('version');
  if (version === 1) throw new CtxError(`${path}: GGUF version 1 is not supported (re-convert the model; versions 2 and 3 are)`);
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 255) << 24) >>> 0 === (version >>> 0) ? ' (a big-endian file?)' : '';
    throw new CtxError(`${path}: unsupported GGUF version ${version}${swapped}; expected 2 or 3`);
  }
  const nTensors = c.count('tensor count');
  const nKV = c.count('metadata count');
  if (nTensors > c.size / 24) throw new CtxError(`${path}: truncated or corrupt file: header claims ${nTensors} tensors, too many for a ${c.size}-byte file`);
  if (nKV > c.size / 12) throw new CtxError(`${path}: truncated or corrupt file: header claims ${nKV} metadata entries, too many for a ${c.size}-byte file`);

  const metadata = new Map<string, GGUFValue>();
  const metadataTypes = new Map<string, string>();
  for (let i = 0; i < nKV; i++) {
    const at = c.pos;
    const key = c.string(`metadata key #${i}`);
    if (metadata.has(key)) throw new CtxError(`${path}: duplicate metadata key ${key} at offset ${at}`);
    const type = c.u32(`type of ${key}`);
    let typeLabel = typeNames[type] ?? `#${type}`;
    if (type === GGUFValueType.ARRAY) {
      // peek the element type for the label
      const save = c.pos;
      const et = c.u32(`element type of ${key}`);
      c.pos = save;
      typeLabel = `ARRAY<${typeNames[et] ?? `#${et}`}>`;
    }
    metadata.set(key, readValue(c, type, key, path));
    metadataTypes.set(key, typeLabel);
  }

  let alignment = 32;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (typeof al !== 'number' || !Number.isInteger(al) || al <= 0 || (al & (al - 1)) !== 0) {
      throw new CtxError(`${path}: general.alignment is ${String(al)}, expected a power of two`);
    }
    alignment = al;
  }

  const tensors: GGUFTensorInfo[] = [];
  const tensorsByName = new Map<string, GGUFTensorInfo>();
  for (let i = 0; i < nTensors; i++) {
    const at = c.pos;
    const name = c.string(`name of tensor #${i}`);
    if (tensorsByName.has(name)) throw new CtxError(`${path}: duplicate tensor ${name} at offset ${at}`);
    const nDims = c.u32(`dimension count of tensor ${name}`);
    if (nDims < 1 || nDims > 4) throw new CtxError(`${path}: tensor ${name} has ${nDims} dimensions, expected 1 to 4`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = c.count(`dimension ${d} of tensor ${name}`);
      if (v === 0 && nTensors > 0) throw new CtxError(`${path}: tensor ${name} has dimension ${d} of size 0`);
      dims.push(v);
    }
    const typeId = c.u32(`type of tensor ${name}`);
    const type = quantInfo(typeId);
    if (!type) throw new CtxError(`${path}: tensor ${name} has unsupported type ${typeName(typeId)} (id ${typeId})`);
    const offset = c.count(`data offset of tensor ${name}`);
    let nElements = 1;
    for (const d of dims) {
      nElements *= d;
      if (!Number.isSafeInteger(nElements)) throw new CtxError(`${path}: tensor ${name} has an element count that overflows: dims ${dims.join('x')}`);
    }
    if (dims[0]! % type.blockSize !== 0) {
      throw new CtxError(`${path}: tensor ${name}: row length ${dims[0]} is not a multiple of the ${type.name} block size ${type.blockSize}`);
    }
    if (offset % alignment !== 0) throw new CtxError(`${path}: tensor ${name}: data offset ${offset} is not aligned to ${alignment}`);
    const info: GGUFTensorInfo = { name, dims, type, offset, nElements, nBytes: bytesFor(type, nElements) };
    tensors.push(info);
    tensorsByName.set(name, info);
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  let dataSize = 0;
  for (const t of tensors) {
    const end = t.offset + t.nBytes;
    if (dataOffset + end > c.size) {
      throw new CtxError(`${path}: tensor ${t.name} (${t.type.name}, ${t.dims.join('x')}) spans bytes ${dataOffset + t.offset}..${dataOffset + end}, past the end of the file (${c.size} bytes)`);
    }
    dataSize = Math.max(dataSize, end);
  }
  // tensors must not overlap one another
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1]!;
    const t = sorted[i]!;
    if (p.offset + p.nBytes > t.offset) throw new CtxError(`${path}: tensors ${p.name} and ${t.name} overlap in the data section`);
  }
  return { path, version, fileSize: c.size, alignment, metadata, metadataTypes, tensors, tensorsByName, dataOffset, dataSize };
}

/**
 * Read the whole data section into `dst` (dataSize bytes), e.g. a region of a WebAssembly
 * memory. Returns dst. Tensors are then views at dst[t.offset .. t.offset + t.nBytes).
 */
export function readGGUFData(h: GGUFHeader, dst: Uint8Array = new Uint8Array(h.dataSize)): Uint8Array {
  if (dst.length < h.dataSize) throw new Error(`readGGUFData: destination holds ${dst.length} bytes, need ${h.dataSize}`);
  const fd = openForRead(h.path);
  try {
    let got = 0;
    const chunk = 1 << 26;
    while (got < h.dataSize) {
      const n = readSync(fd, dst, got, Math.min(chunk, h.dataSize - got), h.dataOffset + got);
      if (n === 0) throw new CtxError(`${h.path}: truncated while reading tensor data at offset ${h.dataOffset + got}`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return dst;
}

/** Typed accessors that name the key when it is missing or has the wrong type. */
export class Metadata {
  constructor(readonly map: Map<string, GGUFValue>, readonly path: string) {}

  has(key: string): boolean { return this.map.has(key); }

  private missing(key: string): never {
    throw new CtxError(`${this.path}: missing metadata key ${key}`);
  }

  number(key: string): number;
  number(key: string, fallback: number): number;
  number(key: string, fallback?: number): number {
    const v = this.map.get(key);
    if (v === undefined) return fallback ?? this.missing(key);
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') return Number(v);
    throw new CtxError(`${this.path}: metadata ${key} should be a number, got ${describe(v)}`);
  }

  optNumber(key: string): number | undefined {
    return this.map.has(key) ? this.number(key) : undefined;
  }

  string(key: string): string;
  string(key: string, fallback: string): string;
  string(key: string, fallback?: string): string {
    const v = this.map.get(key);
    if (v === undefined) return fallback ?? this.missing(key);
    if (typeof v === 'string') return v;
    throw new CtxError(`${this.path}: metadata ${key} should be a string, got ${describe(v)}`);
  }

  optString(key: string): string | undefined {
    return this.map.has(key) ? this.string(key) : undefined;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.map.get(key);
    if (v === undefined) return fallback;
    if (typeof v === 'boolean') return v;
    throw new CtxError(`${this.path}: metadata ${key} should be a bool, got ${describe(v)}`);
  }

  strings(key: string): string[] {
    const v = this.map.get(key);
    if (v === undefined) return this.missing(key);
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    throw new CtxError(`${this.path}: metadata ${key} should be an array of strings, got ${describe(v)}`);
  }

  optFloats(key: string): Float32Array | undefined {
    const v = this.map.get(key);
    if (v === undefined) return undefined;
    if (v instanceof Float32Array) return v;
    if (ArrayBuffer.isView(v) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array)) return Float32Array.from(v as ArrayLike<number>);
    throw new CtxError(`${this.path}: metadata ${key} should be an array of floats, got ${describe(v)}`);
  }

  optInts(key: string): Int32Array | undefined {
    const v = this.map.get(key);
    if (v === undefined) return undefined;
    if (v instanceof Int32Array) return v;
    if (ArrayBuffer.isView(v) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array) && !(v instanceof DataView)) return Int32Array.from(v as ArrayLike<number>);
    throw new CtxError(`${this.path}: metadata ${key} should be an array of integers, got ${describe(v)}`);
  }
}

export function describe(v: GGUFValue): string {
  if (typeof v === 'string') return v.length > 60 ? `string(${v.length} chars)` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `array(${v.length})`;
  return `${v.constructor.name}(${v.length})`;
}
