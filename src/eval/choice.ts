// Log-likelihood scoring of continuations, with lm-evaluation-harness's conventions so figures
// compare with its (and DATA.md's llama.cpp-based) numbers:
// - continuation = " " + choice, with no added space when the context already ends in whitespace;
// - trailing whitespace of the context moves to the front of the continuation before tokenizing
//   (as lm-eval does: a tokenizer would otherwise give a context ending in a lone space token that
//   the whole string never has, and the continuation could come out empty);
// - the continuation's tokens are those of tokenize(context + continuation) after the first
//   len(tokenize(context)) (BPE may merge across the boundary: the whole string decides), and the
//   model reads tokenize(context) followed by them;
// - BOS by the model's rule, on both tokenizations (it shifts both equally);
// - acc: argmax of the summed log-probabilities; acc_norm: argmax of that sum / the continuation's
//   length in UTF-8 bytes; LAMBADA: the greedy token equals the target at every continuation token.
// The shared context is computed once per task; each continuation is one batched forward call
// from the cache truncated back to the context.

import { CtxError } from '../errors.js';
import type { Forward } from '../model/forward.js';
import type { KVCache } from '../model/kv-cache.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { logProb } from './perplexity.js';
import type { LambadaItem, McItem } from './tasks.js';

/** " " + choice unless the context ends in whitespace (or the choice starts with it: nothing to add). */
export function continuationText(context: string, choice: string): string {
  return /\s$/.test(context) ? choice : ' ' + choice;
}

/** Token ids with BOS by the model's rule and never an appended EOS (the split needs plain prefixes). */
export function encodeEval(tok: Tokenizer, text: string): number[] {
  const ids = tok.encode(text, { addBos: false, parseSpecial: false });
  if (tok.addBosDefault) {
    if (tok.bos === undefined) throw new CtxError('the model adds BOS but its tokenizer has none');
    ids.unshift(tok.bos);
  }
  return ids;
}

/** The context's tokens and the continuation's (those of the whole after the context's length). */
export function splitContinuation(tok: Tokenizer, context: string, continuation: string): { context: number[]; continuation: number[] } {
  const trimmed = context.replace(/\s+$/, '');
  const moved = context.slice(trimmed.length);
  const ctx = encodeEval(tok, trimmed);
  const whole = encodeEval(tok, trimmed + moved + continuation);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

export interface ContinuationScore {
  /** Σ log p(continuation token | everything before it) */
  readonly logprob: number;
  /** every continuation token is the argmax of its prediction */
  readonly greedy: boolean;
  readonly tokens: number;
}

/**
 * Score continuations of one context: the context is run once (the logits after its last token
 * kept), then each continuation in one forward call over all but its last token from the cache
 * truncated back to the context.
 */
export function scoreContinuations(forward: Forward, kv: KVCache, vocab: number, context: readonly number[], continuations: readonly (readonly number[])[]): ContinuationScore[] {
  if (context.length === 0) throw new CtxError('an empty context: nothing predicts the first continuation token (the model adds no BOS)');
  const need = context.length + Math.max(...continuations.map((c) => c.length)) - 1;
  if (need > kv.ctx) throw new CtxError(`a task needs ${need} positions but the evaluation cache holds ${kv.ctx}`);
  kv.truncate(0);
  const last = Float32Array.from(forward.run(kv, context, 0, 'last')!);
  const out: ContinuationScore[] = [];
  for (const cont of continuations) {
    if (cont.length === 0) throw new CtxError('a continuation with no tokens of its own (the context\'s tokenization swallowed it)');
    let lp = logProb(last, 0, vocab, cont[0]!);
    let greedy = argmaxAt(last, 0, vocab) === cont[0];
    if (cont.length > 1) {
      kv.truncate(context.length);
      const rows = forward.run(kv, cont.slice(0, -1), context.length, 'all')!;
      for (let i = 1; i < cont.length; i++) {
        const off = (i - 1) * vocab;
        lp += logProb(rows, off, vocab, cont[i]!);
        if (greedy && argmaxAt(rows, off, vocab) !== cont[i]) greedy = false;
      }
    }
    out.push({ logprob: lp, greedy, tokens: cont.length });
  }
  return out;
}

function argmaxAt(a: Float32Array, off: number, n: number): number {
  let best = 0;
  let v = -Infinity;
  for (let i = 0; i < n; i++) if (a[off + i]! > v) { v = a[off + i]!; best = i; }
  return best;
}

export interface McPrediction {
  readonly logprobs: number[];
  /** UTF-8 bytes of each continuation (with its leading space) */
  readonly bytes: number[];
  readonly pred: number;
  readonly predNorm: number;
}

const utf8 = new TextEncoder();

/** First index of the maximum (ties go to the earlier choice, as numpy's argmax). */
export function argmaxOf(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

export function scoreMc(forward: Forward, kv: KVCache, tok: Tokenizer, vocab: number, item: McItem): McPrediction {
  const conts = item.choices.map((c) => continuationText(item.query, c));
  const splits = conts.map((c) => splitContinuation(tok, item.query, c));
  const context = splits[0]!.context;
  const scores = scoreContinuations(forward, kv, vocab, context, splits.map((s) => s.continuation));
  const logprobs = scores.map((s) => s.logprob);
  const bytes = conts.map((c) => utf8.encode(c).length);
  return { logprobs, bytes, pred: argmaxOf(logprobs), predNorm: argmaxOf(logprobs.map((lp, i) => lp / bytes[i]!)) };
}

export function scoreLambada(forward: Forward, kv: KVCache, tok: Tokenizer, vocab: number, item: LambadaItem): ContinuationScore {
  const s = splitContinuation(tok, item.context, continuationText(item.context, item.continuation));
  return scoreContinuations(forward, kv, vocab, s.context, [s.continuation])[0]!;
}

/** Mean and standard error of 0/1 outcomes, in percent (stderr with n − 1, as lm-eval's mean_stderr). */
export function percentWithStderr(hits: number, n: number): { value: number; stderr: number } {
  const p = n > 0 ? hits / n : NaN;
  return { value: 100 * p, stderr: n > 1 ? 100 * Math.sqrt((p * (1 - p)) / (n - 1)) : 0 };
}
