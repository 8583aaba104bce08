// Comparison with llama.cpp's golden greedy runs (../shared/golden/<model>/greedy.json):
// the prompt ids must match, every greedy token must match until a step where llama.cpp's own
// top-1/top-2 margin is a near tie, and the top-10 logits must agree within a tolerance.

import { readFileSync } from 'node:fs';
import type { Model } from '../model/load.js';
import { Session } from '../generate/session.js';
import { argmax } from '../generate/sampler.js';
import { renderChat } from '../generate/chat.js';

export interface GoldenCase {
  kind: 'text' | 'chat';
  prompt: string;
  prompt_ids: number[];
  greedy_ids: number[];
  greedy_text: string;
  top_logits: { ids: number[]; logits: number[] }[];
  top1_margin: number[];
}

export interface GoldenFile {
  model: string;
  cases: GoldenCase[];
}

export interface CaseReport {
  readonly prompt: string;
  readonly kind: string;
  readonly promptIdsMatch: boolean;
  /** for chat cases: our rendering of the one-user-turn conversation equals the golden prompt */
  readonly templateMatches?: boolean;
  /** steps compared (all of them, or up to and including a permitted near-tie divergence) */
  readonly compared: number;
  /** step where our greedy token differs from llama.cpp's (-1: none) */
  readonly divergedAt: number;
  /** true if every divergence happened at a near tie (margin below the threshold) */
  readonly ok: boolean;
  /** the largest |our logit − llama.cpp's| over the top-10 ids up to the divergence */
  readonly maxLogitError: number;
  readonly failure?: string;
}

export function readGolden(path: string): GoldenFile {
  return JSON.parse(readFileSync(path, 'utf8')) as GoldenFile;
}

/** The user message of the golden chat prompt (its text between the user header and the end of turn). */
export function chatUserMessage(prompt: string): string | undefined {
  const m = /user\n([\s\S]*?)(<\|im_end\|>|<end_of_turn>|<\|eot_id\|>)/.exec(prompt);
  return m?.[1];
}

export function checkGoldenCase(model: Model, c: GoldenCase, opts: { steps?: number; logitTolerance?: number; nearTie?: number } = {}): CaseReport {
  const tol = opts.logitTolerance ?? 0.1;
  const nearTie = opts.nearTie ?? 0.1;
  const steps = Math.min(opts.steps ?? c.greedy_ids.length, c.greedy_ids.length);
  const ids = model.tokenizer.encode(c.prompt);
  const promptIdsMatch = ids.length === c.prompt_ids.length && ids.every((v, i) => v === c.prompt_ids[i]);
  let templateMatches: boolean | undefined;
  if (c.kind === 'chat') {
    const user = chatUserMessage(c.prompt);
    templateMatches = user !== undefined && renderChat(model, [{ role: 'user', content: user }]) === c.prompt;
  }
  const base = { prompt: c.prompt, kind: c.kind, promptIdsMatch, ...(templateMatches !== undefined && { templateMatches }) };
  if (!promptIdsMatch) {
    return { ...base, compared: 0, divergedAt: -1, ok: false, maxLogitError: NaN, failure: `prompt ids differ: ours ${JSON.stringify(ids)}` };
  }
  const s = new Session(model);
  let logits = s.prefill(c.prompt_ids);
  let maxErr = 0;
  for (let j = 0; j < steps; j++) {
    const ref = c.top_logits[j]!;
    for (let i = 0; i < ref.ids.length; i++) maxErr = Math.max(maxErr, Math.abs(logits[ref.ids[i]!]! - ref.logits[i]!));
    const ours = argmax(logits);
    if (ours !== c.greedy_ids[j]) {
      const margin = c.top1_margin[j]!;
      const ok = margin < nearTie && maxErr <= tol;
      return {
        ...base, compared: j + 1, divergedAt: j, ok, maxLogitError: maxErr,
        ...(!ok && { failure: `step ${j}: ours ${ours}, llama.cpp ${c.greedy_ids[j]} with margin ${margin}` + (maxErr > tol ? `, logit error ${maxErr}` : '') }),
      };
    }
    if (j + 1 < steps) logits = s.append([ours]);
  }
  const ok = maxErr <= tol;
  return { ...base, compared: steps, divergedAt: -1, ok, maxLogitError: maxErr, ...(!ok && { failure: `logit error ${maxErr} above ${tol}` }) };
}
