// The server through the official `openai` client: chat (plain, streamed, logprobs), completions
// with echo + logprobs (prompt scoring as lm-evaluation-harness does it), API keys, the queue's
// 429, cancellation on disconnect, request checks. SmolLM2 (a real chat template), one thread.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { AuthenticationError, BadRequestError, NotFoundError, RateLimitError } from 'openai';
import { loadModel, type Model } from '../src/model/load.js';
import { createWasmKernels, type WasmKernels } from '../src/kernels/wasm/index.js';
import { chatPromptIds } from '../src/generate/chat.js';
import { Session } from '../src/generate/session.js';
import { logprobOf } from '../src/serve/engine.js';
import { Server, type ServeOptions } from '../src/serve/server.js';
import { TealPolicy } from '../src/sparsity/teal.js';
import { buildSparseHead } from '../src/sparsity/head-model.js';
import { catalogModel } from './helpers.js';

const MODEL = 'smollm2-135m-instruct';
let kernels: WasmKernels;
let model: Model;
const servers: Server[] = [];

before(() => {
  kernels = createWasmKernels({ threads: 1 });
  model = loadModel(catalogModel(MODEL), { kernels });
});

after(async () => {
  for (const s of servers) {
    s.http.closeAllConnections();
    await new Promise((r) => s.http.close(r));
  }
  kernels.close();
});

async function start(opts: Partial<ServeOptions> = {}): Promise<{ server: Server; base: string }> {
  const server = new Server({ model, modelId: MODEL, parallel: 2, ctx: 512, ...opts });
  servers.push(server);
  const addr = await server.listen(0, '127.0.0.1');
  return { server, base: `http://127.0.0.1:${addr.port}` };
}

function client(base: string, apiKey = 'none'): OpenAI {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });
}

const question = [{ role: 'user' as const, content: 'What is the capital of France?' }];

test('GET /v1/models lists the served model', async () => {
  const { base } = await start();
  const list = await client(base).models.list();
  assert.deepEqual(list.data.map((m) => m.id), [MODEL]);
});

test('chat: greedy answer equals the engine run directly (chat template, usage)', async () => {
  const { base } = await start();
  const r = await client(base).chat.completions.create({ model: MODEL, messages: question, temperature: 0, max_tokens: 12 });
  const ids = chatPromptIds(model, question);
  let expected = '';
  const session = new Session(model, { ctx: 512 });
  for (const ev of session.generate(ids, { temperature: 0, maxTokens: 12 })) expected += ev.text;
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0]!.message.role, 'assistant');
  assert.equal(r.choices[0]!.message.content, expected);
  assert.equal(r.usage!.prompt_tokens, ids.length);
  assert.equal(r.usage!.total_tokens, ids.length + r.usage!.completion_tokens);
  assert.ok(['stop', 'length'].includes(r.choices[0]!.finish_reason));
});

