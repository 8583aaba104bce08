// Token → bytes (llama.cpp's token_to_piece) and ids → text (llama.cpp's detokenize).

import { Attr } from './types.js';
import { ByteBuffer, charToByte, utf8, utf8Decoder } from './unicode.js';
import type { Vocab } from './vocab.js';

const EMPTY = new Uint8Array(0);
const SPECIAL = Attr.UNKNOWN | Attr.CONTROL;

export class Pieces {
  private readonly cache: Array<Uint8Array | undefined>;

  constructor(private readonly vocab: Vocab) {
    this.cache = new Array(vocab.size);
  }

  /** The bytes of a token; with special=false, control and unknown tokens are empty. */
  piece(id: number, special: boolean): Uint8Array {
    const v = this.vocab;
    if (!Number.isInteger(id) || id < 0 || id >= v.size) return EMPTY;
    if (!special && v.attrs[id]! & SPECIAL) return EMPTY;
    return (this.cache[id] ??= this.compute(id));
  }

  private compute(id: number): Uint8Array {
    const v = this.vocab;
    const a = v.attrs[id]!;
    const text = v.texts[id]!;
    if (a & (SPECIAL | Attr.USER_DEFINED)) return utf8(text);
    if (a & Attr.NORMAL) return v.kind === 'spm' ? utf8(text.replaceAll('\u2581', ' ')) : byteDecode(text);
    if (a & Attr.BYTE) return Uint8Array.of(parseInt(text.slice(3, 5), 16) & 0xff);
    return EMPTY; // unused and undefined tokens render as nothing
  }

  /** llama.cpp's detokenize(remove_special, unparse_special), then UTF-8 decoding. */
  detokenize(ids: readonly number[], removeSpecial: boolean, unparseSpecial: boolean): string {
    const v = this.vocab;
    let from = 0;
    let to = ids.length;
    let removeSpace = v.addSpacePrefix;
    if (removeSpecial && v.addBos && to > 0 && ids[0] === v.special.bos) {
      removeSpace = false;
      from++;
    }
    if (removeSpecial && v.addEos && to > from && ids[to - 1] === v.special.eos) to--;
    const buf = new ByteBuffer();
    for (let i = from; i < to; i++) {
      let p = this.piece(ids[i]!, unparseSpecial);
      if (removeSpace && p.length > 0 && p[0] === 0x20) p = p.subarray(1);
      removeSpace = false;
      buf.push(p);
    }
    let bytes = buf.view();
    if (v.cleanSpaces) bytes = cleanSpaces(bytes.slice());
    return utf8Decoder.decode(bytes);
  }
}

/** Byte-level BPE token text → bytes. */
function byteDecode(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = charToByte(ch.codePointAt(0)!);
    if (b >= 0) {
      out.push(b);
    } else {
      // llama.cpp writes characters outside the byte table as [UNK_BYTE_0x<hex>…]
      const hex = Array.from(utf8(ch), (x) => x.toString(16).padStart(2, '0')).join('');
      out.push(...utf8(`[UNK_BYTE_0x${hex}${text}]`));
    }
  }
  return Uint8Array.from(out);
}

/**
 * clean_up_tokenization_spaces as llama.cpp does it, in place: " ?", " !", " .", " ," lose the
 * space, " ' " becomes "'", and " 's", " 'm", " 're", " 've" lose the space.
 */
function cleanSpaces(t: Uint8Array): Uint8Array {
  const SP = 0x20, Q = 0x27;
  let total = t.length;

  const total1 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < total1; i++) {
    const x = t[i]!;
    if (t[i - 1] === SP && (x === 0x3f || x === 0x21 || x === 0x2e || x === 0x2c)) total--;
    t[total++] = x;
  }

  const total2 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < total2; i++) {
    const x = t[i]!;
    if (x === Q && i + 1 < total2 && t[i - 1] === SP && t[i + 1] === SP) {
      total--;
      t[++i] = 0;
    }
    t[total++] = x;
  }

  const total3 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < total3; i++) {
    const x = t[i]!;
    if (t[i - 1] === SP && x === Q && i + 1 < total3) {
      const x1 = t[i + 1]!;
      if (x1 === 0x73 /* s */ || x1 === 0x6d /* m */) {
        total--;
      } else if (x1 !== 0x74 /* t */ && x1 !== 0x64 /* d */ && i + 2 < total3) {
        const x2 = t[i + 2]!;
        if ((x1 === 0x72 /* r */ || x1 === 0x76 /* v */) && x2 === 0x65 /* e */) total--;
      }
    }
    t[total++] = x;
  }
  return t.subarray(0, total);
}
