// The server's generation engine: continuous batching over a fixed set of slots. Each slot owns
// a KV cache; every step feeds one token of every decoding sequence plus a chunk of waiting
// prompts through ONE forward pass (Forward.runBatch), so the weights are read once per step for
// all of them. New requests are admitted between steps, and the loop yields to the event loop
// after every step so HTTP keeps being served while the (synchronous) engine works.

import { CtxError } from '../errors.js';
import type { Forward } from '../model/forward.js';
import type { KVCache } from '../model/kv-cache.js';
import type { Model } from '../model/load.js';
import { Sampler, topLogits, type SamplerOptions } from '../generate/sampler.js';
import type { SparseHead } from '../sparsity/head.js';
import { densePolicy, type Selection, type SparsityPolicy } from '../sparsity/policy.js';
import { StreamDecoder } from '../tokenizer/index.js';

/** A token's log-probability and the k best alternatives (ids, log-probabilities), best first. */
export interface TokenLogprob {
  readonly id: number;
  readonly logprob: number;
  readonly top: { id: number; logprob: number }[];
}

export interface GenRequest {
  readonly promptIds: readonly number[];
  readonly maxTokens: number;
  readonly sampling: SamplerOptions;
  readonly stop: readonly string[];
  /** alternatives per token for logprobs (undefined = no logprobs) */
  readonly logprobs?: number;
  /** keep generating past end-of-generation tokens (llama.cpp server's ignore_eos; fixed-length benchmarks) */
  readonly ignoreEos?: boolean;
  /** also score the prompt's own tokens (completions echo + logprobs) */
  readonly promptLogprobs?: boolean;
  /** a token was chosen: `text` is the newly releasable text (may be empty) */
  onToken?(text: string, lp: TokenLogprob | undefined): void;
  onDone(result: GenResult): void;
  onError(err: Error): void;
}

export type FinishReason = 'stop' | 'length';

export interface GenResult {
  readonly text: string;
  readonly tokens: number[];
  readonly logprobs: TokenLogprob[];
  /** per prompt token (the first is null: nothing predicts it) when promptLogprobs was asked */
  readonly promptLogprobs: (TokenLogprob | null)[];
  /**
   * the end-of-generation token that stopped the sequence, with its log-probability, when logprobs
   * were asked (not in `tokens` or `text`; OpenAI's completions still list it among the logprobs)
   */
  readonly stopLogprob: TokenLogprob | null;
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
  /** ms from submit to the first generated token */
  readonly ttftMs: number;
}

export interface EngineOptions {
  /** sequences decoded together */
  readonly parallel: number;
  /** requests waiting beyond the active ones */
  readonly queue: number;
  /** context per slot */
  readonly ctx: number;
  /** rows per forward pass (decode rows first, prompt chunks fill the rest) */
  readonly batch?: number;
  readonly policy?: SparsityPolicy;
  /**
   * The sparse output layer (src/sparsity/head.ts). Its screen works row by row, so it serves the
   * steps with one row to sample from (one sequence decoding), without log-probabilities; batched
   * steps keep the dense head, whose weights are read once for all their rows.
   */
  readonly sparseHead?: SparseHead | null;
}

/** Thrown by submit when the queue is full. */
export class QueueFullError extends Error {}

/** A handle on a submitted request. */
export interface Ticket {
  cancel(): void;
}

interface Seq {
  readonly req: GenRequest;
  readonly submitted: number;
  slot?: Slot;
  /** prompt tokens fed so far */
  fed: number;
  /** the sampled token not yet fed */
  pending: number;
  readonly sampler: Sampler;
  readonly decoder: StreamDecoder;
  readonly tokens: number[];
  readonly logprobs: TokenLogprob[];
  readonly promptLogprobs: (TokenLogprob | null)[];
  stopLogprob: TokenLogprob | null;
  text: string;
  emitted: number;
  ttftMs: number;
  cancelled: boolean;
  done: boolean;
}

interface Row {
  readonly seq: Seq;
  readonly token: number;
  readonly pos: number;
  readonly logits: boolean;
  /** index in the prompt, or -1 for a decode row */
  readonly promptIndex: number;
}

interface Slot {
  readonly kv: KVCache;
  /** token ids whose keys and values the cache holds (reused as a prefix by the next request) */
  readonly ids: number[];
  seq: Seq | undefined;
}

export interface EngineStats {
  readonly active: number;
  readonly queued: number;
  readonly steps: number;
  readonly rows: number;
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly cachedPromptTokens: number;
  /** steps whose logits came from the sparse head, and the vocabulary rows it computed exactly over them */
  readonly headSteps: number;
  readonly headRows: number;
}

