// Tokenizers built from GGUF metadata (SentencePiece 'llama' and byte-level BPE 'gpt2'
// vocabularies) or from a llama2.c tokenizer file, matching llama.cpp's tokenization.

import type { Metadata } from '../formats/gguf.js';
import { LlamaTokenizer } from './tokenizer.js';
import type { Tokenizer } from './types.js';
import { vocabFromGGUF } from './vocab.js';

export type { Tokenizer, EncodeOptions, DecodeOptions } from './types.js';
export { Attr, TokenType } from './types.js';
export { StreamDecoder, type StreamDecoderOptions } from './stream.js';
export { LlamaTokenizer } from './tokenizer.js';
export { Vocab, vocabFromGGUF, type VocabSource } from './vocab.js';
export { tokenizerFromLlama2c, vocabFromLlama2c } from './llama2c.js';
export { preTokenizerSpec, knownPreTokenizers, PreTokenizer } from './pretokenize.js';

/** The tokenizer described by a GGUF's tokenizer.ggml.* metadata. */
export function tokenizerFromGGUF(meta: Metadata): Tokenizer {
  return new LlamaTokenizer(vocabFromGGUF(meta));
}
