// Tokenizers against llama.cpp's answers: the golden tokenizations of the three real models,
// llama.cpp's own test vectors (test-tokenizer-0 format) for its SPM and GPT-2 vocabularies,
// and llama2.c's stories260K tokenizer. Every mismatch is reported with the string, the
// expected ids and ours.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CtxError } from '../src/errors.js';
import { Metadata, readGGUFHeader, type GGUFValue } from '../src/formats/gguf.js';
import {
  PreTokenizer, StreamDecoder, preTokenizerSpec, tokenizerFromGGUF, tokenizerFromLlama2c, type Tokenizer,
} from '../src/tokenizer/index.js';
import { catalogModel, sharedPath } from './helpers.js';

const MODELS = ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m'] as const;

const cache = new Map<string, Tokenizer>();
function ggufTokenizer(path: string): Tokenizer {
  let t = cache.get(path);
  if (!t) {
    const h = readGGUFHeader(path);
    t = tokenizerFromGGUF(new Metadata(h.metadata, h.path));
    cache.set(path, t);
  }
  return t;
}

interface Mismatch { what: string; text: string; expected: readonly number[]; got: readonly number[] }

function same(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function report(ms: Mismatch[], total: number): string {
  return `${ms.length} of ${total} mismatches:\n` + ms.map((m) =>
    `  [${m.what}] ${JSON.stringify(m.text)}\n    expected ${JSON.stringify(m.expected)}\n    got      ${JSON.stringify(m.got)}`).join('\n');
}

interface GoldenTok { add_bos: boolean; cases: Array<{ text: string; ids_no_bos_no_special: number[]; ids_default: number[] }> }
interface GoldenGreedy { cases: Array<{ kind: string; prompt: string; prompt_ids: number[]; greedy_ids: number[]; greedy_text: string }> }

for (const name of MODELS) {
  test(`${name}: 40 golden strings tokenize exactly as llama.cpp (no BOS/no special, and default)`, () => {
    const tok = ggufTokenizer(catalogModel(name));
    const g = JSON.parse(readFileSync(sharedPath('golden', name, 'tokenizer.json'), 'utf8')) as GoldenTok;
    assert.equal(tok.addBosDefault, g.add_bos, 'BOS rule');
    const bad: Mismatch[] = [];
    for (const c of g.cases) {
      const a = tok.encode(c.text, { addBos: false, parseSpecial: false });
      if (!same(a, c.ids_no_bos_no_special)) bad.push({ what: 'addBos false, parseSpecial false', text: c.text, expected: c.ids_no_bos_no_special, got: a });
      const b = tok.encode(c.text);
      if (!same(b, c.ids_default)) bad.push({ what: 'default', text: c.text, expected: c.ids_default, got: b });
    }
    assert.equal(bad.length, 0, report(bad, 2 * g.cases.length));
  });

  test(`${name}: greedy-run prompts encode to llama.cpp's prompt ids and greedy ids decode to its text`, () => {
    const tok = ggufTokenizer(catalogModel(name));
    const g = JSON.parse(readFileSync(sharedPath('golden', name, 'greedy.json'), 'utf8')) as GoldenGreedy;
    const bad: Mismatch[] = [];
    for (const c of g.cases) {
      const ids = tok.encode(c.prompt);
      if (!same(ids, c.prompt_ids)) bad.push({ what: c.kind, text: c.prompt, expected: c.prompt_ids, got: ids });
      // the run stops at an end-of-generation token, which the golden text leaves out
      assert.equal(tok.decode(c.greedy_ids.filter((id) => !tok.eog.has(id))), c.greedy_text, `decode of the greedy ids after ${JSON.stringify(c.prompt)}`);
    }
    assert.equal(bad.length, 0, report(bad, g.cases.length));
  });

  test(`${name}: decode(encode(s)) === s on the golden strings`, () => {
    const tok = ggufTokenizer(catalogModel(name));
    const g = JSON.parse(readFileSync(sharedPath('golden', name, 'tokenizer.json'), 'utf8')) as GoldenTok;
    for (const c of g.cases) {
      assert.equal(tok.decode(tok.encode(c.text, { addBos: false })), c.text);
      assert.equal(tok.decode(tok.encode(c.text, { addBos: false, parseSpecial: false })), c.text);
    }
    // with the model's BOS rule, skipSpecial drops the BOS again
    const plain = 'Once upon a time, there was a little girl named Lily.';
    assert.equal(tok.decode(tok.encode(plain), { skipSpecial: true }), plain);
  });
}

/** llama.cpp's test-tokenizer-0 files: inputs separated by "\n__ggml_vocab_test__\n", one line of ids per input. */
function readVocabTests(base: string): Array<{ text: string; ids: number[] }> {
  const raw = readFileSync(`${base}.inp`, 'utf8');
  const sep = '\n__ggml_vocab_test__\n';
  const inputs: string[] = [];
  for (let pos = 0; pos < raw.length;) {
    const next = raw.indexOf(sep, pos);
    if (next < 0) { inputs.push(raw.slice(pos)); break; }
    inputs.push(raw.slice(pos, next));
    pos = next + sep.length;
  }
  const lines = readFileSync(`${base}.out`, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  assert.equal(inputs.length, lines.length, `${base}: ${inputs.length} inputs but ${lines.length} output lines`);
  return inputs.map((text, i) => ({ text, ids: lines[i]!.trim() === '' ? [] : lines[i]!.trim().split(' ').map(Number) }));
}

for (const v of ['llama-spm', 'gpt-2']) {
  test(`llama.cpp vocab ${v}: every test-tokenizer-0 vector matches`, () => {
    const base = sharedPath('tokenizers', 'llama.cpp-vocab', `ggml-vocab-${v}.gguf`);
    const tok = ggufTokenizer(base);
    const cases = readVocabTests(base);
    assert.ok(cases.length >= 40);
    const bad: Mismatch[] = [];
    for (const c of cases) {
      // test-tokenizer-0 tokenizes with add_special = false, parse_special = false
      const got = tok.encode(c.text, { addBos: false, parseSpecial: false });
      if (!same(got, c.ids)) bad.push({ what: v, text: c.text, expected: c.ids, got });
    }
    assert.equal(bad.length, 0, report(bad, cases.length));
  });
}

test('llama.cpp vocab gpt-2: decode cleans spaces before punctuation as llama.cpp does (clean_spaces)', () => {
  const tok = ggufTokenizer(sharedPath('tokenizers', 'llama.cpp-vocab', 'ggml-vocab-gpt-2.gguf'));
  assert.equal(tok.decode(tok.encode("Hello , world ! It 's")), "Hello, world! It's");
});

interface StoriesGolden { prompt: string; prompt_ids: number[]; greedy_ids: number[]; greedy_text: string }

test('stories260K: tok512.bin (llama2.c format) encodes the prompt with BOS and dummy prefix, decodes the greedy ids', () => {
  const g = JSON.parse(readFileSync(sharedPath('golden', 'stories260K_golden.json'), 'utf8')) as StoriesGolden;
  const tok = tokenizerFromLlama2c(sharedPath('models', 'stories260K', 'tok512.bin'));
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.bos, 1);
  assert.equal(tok.eos, 2);
  assert.equal(tok.addBosDefault, true);
  assert.deepEqual([...tok.eog], [2]);
  assert.deepEqual(tok.encode(g.prompt), g.prompt_ids, `encode ${JSON.stringify(g.prompt)}`);
  // the prompt after BOS, then the generated ids: the leading space of " Once" is dropped
  assert.equal(tok.decode([...g.prompt_ids.slice(1), ...g.greedy_ids]), g.greedy_text);
  const gg = ggufTokenizer(sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf'));
  assert.deepEqual(gg.encode(g.prompt), g.prompt_ids, 'the GGUF with the same vocab');
});

test('stories260K: the llama2.c tokenizer and the GGUF-embedded vocab agree on TinyStories text', () => {
  const a = tokenizerFromLlama2c(sharedPath('models', 'stories260K', 'tok512.bin'));
  const b = ggufTokenizer(sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf'));
  for (let i = 0; i < 512; i++) assert.equal(a.tokenText(i), b.tokenText(i), `token ${i}`);
  const lines = readFileSync(sharedPath('eval', 'tinystories', 'tinystories_val_prefix.txt'), 'utf8').split('\n').slice(0, 400);
  const bad: Mismatch[] = [];
  for (const l of lines) {
    const x = a.encode(l), y = b.encode(l);
    if (!same(x, y)) bad.push({ what: 'tok512.bin vs GGUF', text: l, expected: y, got: x });
    assert.equal(a.decode(x, { skipSpecial: true }).trimStart(), l.trimStart());
  }
  assert.equal(bad.length, 0, report(bad, lines.length));
});

test('special tokens: model facts (BOS/EOS, end-of-generation set, control tokens, pieces)', () => {
  const smol = ggufTokenizer(catalogModel('smollm2-135m-instruct'));
  assert.equal(smol.bos, 1);
  assert.equal(smol.eos, 2);
  for (const id of [0, 2]) assert.ok(smol.eog.has(id), `smollm2 eog has ${id} ${smol.tokenText(id)}`);
  const qwen = ggufTokenizer(catalogModel('qwen2.5-coder-0.5b-instruct'));
  assert.equal(qwen.eos, 151645);
  for (const id of [151643, 151645]) assert.ok(qwen.eog.has(id), `qwen eog has ${id} ${qwen.tokenText(id)}`);
  assert.ok(!qwen.eog.has(151644), '<|im_start|> does not end generation');
  assert.ok(qwen.isControl(151644));
  assert.equal(new TextDecoder().decode(qwen.tokenBytes(151645)), '<|im_end|>');
  assert.equal(qwen.decode([151644, 872, 198], { skipSpecial: true }), 'user\n');
  assert.equal(qwen.decode([151644, 872, 198]), '<|im_start|>user\n');
  const gemma = ggufTokenizer(catalogModel('gemma-3-270m'));
  assert.equal(gemma.bos, 2);
  assert.equal(gemma.eos, 1);
  assert.equal(gemma.vocabSize, 262144);
  for (const id of [1, 106]) assert.ok(gemma.eog.has(id), `gemma eog has ${id} ${gemma.tokenText(id)}`);
  assert.equal(gemma.tokenText(106), '<end_of_turn>');
  // byte tokens stand for their byte
  assert.deepEqual([...gemma.tokenBytes(gemma.encode('\u0007', { addBos: false })[0]!)], [7]);
  // parseSpecial false: control text is plain text
  assert.deepEqual(qwen.encode('<|im_end|>'), [151645]);
  assert.ok(qwen.encode('<|im_end|>', { parseSpecial: false }).length > 1);
});

function fakeMeta(entries: Record<string, GGUFValue>, path = '/models/fake.gguf'): Metadata {
  return new Metadata(new Map(Object.entries(entries)), path);
}

test('unsupported tokenizer.ggml.model or .pre: a one-line CtxError naming the file and the value', () => {
  const base = { 'tokenizer.ggml.tokens': ['a', 'b', 'c'], 'tokenizer.ggml.merges': ['a b'] };
  assert.throws(() => tokenizerFromGGUF(fakeMeta({ ...base, 'tokenizer.ggml.model': 'bert' })), (e: unknown) => {
    assert.ok(e instanceof CtxError, 'a CtxError');
    assert.match(e.message, /\/models\/fake\.gguf/);
    assert.match(e.message, /"bert"/);
    assert.match(e.message, /tokenizer\.ggml\.model/);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
  assert.throws(() => tokenizerFromGGUF(fakeMeta({ ...base, 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'klingon-7b' })), (e: unknown) => {
    assert.ok(e instanceof CtxError);
    assert.match(e.message, /\/models\/fake\.gguf/);
    assert.match(e.message, /"klingon-7b"/);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
  assert.throws(() => tokenizerFromGGUF(fakeMeta({ 'tokenizer.ggml.tokens': ['a'] })), CtxError, 'missing tokenizer.ggml.model');
});

test('a tiny hand-made BPE vocabulary: merges by rank, pre-tokenizer splits, special tokens', () => {
  const chars = 'abcdefghijklmnopqrstuvwxyz ĠĊ'.split('');
  const tokens = [...chars, 'ab', 'abc', 'Ġa', 'Ġab', '<|x|>', '<|xy|>'];
  const types = tokens.map((t) => (t.startsWith('<|') ? 3 : 1));
  const tok = tokenizerFromGGUF(fakeMeta({
    'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'gpt-2', 'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.token_type': Int32Array.from(types), 'tokenizer.ggml.merges': ['a b', 'Ġ a', 'ab c', 'Ġa b'],
    'tokenizer.ggml.eos_token_id': tokens.indexOf('<|x|>'),
  }));
  const id = (t: string) => tokens.indexOf(t);
  // lowest rank first: in " ab", a+b (rank 0) wins over Ġ+a (rank 1), and "Ġ ab" is no merge
  assert.deepEqual(tok.encode('abc ab'), [id('abc'), id('Ġ'), id('ab')]);
  assert.deepEqual(tok.encode(' a'), [id('Ġa')]);
  assert.deepEqual(tok.encode('ab<|xy|>c<|x|>'), [id('ab'), id('<|xy|>'), id('c'), id('<|x|>')]);
  // as plain text; '<', '|', '>' are not in this vocabulary, so (as in llama.cpp) they vanish
  assert.deepEqual(tok.encode('<|x|>', { parseSpecial: false }), [id('x')]);
  assert.ok(tok.eog.has(id('<|x|>')));
  assert.equal(tok.decode(tok.encode('abc ab<|x|>')), 'abc ab<|x|>');
});

test('pre-tokenizers split like llama.cpp: whitespace runs, digits, contractions, newlines', () => {
  const split = (pre: string, s: string) => new PreTokenizer(preTokenizerSpec(pre)!.patterns).split(s);
  // \s+(?!\S): a whitespace run before a word leaves its last space to the word
  assert.deepEqual(split('gpt-2', 'a   b'), ['a', '  ', ' b']);
  assert.deepEqual(split('gpt-2', "I'm  fine\n"), ['I', "'m", ' ', ' fine', '\n']);
  // smollm: every digit on its own, the gaps as chunks of their own
  assert.deepEqual(split('smollm', 'x 123'), ['x', ' ', '1', '2', '3']);
  // llama3: digits in threes, case-insensitive contractions, \s*[\r\n]+
  assert.deepEqual(split('llama3', "12345 DON'T\n\n  x"), ['123', '45', ' DON', "'T", '\n\n', ' ', ' x']);
  // qwen2: single digits
  assert.deepEqual(split('qwen2', 'a1234'), ['a', '1', '2', '3', '4']);
  // U+0085 is whitespace to llama.cpp, U+FEFF is not (JS \s says the opposite)
  assert.deepEqual(split('gpt-2', 'a\u0085b'), ['a', '\u0085', 'b']);
  assert.deepEqual(split('gpt-2', 'a \ufeffb'), ['a', ' \ufeff', 'b']);
});

test('StreamDecoder: characters split across byte tokens come out whole, once complete', () => {
  const spm = ggufTokenizer(sharedPath('tokenizers', 'llama.cpp-vocab', 'ggml-vocab-llama-spm.gguf'));
  const qwen = ggufTokenizer(catalogModel('qwen2.5-coder-0.5b-instruct'));
  const gemma = ggufTokenizer(catalogModel('gemma-3-270m'));
  const cases: Array<[Tokenizer, string]> = [
    [spm, '🙂😀🚀 emoji 👍🏽'], // SPM byte fallback: <0xF0><0x9F><0x99><0x82> …
    [spm, '𝄞 and 龘'],
    [qwen, '👨\u200d👩\u200d👧\u200d👦 and 龘靐齉 𠀋'], // byte-level BPE pieces that end mid-character
    [gemma, '你好，世界！𝕏 🦜 ꙮ'],
  ];
  let held = 0;
  for (const [tok, text] of cases) {
    const ids = tok.encode(text, { addBos: false });
    const d = new StreamDecoder(tok);
    let out = '';
    const all: number[] = [];
    for (const id of ids) {
      const piece = d.push(id);
      assert.ok(!/[\ud800-\udbff]$/.test(piece) && !piece.includes('\ufffd'), `no broken character in ${JSON.stringify(piece)}`);
      if (tok.tokenBytes(id).length > 0 && piece === '') held++;
      all.push(...tok.tokenBytes(id));
      out += piece;
    }
    out += d.flush();
    assert.equal(out, new TextDecoder().decode(Uint8Array.from(all)), `streamed text of ${JSON.stringify(text)}`);
    assert.ok(out.endsWith(text), `${JSON.stringify(out)} ends with ${JSON.stringify(text)}`);
  }
  assert.ok(held > 0, 'some tokens were partial characters and were held back');

  // the exact hold-back: F0 9F 99 82 (🙂) as four byte tokens (<0xXX> is id 3 + XX in this vocab)
  const byteTok = (b: number) => {
    assert.equal(spm.tokenText(3 + b), `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    return 3 + b;
  };
  const d = new StreamDecoder(spm);
  assert.equal(d.push(byteTok(0xf0)), '');
  assert.equal(d.push(byteTok(0x9f)), '');
  assert.equal(d.push(byteTok(0x99)), '');
  assert.equal(d.push(byteTok(0x82)), '🙂');
  assert.equal(d.push(byteTok(0xe4)), '');
  assert.equal(d.flush(), '\ufffd', 'an unfinished character at the end becomes U+FFFD');
  // skipSpecial: control tokens render as nothing
  const q = new StreamDecoder(qwen, { skipSpecial: true });
  assert.equal(q.push(151644) + q.push(872) + q.flush(), 'user');
});