export class Engine {
  readonly forward: Forward;
  readonly ctx: number;
  private readonly slots: Slot[];
  private readonly waiting: Seq[] = [];
  private readonly queueCap: number;
  private readonly batch: number;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  /** generated-token timestamps over the last window, for the tok/s gauge */
  private readonly recent: number[] = [];
  private stats = { steps: 0, rows: 0, promptTokens: 0, generatedTokens: 0, cachedPromptTokens: 0, headSteps: 0, headRows: 0 };
  private readonly sparseHead: SparseHead | null;

  constructor(readonly model: Model, opts: EngineOptions) {
    if (!(opts.parallel >= 1)) throw new CtxError(`--parallel: expected an integer ≥ 1, got ${opts.parallel}`);
    this.batch = Math.max(opts.batch ?? 32, opts.parallel);
    this.forward = model.createForward(this.batch);
    this.forward.policy = opts.policy ?? densePolicy;
    this.sparseHead = opts.sparseHead ?? null;
    this.ctx = opts.ctx;
    this.queueCap = opts.queue;
    // caches live in the kernels' memory for the server's life: allocate them once, reuse per request
    this.slots = Array.from({ length: opts.parallel }, () => ({ kv: model.createCache(opts.ctx), ids: [], seq: undefined }));
  }

  get parallel(): number {
    return this.slots.length;
  }

  get queued(): number {
    return this.waiting.length;
  }

  get active(): number {
    return this.slots.filter((s) => s.seq).length;
  }

  /** Free room for `n` more requests (active slots plus the bounded queue)? */
  hasRoom(n = 1): boolean {
    const free = this.slots.filter((s) => !s.seq).length;
    return this.waiting.length + n <= free + this.queueCap;
  }

  getStats(): EngineStats {
    return { active: this.active, queued: this.queued, ...this.stats };
  }

  /** Generated tokens per second over the last 10 s. */
  tokensPerSecond(now = performance.now()): number {
    while (this.recent.length && this.recent[0]! < now - 10_000) this.recent.shift();
    if (this.recent.length < 2) return 0;
    const span = Math.max(now - this.recent[0]!, 1000);
    return (this.recent.length * 1000) / span;
  }

  submit(req: GenRequest): Ticket {
    if (req.promptIds.length === 0) throw new CtxError('the prompt is empty');
    if (req.promptIds.length + req.maxTokens > this.ctx) {
      throw new CtxError(`this server's context is ${this.ctx} tokens; the request needs ${req.promptIds.length + req.maxTokens} (${req.promptIds.length} prompt + ${req.maxTokens} max_tokens)`);
    }
    if (!this.hasRoom()) throw new QueueFullError('the server is busy: every slot and the queue are full; retry later');
    const seq: Seq = {
      req, submitted: performance.now(), fed: 0, pending: -1,
      sampler: new Sampler(req.sampling), decoder: new StreamDecoder(this.model.tokenizer),
      tokens: [], logprobs: [], promptLogprobs: req.promptLogprobs ? [null] : [], stopLogprob: null,
      text: '', emitted: 0, ttftMs: 0, cancelled: false, done: false,
    };
    this.waiting.push(seq);
    this.schedule();
    return { cancel: () => this.cancel(seq) };
  }

