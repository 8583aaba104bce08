// The OpenAI-compatible HTTP server: /v1/models, /v1/chat/completions, /v1/completions, /health,
// /metrics and the playground at /. Node's own http module: the server needs a handful of routes,
// server-sent events and precise control over disconnects and draining, and nothing more.

import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { CtxError } from '../errors.js';
import { chatPromptIds } from '../generate/chat.js';
import type { Model } from '../model/load.js';
import type { SparseHead } from '../sparsity/head.js';
import type { MeasuredPolicy } from '../sparsity/measure.js';
import { Engine, QueueFullError, type GenRequest, type GenResult, type TokenLogprob } from './engine.js';
import { ApiError, badRequest, checkN, field, messagesField, parseBody, promptField, samplingFields, stopField, type ChatMessageIn } from './openai.js';

export interface ServeOptions {
  readonly model: Model;
  /** the id clients name in `model` (the catalog name or the file's base name) */
  readonly modelId: string;
  readonly parallel: number;
  /** requests waiting beyond the active ones (default 4 × parallel) */
  readonly queue?: number;
  readonly ctx: number;
  readonly apiKey?: string;
  /** a sparsity policy (its realized density goes to /metrics) */
  readonly policy?: MeasuredPolicy;
  /** request bodies above this are refused (default 4 MiB) */
  readonly maxBodyBytes?: number;
  /** rows per forward pass */
  readonly batch?: number;
  /** the sparse output layer (single-sequence steps; see EngineOptions.sparseHead) */
  readonly sparseHead?: SparseHead | null;
}

const PUBLIC = new URL('../../../public/', import.meta.url);

interface Counters {
  requests: Map<string, number>;
  promptTokens: number;
  completionTokens: number;
  rejected429: number;
  cancelled: number;
}

export class Server {
  readonly http: HttpServer;
  readonly engine: Engine;
  private draining = false;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly counters: Counters = { requests: new Map(), promptTokens: 0, completionTokens: 0, rejected429: 0, cancelled: 0 };
  private readonly playground: Buffer;
  private readonly fingerprint = `ctxsparse-${randomBytes(4).toString('hex')}`;

