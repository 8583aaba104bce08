// Dequantizers and dot kernels against the gguf Python package (fixtures written by
// scripts/make-quant-fixtures.py), plus f16 / bf16 conversions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, SHARED, modelsDir, mulberry32 } from './helpers.js';
import { allQuantTypes, bytesFor, quantInfo, GGMLType } from '../src/quant/types.js';
import { dequantize, dotRow, hasDequantizer } from '../src/quant/dequant.js';
import { bf16ToF32, f16ToF32, f32ToBF16, f32ToF16 } from '../src/quant/fp16.js';
import { readGGUFHeader } from '../src/formats/gguf.js';

const FIX = join(ROOT, 'test', 'fixtures', 'quant');

interface CaseSource {
  kind: 'tensor' | 'quantized' | 'synthetic';
  model?: string;
  tensor?: string;
  dims?: number[];
  row?: number;
  firstBlock?: number;
  nBlocks?: number;
  fileOffset?: number;
  method?: string;
}
interface Case { id: string; type: string; n: number; bytes: string; expected: string; source: CaseSource }
interface Manifest {
  reference: string;
  cases: Case[];
  conversions: { n: number; f32: string; f16: { file: string }; bf16: { file: string } };
}

const manifest = JSON.parse(readFileSync(join(FIX, 'manifest.json'), 'utf8')) as Manifest;

function typeId(name: string): GGMLType {
  const t = allQuantTypes().find((q) => q.name === name);
  if (!t) throw new Error(`fixture names unknown type ${name}`);
  return t.id;
}

function readBytes(file: string): Uint8Array {
  const b = readFileSync(join(FIX, file));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();
}
function readF32(file: string): Float32Array {
  return new Float32Array(readBytes(file).buffer);
}
function readU16(file: string): Uint16Array {
  return new Uint16Array(readBytes(file).buffer);
}

function bitsOf(f: Float32Array): Uint32Array {
  return new Uint32Array(f.buffer, f.byteOffset, f.length);
}

function hex(v: number, w = 8): string {
  return '0x' + (v >>> 0).toString(16).padStart(w, '0');
}

test('fixtures were made by the gguf reference', () => {
  assert.match(manifest.reference, /^gguf /);
  assert.ok(manifest.cases.length > 0);
});

test('every type in allQuantTypes() has a dequantizer and a fixture', () => {
  for (const info of allQuantTypes()) {
    assert.ok(hasDequantizer(info.id), `no dequantizer for ${info.name}`);
    const cases = manifest.cases.filter((c) => c.type === info.name);
    assert.ok(cases.length > 0, `no fixture for ${info.name}`);
  }
  // and every fixture is for a type the table knows
  for (const c of manifest.cases) assert.ok(quantInfo(typeId(c.type)), c.id);
});

for (const c of manifest.cases) {
  const type = typeId(c.type);
  const info = quantInfo(type)!;

  test(`dequantize ${c.id} is bit-exact against gguf`, () => {
    const raw = readBytes(c.bytes);
    const expected = readF32(c.expected);
    assert.equal(expected.length, c.n);
    assert.equal(raw.length, bytesFor(info, c.n));

    // at offset 0 of its own buffer, and at an odd byte offset into a larger one with a
    // destination offset, checking the elements around the destination stay untouched
    const placements: Array<[number, number]> = [[0, 0], [5, 3]];
    for (const [srcOff, dstOff] of placements) {
      const src = new Uint8Array(raw.length + srcOff + 7);
      src.set(raw, srcOff);
      const dst = new Float32Array(c.n + dstOff + 4).fill(1234.5);
      dequantize(type, src, srcOff, dst, dstOff, c.n);
      const got = bitsOf(dst.subarray(dstOff, dstOff + c.n));
      const want = bitsOf(expected);
      for (let i = 0; i < c.n; i++) {
        if (got[i] !== want[i]) {
          assert.fail(`${c.id} (srcOffset ${srcOff}) element ${i}: got ${hex(got[i]!)} (${dst[dstOff + i]}), gguf ${hex(want[i]!)} (${expected[i]})`);
        }
      }
      for (let i = 0; i < dstOff; i++) assert.equal(dst[i], 1234.5);
      for (let i = dstOff + c.n; i < dst.length; i++) assert.equal(dst[i], 1234.5);
    }
  });

  const finite = readF32(c.expected).every(Number.isFinite);
  // Cases holding inf/NaN (the f16/bf16/f32 bit-pattern sweeps) have no meaningful dot.
  test(`dotRow ${c.id} matches the dot of gguf's values`, { skip: finite ? false : 'values include inf/NaN' }, () => {
    const raw = readBytes(c.bytes);
    const w = readF32(c.expected);
    const rand = mulberry32(0x5eed ^ c.n);
    const xOff = 11;
    const x = new Float32Array(c.n + xOff + 3);
    for (let i = 0; i < x.length; i++) x[i] = rand() * 2 - 1;
    let ref = 0;
    let mag = 0;
    for (let i = 0; i < c.n; i++) {
      ref += w[i]! * x[xOff + i]!;
      mag += Math.abs(w[i]! * x[xOff + i]!);
    }
    for (const srcOff of [0, 8, 5]) {
      const src = new Uint8Array(raw.length + srcOff + 3);
      src.set(raw, srcOff);
      const got = dotRow(type, src, srcOff, x, xOff, c.n);
      const err = Math.abs(got - ref);
      assert.ok(err <= 1e-5 * Math.abs(ref) || (ref === 0 && mag === 0),
        `${c.id} (srcOffset ${srcOff}): dotRow ${got}, reference ${ref}, relative error ${err / Math.abs(ref)}`);
    }
  });
}

