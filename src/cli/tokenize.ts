// `ctxsparse tokenize`: text → token ids with the model's own tokenizer (no weights loaded).

import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { loadTokenizer } from '../model/load.js';
import { resolveModel } from '../models/catalog.js';
import { addModelOptions, readTextFile } from './common.js';

interface TokenizeFlags {
  model: string;
  tokenizer?: string;
  text?: string;
  file?: string;
  special: boolean;
  bos: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('tokenize')
    .description("turn text into token ids with the model's tokenizer")
    .option('-t, --text <text>', 'the text')
    .option('-f, --file <path>', 'read the text from a file')
    .option('--no-special', 'treat special-token text like <|im_start|> as plain text')
    .option('--no-bos', "do not add the BOS token even if the model's rule says so")
    .option('--json', 'print {"ids": [...]}');
  addModelOptions(cmd);
  cmd.action((o: TokenizeFlags) => {
    if (o.text !== undefined && o.file !== undefined) throw new CtxError('give --text or --file, not both');
    if (o.text === undefined && o.file === undefined) throw new CtxError('missing text: give --text TEXT or --file PATH');
    const text = o.text ?? readTextFile(o.file!, '--file');
    const tok = loadTokenizer(resolveModel(o.model), o.tokenizer ? { tokenizerPath: o.tokenizer } : {});
    const ids = tok.encode(text, { parseSpecial: o.special, addBos: o.bos && tok.addBosDefault });
    if (o.json) {
      process.stdout.write(JSON.stringify({ ids }) + '\n');
      return;
    }
    for (const id of ids) process.stdout.write(`${String(id).padStart(7)}  ${JSON.stringify(tok.tokenText(id))}\n`);
    process.stderr.write(`[${ids.length} tokens]\n`);
  });
}