  /** Resolves once nothing is active or queued (SIGTERM drain). */
  idle(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private cancel(seq: Seq): void {
    if (seq.done) return;
    seq.cancelled = true;
    seq.done = true;
    const i = this.waiting.indexOf(seq);
    if (i >= 0) this.waiting.splice(i, 1);
    if (seq.slot) this.release(seq);
    this.checkIdle();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.loop();
    });
  }

  private loop(): void {
    this.admit();
    if (this.slots.some((s) => s.seq)) {
      try {
        this.step();
      } catch (e) {
        // a failing step fails the sequences in it, never the server
        for (const s of this.slots) if (s.seq) this.fail(s.seq, e as Error);
      }
    }
    if (this.slots.some((s) => s.seq) || this.waiting.length) this.schedule();
    else this.checkIdle();
  }

  private checkIdle(): void {
    if (this.active === 0 && this.waiting.length === 0 && this.idleWaiters.length) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r();
    }
  }

  /** Move waiting requests into free slots, each into the one whose cache shares the longest prefix. */
  private admit(): void {
    while (this.waiting.length) {
      const free = this.slots.filter((s) => !s.seq);
      if (free.length === 0) return;
      const seq = this.waiting.shift()!;
      const ids = seq.req.promptIds;
      let best = free[0]!;
      let bestCommon = -1;
      for (const s of free) {
        let c = 0;
        while (c < s.ids.length && c < ids.length && s.ids[c] === ids[c]) c++;
        if (c > bestCommon) {
          best = s;
          bestCommon = c;
        }
      }
      // scoring the prompt needs the logits of every prompt position: compute it all
      let common = seq.req.promptLogprobs ? 0 : bestCommon;
      if (common >= ids.length) common = ids.length - 1; // recompute the last token for its logits
      best.ids.length = common;
      best.kv.truncate(common);
      best.seq = seq;
      seq.slot = best;
      seq.fed = common;
      this.stats.cachedPromptTokens += common;
    }
  }

  private step(): void {
    const rows: Row[] = [];
    // decoding sequences first: one row each
    for (const slot of this.slots) {
      const seq = slot.seq;
      if (seq && seq.fed === seq.req.promptIds.length) rows.push({ seq, token: seq.pending, pos: slot.ids.length, logits: true, promptIndex: -1 });
    }
    const decoding = rows.length;
    // then prompt chunks, oldest first, as far as the batch has room (with a sparsity policy the
    // prompts get a pass of their own, full chunks as Session's prefill makes them: the 8-bit
    // kernels round a little differently in other groupings, which a policy's thresholds amplify)
    const sparse = this.forward.policy !== densePolicy;
    const room = sparse ? decoding + this.batch : this.batch;
    const prefilling = this.slots.filter((s) => s.seq && s.seq.fed < s.seq.req.promptIds.length).sort((a, b) => a.seq!.submitted - b.seq!.submitted);
    for (const slot of prefilling) {
      const seq = slot.seq!;
      const ids = seq.req.promptIds;
      for (let i = seq.fed; i < ids.length && rows.length < room; i++) {
        const last = i === ids.length - 1;
        // scoring asks for every prompt row's logits, the last one's too: rows then keep their
        // order in the pass, so a prompt alone is grouped as Forward.run groups it (the 8-bit
        // activation kernels round a little differently in full and ragged groups of four rows)
        const logits = seq.req.promptLogprobs === true || (last && seq.req.maxTokens > 0);
        rows.push({ seq, token: ids[i]!, pos: i, logits, promptIndex: i });
      }
    }
    if (rows.length === 0) return;
    // a sparsity policy thins decoding only: prompts go through a dense pass of their own, as in
    // generation (Session); without one, decode rows and prompt chunks share one pass
    if (!sparse || decoding === 0 || decoding === rows.length) {
      this.pass(rows, decoding === 0 && sparse);
    } else {
      this.pass(rows.slice(decoding), true);
      this.pass(rows.slice(0, decoding), false);
    }
  }

  private pass(rows: Row[], dense: boolean): void {
    const V = this.model.config.vocabSize;
    const head = this.headFor(rows);
    this.forward.outputHead = head;
    const out = this.forward.runBatch(rows.map((r) => ({ kv: r.seq.slot!.kv, token: r.token, pos: r.pos, logits: r.logits })), dense);
    this.forward.outputHead = null;
    // with the sparse head there is one logits row, and only its computed rows can be finite
    const support = head ? this.forward.headSupport : null;
    if (head) {
      this.stats.headSteps++;
      this.stats.headRows += this.forward.headRows;
    }
    this.stats.steps++;
    this.stats.rows += rows.length;
    let li = 0;
    const now = performance.now();
    for (const r of rows) {
      const seq = r.seq;
      const slot = seq.slot!;
      slot.ids.push(r.token);
      if (r.promptIndex >= 0) {
        seq.fed++;
        this.stats.promptTokens++;
      }
      const logits = r.logits ? out.subarray(li * V, (li + 1) * V) : undefined;
      if (r.logits) li++;
      if (seq.done) continue;
      const ids = seq.req.promptIds;
      if (r.promptIndex >= 0 && r.promptIndex < ids.length - 1) {
        if (logits && seq.req.promptLogprobs) seq.promptLogprobs.push(logprobOf(logits, ids[r.promptIndex + 1]!, seq.req.logprobs ?? 0));
        continue;
      }
      // the last prompt token or a decode row: its logits choose the next token
      if (seq.req.maxTokens === 0 || !logits) {
        this.finish(seq, 'length');
        continue;
      }
      this.generated(seq, logits, now, support);
    }
  }

  /**
   * The sparse head for a pass whose only logits row samples a token without log-probabilities,
   * told how that sequence samples (which rows can matter); else null (the dense head).
   */
  private headFor(rows: readonly Row[]): SparseHead | null {
    const head = this.sparseHead;
    if (!head) return null;
    let row: Row | null = null;
    for (const r of rows) {
      if (!r.logits) continue;
      if (row) return null;
      row = r;
    }
    if (!row) return null;
    const req = row.seq.req;
    const sampling = row.promptIndex < 0 || row.promptIndex === req.promptIds.length - 1;
    if (!sampling || req.logprobs !== undefined || req.promptLogprobs || req.maxTokens === 0) return null;
    const o = row.seq.sampler.opts;
    // the sampler will see the cached ids plus this row's token (pass pushes it after the step)
    let penalised: Set<number> | undefined;
    if (o.repeatPenalty !== 1 && o.repeatLastN > 0) {
      const ids = row.seq.slot!.ids;
      penalised = new Set(ids.slice(Math.max(0, ids.length - o.repeatLastN + 1)));
      penalised.add(row.token);
    }
    head.sampling = { temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP, repeatPenalty: o.repeatPenalty, ...(penalised && { penalised }) };
    return head;
  }

  private generated(seq: Seq, logits: Float32Array, now: number, support: Selection | null = null): void {
    const req = seq.req;
    // log-probabilities of the model's distribution, before the sampler's penalties change the logits
    const probe = req.logprobs !== undefined ? { logits: new Float32Array(logits) } : undefined;
    const id = seq.sampler.sample(logits, seq.slot!.ids, support);
    if (seq.tokens.length === 0) seq.ttftMs = now - seq.submitted;
    this.stats.generatedTokens++;
    this.recent.push(now);
    const tlp = probe ? logprobOf(probe.logits, id, req.logprobs!) : undefined;
    if (!req.ignoreEos && this.model.tokenizer.eog.has(id)) {
      // scoring clients (lm-eval's local-completions: echo, max_tokens 1) count on one generated
      // entry after the prompt's, whichever token it is
      seq.stopLogprob = tlp ?? null;
      this.finish(seq, 'stop');
      return;
    }
    seq.tokens.push(id);
    if (tlp) seq.logprobs.push(tlp);
    seq.text += seq.decoder.push(id);
    // release the text that cannot be the start of a stop string; end at a stop string
    const stops = req.stop;
    let at = -1;
    let maxStop = 0;
    for (const s of stops) maxStop = Math.max(maxStop, s.length);
    const from = Math.max(0, seq.emitted - maxStop);
    for (const s of stops) {
      const k = seq.text.indexOf(s, from);
      if (k >= 0 && (at < 0 || k < at)) at = k;
    }
    if (at >= 0) {
      seq.text = seq.text.slice(0, at);
      this.releaseText(seq, seq.text.length, tlp);
      this.finish(seq, 'stop');
      return;
    }
    const safe = seq.text.length - heldBack(seq.text, stops);
    this.releaseText(seq, safe, tlp);
    if (seq.tokens.length >= req.maxTokens) {
      this.finish(seq, 'length');
      return;
    }
    seq.pending = id;
  }

  private releaseText(seq: Seq, upTo: number, lp: TokenLogprob | undefined): void {
    const piece = upTo > seq.emitted ? seq.text.slice(seq.emitted, upTo) : '';
    seq.emitted = Math.max(seq.emitted, upTo);
    try {
      seq.req.onToken?.(piece, lp);
    } catch (e) {
      this.fail(seq, e as Error);
    }
  }

  private finish(seq: Seq, reason: FinishReason): void {
    if (seq.done) return;
    // whatever was held back for a possible stop string, and an incomplete character at the end
    const tail = reason === 'length' || reason === 'stop' ? seq.decoder.flush() : '';
    if (reason === 'length') seq.text += tail;
    if (seq.emitted < seq.text.length) {
      const rest = seq.text.slice(seq.emitted);
      seq.emitted = seq.text.length;
      try {
        seq.req.onToken?.(rest, undefined);
      } catch { /* the client is gone; finishing anyway */ }
    }
    seq.done = true;
    this.release(seq);
    try {
      seq.req.onDone({
        text: seq.text, tokens: seq.tokens, logprobs: seq.logprobs, promptLogprobs: seq.promptLogprobs, stopLogprob: seq.stopLogprob,
        finishReason: reason, promptTokens: seq.req.promptIds.length, ttftMs: seq.ttftMs,
      });
    } catch { /* a failing callback must not stop the engine */ }
  }

  private fail(seq: Seq, err: Error): void {
    if (seq.done) return;
    seq.done = true;
    this.release(seq);
    try {
      seq.req.onError(err);
    } catch { /* ignore */ }
  }

  private release(seq: Seq): void {
    const slot = seq.slot;
    if (!slot || slot.seq !== seq) return;
    slot.seq = undefined;
    // the cache holds exactly slot.ids (a failed step may have written positions beyond them)
    slot.kv.truncate(slot.ids.length);
  }
}

/** How many characters at the end of `text` could be the beginning of a stop string. */
function heldBack(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

/** log-softmax of `logits` at `id`, and the k most likely tokens with theirs. */
export function logprobOf(logits: Float32Array, id: number, k: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const top = k > 0 ? topLogits(logits, k).ids.map((i) => ({ id: i, logprob: logits[i]! - lse })) : [];
  return { id, logprob: logits[id]! - lse, top };
}