test('chat: streamed deltas add up to the same answer, with a final usage chunk', async () => {
  const { base } = await start();
  const c = client(base);
  const plain = await c.chat.completions.create({ model: MODEL, messages: question, temperature: 0, max_tokens: 12 });
  const stream = await c.chat.completions.create({ model: MODEL, messages: question, temperature: 0, max_tokens: 12, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  let chunks = 0;
  for await (const ch of stream) {
    chunks++;
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.usage) usage = ch.usage;
    const choice = ch.choices[0];
    if (!choice) continue;
    text += choice.delta.content ?? '';
    finish = choice.finish_reason ?? finish;
  }
  assert.ok(chunks > 3, 'streamed in several chunks');
  assert.equal(text, plain.choices[0]!.message.content);
  assert.equal(finish, plain.choices[0]!.finish_reason);
  assert.deepEqual(usage, plain.usage);
});

test('chat: seeded sampling repeats; logprobs with top_logprobs', async () => {
  const { base } = await start();
  const c = client(base);
  const ask = () => c.chat.completions.create({ model: MODEL, messages: question, temperature: 1, top_p: 0.9, seed: 7, max_tokens: 10, logprobs: true, top_logprobs: 3 });
  const [a, b] = await Promise.all([ask(), ask()]); // decoded together in one batch
  assert.equal(a.choices[0]!.message.content, b.choices[0]!.message.content);
  const lps = a.choices[0]!.logprobs!.content!;
  assert.equal(lps.length, a.usage!.completion_tokens);
  for (const lp of lps) {
    assert.equal(lp.top_logprobs.length, 3);
    assert.ok(lp.logprob <= 0 && lp.top_logprobs[0]!.logprob >= lp.top_logprobs[1]!.logprob);
    assert.ok(lp.top_logprobs[0]!.logprob >= lp.logprob - 1e-9);
  }
  assert.equal(lps.map((l) => l.token).join(''), a.choices[0]!.message.content);
});

test('completions: echo + logprobs score the prompt (as lm-eval local-completions reads them)', async () => {
  const { base } = await start();
  const c = client(base);
  const text = 'The capital of France is Paris.';
  const ids = model.tokenizer.encode(text);
  // the reference: log-softmax of an independent forward pass over the prompt
  const f = model.createForward(64);
  const kv = model.createCache(64);
  const logits = new Float32Array(f.run(kv, ids, 0, 'all')!);
  const V = model.config.vocabSize;
  const ref = ids.slice(1).map((id, i) => logprobOf(logits.subarray(i * V, (i + 1) * V), id, 1));

  for (const [prompt, maxTokens] of [[text, 0], [ids, 1]] as const) {
    const r = await c.completions.create({ model: MODEL, prompt: prompt as string, max_tokens: maxTokens, echo: true, logprobs: 1, temperature: 0 });
    const lp = r.choices[0]!.logprobs!;
    assert.equal(lp.tokens!.length, ids.length + maxTokens);
    assert.equal(lp.token_logprobs![0], null);
    for (let i = 1; i < ids.length; i++) {
      assert.ok(Math.abs(lp.token_logprobs![i]! - ref[i - 1]!.logprob) < 1e-4, `token ${i}: ${lp.token_logprobs![i]} vs ${ref[i - 1]!.logprob}`);
      const top = lp.top_logprobs![i]!;
      assert.ok(Math.abs(Math.max(...Object.values(top)) - ref[i - 1]!.top[0]!.logprob) < 1e-4);
    }
    assert.ok(r.choices[0]!.text.startsWith(model.tokenizer.decode(ids.slice(1)).trim().slice(0, 10)) || r.choices[0]!.text.startsWith(text));
    assert.equal(r.usage!.prompt_tokens, ids.length);
  }
  // several token-id prompts in one request come back as choices with their index
  const batch = await c.completions.create({ model: MODEL, prompt: [ids, ids.slice(0, 4)] as unknown as string, max_tokens: 0, echo: true, logprobs: 1 });
  assert.deepEqual(batch.choices.map((ch) => ch.index), [0, 1]);
  assert.equal(batch.choices[1]!.logprobs!.tokens!.length, 4);
  // both prompts went through the same passes, so their rows share groups of four: the 8-bit
  // activation kernels round full and ragged groups differently (Forward.run on this prompt with
  // batch 64 vs 1 moves these log-probabilities by up to 0.05), so this one is close, not equal
  assert.ok(Math.abs(batch.choices[1]!.logprobs!.token_logprobs![3]! - ref[2]!.logprob) < 0.1);
});

test('completions: echo + logprobs list the end-of-generation token that stopped the answer (lm-eval drops the last entry)', async () => {
  const { base } = await start();
  const c = client(base);
  // a prompt after which SmolLM2's greedy choice is <|im_end|> (by a margin of ~1.7 nats)
  const ids = [...chatPromptIds(model, [{ role: 'user', content: 'What is 2+2? Answer with a number only.' }]), ...model.tokenizer.encode('4')];
  const f = model.createForward(64);
  const kv = model.createCache(128);
  const logits = new Float32Array(f.run(kv, ids, 0, 'all')!);
  const V = model.config.vocabSize;
  const row = (i: number) => logits.subarray(i * V, (i + 1) * V);
  const last = logprobOf(row(ids.length - 1), 0, 1);
  const eog = last.top[0]!.id;
  assert.ok(model.tokenizer.eog.has(eog), `the test's premise: the greedy token after the prompt is end-of-generation, got ${eog}`);
  const eogLp = logprobOf(row(ids.length - 1), eog, 1).logprob;

  const r = await c.completions.create({ model: MODEL, prompt: ids as unknown as string, max_tokens: 1, echo: true, logprobs: 1, temperature: 0 });
  const ch = r.choices[0]!;
  assert.equal(ch.finish_reason, 'stop');
  assert.equal(ch.text, model.tokenizer.decode(ids)); // the stop token is not text
  const lp = ch.logprobs!;
  assert.equal(lp.tokens!.length, ids.length + 1);
  assert.equal(lp.tokens!.at(-1), model.tokenizer.tokenText(eog));
  assert.ok(Math.abs(lp.token_logprobs!.at(-1)! - eogLp) < 0.1, `${lp.token_logprobs!.at(-1)} vs ${eogLp}`);
  assert.ok(Math.abs(Math.max(...Object.values(lp.top_logprobs!.at(-1)!)) - eogLp) < 0.1);
  // what lm-eval's local-completions reads: the prompt's tokens after the context, less the last entry
  const ctxlen = ids.length - 1;
  const scored = lp.token_logprobs!.slice(ctxlen, -1);
  assert.equal(scored.length, 1);
  const ref = logprobOf(row(ids.length - 2), ids.at(-1)!, 1).logprob;
  assert.ok(Math.abs(scored[0]! - ref) < 0.1, `the continuation's token: ${scored[0]} vs ${ref}`);

  // streamed: the closing chunk carries the stop token's logprobs
  const stream = await c.completions.create({ model: MODEL, prompt: ids as unknown as string, max_tokens: 1, logprobs: 1, temperature: 0, stream: true });
  const chunks = [];
  for await (const x of stream) chunks.push(x);
  const closing = chunks.at(-1)!.choices[0]!;
  assert.equal(closing.finish_reason, 'stop');
  assert.deepEqual(closing.logprobs!.tokens, [model.tokenizer.tokenText(eog)]);
  assert.ok(Math.abs(closing.logprobs!.token_logprobs![0]! - eogLp) < 0.1);
});

test('API key: missing or wrong keys are refused with 401, the right one works', async () => {
  const { base } = await start({ apiKey: 'sekrit' });
  await assert.rejects(client(base, 'wrong').models.list(), (e: unknown) => e instanceof AuthenticationError && e.status === 401 && (e.error as { code?: string }).code === 'invalid_api_key');
  const res = await fetch(`${base}/v1/models`);
  assert.equal(res.status, 401);
  assert.equal(((await res.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
  const ok = await client(base, 'sekrit').chat.completions.create({ model: MODEL, messages: question, max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
});

test('bad requests: unknown model 404, wrong types 400, context 400, malformed JSON 400, body size 413', async () => {
  const { base } = await start({ maxBodyBytes: 2000 });
  const c = client(base);
  await assert.rejects(c.chat.completions.create({ model: 'gpt-4', messages: question }), (e: unknown) => e instanceof NotFoundError && (e.error as { code?: string }).code === 'model_not_found');
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages: question, temperature: 'hot' as unknown as number }), (e: unknown) => e instanceof BadRequestError && (e.error as { param?: string }).param === 'temperature');
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages: question, max_tokens: 5000 }), (e: unknown) => e instanceof BadRequestError && /maximum context length is 512/.test(e.message));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: [1, 2, 99999999] as unknown as string }), BadRequestError);
  const post = (body: string) => fetch(`${base}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const bad = await post('{"model": ');
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_json');
  const big = await post(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(5000) }] }));
  assert.equal(big.status, 413);
  const nope = await fetch(`${base}/v1/embeddings`, { method: 'POST', body: '{}' });
  assert.equal(nope.status, 404);
  // the server is still fine
  const ok = await c.chat.completions.create({ model: MODEL, messages: question, max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
});

test('a full queue answers 429 with Retry-After; a client that disconnects frees its slot', async () => {
  const { server, base } = await start({ parallel: 1, queue: 1 });
  const c = client(base);
  // A: a long stream in the only slot
  const abort = new AbortController();
  const a = await c.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 400, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming, { signal: abort.signal });
  const it = a[Symbol.asyncIterator]();
  await it.next();
  // B waits in the queue
  const b = c.chat.completions.create({ model: MODEL, messages: question, max_tokens: 3 });
  while (server.engine.queued < 1) await new Promise((r) => setTimeout(r, 5));
  // C finds slots and queue full
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages: question, max_tokens: 3 }),
    (e: unknown) => e instanceof RateLimitError && e.status === 429 && e.headers?.get('retry-after') === '1');
  // A goes away mid-generation: its generation stops and B gets the slot
  const before = server.engine.getStats().generatedTokens;
  abort.abort();
  const rb = await b;
  assert.equal(rb.choices.length, 1);
  const generated = server.engine.getStats().generatedTokens - before;
  assert.ok(generated < 300, `A stopped early (${generated} tokens after the abort, of 400)`);
  assert.match(server.metrics(), /^ctxsparse_requests_cancelled_total 1$/m);
  assert.match(server.metrics(), /^ctxsparse_requests_rejected_total 1$/m);
  assert.equal(server.engine.active, 0);
});

test('GET /health and /metrics (Prometheus text)', async () => {
  const { base } = await start();
  await client(base).chat.completions.create({ model: MODEL, messages: question, max_tokens: 3 });
  const h = await fetch(`${base}/health`);
  assert.equal(h.status, 200);
  assert.equal(((await h.json()) as { status: string }).status, 'ok');
  const m = await (await fetch(`${base}/metrics`)).text();
  for (const name of ['ctxsparse_requests_total', 'ctxsparse_completion_tokens_total', 'ctxsparse_tokens_per_second', 'ctxsparse_queue_depth', 'ctxsparse_realized_density']) {
    assert.match(m, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'));
  }
  assert.match(m, /^ctxsparse_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} 1$/m);
  assert.match(m, /^ctxsparse_completion_tokens_total 3$/m);
});

test('the model\'s tokenizer over HTTP (/tokenizer_info, /tokenize, /detokenize: lm-eval tokenizer_backend=remote)', async () => {
  const { base } = await start();
  const info = (await (await fetch(`${base}/tokenizer_info`)).json()) as { eos_token: string; chat_template: string };
  assert.equal(info.eos_token, model.tokenizer.tokenText(model.tokenizer.eos!));
  assert.equal(info.chat_template, model.chatTemplate);
  const post = async (path: string, body: unknown) => (await fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body) })).json();
  const text = 'Hello world, how are you?';
  const t = (await post('/tokenize', { prompt: text, add_special_tokens: false })) as { tokens: number[] };
  assert.deepEqual(t.tokens, model.tokenizer.encode(text, { addBos: false }));
  const d = (await post('/detokenize', { tokens: t.tokens })) as { prompt: string };
  assert.equal(d.prompt, text);
});

test('sparsity: decoding is thinned per sequence (each as alone), prompts dense; /metrics reports the density', async () => {
  // a fixed TEAL-style policy (|x| ≤ 0.03 dropped at every linear input), no calibration needed
  const teal = () => new TealPolicy(model.config, Array.from({ length: model.config.nLayers }, () => ({ attn_in: 0.03, attn_out: 0.03, ffn_in: 0.03, ffn_down: 0.03 })));
  const policy = teal();
  const { server, base } = await start({ policy });
  const c = client(base);
  const qs = [question, [{ role: 'user' as const, content: 'Name three colours.' }]];
  const alone = qs.map((q) => {
    let text = '';
    for (const ev of new Session(model, { ctx: 512, policy: teal() }).generate(chatPromptIds(model, q), { temperature: 0, maxTokens: 16 })) text += ev.text;
    return text;
  });
  // the first answer is streaming when the second arrives: their decode steps are shared
  const s1 = await c.chat.completions.create({ model: MODEL, messages: qs[0]!, temperature: 0, max_tokens: 16, stream: true });
  const it = s1[Symbol.asyncIterator]();
  let t1 = '';
  const first = await it.next();
  t1 += first.value?.choices[0]?.delta.content ?? '';
  const p2 = c.chat.completions.create({ model: MODEL, messages: qs[1]!, temperature: 0, max_tokens: 16 });
  for (let r = await it.next(); !r.done; r = await it.next()) t1 += r.value.choices[0]?.delta.content ?? '';
  const r2 = await p2;
  assert.equal(t1, alone[0]);
  assert.equal(r2.choices[0]!.message.content, alone[1]);
  const d = policy.realized().linear;
  assert.ok(d > 0.05 && d < 0.95, `realized density ${d}`);
  const m = /^ctxsparse_realized_density ([0-9.]+)$/m.exec(server.metrics());
  assert.ok(m && Math.abs(Number(m[1]) - d) < 1e-3);
});

test('--sparse-head: a sequence decoding alone gets the sparse output layer (greedy answer unchanged, few rows rescored, in /metrics); with logprobs, the dense one', async () => {
  const head = buildSparseHead(model, { cache: false, text: 'The quick brown fox jumps over the lazy dog. In 1492, Columbus sailed the ocean blue.' });
  const { server, base } = await start({ parallel: 1, sparseHead: head });
  const c = client(base);
  const r = await c.chat.completions.create({ model: MODEL, messages: question, temperature: 0, max_tokens: 12 });
  const ids = chatPromptIds(model, question);
  let expected = '';
  const session = new Session(model, { ctx: 512 });
  for (const ev of session.generate(ids, { temperature: 0, maxTokens: 12 })) expected += ev.text;
  assert.equal(r.choices[0]!.message.content, expected);
  const st = server.engine.getStats();
  // every decode step after the prompt's (the answer may stop before max_tokens at end of turn)
  const generated = r.usage!.completion_tokens;
  assert.ok(generated >= 2 && st.headSteps >= generated - 1, `sparse-head steps ${st.headSteps} for ${generated} tokens`);
  const perStep = st.headRows / st.headSteps;
  assert.ok(perStep >= 1 && perStep < model.config.vocabSize / 10, `rows rescored per step ${perStep}`);
  const m = /^ctxsparse_head_rows_rescored ([0-9.]+)$/m.exec(server.metrics());
  assert.ok(m && Math.abs(Number(m[1]) - perStep) < 0.1);
  // log-probabilities need the whole distribution: those steps take the dense head
  const before = server.engine.getStats().headSteps;
  const lp = await c.chat.completions.create({ model: MODEL, messages: question, temperature: 0, max_tokens: 4, logprobs: true, top_logprobs: 2 });
  assert.equal(server.engine.getStats().headSteps, before);
  assert.ok(lp.choices[0]!.logprobs!.content!.every((t) => Number.isFinite(t.logprob)));
});

test('a request whose generation fails gets a 500 error object; the server keeps serving', async () => {
  const { server, base } = await start();
  const c = client(base);
  // the next forward pass fails (as a kernel fault would)
  const f = server.engine.forward;
  const real = f.runBatch.bind(f);
  f.runBatch = () => {
    f.runBatch = real;
    throw new Error('injected fault');
  };
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages: question, max_tokens: 4 }),
    (e: unknown) => e instanceof OpenAI.InternalServerError && /injected fault/.test(e.message) && (e.error as { type?: string }).type === 'server_error');
  const ok = await c.chat.completions.create({ model: MODEL, messages: question, max_tokens: 4, temperature: 0 });
  assert.equal(ok.choices[0]!.finish_reason, 'length');
  assert.equal(server.engine.active, 0);
});
