// Bad input: one clear line naming the file and the problem, exit code 1, no stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GGMLType } from '../src/quant/types.js';
import { buildGGUF, type MetaValue, type TensorSpec } from './gguf-writer.js';
import { ROOT, sharedPath } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'ctxsparse-errors-'));
const CLI = join(ROOT, 'bin', 'ctxsparse.js');

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, CTXSPARSE_MODELS: dir } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectError(args: string[], ...needles: (string | RegExp)[]): void {
  const r = cli(...args);
  assert.equal(r.code, 1, `exit code for ${args.join(' ')}: ${r.code}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^error: /);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  for (const n of needles) assert.match(lines[0]!, typeof n === 'string' ? new RegExp(n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : n);
}

function file(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

// a tiny, valid llama model: dim 32, 1 layer, 1 head, vocab 4, F32 weights
function tinyModel(over: { meta?: Record<string, MetaValue | undefined>; tensors?: (t: TensorSpec[]) => TensorSpec[] } = {}): Uint8Array {
  const f32 = (n: number) => new Uint8Array(new Float32Array(n).fill(0.01).buffer);
  const D = 32, F = 32, V = 4;
  const meta: Record<string, MetaValue | undefined> = {
    'general.architecture': { type: 'str', value: 'llama' },
    'llama.block_count': { type: 'u32', value: 1 },
    'llama.context_length': { type: 'u32', value: 64 },
    'llama.embedding_length': { type: 'u32', value: D },
    'llama.feed_forward_length': { type: 'u32', value: F },
    'llama.attention.head_count': { type: 'u32', value: 1 },
    'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 },
    'tokenizer.ggml.model': { type: 'str', value: 'llama' },
    'tokenizer.ggml.tokens': { type: 'arr', elem: 'str', value: ['<unk>', '<s>', '</s>', '▁a'] },
    'tokenizer.ggml.scores': { type: 'arr', elem: 'f32', value: [0, 0, 0, -1] },
    'tokenizer.ggml.token_type': { type: 'arr', elem: 'i32', value: [2, 3, 3, 1] },
    'tokenizer.ggml.bos_token_id': { type: 'u32', value: 1 },
    'tokenizer.ggml.eos_token_id': { type: 'u32', value: 2 },
    ...over.meta,
  };
  const F32 = GGMLType.F32;
  let tensors: TensorSpec[] = [
    { name: 'token_embd.weight', dims: [D, V], type: F32, data: f32(D * V) },
    { name: 'output_norm.weight', dims: [D], type: F32, data: f32(D) },
    { name: 'blk.0.attn_norm.weight', dims: [D], type: F32, data: f32(D) },
    { name: 'blk.0.ffn_norm.weight', dims: [D], type: F32, data: f32(D) },
    ...['attn_q', 'attn_k', 'attn_v', 'attn_output'].map((n) => ({ name: `blk.0.${n}.weight`, dims: [D, D], type: F32, data: f32(D * D) })),
    { name: 'blk.0.ffn_gate.weight', dims: [D, F], type: F32, data: f32(D * F) },
    { name: 'blk.0.ffn_up.weight', dims: [D, F], type: F32, data: f32(D * F) },
    { name: 'blk.0.ffn_down.weight', dims: [F, D], type: F32, data: f32(D * F) },
  ];
  if (over.tensors) tensors = over.tensors(tensors);
  const m = Object.fromEntries(Object.entries(meta).filter(([, v]) => v !== undefined)) as Record<string, MetaValue>;
  return buildGGUF(m, tensors);
}

test('the tiny hand-built model is valid: generate runs on it', () => {
  const p = file('ok.gguf', tinyModel());
  const r = cli('generate', '-m', p, '--prompt', 'a', '--max-tokens', '2', '--temperature', '0', '--json');
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { tokens: number[]; prompt_tokens: number[] };
  assert.ok(Array.isArray(out.tokens));
});

test('wrong magic', () => {
  const p = file('magic.gguf', new TextEncoder().encode('GGML but not really a gguf file'));
  expectError(['inspect', '-m', p], p, 'not a GGUF file', 'magic');
});

test('truncated file', () => {
  const full = tinyModel();
  const p = file('trunc.gguf', full.subarray(0, 200));
  expectError(['generate', '-m', p, '--prompt', 'a'], p, 'truncated');
});

test('tensor data past the end of the file', () => {
  const full = tinyModel();
  const p = file('short-data.gguf', full.subarray(0, full.length - 64));
  expectError(['generate', '-m', p, '--prompt', 'a'], p, 'blk.0.ffn_down.weight', 'past the end of the file');
});

test('unknown tensor type', () => {
  const p = file('type.gguf', tinyModel({ tensors: (ts) => ts.map((t) => (t.name === 'blk.0.attn_q.weight' ? { ...t, type: 23 } : t)) }));
  expectError(['inspect', '-m', p], p, 'blk.0.attn_q.weight', 'IQ4_XS');
  const q = file('type2.gguf', tinyModel({ tensors: (ts) => ts.map((t) => (t.name === 'blk.0.attn_q.weight' ? { ...t, type: 77 } : t)) }));
  expectError(['inspect', '-m', q], q, 'blk.0.attn_q.weight', 'type#77');
});

test('shape mismatch', () => {
  const p = file('shape.gguf', tinyModel({ tensors: (ts) => ts.map((t) => (t.name === 'blk.0.ffn_up.weight' ? { ...t, dims: [32, 16], data: t.data.subarray(0, 32 * 16 * 4) } : t)) }));
  expectError(['generate', '-m', p, '--prompt', 'a'], p, 'blk.0.ffn_up.weight', '32x16', 'expected 32x32');
});

test('missing tensor', () => {
  const p = file('missing-tensor.gguf', tinyModel({ tensors: (ts) => ts.filter((t) => t.name !== 'blk.0.ffn_gate.weight') }));
  expectError(['generate', '-m', p, '--prompt', 'a'], p, 'missing tensor blk.0.ffn_gate.weight');
});

test('missing metadata key', () => {
  const p = file('missing-key.gguf', tinyModel({ meta: { 'llama.embedding_length': undefined } }));
  expectError(['generate', '-m', p, '--prompt', 'a'], p, 'missing metadata key llama.embedding_length');
});

test('unknown architecture', () => {
  const p = file('arch.gguf', tinyModel({ meta: { 'general.architecture': { type: 'str', value: 'mamba' } } }));
  expectError(['generate', '-m', p, '--prompt', 'a'], p, 'unsupported architecture "mamba"');
});

test('unknown model name', () => {
  expectError(['generate', '-m', 'no-such-model', '--prompt', 'a'], 'no-such-model', 'smollm2-135m-instruct');
});

test('unreadable prompt file', () => {
  const p = file('ok2.gguf', tinyModel());
  const missing = join(dir, 'nope.txt');
  expectError(['generate', '-m', p, '--file', missing], missing, 'ENOENT');
  expectError(['perplexity', '-m', p, '--file', missing], missing);
});

test('bad flag values name the flag', () => {
  const p = file('ok3.gguf', tinyModel());
  expectError(['generate', '-m', p, '--prompt', 'a', '--max-tokens', 'lots'], '--max-tokens', 'lots');
  expectError(['generate', '-m', p, '--prompt', 'a', '--top-p', '2'], '--top-p');
});

test('llama2.c checkpoint of the wrong size', () => {
  const bin = readFileSync(sharedPath('models', 'stories260K', 'stories260K.bin'));
  const p = join(dir, 'cut.bin');
  writeFileSync(p, bin.subarray(0, bin.length - 100));
  writeFileSync(join(dir, 'tok512.bin'), readFileSync(sharedPath('models', 'stories260K', 'tok512.bin')));
  expectError(['generate', '-m', p, '--prompt', 'a'], p, 'size mismatch');
});

test('head profiles: calibrate-head writes version 3 with the first stage\'s width and factor; older or mismatched profiles are refused in one line', () => {
  // a copy: the sparse head caches its screen beside the model file
  const gguf = join(dir, 'stories260K-Q8_0.gguf');
  copyFileSync(sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf'), gguf);
  const out = join(dir, 'head.json');
  const r = cli('calibrate-head', '-m', gguf, '--data', sharedPath('eval', 'tinystories', 'tinystories_val_prefix.txt'), '--tokens', '300', '-o', out, '--threads', '1');
  assert.equal(r.code, 0, r.stderr);
  const p = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown> & { screen: Record<string, unknown> };
  assert.equal(p.ctxsparse_head_profile, 3);
  assert.ok(typeof p.k_first === 'number' && typeof p.k_row === 'number' && (p.k_row as number) > 0);
  assert.equal(p.screen.first_blocks, 1); // dim 64: one block, one stage
  const gen = ['generate', '-m', gguf, '--prompt', 'Once upon a time', '--max-tokens', '4', '--temperature', '0', '--sparse-head', '--threads', '1'];
  assert.equal(cli(...gen, '--head-profile', out).code, 0);
  const old = join(dir, 'head-v2.json');
  writeFileSync(old, JSON.stringify({ ...p, ctxsparse_head_profile: 2 }));
  expectError([...gen, '--head-profile', old], old, 'previous screen format', 'calibrate-head');
  const wide = join(dir, 'head-wide.json');
  writeFileSync(wide, JSON.stringify({ ...p, screen: { ...p.screen, first_blocks: 2 } }));
  expectError([...gen, '--head-profile', wide], 'first stage of 2 blocks', 'has 1');
});
