// llama2.c's tokenizer file (tok512.bin / tokenizer.bin): i32 max_token_length, then per
// token: f32 score, i32 byte length, the bytes. It is a SentencePiece vocabulary with real
// spaces instead of ▁ and "\n<s>\n" / "\n</s>\n" for BOS / EOS. We read it the way llama.cpp's
// converter does (ids 0/1/2 are <unk>/<s>/</s>, <0xXX> entries are byte tokens, spaces become
// ▁), so it tokenizes exactly like the same vocabulary embedded in a GGUF, and like llama2.c's
// own encode (BOS, dummy-prefix space, best-score merges, byte fallback).

import { readFileSync } from 'node:fs';
import { CtxError } from '../errors.js';
import { TokenType } from './types.js';
import { LlamaTokenizer } from './tokenizer.js';
import { Vocab } from './vocab.js';

export function vocabFromLlama2c(path: string): Vocab {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new CtxError(`${path}: cannot read tokenizer file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (buf.length < 4) throw new CtxError(`${path}: not a llama2.c tokenizer file: only ${buf.length} bytes`);
  const maxLen = buf.readInt32LE(0);
  if (maxLen <= 0 || maxLen > 1 << 16) throw new CtxError(`${path}: not a llama2.c tokenizer file: max_token_length is ${maxLen}`);
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const dec = new TextDecoder('utf-8');
  let off = 4;
  while (off < buf.length) {
    const id = tokens.length;
    if (off + 8 > buf.length) throw new CtxError(`${path}: truncated llama2.c tokenizer file: token ${id} at offset ${off} has no score and length`);
    const score = buf.readFloatLE(off);
    const len = buf.readInt32LE(off + 4);
    off += 8;
    if (len < 0 || len > maxLen || off + len > buf.length) {
      throw new CtxError(`${path}: bad llama2.c tokenizer file: token ${id} at offset ${off - 8} has length ${len} (max_token_length ${maxLen}, ${buf.length - off} bytes left)`);
    }
    let text = dec.decode(buf.subarray(off, off + len));
    off += len;
    let type: number = TokenType.NORMAL;
    if (id === 0) { text = '<unk>'; type = TokenType.UNKNOWN; }
    else if (id === 1) { text = '<s>'; type = TokenType.CONTROL; }
    else if (id === 2) { text = '</s>'; type = TokenType.CONTROL; }
    else if (text === '') type = TokenType.CONTROL;
    else if (/^<0x[0-9A-Fa-f]{2}>/.test(text)) type = TokenType.BYTE;
    tokens.push(text.replaceAll(' ', '\u2581'));
    scores.push(score);
    types.push(type);
  }
  if (tokens.length < 3) throw new CtxError(`${path}: llama2.c tokenizer file holds only ${tokens.length} tokens`);
  return new Vocab({
    path,
    kind: 'spm',
    tokens,
    scores: Float32Array.from(scores),
    types: Int32Array.from(types),
    specialIds: [['unk', 0], ['bos', 1], ['eos', 2]],
    addBos: true,
    addEos: false,
    addSpacePrefix: true,
  });
}

/** A tokenizer from a llama2.c tokenizer file. */
export function tokenizerFromLlama2c(path: string): LlamaTokenizer {
  return new LlamaTokenizer(vocabFromLlama2c(path));
}
