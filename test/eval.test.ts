// The evaluation harness on stories260K (fast): the lm-eval continuation split and scoring against
// a direct forward pass, acc vs acc_norm, task file parsing and its errors, LAMBADA, agreement
// with dense, and the CLI's table, JSON and errors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CtxError } from '../src/errors.js';
import { continuationText, scoreLambada, scoreMc, splitContinuation, encodeEval } from '../src/eval/choice.js';
import { Evaluator, mergeDensity, type McTaskResult } from '../src/eval/harness.js';
import { logProb, perplexity } from '../src/eval/perplexity.js';
import { loadTask, parseTaskList, taskFile } from '../src/eval/tasks.js';
import { loadModel, loadTokenizer } from '../src/model/load.js';
import { calibrate } from '../src/sparsity/calibrate.js';
import { densePolicy, fromProfile } from '../src/sparsity/index.js';
import { catalogModel, fixturePath, ROOT, sharedPath } from './helpers.js';

const F32 = sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf');
const CLI = join(ROOT, 'bin', 'ctxsparse.js');
const fx = (name: string) => fixturePath('eval', name);
const model = loadModel(F32, { threads: 1 });
const V = model.config.vocabSize;

/** Σ log p(cont | before) straight from one forward pass over context + continuation. */
function direct(ctx: number[], cont: number[]): { lp: number; greedy: boolean } {
  const f = model.createForward(128);
  const kv = model.createCache(256);
  const all = [...ctx, ...cont];
  const logits = f.run(kv, all, 0, 'all')!;
  let lp = 0;
  let greedy = true;
  for (let i = 0; i < cont.length; i++) {
    const row = ctx.length - 1 + i;
    lp += logProb(logits, row * V, V, cont[i]!);
    const r = logits.subarray(row * V, (row + 1) * V);
    if (r.indexOf(Math.max(...r)) !== cont[i]) greedy = false;
  }
  return { lp, greedy };
}

test('continuation text: a space before the choice unless the query ends in whitespace', () => {
  assert.equal(continuationText('He saw a', 'dog'), ' dog');
  assert.equal(continuationText('Question: why?\n', 'Because.'), 'Because.');
  assert.equal(continuationText('ends with space ', 'x'), 'x');
});

test('continuation split: tokens of the whole string after tokenize(context), BOS by the model rule', () => {
  const tok = model.tokenizer;
  assert.equal(tok.addBosDefault, true);
  const s = splitContinuation(tok, 'Tom went to the park. He saw a big', ' dog');
  const whole = encodeEval(tok, 'Tom went to the park. He saw a big dog');
  assert.equal(s.context[0], tok.bos);
  assert.deepEqual([...s.context, ...s.continuation], whole);
  assert.deepEqual(s.continuation, whole.slice(encodeEval(tok, 'Tom went to the park. He saw a big').length));
  // trailing whitespace of the query moves into the continuation: the continuation is never empty,
  // and the context does not end in a lone space token the whole string never has
  const t = splitContinuation(tok, 'She liked to ', 'play');
  assert.deepEqual(t.context, encodeEval(tok, 'She liked to'));
  assert.deepEqual([...t.context, ...t.continuation], encodeEval(tok, 'She liked to play'));
  assert.ok(t.continuation.length > 0);
});

test('continuation split on byte-level BPE (SmolLM2): the whole decides merges across the boundary', () => {
  const tok = loadTokenizer(catalogModel('smollm2-135m-instruct'));
  const ctx = 'The price is $';
  const s = splitContinuation(tok, ctx, '100');
  const whole = encodeEval(tok, ctx + '100');
  assert.deepEqual(s.continuation, whole.slice(encodeEval(tok, ctx).length));
  assert.equal(tok.decode(s.continuation), '100');
  // no space added after a newline, and the newline stays with the continuation's text
  const q = splitContinuation(tok, 'Question: How?\n', continuationText('Question: How?\n', 'Like this.'));
  assert.equal(tok.decode([...q.context, ...q.continuation], { skipSpecial: true }), 'Question: How?\nLike this.');
});