test('tensor fixtures come from where the manifest says (checked with our GGUF reader)', (t) => {
  const byModel = new Map<string, Case[]>();
  for (const c of manifest.cases) {
    if (c.source.kind !== 'tensor') continue;
    const list = byModel.get(c.source.model!) ?? [];
    list.push(c);
    byModel.set(c.source.model!, list);
  }
  assert.ok(byModel.size > 0);
  for (const [ref, cases] of byModel) {
    const [kind, name] = ref.split(/:(.*)/s) as [string, string];
    const path = kind === 'catalog' ? join(modelsDir(), `${name}.gguf`) : join(SHARED, name);
    if (!existsSync(path)) {
      t.diagnostic(`skipped ${ref}: ${path} is not present`);
      continue;
    }
    const h = readGGUFHeader(path);
    const fd = openSync(path, 'r');
    try {
      for (const c of cases) {
        const s = c.source;
        const ti = h.tensorsByName.get(s.tensor!);
        assert.ok(ti, `${c.id}: ${s.tensor} not in ${path}`);
        assert.equal(ti.type.name, c.type, c.id);
        assert.deepEqual([...ti.dims], s.dims, c.id);
        const rowBytes = bytesFor(ti.type, ti.dims[0]!);
        const at = h.dataOffset + ti.offset + s.row! * rowBytes + s.firstBlock! * ti.type.blockBytes;
        assert.equal(at, s.fileOffset, `${c.id}: file offset`);
        const raw = readBytes(c.bytes);
        const buf = new Uint8Array(raw.length);
        readSync(fd, buf, 0, raw.length, at);
        assert.deepEqual(buf, raw, `${c.id}: bytes differ from the model file`);
      }
    } finally {
      closeSync(fd);
    }
  }
});

test('dequantize / dotRow reject bad arguments', () => {
  const src = new Uint8Array(64);
  const dst = new Float32Array(64);
  assert.throws(() => dequantize(GGMLType.Q4_0, src, 0, dst, 0, 31), /whole number of Q4_0 blocks/);
  assert.throws(() => dequantize(GGMLType.Q8_0, src, 0, dst, 0, 64), /source holds 64/);
  assert.throws(() => dequantize(GGMLType.Q4_0, src, 0, dst, 40, 32), /destination/);
  assert.throws(() => dequantize(9 as GGMLType, src, 0, dst, 0, 32), /Q8_1/);
  assert.throws(() => dotRow(GGMLType.F32, src, 0, dst, 60, 8), /x range/);
  assert.equal(dotRow(GGMLType.Q4_K, src, 0, dst, 0, 0), 0);
});

// ---------------------------------------------------------------- f16 / bf16

/** Independent definition of an IEEE half's value. */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const isHalfNaN = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBF16NaN = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

test('f16ToF32 is exact for all 65536 halves', () => {
  for (let h = 0; h < 65536; h++) {
    const v = f16ToF32(h);
    const want = halfValue(h);
    if (Number.isNaN(want)) assert.ok(Number.isNaN(v), hex(h, 4));
    else assert.ok(Object.is(v, want), `${hex(h, 4)}: ${v} != ${want}`);
  }
  assert.equal(f16ToF32(0x0001), 2 ** -24); // smallest subnormal
  assert.equal(f16ToF32(0x03ff), 1023 * 2 ** -24); // largest subnormal
  assert.equal(f16ToF32(0x0400), 2 ** -14); // smallest normal
  assert.equal(f16ToF32(0x7bff), 65504);
  assert.equal(f16ToF32(0x7c00), Infinity);
  assert.equal(f16ToF32(0xfc00), -Infinity);
  assert.ok(Object.is(f16ToF32(0x8000), -0));
  assert.ok(Number.isNaN(f16ToF32(0x7e00)) && Number.isNaN(f16ToF32(0xfc01)));
});

