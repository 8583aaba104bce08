// The vocabulary and llama.cpp's rules around it: token attributes from token types, special
// token ids (metadata first, defaults per model type), add_bos/add_eos/add_space_prefix,
// control-looking tokens found by their text, and the end-of-generation set.

import { CtxError } from '../errors.js';
import type { Metadata } from '../formats/gguf.js';
import { preTokenizerSpec, knownPreTokenizers, type PreTokenizerSpec } from './pretokenize.js';
import { Attr, TokenType } from './types.js';
import { utf8Length } from './unicode.js';

export type VocabKind = 'spm' | 'bpe';

const SPECIAL_KEYS = [
  'bos', 'eos', 'eot', 'eom', 'unk', 'sep', 'pad', 'mask', 'fimPre', 'fimSuf', 'fimMid', 'fimPad', 'fimRep', 'fimSep',
] as const;
export type SpecialKey = (typeof SPECIAL_KEYS)[number];

/** Raw vocabulary as a file provides it. */
export interface VocabSource {
  readonly path: string;
  readonly kind: VocabKind;
  /** tokenizer.ggml.pre (BPE); '' or undefined means llama.cpp's default */
  readonly pre?: string;
  readonly tokens: readonly string[];
  readonly scores?: Float32Array;
  readonly types?: Int32Array;
  readonly merges?: readonly string[];
  /** ids from metadata, in llama.cpp's order of precedence (later keys of the same slot win) */
  readonly specialIds?: ReadonlyArray<readonly [SpecialKey, number]>;
  readonly addBos?: boolean;
  readonly addEos?: boolean;
  readonly addSpacePrefix?: boolean;
  /** general.name, for llama.cpp's per-model token attributes */
  readonly generalName?: string;
}

export class Vocab {
  readonly path: string;
  readonly kind: VocabKind;
  readonly size: number;
  readonly texts: string[];
  readonly scores: Float32Array;
  readonly attrs: Uint16Array;
  /** text → id (llama.cpp's token_to_id) */
  readonly ids = new Map<string, number>();
  /** special ids, -1 when absent */
  readonly special: Record<SpecialKey, number>;
  addBos = false;
  addEos = false;
  addSpacePrefix = false;
  cleanSpaces = false;
  ignoreMerges = false;
  readonly pre: PreTokenizerSpec | undefined;
  readonly merges: readonly string[];
  readonly eog = new Set<number>();
  /** control, user-defined and unknown tokens, longest text first: the order llama.cpp splits them out */
  readonly specialTokens: number[] = [];

  constructor(src: VocabSource) {
    this.path = src.path;
    this.kind = src.kind;
    const n = src.tokens.length;
    if (n === 0) throw new CtxError(`${src.path}: the tokenizer vocabulary (tokenizer.ggml.tokens) is empty`);
    this.size = n;
    this.merges = src.merges ?? [];

    const special = Object.fromEntries(SPECIAL_KEYS.map((k) => [k, -1])) as Record<SpecialKey, number>;
    if (src.kind === 'spm') {
      special.bos = 1; special.eos = 2; special.unk = 0;
      this.addSpacePrefix = true;
      this.cleanSpaces = false;
      this.addBos = true;
      this.addEos = false;
      this.pre = undefined;
    } else {
      special.bos = 11; special.eos = 11;
      this.addSpacePrefix = false;
      const name = src.pre ?? '';
      const pre = preTokenizerSpec(name);
      if (!pre) {
        throw new CtxError(`${src.path}: unsupported tokenizer.ggml.pre "${name}" (supported: ${knownPreTokenizers().join(', ')})`);
      }
      this.pre = pre;
      this.cleanSpaces = pre.cleanSpaces;
      this.ignoreMerges = pre.ignoreMerges;
      if (pre.addBos) this.addBos = true;
      if (pre.noBos) special.bos = -1;
    }
    if (src.addSpacePrefix !== undefined) this.addSpacePrefix = src.addSpacePrefix;

    // tokens, scores, attributes
    this.texts = new Array(n);
    this.scores = new Float32Array(n);
    this.attrs = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      let t = src.tokens[i]!;
      if (t === '') t = `[EMPTY_${i}]`;
      this.texts[i] = t;
      // a duplicate text maps to its last id (Gemma 3 has three; llama.cpp's golden ids agree)
      this.ids.set(t, i);
      this.scores[i] = src.scores ? src.scores[i] ?? 0 : 0;
      this.attrs[i] = src.types ? attrOfType(src.types[i] ?? TokenType.UNDEFINED) : Attr.NORMAL;
    }

    // special ids: defaults out of range are dropped, metadata ids out of range are ignored
    for (const k of SPECIAL_KEYS) if (special[k] >= n) special[k] = -1;
    for (const [k, id] of src.specialIds ?? []) {
      if (Number.isInteger(id) && id >= 0 && id < n) special[k] = id;
    }
    this.special = special;
    if (src.addBos !== undefined) this.addBos = src.addBos;
    if (src.addEos !== undefined) this.addEos = src.addEos;
    if (this.addBos && special.bos < 0) throw new CtxError(`${src.path}: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set`);
    if (this.addEos && special.eos < 0) throw new CtxError(`${src.path}: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set`);