test('multiple choice scores equal a direct forward pass over context + continuation (prefix reuse, one batch per choice)', () => {
  const f = model.createForward(64);
  const kv = model.createCache(256);
  const task = loadTask(fx('mc_tiny.jsonl'));
  assert.equal(task.data.kind, 'multiple_choice');
  if (task.data.kind !== 'multiple_choice') return;
  for (const item of task.data.items) {
    const p = scoreMc(f, kv, model.tokenizer, V, item);
    item.choices.forEach((c, i) => {
      const s = splitContinuation(model.tokenizer, item.query, continuationText(item.query, c));
      const d = direct(s.context, s.continuation);
      assert.ok(Math.abs(d.lp - p.logprobs[i]!) < 1e-3, `${item.query} / ${c}: ${p.logprobs[i]} vs direct ${d.lp}`);
      assert.equal(p.bytes[i], Buffer.byteLength(continuationText(item.query, c)));
    });
    const best = (xs: number[]) => xs.indexOf(Math.max(...xs));
    assert.equal(p.pred, best(p.logprobs));
    assert.equal(p.predNorm, best(p.logprobs.map((l, i) => l / p.bytes[i]!)));
  }
});

test('acc and acc_norm pick different answers on a crafted item (short vs long choices)', () => {
  const f = model.createForward(64);
  const kv = model.createCache(256);
  const task = loadTask(fx('mc_tiny.jsonl'));
  if (task.data.kind !== 'multiple_choice') throw new Error('shape');
  const item = task.data.items[0]!; // "He saw a big" → dog / tree with red apples on it / car / ball that was very big and red
  const p = scoreMc(f, kv, model.tokenizer, V, item);
  assert.notEqual(p.pred, p.predNorm, `pred ${p.pred}, predNorm ${p.predNorm}`);
  // the summed score favours a short choice, the per-byte score a long one
  assert.ok(p.bytes[p.pred]! < p.bytes[p.predNorm]!);
  const r = new Evaluator(model, 'stories260K').evaluate([{ ...task, data: { kind: 'multiple_choice', items: [item] } }], undefined, { bench: { nGen: 0, reps: 1, dense: true, sparse: true } });
  const t = r.tasks.mc_tiny as McTaskResult;
  assert.equal(t.n, 1);
  assert.equal(t.acc, p.pred === item.gold ? 100 : 0);
  assert.equal(t.acc_norm, p.predNorm === item.gold ? 100 : 0);
  assert.notEqual(t.acc, t.acc_norm);
});

test('HellaSwag 6-line files parse (by name or shape), and bad files fail naming file and line', () => {
  const t = loadTask(fx('hellaswag_tiny.txt'));
  assert.equal(t.name, 'hellaswag_tiny');
  assert.equal(t.data.kind, 'multiple_choice');
  if (t.data.kind !== 'multiple_choice') return;
  assert.equal(t.data.items.length, 2);
  assert.deepEqual(t.data.items[0], { query: 'Lily and her mom went to the park. They', gold: 1, choices: ['ate the sky.', 'played on the swings.', 'flew a blue car.', 'was happy the dog.'] });
  assert.equal(t.data.items[1]!.gold, 0);
  const bad: [string, RegExp][] = [
    ['bad_hellaswag.txt', /bad_hellaswag\.txt:8: expected the gold ending index 0–3, got "x"/],
    ['bad_gold.jsonl', /bad_gold\.jsonl:2: "gold" must be an index into choices \(0–1\), got 2/],
    ['bad_json.jsonl', /bad_json\.jsonl:3: not valid JSON/],
  ];
  for (const [file, re] of bad) assert.throws(() => loadTask(fx(file)), (e: Error) => e instanceof CtxError && re.test(e.message) && !e.message.includes('\n'), file);
});

