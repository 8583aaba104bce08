// The CLI's JSON contracts and behaviour, on the tiny stories260K files (fast).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, catalogModel, sharedPath } from './helpers.js';

const CLI = join(ROOT, 'bin', 'ctxsparse.js');
const BIN = sharedPath('models', 'stories260K', 'stories260K.bin');
const GGUF = sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf');

function run(...args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

test('generate --json: prompt_tokens, tokens, text, tokens_per_second (and top_logits with --top-logits)', () => {
  const out = JSON.parse(run('generate', '-m', BIN, '--prompt', 'Once upon a time', '--max-tokens', '12', '--temperature', '0', '--json', '--top-logits', '3'));
  assert.deepEqual(Object.keys(out).sort(), ['prompt_tokens', 'text', 'tokens', 'tokens_per_second', 'top_logits']);
  assert.deepEqual(out.prompt_tokens, [1, 403, 407, 261, 378]);
  assert.equal(out.tokens.length, 12);
  assert.equal(out.top_logits.length, 12);
  for (const [j, t] of out.top_logits.entries()) {
    assert.equal(t.ids.length, 3);
    assert.equal(t.ids[0], out.tokens[j], 'greedy picks the top logit');
    assert.ok(t.logits[0] >= t.logits[1] && t.logits[1] >= t.logits[2]);
  }
  assert.ok(out.text.startsWith(', there was a little girl'), out.text);
  assert.ok(out.tokens_per_second > 0);
});

test('generate: the same seed gives the same text, streamed to stdout', () => {
  const args = ['generate', '-m', GGUF, '--prompt', 'Once upon a time', '--max-tokens', '40', '--temperature', '1', '--top-p', '0.9', '--seed', '1234'];
  const a = run(...args);
  assert.equal(a, run(...args));
  assert.notEqual(a, run(...args.slice(0, -1), '99'));
});

test('tokenize --json with and without BOS and special-token parsing', () => {
  assert.deepEqual(JSON.parse(run('tokenize', '-m', GGUF, '--text', 'Once upon a time', '--json')), { ids: [1, 403, 407, 261, 378] });
  assert.deepEqual(JSON.parse(run('tokenize', '-m', GGUF, '--text', 'Once upon a time', '--no-bos', '--json')), { ids: [403, 407, 261, 378] });
  const special = JSON.parse(run('tokenize', '-m', GGUF, '--text', '<s>', '--no-bos', '--json')).ids;
  const plain = JSON.parse(run('tokenize', '-m', GGUF, '--text', '<s>', '--no-bos', '--no-special', '--json')).ids;
  assert.deepEqual(special, [1]);
  assert.ok(plain.length > 1 && !plain.includes(1));
});

test('perplexity --json: ppl, chunks, ctx, tokens (llama.cpp method)', () => {
  const out = JSON.parse(run('perplexity', '-m', sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf'), '-f', sharedPath('eval', 'tinystories', 'tinystories_val_prefix.txt'), '--ctx', '128', '--chunks', '40', '--json'));
  assert.equal(out.chunks, 40);
  assert.equal(out.ctx, 128);
  assert.equal(out.tokens, 40 * 128);
  assert.equal(out.scored, 40 * (128 - 1 - 64));
  // a sanity range only (llama.cpp gives 4.9693 over all 3070 chunks; the first 40 are easier);
  // test/perplexity.test.ts checks the full figure
  assert.ok(out.ppl > 3 && out.ppl < 6.5, String(out.ppl));
});

test('perplexity --sparse-head --json: the dense perplexity, plus the sparse head compared at every scored position', () => {
  const args = ['perplexity', '-m', sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf'), '-f', sharedPath('eval', 'tinystories', 'tinystories_val_prefix.txt'), '--ctx', '128', '--chunks', '6', '--threads', '1', '--json'];
  const dense = JSON.parse(run(...args));
  const out = JSON.parse(run(...args, '--sparse-head'));
  assert.equal(out.ppl, dense.ppl);
  assert.equal(dense.sparse_head, undefined);
  const h = out.sparse_head;
  assert.equal(h.positions, out.scored);
  assert.ok(h.equal <= h.positions && h.share === h.equal / h.positions);
  assert.ok(h.rescored.median >= 1 && h.rescored.p99 <= 512 && h.head_bytes_ratio > 0.5);
});

test('inspect shows metadata, types and tensors', () => {
  const txt = run('inspect', '-m', GGUF, '--tensors');
  assert.match(txt, /llama\.embedding_length\s+UINT32\s+64/);
  assert.match(txt, /Q8_0/);
  assert.match(txt, /blk\.4\.ffn_down\.weight\s+F16\s+172x64/);
  const j = JSON.parse(run('inspect', '-m', GGUF, '--json'));
  assert.equal(j.tensors.length, 48);
  assert.equal(j.metadata['general.architecture'], 'llama');
});

test('--help documents every command', () => {
  const help = run('--help');
  for (const c of ['pull', 'models', 'inspect', 'tokenize', 'generate', 'chat', 'perplexity', 'bench']) assert.match(help, new RegExp(`\\b${c}\\b`));
});

test('chat: multi-turn over a pipe, /reset, ends at the end of input', () => {
  const r = spawnSync(process.execPath, [CLI, 'chat', '-m', catalogModel('smollm2-135m-instruct'), '--max-tokens', '4', '--temperature', '0'], { encoding: 'utf8', input: 'Hi\nWhat is 2+2?\n/reset\nHi\n' });
  assert.equal(r.status, 0, r.stderr);
  const answers = r.stdout.split('\n').filter((l) => l.replace(/^(> )+/, '').trim().length > 0);
  assert.equal(answers.length, 3, r.stdout);
  // after /reset the same first message gets the same greedy answer
  assert.equal(answers[2]!.replace(/^(> )+/, ''), answers[0]!.replace(/^(> )+/, ''));
});

test('generate: the sparse head is the default where the output layer is a large share of the file; --exact, --top-logits and tiny heads stay dense', () => {
  const m = catalogModel('smollm2-135m-instruct');
  const args = ['generate', '-m', m, '--prompt', 'The capital of France is', '--max-tokens', '16', '--temperature', '0', '--json', '--threads', '1'];
  const sparse = JSON.parse(run(...args));
  assert.equal(sparse.sparse_head.steps, 16);
  assert.ok(sparse.sparse_head.rows.median < 49152 / 10, JSON.stringify(sparse.sparse_head));
  const dense = JSON.parse(run(...args, '--exact'));
  assert.equal(dense.sparse_head, undefined);
  assert.deepEqual(sparse.tokens, dense.tokens);
  assert.equal(JSON.parse(run(...args, '--top-logits', '2')).sparse_head, undefined);
  const r = spawnSync(process.execPath, [CLI, ...args, '--top-logits', '2', '--sparse-head'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--top-logits needs every logit exact/);
  // stories260K's output layer is 13% of its file: dense unless asked
  assert.equal(JSON.parse(run('generate', '-m', GGUF, '--prompt', 'Once', '--max-tokens', '2', '--temperature', '0', '--json')).sparse_head, undefined);
});

test('chat on a model without a chat template fails with one clear line', () => {
  const r = spawnSync(process.execPath, [CLI, 'chat', '-m', BIN], { encoding: 'utf8', input: 'hello\n' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /no chat template/);
});