test('f16 round trip: f32ToF16(f16ToF32(h)) === h for every non-NaN half', () => {
  for (let h = 0; h < 65536; h++) {
    const back = f32ToF16(f16ToF32(h));
    if (isHalfNaN(h)) assert.ok(isHalfNaN(back), `${hex(h, 4)} -> ${hex(back, 4)}`);
    else assert.equal(back, h, `${hex(h, 4)} -> ${hex(back, 4)}`);
  }
});

test('f32ToF16 rounds to nearest even like numpy (incl. ties, subnormals, overflow)', () => {
  const src = readF32(manifest.conversions.f32);
  const want = readU16(manifest.conversions.f16.file);
  assert.equal(src.length, manifest.conversions.n);
  let nan = 0;
  for (let i = 0; i < src.length; i++) {
    const got = f32ToF16(src[i]!);
    if (Number.isNaN(src[i]!)) {
      // numpy keeps signalling NaNs signalling; a JS number cannot carry that, so only the class is compared
      nan++;
      assert.ok(isHalfNaN(got) && isHalfNaN(want[i]!) && (got & 0x8000) === (want[i]! & 0x8000), `NaN #${i}`);
      continue;
    }
    if (got !== want[i]) assert.fail(`f32ToF16(${src[i]}) = ${hex(got, 4)}, numpy ${hex(want[i]!, 4)}`);
  }
  assert.ok(nan > 0);
  // spot checks of the boundaries
  assert.equal(f32ToF16(65504), 0x7bff);
  assert.equal(f32ToF16(65519.99), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00); // tie above the largest finite half: rounds to even = inf
  assert.equal(f32ToF16(-1e9), 0xfc00);
  assert.equal(f32ToF16(2 ** -24), 0x0001);
  assert.equal(f32ToF16(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal: even = 0
  assert.equal(f32ToF16(Math.fround(2 ** -25 * (1 + 2 ** -23))), 0x0001);
  assert.equal(f32ToF16(3 * 2 ** -25), 0x0002); // 1.5 ulp: tie -> even (2)
  assert.equal(f32ToF16(2 ** -14 - 2 ** -25), 0x0400); // rounds up into the normals
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie -> even (1.0)
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (1 + 2^-9)
  assert.equal(f32ToF16(-0), 0x8000);
  assert.equal(f32ToF16(1e-30), 0x0000);
  assert.equal(f32ToF16(Infinity), 0x7c00);
  assert.ok(isHalfNaN(f32ToF16(NaN)));
});

test('bf16ToF32 is exact and bf16 round-trips for all 65536 values', () => {
  const u = new Uint32Array(1);
  const f = new Float32Array(u.buffer);
  for (let h = 0; h < 65536; h++) {
    u[0] = h << 16;
    const want = f[0]!;
    const v = bf16ToF32(h);
    if (Number.isNaN(want)) {
      assert.ok(Number.isNaN(v));
      assert.ok(isBF16NaN(f32ToBF16(v)));
    } else {
      assert.ok(Object.is(v, want), `${hex(h, 4)}: ${v} != ${want}`);
      assert.equal(f32ToBF16(v), h, hex(h, 4));
    }
  }
  assert.equal(bf16ToF32(0x3f80), 1);
  assert.equal(bf16ToF32(0x0001), 2 ** -133); // smallest bf16 subnormal
  assert.equal(bf16ToF32(0x0080), 2 ** -126);
  assert.equal(bf16ToF32(0xff80), -Infinity);
  assert.ok(Object.is(bf16ToF32(0x8000), -0));
});

test('f32ToBF16 matches gguf BF16 quantization bit for bit (RNE, NaN quieted)', () => {
  const src = readF32(manifest.conversions.f32);
  const want = readU16(manifest.conversions.bf16.file);
  for (let i = 0; i < src.length; i++) {
    const got = f32ToBF16(src[i]!);
    if (got !== want[i]) assert.fail(`f32ToBF16(${src[i]}) = ${hex(got, 4)}, gguf ${hex(want[i]!, 4)}`);
  }
  assert.equal(f32ToBF16(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(f32ToBF16(1 + 3 * 2 ** -8), 0x3f82); // tie -> even
  assert.equal(f32ToBF16(3.4028234663852886e38), 0x7f80); // max f32 rounds up to inf
});