test('unknown task names are a clear error; built-in names resolve to the shared files', () => {
  assert.throws(() => parseTaskList('wikitext,hellaswg'), (e: Error) => e instanceof CtxError && /unknown task "hellaswg" \(known: wikitext, tinystories, hellaswag, arc_easy/.test(e.message));
  assert.throws(() => parseTaskList('piqa,piqa'), /listed twice/);
  assert.match(taskFile('openbookqa').file, /eval\/tasks\/openbook_qa\.jsonl$/);
  assert.match(taskFile('lambada').file, /eval\/tasks\/lambada_openai\.jsonl$/);
  assert.throws(() => loadTask('/nonexistent/x.jsonl'), (e: Error) => e instanceof CtxError && /cannot read \/nonexistent\/x\.jsonl: ENOENT/.test(e.message));
});

test('LAMBADA: acc is "every continuation token is the greedy one", ppl = exp(−mean summed log-prob)', () => {
  const f = model.createForward(64);
  const kv = model.createCache(256);
  const task = loadTask(fx('lambada_tiny.jsonl'));
  if (task.data.kind !== 'lambada') throw new Error('shape');
  let hits = 0;
  let lp = 0;
  for (const item of task.data.items) {
    const s = scoreLambada(f, kv, model.tokenizer, V, item);
    const sp = splitContinuation(model.tokenizer, item.context, ' ' + item.continuation);
    const d = direct(sp.context, sp.continuation);
    assert.ok(Math.abs(d.lp - s.logprob) < 1e-3);
    assert.equal(s.greedy, d.greedy);
    if (s.greedy) hits++;
    lp += s.logprob;
  }
  assert.ok(hits > 0, 'stories260K should get some of these easy last words');
  const r = new Evaluator(model, 'stories260K').evaluate([task], undefined, { bench: { nGen: 0, reps: 1, dense: true, sparse: true } });
  const t = r.tasks.lambada_tiny!;
  assert.equal(t.kind, 'lambada');
  if (t.kind !== 'lambada') return;
  assert.equal(t.n, 3);
  assert.ok(Math.abs(t.acc - (100 * hits) / 3) < 1e-9);
  assert.ok(Math.abs(t.ppl - Math.exp(-lp / 3)) < 1e-6 * t.ppl);
});

test('perplexity with a dense reference: the sparse ppl is unchanged, agreement is exact for dense vs dense', () => {
  const text = readFileSync(fx('story.txt'), 'utf8');
  const profile = calibrate(model, { method: 'teal', sparsity: 0.5, text, dataName: 'story.txt', skipTokens: 0, tokens: 256, chunk: 64, allocation: 'uniform' });
  const sparse = fromProfile(profile, model);
  const plain = perplexity(model, text, { ctx: 64, chunks: 3, policy: sparse });
  const withRef = perplexity(model, text, { ctx: 64, chunks: 3, policy: sparse, reference: { policy: densePolicy } });
  assert.equal(withRef.ppl, plain.ppl);
  const dense = perplexity(model, text, { ctx: 64, chunks: 3 });
  const a = withRef.agreement!;
  assert.ok(Math.abs(a.referencePpl - dense.ppl) < 1e-9 * dense.ppl);
  assert.equal(a.positions, plain.scored);
  assert.ok(a.top1 > 0.3 && a.top1 < 1, `top1 ${a.top1}`);
  assert.ok(a.kl > 0, `kl ${a.kl}`);
  const self = perplexity(model, text, { ctx: 64, chunks: 3, reference: { policy: densePolicy } });
  assert.equal(self.agreement!.top1, 1);
  assert.ok(self.agreement!.kl < 1e-9);
});

test('eval with sparsity: agreement, greedy agreement, density per task and merged, decode tok/s', () => {
  const text = readFileSync(fx('story.txt'), 'utf8');
  const profile = calibrate(model, { method: 'cats', sparsity: 0.5, text, dataName: 'story.txt', skipTokens: 0, tokens: 256, chunk: 64 });
  const ev = new Evaluator(model, 'stories260K');
  const tasks = [loadTask(fx('story.txt')), loadTask(fx('hellaswag_tiny.txt'))];
  const r = ev.evaluate(tasks, { policy: fromProfile(profile, model), info: { profile: 'p.json', method: 'cats', level: 0.5, allocation: 'uniform' } }, {
    ctx: 64, limit: 2, greedy: { source: 'test', prompts: ['Once upon a time', 'Tom had a ball.'], tokens: 8 }, bench: { nGen: 4, reps: 1, dense: true, sparse: true },
  });
  assert.deepEqual(Object.keys(r.tasks), ['story', 'hellaswag_tiny']);
  const story = r.tasks.story!;
  assert.equal(story.kind, 'perplexity');
  if (story.kind === 'perplexity') {
    assert.equal(story.chunks, 2);
    assert.ok(story.dense_ppl! > 1 && story.ppl > 1);
  }
  assert.deepEqual(r.agreement!.texts, ['story']);
  assert.equal(r.agreement!.positions, 2 * 31);
  assert.equal(r.agreement!.greedy!.prompts, 2);
  const g = r.agreement!.greedy!;
  assert.ok(g.match >= g.prefix && g.match <= 1);
  // CATS thins the MLP neurons only; the density is between the tasks' own densities
  assert.deepEqual(Object.keys(r.density!.sites), ['ffn_neurons']);
  const d = [story.density!, r.tasks.hellaswag_tiny!.density!];
  assert.ok(r.density!.linear >= Math.min(...d) - 1e-12 && r.density!.linear <= Math.max(...d) + 1e-12);
  assert.ok(r.density!.linear < 1);
  assert.equal(r.density!.layers.length, model.config.nLayers);
  assert.ok(r.decode_tok_s!.dense!.mean > 0 && r.decode_tok_s!.sparse!.mean > 0);
  assert.equal(r.sparsity!.method, 'cats');
  // the bench and greedy runs keep generation's dense prompt; the next evaluation still sparsifies every token
  const again = ev.evaluate([tasks[0]!], { policy: fromProfile(profile, model), info: r.sparsity! }, { ctx: 64, limit: 2, bench: { nGen: 0, reps: 1, dense: false, sparse: false } });
  const s2 = again.tasks.story!;
  assert.ok(s2.kind === 'perplexity' && story.kind === 'perplexity' && s2.ppl === story.ppl && s2.density === story.density);
  assert.equal(perplexity(model, readFileSync(fx('story.txt'), 'utf8'), { ctx: 64, chunks: 2, policy: fromProfile(profile, model) }).ppl, s2.kind === 'perplexity' ? s2.ppl : NaN);
});

test('mergeDensity is the token-weighted mean', () => {
  const a = { linear: 0.5, sites: { ffn_in: 0.4 }, layers: [{ ffn_in: 0.4 }], tokens: 10 };
  const b = { linear: 0.8, sites: { ffn_in: 0.7 }, layers: [{ ffn_in: 0.7 }], tokens: 30 };
  const m = mergeDensity([a, b])!;
  assert.ok(Math.abs(m.linear - 0.725) < 1e-12);
  assert.ok(Math.abs(m.layers[0]!.ffn_in! - 0.625) < 1e-12);
  assert.equal(m.tokens, 40);
  assert.equal(mergeDensity([]), null);
});

test('CLI eval: table on stdout, --json file, bad task file / unknown task → one line and exit 1', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctxsparse-eval-'));
  const out = join(dir, 'r.json');
  const r = spawnSync(process.execPath, [CLI, 'eval', '-m', F32, '--threads', '1', '--tasks', `${fx('story.txt')},${fx('mc_tiny.jsonl')},${fx('lambada_tiny.jsonl')}`, '--ctx', '64', '--limit', '2', '--bench-gen', '4', '--bench-reps', '1', '--json', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /story\s+2×64\s+ppl/);
  assert.match(r.stdout, /mc_tiny\s+2\s+acc/);
  assert.match(r.stdout, /acc_norm/);
  assert.match(r.stdout, /decode tok\/s \(4 tokens × 1\): dense/);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(j.limit, 2);
  assert.equal(j.sparsity, null);
  assert.equal(j.tasks.mc_tiny.n, 2);
  assert.equal(j.tasks.lambada_tiny.kind, 'lambada');
  for (const k of ['model', 'tasks', 'agreement', 'density', 'decode_tok_s', 'started_at', 'finished_at']) assert.ok(k in j, k);
  for (const [args, re] of [
    [['--tasks', fx('bad_gold.jsonl')], /^error: .*bad_gold\.jsonl:2: "gold" must be an index/],
    [['--tasks', 'wikitext,nosuchtask'], /^error: --tasks: unknown task "nosuchtask"/],
  ] as [string[], RegExp][]) {
    const e = spawnSync(process.execPath, [CLI, 'eval', '-m', F32, ...args], { encoding: 'utf8' });
    assert.equal(e.status, 1);
    assert.match(e.stderr, re);
    assert.equal(e.stderr.trim().split('\n').length, 1, e.stderr);
  }
});
