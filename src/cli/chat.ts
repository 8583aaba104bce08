// `ctxsparse chat`: an interactive, streaming, multi-turn conversation in the terminal.

import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { chatPromptIds, type ChatMessage } from '../generate/chat.js';
import { Session } from '../generate/session.js';
import { addModelOptions, addSamplingOptions, int, openModel, samplerOptions, type SamplingFlags } from './common.js';

interface ChatFlags extends SamplingFlags {
  model: string;
  tokenizer?: string;
  system?: string;
  maxTokens: number;
  ctx?: number;
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
  cmd.action(async (o: ChatFlags) => {
    const model = openModel(o);
    const session = new Session(model, o.ctx !== undefined ? { ctx: o.ctx } : {});
    const start: ChatMessage[] = o.system !== undefined ? [{ role: 'system', content: o.system }] : [];
    let messages: ChatMessage[] = [...start];
    const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
    const ask = async (): Promise<string | null> => {
      try {
        return await rl.question('> ');
      } catch {
        return null; // closed (Ctrl-D or end of piped input)
      }
    };
    process.stderr.write(`${model.path}: ${model.config.arch}, ${model.config.nLayers} layers. /reset starts over, /exit quits.\n`);
    for (;;) {
      const line = await ask();
      if (line === null || line.trim() === '/exit') break;
      if (line.trim() === '') continue;
      if (line.trim() === '/reset') {
        messages = [...start];
        session.reset();
        continue;
      }
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
    rl.close();
  });
}
