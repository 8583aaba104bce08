// Pre-tokenizers of byte-level BPE vocabularies, keyed by `tokenizer.ggml.pre`.
//
// Each entry is a list of regexes applied in turn, as llama.cpp does: the first splits the
// text into chunks, each later regex splits every chunk on its own (so a lookahead never sees
// past a chunk), and text between matches becomes a chunk of its own. The patterns are the
// ones llama.cpp documents for each pre-tokenizer, written as JS Unicode regexes; `\s` is
// spelled out as llama.cpp's whitespace set (Unicode White_Space), which JS's `\s` is not.

import { WS_CLASS } from './unicode.js';

const S = `[${WS_CLASS}]`;
const NOT_S = `[^${WS_CLASS}]`;

/** GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
const GPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS_CLASS}\\p{L}\\p{N}]+|${S}+(?!${NOT_S})|${S}+`;

const CONTRACTIONS_ANY_CASE = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;

/** Llama 3 / Qwen 2 family; `digits` is the digit-run rule (\p{N}{1,3} or \p{N}). */
function llama3Like(digits: string): string {
  return `${CONTRACTIONS_ANY_CASE}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|${digits}| ?[^${WS_CLASS}\\p{L}\\p{N}]+[\\r\\n]*|${S}*[\\r\\n]+|${S}+(?!${NOT_S})|${S}+`;
}
const LLAMA3 = llama3Like('\\p{N}{1,3}');
const QWEN2 = llama3Like('\\p{N}');

export interface PreTokenizerSpec {
  readonly patterns: readonly string[];
  /** llama.cpp's clean_spaces for detokenizing (default true for BPE) */
  readonly cleanSpaces: boolean;
  /** a word that is itself a token is not merged (llama.cpp ignore_merges) */
  readonly ignoreMerges: boolean;
  /** llama.cpp sets add_bos for this pre-tokenizer (the GGUF's add_bos_token still overrides) */
  readonly addBos: boolean;
  /** llama.cpp clears the BOS token for this pre-tokenizer */
  readonly noBos: boolean;
}

function spec(patterns: string[], o: Partial<Omit<PreTokenizerSpec, 'patterns'>> = {}): PreTokenizerSpec {
  return { patterns, cleanSpaces: o.cleanSpaces ?? true, ignoreMerges: o.ignoreMerges ?? false, addBos: o.addBos ?? false, noBos: o.noBos ?? false };
}

const DEFAULT = spec(['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]']);
const GPT2_SPEC = spec([GPT2]);
const STARCODER = spec(['\\p{N}', GPT2]);
const SMOLLM = spec(['\\p{N}', GPT2], { cleanSpaces: false });
const LLAMA3_SPEC = spec([LLAMA3], { ignoreMerges: true, addBos: true });
const QWEN2_SPEC = spec([QWEN2], { cleanSpaces: false });

const REGISTRY: Record<string, PreTokenizerSpec> = {
  'default': DEFAULT,
  // GPT-2 regex
  'gpt-2': GPT2_SPEC, 'phi-2': GPT2_SPEC, 'jina-es': GPT2_SPEC, 'jina-de': GPT2_SPEC, 'gigachat': GPT2_SPEC,
  'jina-v2-es': GPT2_SPEC, 'jina-v2-de': GPT2_SPEC, 'a.x-4.0': GPT2_SPEC, 'mellum': GPT2_SPEC, 'modern-bert': GPT2_SPEC,
  'jina-v1-en': GPT2_SPEC, 'jina-v2-code': GPT2_SPEC, 'roberta-bpe': GPT2_SPEC,
  'mpt': GPT2_SPEC, 'olmo': GPT2_SPEC, 'jais': GPT2_SPEC, 'exaone4': GPT2_SPEC,
  'trillion': spec([GPT2], { cleanSpaces: false }), 'granite-docling': spec([GPT2], { cleanSpaces: false }),
  // digits split one by one, then GPT-2
  'smollm': SMOLLM, 'command-r': SMOLLM,
  'starcoder': STARCODER, 'refact': STARCODER, 'codeshell': STARCODER, 'exaone': STARCODER, 'minerva-7b': STARCODER, 'mellum2': STARCODER,
  // Llama 3
  'llama3': LLAMA3_SPEC, 'llama-v3': LLAMA3_SPEC, 'llama-bpe': LLAMA3_SPEC, 'falcon3': LLAMA3_SPEC, 'falcon-h1': LLAMA3_SPEC,
  'pixtral': LLAMA3_SPEC, 'midm-2.0': LLAMA3_SPEC, 'lfm2': LLAMA3_SPEC, 'jina-v5-nano': LLAMA3_SPEC,
  'dbrx': spec([LLAMA3]), 'smaug-bpe': spec([LLAMA3]),
  'chatglm-bpe': spec([LLAMA3], { noBos: true }), 'glm4': spec([LLAMA3], { noBos: true }),
  // Qwen 2
  'qwen2': QWEN2_SPEC, 'deepseek-r1-qwen': QWEN2_SPEC, 'kormo': QWEN2_SPEC, 'f2llmv2': QWEN2_SPEC,
  'hunyuan': QWEN2_SPEC, 'solar-open': QWEN2_SPEC, 'grok-2': QWEN2_SPEC,
  'megrez': spec([QWEN2]), 'stablelm2': spec([QWEN2]),
  // Falcon
  'falcon': spec(['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2, '[0-9][0-9][0-9]']),
};

/** The pre-tokenizer for a `tokenizer.ggml.pre` value ('' means llama.cpp's default), or undefined if unknown. */
export function preTokenizerSpec(name: string): PreTokenizerSpec | undefined {
  return Object.prototype.hasOwnProperty.call(REGISTRY, name === '' ? 'default' : name) ? REGISTRY[name === '' ? 'default' : name] : undefined;
}

export function knownPreTokenizers(): string[] {
  return Object.keys(REGISTRY);
}

/** Splits text into pre-tokens with a pre-tokenizer's regexes. */
export class PreTokenizer {
  private readonly regexes: RegExp[];

  constructor(patterns: readonly string[]) {
    this.regexes = patterns.map((p) => new RegExp(p, 'gu'));
  }

  split(text: string): string[] {
    let chunks = [text];
    for (const re of this.regexes) {
      const next: string[] = [];
      for (const c of chunks) splitChunk(c, re, next);
      chunks = next;
    }
    return chunks;
  }
}

/** Matches of `re` in `c`, with the text between matches as pieces of their own. */
function splitChunk(c: string, re: RegExp, out: string[]): void {
  re.lastIndex = 0;
  let last = 0;
  for (;;) {
    const m = re.exec(c);
    if (m === null) break;
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      // cannot happen with these patterns; step over one code point to stay safe
      re.lastIndex = start + (c.codePointAt(start)! > 0xffff ? 2 : 1);
      continue;
    }
    if (start > last) out.push(c.slice(last, start));
    out.push(m[0]);
    last = end;
  }
  if (last < c.length) out.push(last === 0 ? c : c.slice(last));
}