  constructor(readonly opts: ServeOptions) {
    this.engine = new Engine(opts.model, {
      parallel: opts.parallel, queue: opts.queue ?? 4 * opts.parallel, ctx: opts.ctx,
      ...(opts.policy && { policy: opts.policy }), ...(opts.batch !== undefined && { batch: opts.batch }),
      ...(opts.sparseHead && { sparseHead: opts.sparseHead }),
    });
    this.playground = readFileSync(new URL('index.html', PUBLIC));
    this.http = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => this.sendError(res, e));
    });
    // long generations: no per-request timeout (the engine bounds work through max_tokens and ctx)
    this.http.requestTimeout = 0;
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  /** Stop accepting requests, finish the ones in flight (and queued), then close. */
  async drain(): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((r) => this.http.close(() => r()));
    this.http.closeIdleConnections();
    await this.engine.idle();
    // every response has been handed to its socket: wait until they are flushed, then let the
    // idle keep-alive sockets go
    if (this.openResponses > 0) await new Promise<void>((r) => { this.onAllClosed = r; });
    this.http.closeIdleConnections();
    await closed;
  }

  private openResponses = 0;
  private onAllClosed: (() => void) | undefined;

  private count(endpoint: string, status: number): void {
    const k = `${endpoint}|${status}`;
    this.counters.requests.set(k, (this.counters.requests.get(k) ?? 0) + 1);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const route = `${req.method} ${path}`;
    const known = ['/', '/index.html', '/health', '/metrics', '/v1/models', '/v1/chat/completions', '/v1/completions', '/tokenizer_info', '/tokenize', '/detokenize'];
    const endpoint = known.includes(path) || path.startsWith('/v1/models/') ? (path.startsWith('/v1/models/') ? '/v1/models/{id}' : path) : 'other';
    res.on('finish', () => this.count(endpoint, res.statusCode));
    this.openResponses++;
    res.on('close', () => {
      if (--this.openResponses === 0 && this.onAllClosed) this.onAllClosed();
    });

    // the playground page itself holds no data: it is served without the key (it asks for one)
    if (req.method === 'GET' && (path === '/' || path === '/index.html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' });
      res.end(this.playground);
      return;
    }
    if (this.opts.apiKey !== undefined) {
      const auth = req.headers.authorization ?? '';
      if (auth !== `Bearer ${this.opts.apiKey}`) {
        throw new ApiError(401, auth === '' ? 'You didn\'t provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).'
          : 'Incorrect API key provided.', 'invalid_request_error', null, 'invalid_api_key');
      }
    }
    switch (route) {
      case 'GET /health':
        return this.json(res, this.draining ? 503 : 200, { status: this.draining ? 'draining' : 'ok', slots: this.engine.parallel, active: this.engine.active, queued: this.engine.queued });
      case 'GET /metrics':
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(this.metrics());
        return;
      case 'GET /v1/models':
        return this.json(res, 200, { object: 'list', data: [this.modelObject()] });
      case 'POST /v1/chat/completions':
        return this.chat(req, res);
      case 'POST /v1/completions':
        return this.completions(req, res);
      case 'GET /tokenizer_info':
        return this.json(res, 200, this.tokenizerInfo());
      case 'POST /tokenize':
        return this.tokenize(req, res);
      case 'POST /detokenize':
        return this.detokenize(req, res);
    }
    if (req.method === 'GET' && path.startsWith('/v1/models/')) {
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      this.checkModel(id);
      return this.json(res, 200, this.modelObject());
    }
    throw new ApiError(404, `Unknown request URL: ${req.method} ${path}.`, 'invalid_request_error', null, 'unknown_url');
  }

  // The model's own tokenizer over HTTP, in vLLM's shapes (what lm-evaluation-harness's
  // tokenizer_backend=remote asks for), so clients count and split tokens exactly as the server does.
  private tokenizerInfo(): Record<string, unknown> {
    const tok = this.opts.model.tokenizer;
    const text = (id: number | undefined) => (id === undefined ? null : tok.tokenText(id));
    return {
      tokenizer_class: 'gguf', bos_token: text(tok.bos), eos_token: text(tok.eos), pad_token: null,
      add_bos_token: tok.addBosDefault, chat_template: this.opts.model.chatTemplate ?? null,
      model_max_length: this.opts.ctx, vocab_size: tok.vocabSize,
    };
  }

  private async tokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const o = await this.readBody(req);
    const prompt = field.str(o, 'prompt');
    if (prompt === undefined) throw badRequest(`'prompt' is required`, 'prompt', 'missing_required_parameter');
    const addSpecial = field.bool(o, 'add_special_tokens') ?? true;
    const tokens = this.opts.model.tokenizer.encode(prompt, { addBos: addSpecial && this.opts.model.tokenizer.addBosDefault });
    this.json(res, 200, { tokens, count: tokens.length, max_model_len: this.opts.ctx });
  }

  private async detokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const o = await this.readBody(req);
    if (Array.isArray(o.tokens) && o.tokens.length === 0) return this.json(res, 200, { prompt: '' });
    const ids = promptField({ prompt: o.tokens ?? null }, this.opts.model.tokenizer.vocabSize);
    if (ids.length !== 1 || typeof ids[0] === 'string') throw badRequest(`'tokens' must be an array of token ids`, 'tokens', 'invalid_type');
    this.json(res, 200, { prompt: this.opts.model.tokenizer.decode(ids[0]) });
  }

  private modelObject(): Record<string, unknown> {
    return { id: this.opts.modelId, object: 'model', created: this.created, owned_by: 'ctxsparse' };
  }

  private checkModel(id: string | undefined): void {
    if (id === undefined) throw badRequest(`'model' is required`, 'model', 'missing_required_parameter');
    if (id !== this.opts.modelId) {
      throw new ApiError(404, `The model \`${id}\` does not exist or you do not have access to it. This server serves \`${this.opts.modelId}\`.`, 'invalid_request_error', 'model', 'model_not_found');
    }
  }

  private readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
    const limit = this.opts.maxBodyBytes ?? 4 * 1024 * 1024;
    return new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > limit) {
        req.resume();
        reject(new ApiError(413, `the request body is ${declared} bytes; this server accepts at most ${limit}`, 'invalid_request_error', null, 'request_too_large'));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let failed = false;
      req.on('data', (c: Buffer) => {
        if (failed) return;
        size += c.length;
        if (size > limit) {
          failed = true;
          reject(new ApiError(413, `the request body is over ${limit} bytes, the most this server accepts`, 'invalid_request_error', null, 'request_too_large'));
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (failed) return;
        try {
          resolve(parseBody(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(e);
        }
      });
      req.on('error', (e) => reject(e));
    });
  }

  private checkOpen(): void {
    if (this.draining) throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
  }

  private maxTokens(o: Record<string, unknown>, promptLen: number, dflt: number | undefined, min: number, names: string[]): number {
    let v: number | undefined;
    for (const k of names) v ??= field.int(o, k, min);
    const room = this.opts.ctx - promptLen;
    if (room <= 0 || (v !== undefined && v > room)) {
      throw badRequest(`This server's maximum context length is ${this.opts.ctx} tokens. However, you requested ${promptLen + (v ?? 0)} tokens `
        + `(${promptLen} in the prompt, ${v ?? 0} for the completion). Please reduce the prompt or ${names[0]}.`, names[0]!, 'context_length_exceeded');
    }
    return Math.min(v ?? dflt ?? room, room);
  }

  private chatIds(messages: ChatMessageIn[]): number[] {
    const model = this.opts.model;
    if (model.chatTemplate) {
      try {
        return chatPromptIds(model, messages);
      } catch (e) {
        if (e instanceof CtxError) throw badRequest(e.message, 'messages', 'invalid_value');
        throw e;
      }
    }
    // a model without a chat template (base models, stories260K): a plain "role: content" transcript
    const text = messages.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant:';
    return model.tokenizer.encode(text);
  }

  private submit(req: GenRequest): { cancel(): void } {
    try {
      return this.engine.submit(req);
    } catch (e) {
      if (e instanceof QueueFullError) {
        this.counters.rejected429++;
        throw new ApiError(429, e.message, 'rate_limit_error', null, 'rate_limit_exceeded', { 'retry-after': '1' });
      }
      if (e instanceof CtxError) throw badRequest(e.message, null, 'context_length_exceeded');
      throw e;
    }
  }

  private tokenText(id: number): string {
    return new TextDecoder().decode(this.opts.model.tokenizer.tokenBytes(id));
  }

  private chatLogprob(lp: TokenLogprob): Record<string, unknown> {
    const one = (id: number, logprob: number) => ({ token: this.tokenText(id), logprob, bytes: Array.from(this.opts.model.tokenizer.tokenBytes(id)) });
    return { ...one(lp.id, lp.logprob), top_logprobs: lp.top.map((t) => one(t.id, t.logprob)) };
  }

  private async chat(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.checkOpen();
    const o = await this.readBody(req);
    this.checkModel(field.str(o, 'model'));
    const messages = messagesField(o);
    const sampling = samplingFields(o);
    const stop = stopField(o);
    checkN(o);
    const stream = field.bool(o, 'stream') ?? false;
    const includeUsage = field.bool(field.obj(o, 'stream_options') ?? {}, 'include_usage') ?? false;
    const logprobs = field.bool(o, 'logprobs') ?? false;
    const topLogprobs = field.int(o, 'top_logprobs', 0, 20);
    if (topLogprobs !== undefined && !logprobs) throw badRequest(`'top_logprobs' needs 'logprobs': true`, 'top_logprobs', 'invalid_value');
    const ignoreEos = field.bool(o, 'ignore_eos') ?? false;
    const ids = this.chatIds(messages);
    const maxTokens = this.maxTokens(o, ids.length, undefined, 1, ['max_completion_tokens', 'max_tokens']);
    const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: this.opts.modelId, system_fingerprint: this.fingerprint };
    const usage = (r: GenResult) => ({ prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length });

    if (!stream) {
      const r = await this.run(req, res, { promptIds: ids, maxTokens, sampling, stop, ignoreEos, ...(logprobs && { logprobs: topLogprobs ?? 0 }) });
      if (!r) return;
      this.json(res, 200, {
        ...base, object: 'chat.completion',
        choices: [{
          index: 0, message: { role: 'assistant', content: r.text, refusal: null },
          logprobs: logprobs ? { content: r.logprobs.map((lp) => this.chatLogprob(lp)), refusal: null } : null,
          finish_reason: r.finishReason,
        }],
        usage: usage(r),
      });
      return;
    }
    const sse = this.startSse(res);
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => sse.send({ ...base, object: 'chat.completion.chunk', choices, ...(includeUsage && { usage: null }), ...extra });
    let ticket: { cancel(): void } | undefined;
    ticket = this.submitStreaming(res, {
      promptIds: ids, maxTokens, sampling, stop, ignoreEos, ...(logprobs && { logprobs: topLogprobs ?? 0 }),
      onToken: (text, lp) => {
        if (text === '' && !lp) return;
        chunk([{ index: 0, delta: { content: text }, logprobs: lp ? { content: [this.chatLogprob(lp)], refusal: null } : null, finish_reason: null }]);
      },
      onDone: (r) => {
        this.tally(r);
        chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: r.finishReason }]);
        if (includeUsage) sse.send({ ...base, object: 'chat.completion.chunk', choices: [], usage: usage(r) });
        sse.end();
      },
      onError: (e) => sse.fail(e),
    });
    void ticket;
    chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]);
  }

  private async completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.checkOpen();
    const o = await this.readBody(req);
    this.checkModel(field.str(o, 'model'));
    const tok = this.opts.model.tokenizer;
    const prompts = promptField(o, tok.vocabSize);
    const sampling = samplingFields(o);
    const stop = stopField(o);
    checkN(o);
    const stream = field.bool(o, 'stream') ?? false;
    const includeUsage = field.bool(field.obj(o, 'stream_options') ?? {}, 'include_usage') ?? false;
    const echo = field.bool(o, 'echo') ?? false;
    const logprobs = field.int(o, 'logprobs', 0, 20);
    const ignoreEos = field.bool(o, 'ignore_eos') ?? false;
    if (field.str(o, 'suffix')) throw badRequest(`'suffix' is not supported`, 'suffix', 'invalid_value');
    const items = prompts.map((p) => {
      const ids = typeof p === 'string' ? tok.encode(p) : p;
      if (ids.length === 0) throw badRequest('the prompt encodes to no tokens', 'prompt', 'invalid_value');
      return { text: typeof p === 'string' ? p : tok.decode(p), ids };
    });
    const maxTokens = items.map((it) => this.maxTokens(o, it.ids.length, 16, 0, ['max_tokens']));
    if (!this.engine.hasRoom(items.length)) {
      this.counters.rejected429++;
      throw new ApiError(429, `the server is busy: ${items.length} prompt(s) do not fit in the free slots and queue; retry later`, 'rate_limit_error', null, 'rate_limit_exceeded', { 'retry-after': '1' });
    }
    const id = `cmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: this.opts.modelId, system_fingerprint: this.fingerprint };
    const scoring = echo && logprobs !== undefined;
    const genReq = (i: number) => ({
      promptIds: items[i]!.ids, maxTokens: maxTokens[i]!, sampling, stop, ignoreEos,
      ...(logprobs !== undefined && { logprobs }), ...(scoring && { promptLogprobs: true }),
    });
    const topDict = (lp: TokenLogprob | null) => {
      if (!lp) return null;
      const d: Record<string, number> = {};
      for (const t of lp.top) {
        const s = this.tokenText(t.id);
        if (!(s in d)) d[s] = t.logprob;
      }
      return d;
    };
    /** OpenAI's completions logprobs object for these tokens, offsets counted from `start`. */
    const lpObject = (ids: number[], lps: (TokenLogprob | null)[], start: number) => {
      const tokens = ids.map((t) => this.tokenText(t));
      const text_offset: number[] = [];
      let at = start;
      for (const t of tokens) {
        text_offset.push(at);
        at += t.length;
      }
      return { tokens, token_logprobs: lps.map((lp) => (lp ? lp.logprob : null)), top_logprobs: lps.map(topDict), text_offset };
    };
    // the generated tokens' entries, and last the end-of-generation token that stopped the
    // sequence (as OpenAI lists it: lm-eval's local-completions drops the entry after the prompt's,
    // so with max_tokens 1 there must be one whichever token the model chose)
    const genIds = (r: GenResult) => (r.stopLogprob ? [...r.tokens, r.stopLogprob.id] : r.tokens);
    const genLps = (r: GenResult) => (r.stopLogprob ? [...r.logprobs, r.stopLogprob] : r.logprobs);
    const choiceLogprobs = (i: number, r: GenResult) => {
      if (logprobs === undefined) return null;
      const gen = lpObject(genIds(r), genLps(r), echo ? items[i]!.text.length : 0);
      if (!echo) return gen;
      const pr = lpObject(items[i]!.ids, scoring ? r.promptLogprobs : items[i]!.ids.map(() => null), 0);
      return {
        tokens: [...pr.tokens, ...gen.tokens], token_logprobs: [...pr.token_logprobs, ...gen.token_logprobs],
        top_logprobs: [...pr.top_logprobs, ...gen.top_logprobs], text_offset: [...pr.text_offset, ...gen.text_offset],
      };
    };

    if (!stream) {
      const results = await Promise.all(items.map((_, i) => this.run(req, res, genReq(i))));
      if (results.some((r) => !r)) return;
      const rs = results as GenResult[];
      const pt = rs.reduce((a, r) => a + r.promptTokens, 0);
      const ct = rs.reduce((a, r) => a + r.tokens.length, 0);
      this.json(res, 200, {
        ...base, object: 'text_completion',
        choices: rs.map((r, i) => ({ text: (echo ? items[i]!.text : '') + r.text, index: i, logprobs: choiceLogprobs(i, r), finish_reason: r.finishReason })),
        usage: { prompt_tokens: pt, completion_tokens: ct, total_tokens: pt + ct },
      });
      return;
    }
    const sse = this.startSse(res);
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => sse.send({ ...base, object: 'text_completion', choices, ...(includeUsage && { usage: null }), ...extra });
    let left = items.length;
    let pt = 0;
    let ct = 0;
    items.forEach((it, i) => {
      if (echo) chunk([{ text: it.text, index: i, logprobs: null, finish_reason: null }]);
      this.submitStreaming(res, {
        ...genReq(i),
        onToken: (text, lp) => {
          if (text === '' && !lp) return;
          chunk([{ text, index: i, logprobs: lp ? lpObject([lp.id], [lp], 0) : null, finish_reason: null }]);
        },
        onDone: (r) => {
          this.tally(r);
          pt += r.promptTokens;
          ct += r.tokens.length;
          const stopLp = r.stopLogprob ? lpObject([r.stopLogprob.id], [r.stopLogprob], 0) : null;
          chunk([{ text: '', index: i, logprobs: stopLp, finish_reason: r.finishReason }]);
          if (--left === 0) {
            if (includeUsage) sse.send({ ...base, object: 'text_completion', choices: [], usage: { prompt_tokens: pt, completion_tokens: ct, total_tokens: pt + ct } });
            sse.end();
          }
        },
        onError: (e) => sse.fail(e),
      });
    });
  }

  private tally(r: GenResult): void {
    this.counters.promptTokens += r.promptTokens;
    this.counters.completionTokens += r.tokens.length;
  }

  /** Run one request to the end; undefined when the client went away (its generation is cancelled). */
  private run(req: IncomingMessage, res: ServerResponse, r: Omit<GenRequest, 'onDone' | 'onError'>): Promise<GenResult | undefined> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ticket = this.submit({
        ...r,
        onDone: (out) => {
          settled = true;
          this.tally(out);
          resolve(out);
        },
        onError: (e) => {
          settled = true;
          reject(e);
        },
      });
      res.on('close', () => {
        if (!settled && !res.writableFinished) {
          this.counters.cancelled++;
          ticket.cancel();
          resolve(undefined);
        }
      });
      void req;
    });
  }

  private submitStreaming(res: ServerResponse, r: GenRequest): { cancel(): void } {
    let finished = false;
    const ticket = this.submit({
      ...r,
      onDone: (out) => {
        finished = true;
        r.onDone(out);
      },
      onError: (e) => {
        finished = true;
        r.onError(e);
      },
    });
    res.on('close', () => {
      if (!finished) {
        this.counters.cancelled++;
        ticket.cancel();
      }
    });
    return ticket;
  }

  private startSse(res: ServerResponse): { send(o: unknown): void; end(): void; fail(e: Error): void } {
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.flushHeaders();
    };
    return {
      send: (o) => {
        start();
        if (!res.destroyed) res.write(`data: ${JSON.stringify(o)}\n\n`);
      },
      end: () => {
        start();
        if (!res.destroyed && !res.writableEnded) res.end('data: [DONE]\n\n');
      },
      fail: (e) => {
        start();
        const err = e instanceof ApiError ? e : new ApiError(500, `generation failed: ${e.message}`, 'server_error', null, null);
        if (!res.destroyed && !res.writableEnded) res.end(`data: ${JSON.stringify(err.body())}\n\n`);
      },
    };
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  private sendError(res: ServerResponse, e: unknown): void {
    const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, 'server_error');
    if (!(e instanceof ApiError)) process.stderr.write(`serve: ${(e as Error)?.stack ?? String(e)}\n`);
    if (res.headersSent) {
      if (!res.writableEnded) res.end(`data: ${JSON.stringify(err.body())}\n\n`);
      return;
    }
    // an unread body (an early 401/413/404) must not be mistaken for the next request
    this.json(res, err.status, err.body(), { ...err.headers, ...(err.status === 413 && { connection: 'close' }) });
  }

  /** Prometheus text exposition. */
  metrics(): string {
    const e = this.engine.getStats();
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`${name}${labels} ${Number.isFinite(v) ? v : 0}`);
    };
    metric('ctxsparse_requests_total', 'counter', 'HTTP requests by endpoint and status code',
      [...this.counters.requests].map(([k, v]) => {
        const [ep, st] = k.split('|');
        return [`{endpoint="${ep}",status="${st}"}`, v];
      }));
    metric('ctxsparse_requests_rejected_total', 'counter', 'requests refused with 429 (slots and queue full)', [['', this.counters.rejected429]]);
    metric('ctxsparse_requests_cancelled_total', 'counter', 'generations cancelled because the client disconnected', [['', this.counters.cancelled]]);
    metric('ctxsparse_prompt_tokens_total', 'counter', 'prompt tokens of finished requests', [['', this.counters.promptTokens]]);
    metric('ctxsparse_completion_tokens_total', 'counter', 'generated tokens of finished requests', [['', this.counters.completionTokens]]);
    metric('ctxsparse_prompt_tokens_computed_total', 'counter', 'prompt tokens fed through the model (cached prefixes excluded)', [['', e.promptTokens]]);
    metric('ctxsparse_prompt_tokens_cached_total', 'counter', 'prompt tokens reused from a slot\'s cache', [['', e.cachedPromptTokens]]);
    metric('ctxsparse_generated_tokens_total', 'counter', 'tokens sampled by the engine', [['', e.generatedTokens]]);
    metric('ctxsparse_tokens_per_second', 'gauge', 'generated tokens per second over the last 10 s (all sequences)', [['', Math.round(this.engine.tokensPerSecond() * 100) / 100]]);
    metric('ctxsparse_queue_depth', 'gauge', 'requests waiting for a slot', [['', e.queued]]);
    metric('ctxsparse_active_sequences', 'gauge', 'sequences being generated', [['', e.active]]);
    metric('ctxsparse_slots', 'gauge', 'sequences decoded together at most (--parallel)', [['', this.engine.parallel]]);
    metric('ctxsparse_batch_steps_total', 'counter', 'forward passes', [['', e.steps]]);
    metric('ctxsparse_batch_rows_total', 'counter', 'rows (tokens) over all forward passes', [['', e.rows]]);
    const d = this.opts.policy?.realized();
    metric('ctxsparse_realized_density', 'gauge', 'share of the linear weights used, realized so far (1 = dense)', [['', d ? Math.round(d.linear * 1e4) / 1e4 : 1]]);
    if (this.opts.sparseHead) {
      const V = this.opts.model.config.vocabSize;
      metric('ctxsparse_head_steps_total', 'counter', 'forward passes whose logits came from the sparse output layer', [['', e.headSteps]]);
      metric('ctxsparse_head_rows_total', 'counter', 'vocabulary rows the sparse output layer computed exactly, over those passes', [['', e.headRows]]);
      metric('ctxsparse_head_rows_rescored', 'gauge', `mean rows computed exactly per sparse-head step (of ${V})`, [['', e.headSteps ? Math.round(e.headRows / e.headSteps * 10) / 10 : 0]]);
    }
    metric('process_resident_memory_bytes', 'gauge', 'resident set size', [['', process.memoryUsage.rss()]]);
    return lines.join('\n') + '\n';
  }
}