    this.detectByText();
    this.buildEog();
    this.buildSpecialList();
    this.perModelAttrs(src);
  }

  private forceControl(id: number): void {
    this.attrs[id] = this.attrs[id]! | Attr.CONTROL;
  }

  /** llama.cpp finds EOT, EOM and FIM tokens by their text and makes them control tokens. */
  private detectByText(): void {
    const s = this.special;
    const wanted: ReadonlyArray<readonly [SpecialKey, readonly string[]]> = [
      ['eot', ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<EOT>', '_<EOT>', '[EOT]', '<｜end▁of▁sentence｜>', '<end_of_utterance>']],
      ['eom', ['<|eom_id|>']],
      ['fimPre', ['<|fim_prefix|>', '<fim-prefix>', '<fim_prefix>', '<｜fim▁begin｜>', '<PRE>', '▁<PRE>', '<|code_prefix|>', '<|prefix|>']],
      ['fimSuf', ['<|fim_suffix|>', '<fim-suffix>', '<fim_suffix>', '<｜fim▁hole｜>', '<SUF>', '▁<SUF>', '<|code_suffix|>', '<|suffix|>']],
      ['fimMid', ['<|fim_middle|>', '<fim-middle>', '<fim_middle>', '<｜fim▁end｜>', '<MID>', '▁<MID>', '<|code_middle|>', '<|middle|>']],
      ['fimPad', ['<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<PAD>', '[PAD]']],
      ['fimRep', ['<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<reponame>']],
      ['fimSep', ['<|file_sep|>']],
    ];
    for (const [key, texts] of wanted) {
      if (s[key] >= 0) continue;
      // the first such token in id order (llama.cpp walks its hash map; ties are rare)
      let best = -1;
      for (const t of texts) {
        const id = this.ids.get(t);
        if (id !== undefined && (best < 0 || id < best)) best = id;
      }
      if (best >= 0) {
        s[key] = best;
        this.forceControl(best);
      }
    }
    // control tokens named "unused" are unused
    for (let id = 0; id < this.size; id++) {
      if (this.attrs[id]! & Attr.CONTROL && this.texts[id]!.includes('unused')) this.attrs[id] = this.attrs[id]! | Attr.UNUSED;
    }
  }

  /** The end-of-generation set, decided by token text as llama.cpp does. */
  private buildEog(): void {
    const s = this.special;
    const eog = this.eog;
    for (const k of ['fimPad', 'fimRep', 'fimSep'] as const) if (s[k] >= 0) eog.add(s[k]);
    const eogTexts = new Set([
      '<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<|flush|>', '<|calls|>', '<end_of_turn>',
      '<|endoftext|>', '</s>', '<|eom_id|>', '<EOT>', '_<EOT>', '[EOT]', '[EOS]', '<|end_of_text|>', '<end_of_utterance>',
      '<eos>', '<turn|>', '<|tool_response>', '<｜end▁of▁sentence｜>', '[e~[',
    ]);
    for (const [t, id] of this.ids) {
      if (eogTexts.has(t)) {
        eog.add(id);
        this.forceControl(id);
      }
    }
    // gpt-oss: these always render
    for (const t of ['<|channel|>', '<|message|>', '<|start|>', '<|constrain|>']) {
      const id = this.ids.get(t);
      if (id !== undefined) this.attrs[id] = Attr.USER_DEFINED;
    }
    for (const k of ['eos', 'eot', 'eom'] as const) if (s[k] >= 0) eog.add(s[k]);
    // o200k_harmony / solar-open: <|end|> is not end-of-generation when <|return|>/<|call|> exist
    const has = (t: string) => { const id = this.ids.get(t); return id !== undefined && eog.has(id); };
    const end = this.ids.get('<|end|>');
    if (end !== undefined && eog.has(end) && ((has('<|return|>') && has('<|call|>')) || ((has('<|call|>') || has('<|calls|>')) && has('<|flush|>')))) {
      eog.delete(end);
      this.attrs[end] = Attr.USER_DEFINED;
    }
    // gemma4 / paddleocr: </s> is not end-of-generation when <|tool_response> exists
    const slashS = this.ids.get('</s>');
    if (slashS !== undefined && eog.has(slashS) && has('<|tool_response>')) {
      eog.delete(slashS);
      this.attrs[slashS] = Attr.NORMAL;
    }
  }

  private buildSpecialList(): void {
    const list: number[] = [];
    const len = new Map<number, number>();
    for (let id = 0; id < this.size; id++) {
      if (this.attrs[id]! & (Attr.CONTROL | Attr.USER_DEFINED | Attr.UNKNOWN)) {
        list.push(id);
        len.set(id, utf8Length(this.texts[id]!));
      }
    }
    list.sort((a, b) => len.get(b)! - len.get(a)! || a - b);
    this.specialTokens.push(...list);
  }

  /** llama.cpp's per-model strip attributes (by general.name / tokenizer.ggml.pre). */
  private perModelAttrs(src: VocabSource): void {
    const name = (src.generalName ?? '').toLowerCase();
    const pre = src.pre ?? '';
    const set = (t: string, a: number, on: boolean) => {
      const id = this.ids.get(t);
      if (id !== undefined) this.attrs[id] = on ? this.attrs[id]! | a : this.attrs[id]! & ~a;
    };
    if (['jina-v2-de', 'jina-v2-es', 'jina-v2-code'].some((p) => pre.includes(p))) {
      set('<mask>', Attr.LSTRIP, true);
    } else if (name.includes('phi-3') || name.includes('phi3')) {
      for (const id of this.specialTokens) this.attrs[id] = this.attrs[id]! | Attr.RSTRIP;
      set('</s>', Attr.RSTRIP, true);
      for (const t of ['<unk>', '<s>', '<|endoftext|>']) set(t, Attr.RSTRIP, false);
    } else if (name.includes('modern-bert')) {
      set('[MASK]', Attr.LSTRIP, true);
    }
  }

  isControl(id: number): boolean {
    return id >= 0 && id < this.size && (this.attrs[id]! & Attr.CONTROL) !== 0;
  }
}

