// `ctxsparse generate`: complete a prompt (or one chat turn), streaming the text.

import type { Command } from 'commander';
import { chatPromptIds } from '../generate/chat.js';
import { Session } from '../generate/session.js';
import { CtxError } from '../errors.js';
import { percentiles, type SparseHead } from '../sparsity/head.js';
import { addModelOptions, addSamplingOptions, addSparseHeadOptions, addSparsityOption, int, openModel, promptText, samplerOptions, sparseHeadFor, sparsityPolicy, type SamplingFlags, type SparseHeadFlags } from './common.js';

interface GenerateFlags extends SamplingFlags, SparseHeadFlags {
  model: string;
  tokenizer?: string;
  prompt?: string;
  file?: string;
  maxTokens: number;
  chat?: boolean;
  system?: string;
  topLogits?: number;
  json?: boolean;
  ctx?: number;
  stop?: string[];
  sparsity?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('generate')
    .description('generate text after a prompt, streaming it to stdout')
    .option('-p, --prompt <text>', 'the prompt')
    .option('-f, --file <path>', 'read the prompt from a file')
    .option('-n, --max-tokens <n>', 'generate at most n tokens', int('--max-tokens'), 128)
    .option('--chat', "apply the model's chat template to the prompt as one user turn")
    .option('--system <text>', 'with --chat: a system message before the user turn')
    .option('--stop <text...>', 'stop when the output contains this text')
    .option('--top-logits <k>', 'with --json: record the k largest raw logits before each generated token (with the dense output layer)', int('--top-logits', 1))
    .option('--ctx <n>', 'context length in tokens (default: the model\'s, at most 4096)', int('--ctx', 1))
    .option('--json', 'print one JSON object: {prompt_tokens, tokens, text, tokens_per_second[, top_logits]}');
  addModelOptions(cmd);
  addSamplingOptions(cmd);
  addSparsityOption(cmd);
  addSparseHeadOptions(cmd, 'auto');
  cmd.action((o: GenerateFlags) => {
    const model = openModel(o);
    const sparse = sparsityPolicy(o.sparsity, model);
    const text = promptText(o);
    const promptIds = o.chat
      ? chatPromptIds(model, [...(o.system !== undefined ? [{ role: 'system', content: o.system }] : []), { role: 'user', content: text }])
      : model.tokenizer.encode(text);
    // the recorded top logits need every row exact
    if (o.topLogits !== undefined && o.sparseHead) throw new CtxError('--top-logits needs every logit exact: drop --sparse-head');
    const head = o.topLogits !== undefined ? null : sparseHeadFor(o, model, true);
    if (head) head.record = true;
    const session = new Session(model, { ...(o.ctx !== undefined && { ctx: o.ctx }), ...(sparse && { policy: sparse.policy }), sparseHead: head });
    const tokens: number[] = [];
    const top: { ids: number[]; logits: number[] }[] = [];
    let out = '';
    let firstAt = 0;
    const t0 = performance.now();
    for (const ev of session.generate(promptIds, {
      ...samplerOptions(o), maxTokens: o.maxTokens,
      ...(o.topLogits !== undefined && { topLogits: o.topLogits }),
      ...(o.stop && { stop: o.stop }),
    })) {
      if (tokens.length === 0) firstAt = performance.now();
      tokens.push(ev.id);
      if (ev.topLogits) top.push(ev.topLogits);
      out += ev.text;
      if (!o.json) process.stdout.write(ev.text);
    }
    const t1 = performance.now();
    // decode speed: tokens after the first over the time after the first (the first carries the prompt)
    const tps = tokens.length > 1 ? ((tokens.length - 1) * 1000) / (t1 - firstAt) : tokens.length > 0 ? 1000 / (t1 - t0) : 0;
    if (o.json) {
      const result = {
        prompt_tokens: promptIds,
        tokens,
        text: out,
        tokens_per_second: Math.round(tps * 100) / 100,
        ...(o.topLogits !== undefined && { top_logits: top }),
        ...(sparse && { density: sparse.policy.realized().linear }),
        ...(head && { sparse_head: headSummary(head) }),
      };
      process.stdout.write(JSON.stringify(result) + '\n');
    } else {
      process.stdout.write('\n');
      const h = head && headSummary(head);
      process.stderr.write(`[${promptIds.length} prompt tokens, ${tokens.length} generated, ${tps.toFixed(1)} tok/s, stop: ${session.finishReason}${h ? `, sparse head: ${h.rows.median} rows exact (median of ${h.steps} steps, ${h.dense_steps} dense)` : ''}]\n`);
    }
  });
}

/** What the sparse head did: one step per generated token. */
function headSummary(head: SparseHead): { steps: number; rows: { median: number; p99: number }; dense_steps: number } {
  const p = percentiles(head.stats.rescored);
  return { steps: head.stats.steps, rows: { median: p.median, p99: p.p99 }, dense_steps: head.stats.dense };
}
