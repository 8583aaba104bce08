// `ctxsparse chat`: an interactive, streaming, multi-turn conversation in the terminal.

import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { chatPromptIds, type ChatMessage } from '../generate/chat.js';
import { Session } from '../generate/session.js';
import { addModelOptions, addSamplingOptions, addSparseHeadOptions, addSparsityOption, int, openModel, samplerOptions, sparseHeadFor, sparsityPolicy, type SamplingFlags, type SparseHeadFlags } from './common.js';

interface ChatFlags extends SamplingFlags, SparseHeadFlags {
  model: string;
  tokenizer?: string;
  system?: string;
  maxTokens: number;
  ctx?: number;
  sparsity?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('chat')
    .description('talk with the model in the terminal (multi-turn, streaming); /reset starts over, /exit or Ctrl-D quits')
    .option('--system <text>', 'a system message')
    .option('-n, --max-tokens <n>', 'at most n tokens per answer', int('--max-tokens', 1), 512)
    .option('--ctx <n>', "context length in tokens (default: the model's, at most 4096)", int('--ctx', 1));
  addModelOptions(cmd);
  addSamplingOptions(cmd);
  addSparsityOption(cmd);
  addSparseHeadOptions(cmd, 'auto');
  cmd.action(async (o: ChatFlags) => {
    const model = openModel(o);
    const sparse = sparsityPolicy(o.sparsity, model);
    const head = sparseHeadFor(o, model, true);
    const session = new Session(model, { ...(o.ctx !== undefined && { ctx: o.ctx }), ...(sparse && { policy: sparse.policy }), sparseHead: head });
    const start: ChatMessage[] = o.system !== undefined ? [{ role: 'system', content: o.system }] : [];
    let messages: ChatMessage[] = [...start];
    // the line iterator buffers input, so piped conversations lose no line while a reply is generated
    const rl = createInterface({ input: process.stdin, terminal: false });
    const promptUser = () => process.stdout.write('> ');
    process.stderr.write(`${model.path}: ${model.config.arch}, ${model.config.nLayers} layers. /reset starts over, /exit quits.\n`);
    promptUser();
    for await (const line of rl) {
      const cmd = line.trim();
      if (cmd === '/exit') break;
      if (cmd === '/reset') {
        messages = [...start];
        session.reset();
      } else if (cmd !== '') {
        messages.push({ role: 'user', content: line });
        const ids = chatPromptIds(model, messages);
        let answer = '';
        let n = 0;
        const t0 = performance.now();
        for (const ev of session.generate(ids, { ...samplerOptions(o), maxTokens: o.maxTokens })) {
          process.stdout.write(ev.text);
          answer += ev.text;
          n++;
        }
        const secs = (performance.now() - t0) / 1000;
        process.stdout.write('\n');
        process.stderr.write(`[${n} tokens, ${(n / secs).toFixed(1)} tok/s${session.finishReason === 'context' ? ', context full: /reset to continue' : ''}]\n`);
        messages.push({ role: 'assistant', content: answer });
      }
      promptUser();
    }
    process.stdout.write('\n');
    rl.close();
  });
}