function attrOfType(t: number): number {
  switch (t) {
    case TokenType.UNKNOWN: return Attr.UNKNOWN;
    case TokenType.UNUSED: return Attr.UNUSED;
    case TokenType.NORMAL: return Attr.NORMAL;
    case TokenType.CONTROL: return Attr.CONTROL;
    case TokenType.USER_DEFINED: return Attr.USER_DEFINED;
    case TokenType.BYTE: return Attr.BYTE;
    default: return Attr.UNDEFINED;
  }
}

const SPECIAL_ID_KEYS: ReadonlyArray<readonly [SpecialKey, string]> = [
  ['bos', 'tokenizer.ggml.bos_token_id'],
  ['eos', 'tokenizer.ggml.eos_token_id'],
  ['eot', 'tokenizer.ggml.eot_token_id'],
  ['eom', 'tokenizer.ggml.eom_token_id'],
  ['unk', 'tokenizer.ggml.unknown_token_id'],
  ['sep', 'tokenizer.ggml.seperator_token_id'],
  ['pad', 'tokenizer.ggml.padding_token_id'],
  ['mask', 'tokenizer.ggml.mask_token_id'],
  ['fimPre', 'tokenizer.ggml.fim_pre_token_id'],
  ['fimSuf', 'tokenizer.ggml.fim_suf_token_id'],
  ['fimMid', 'tokenizer.ggml.fim_mid_token_id'],
  ['fimPad', 'tokenizer.ggml.fim_pad_token_id'],
  ['fimRep', 'tokenizer.ggml.fim_rep_token_id'],
  ['fimSep', 'tokenizer.ggml.fim_sep_token_id'],
  // deprecated spellings
  ['fimPre', 'tokenizer.ggml.prefix_token_id'],
  ['fimSuf', 'tokenizer.ggml.suffix_token_id'],
  ['fimMid', 'tokenizer.ggml.middle_token_id'],
];

/** The vocabulary described by a GGUF's tokenizer.ggml.* metadata. */
export function vocabFromGGUF(meta: Metadata): Vocab {
  const model = meta.string('tokenizer.ggml.model');
  let kind: VocabKind;
  if (model === 'llama') kind = 'spm';
  else if (model === 'gpt2') kind = 'bpe';
  else throw new CtxError(`${meta.path}: unsupported tokenizer.ggml.model "${model}" (supported: llama, gpt2)`);
  const pre = meta.optString('tokenizer.ggml.pre');
  if (kind === 'bpe' && !preTokenizerSpec(pre ?? '')) {
    throw new CtxError(`${meta.path}: unsupported tokenizer.ggml.pre "${pre}" (supported: ${knownPreTokenizers().join(', ')})`);
  }
  const specialIds: Array<readonly [SpecialKey, number]> = [];
  for (const [k, key] of SPECIAL_ID_KEYS) {
    const v = meta.optNumber(key);
    if (v !== undefined) specialIds.push([k, v]);
  }
  const optBool = (key: string) => (meta.has(key) ? meta.bool(key, false) : undefined);
  return new Vocab({
    path: meta.path,
    kind,
    pre,
    tokens: meta.strings('tokenizer.ggml.tokens'),
    scores: meta.optFloats('tokenizer.ggml.scores'),
    types: meta.optInts('tokenizer.ggml.token_type'),
    merges: kind === 'bpe' ? meta.strings('tokenizer.ggml.merges') : undefined,
    specialIds,
    addBos: optBool('tokenizer.ggml.add_bos_token'),
    addEos: optBool('tokenizer.ggml.add_eos_token'),
    addSpacePrefix: optBool('tokenizer.ggml.add_space_prefix'),
    generalName: meta.optString('general.name'),
  });
}
