// The GGUF reader on hand-built files: every metadata value type, nested arrays, v2 and v3,
// alignment, tensor infos; and on the real files.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Metadata, readGGUFData, readGGUFHeader } from '../src/formats/gguf.js';
import { GGMLType } from '../src/quant/types.js';
import { buildGGUF, type MetaValue } from './gguf-writer.js';
import { catalogModel, sharedPath } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'ctxsparse-gguf-'));

const everyType: Record<string, MetaValue> = {
  'a.u8': { type: 'u8', value: 250 },
  'a.i8': { type: 'i8', value: -100 },
  'a.u16': { type: 'u16', value: 65000 },
  'a.i16': { type: 'i16', value: -32000 },
  'a.u32': { type: 'u32', value: 4000000000 },
  'a.i32': { type: 'i32', value: -2000000000 },
  'a.f32': { type: 'f32', value: 0.5 },
  'a.f64': { type: 'f64', value: Math.PI },
  'a.u64': { type: 'u64', value: 12345678901234n },
  'a.u64big': { type: 'u64', value: 2n ** 63n + 5n },
  'a.i64': { type: 'i64', value: -9876543210n },
  'a.bool': { type: 'bool', value: true },
  'a.str': { type: 'str', value: 'héllo ▁ 🌍' },
  'a.strs': { type: 'arr', elem: 'str', value: ['x', '', 'zz'] },
  'a.f32s': { type: 'arr', elem: 'f32', value: [1, -2.5, 3] },
  'a.i32s': { type: 'arr', elem: 'i32', value: [-1, 2, -3] },
  'a.u8s': { type: 'arr', elem: 'u8', value: [1, 2, 255] },
  'a.nested': { type: 'arr', elem: 'arr', value: [{ type: 'arr', elem: 'i32', value: [1, 2] }, { type: 'arr', elem: 'str', value: ['q'] }] },
  'general.alignment': { type: 'u32', value: 64 },
};

for (const version of [2, 3]) {
  test(`GGUF v${version}: every metadata value type, arrays, alignment and tensor data`, () => {
    const w = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]).buffer);
    const h16 = Uint8Array.from([0x00, 0x3c, 0x00, 0xc0]); // f16 1, -2
    const p = join(dir, `v${version}.gguf`);
    writeFileSync(p, buildGGUF(everyType, [
      { name: 'w', dims: [4, 2], type: GGMLType.F32, data: w },
      { name: 'h', dims: [2], type: GGMLType.F16, data: h16 },
    ], { version, alignment: 64 }));
    const h = readGGUFHeader(p);
    assert.equal(h.version, version);
    assert.equal(h.alignment, 64);
    assert.equal(h.dataOffset % 64, 0);
    const m = h.metadata;
    assert.equal(m.get('a.u8'), 250);
    assert.equal(m.get('a.i8'), -100);
    assert.equal(m.get('a.u16'), 65000);
    assert.equal(m.get('a.i16'), -32000);
    assert.equal(m.get('a.u32'), 4000000000);
    assert.equal(m.get('a.i32'), -2000000000);
    assert.equal(m.get('a.f32'), 0.5);
    assert.equal(m.get('a.f64'), Math.PI);
    assert.equal(m.get('a.u64'), 12345678901234);
    assert.equal(m.get('a.u64big'), 2n ** 63n + 5n);
    assert.equal(m.get('a.i64'), -9876543210);
    assert.equal(m.get('a.bool'), true);
    assert.equal(m.get('a.str'), 'héllo ▁ 🌍');
    assert.deepEqual(m.get('a.strs'), ['x', '', 'zz']);
    assert.deepEqual(Array.from(m.get('a.f32s') as Float32Array), [1, -2.5, 3]);
    assert.deepEqual(Array.from(m.get('a.i32s') as Int32Array), [-1, 2, -3]);
    assert.deepEqual(Array.from(m.get('a.u8s') as Uint8Array), [1, 2, 255]);
    const nested = m.get('a.nested') as unknown[];
    assert.deepEqual(Array.from(nested[0] as Int32Array), [1, 2]);
    assert.deepEqual(nested[1], ['q']);
    assert.equal(h.metadataTypes.get('a.nested'), 'ARRAY<ARRAY>');
    const meta = new Metadata(m, p);
    assert.throws(() => meta.number('a.str'), /a\.str should be a number/);
    assert.throws(() => meta.string('nope'), /missing metadata key nope/);

    assert.deepEqual(h.tensors.map((t) => [t.name, t.type.name, t.dims, t.nBytes]), [['w', 'F32', [4, 2], 32], ['h', 'F16', [2], 4]]);
    const data = readGGUFData(h);
    const t = h.tensorsByName.get('w')!;
    assert.deepEqual(Array.from(new Float32Array(data.buffer, data.byteOffset + t.offset, 8)), [1, 2, 3, 4, 5, 6, 7, 8]);
  });
}

test('duplicate keys, bad alignment, misaligned and overlapping tensors are rejected by name', () => {
  const f32 = new Uint8Array(32);
  const write = (name: string, bytes: Uint8Array) => { const p = join(dir, name); writeFileSync(p, bytes); return p; };
  const bad = buildGGUF({ 'general.alignment': { type: 'u32', value: 48 } }, []);
  assert.throws(() => readGGUFHeader(write('align.gguf', bad)), /general\.alignment is 48, expected a power of two/);
  const mis = buildGGUF({}, [{ name: 'x', dims: [8], type: GGMLType.F32, data: f32, offset: 4 }]);
  assert.throws(() => readGGUFHeader(write('mis.gguf', mis)), /tensor x: data offset 4 is not aligned to 32/);
  const overlap = buildGGUF({}, [{ name: 'x', dims: [8], type: GGMLType.F32, data: f32 }, { name: 'y', dims: [8], type: GGMLType.F32, data: f32, offset: 0 }]);
  assert.throws(() => readGGUFHeader(write('overlap.gguf', overlap)), /tensors x and y overlap/);
  const ragged = buildGGUF({}, [{ name: 'q', dims: [31], type: GGMLType.Q8_0, data: new Uint8Array(34) }]);
  assert.throws(() => readGGUFHeader(write('ragged.gguf', ragged)), /tensor q: row length 31 is not a multiple of the Q8_0 block size 32/);
  const v1 = buildGGUF({}, [], { version: 1 });
  assert.throws(() => readGGUFHeader(write('v1.gguf', v1)), /GGUF version 1 is not supported/);
});

test('real files: tensor tables and sizes add up', () => {
  for (const p of [catalogModel('smollm2-135m-instruct'), catalogModel('qwen2.5-coder-0.5b-instruct'), catalogModel('gemma-3-270m'), sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q4_0.gguf'), sharedPath('tokenizers', 'llama.cpp-vocab', 'ggml-vocab-gpt-2.gguf')]) {
    const h = readGGUFHeader(p);
    assert.ok(h.version === 2 || h.version === 3, p);
    if (h.tensors.length === 0) continue; // vocabulary-only files end before the aligned data offset
    assert.ok(h.dataOffset + h.dataSize <= h.fileSize, p);
    assert.ok(h.fileSize - (h.dataOffset + h.dataSize) < h.alignment, `${p}: no unexplained tail`);
  }
});
