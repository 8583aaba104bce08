// The Tokenizer implementation over a Vocab: special-token splitting, then SPM or byte-level
// BPE on each piece of raw text, as llama.cpp's llama_tokenize does.

import { CtxError } from '../errors.js';
import { BpeModel } from './bpe.js';
import { Pieces } from './detokenize.js';
import { SpecialSplitter, type Fragment } from './special.js';
import { SpmModel } from './spm.js';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './types.js';
import { wellFormed } from './unicode.js';
import type { Vocab } from './vocab.js';

export class LlamaTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly addBosDefault: boolean;
  readonly eog: ReadonlySet<number>;
  private readonly pieces: Pieces;
  private spm?: SpmModel;
  private bpe?: BpeModel;
  private splitters: [SpecialSplitter?, SpecialSplitter?] = [];

  constructor(readonly vocab: Vocab) {
    this.vocabSize = vocab.size;
    this.bos = vocab.special.bos >= 0 ? vocab.special.bos : undefined;
    this.eos = vocab.special.eos >= 0 ? vocab.special.eos : undefined;
    this.addBosDefault = vocab.addBos;
    this.eog = vocab.eog;
    this.pieces = new Pieces(vocab);
  }

  private splitter(parseSpecial: boolean): SpecialSplitter {
    const k = parseSpecial ? 1 : 0;
    return (this.splitters[k] ??= new SpecialSplitter(this.vocab, parseSpecial));
  }

  /** Pieces of text and special tokens, as llama.cpp's tokenizer_st_partition cuts them. */
  fragments(text: string, parseSpecial = true): Fragment[] {
    return this.splitter(parseSpecial).split(wellFormed(text));
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const v = this.vocab;
    const addBos = opts.addBos ?? v.addBos;
    const addEos = opts.addBos !== false && v.addEos;
    const frags = this.fragments(text, opts.parseSpecial ?? true);
    const out: number[] = [];
    if (addBos) {
      if (this.bos === undefined) throw new CtxError(`${v.path}: the tokenizer has no BOS token`);
      out.push(this.bos);
    }
    if (v.kind === 'spm') {
      const spm = (this.spm ??= new SpmModel(v));
      let prevSpecial = true; // the first piece of text gets the space prefix too
      for (const f of frags) {
        if (typeof f === 'number') {
          out.push(f);
          prevSpecial = true;
        } else {
          const t = v.addSpacePrefix && prevSpecial ? ' ' + f : f;
          spm.tokenize(t.replaceAll(' ', '\u2581'), out);
          prevSpecial = false;
        }
      }
    } else {
      const bpe = (this.bpe ??= new BpeModel(v));
      for (const f of frags) {
        if (typeof f === 'number') out.push(f);
        else bpe.tokenize(f, out);
      }
    }
    if (addEos) out.push(v.special.eos);
    return out;
  }

  tokenBytes(id: number): Uint8Array {
    return this.pieces.piece(id, true);
  }

  /** token_to_piece: with special=false, control and unknown tokens are empty. */
  piece(id: number, special: boolean): Uint8Array {
    return this.pieces.piece(id, special);
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecial ?? false;
    return this.pieces.detokenize(ids, skip, !skip);
  }

  tokenText(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`token id ${id} is out of range (vocab size ${this.vocabSize})`);
    return this.vocab.texts[id]!;
  }

  isControl(id: number): boolean {
    return this.vocab.isControl(id);
  }
}
