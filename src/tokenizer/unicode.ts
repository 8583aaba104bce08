// Byte and character helpers shared by the tokenizers: UTF-8 encode/decode, the GPT-2
// byte-to-character table of byte-level BPE, and llama.cpp's notion of whitespace.

export const utf8Encoder = new TextEncoder();
export const utf8Decoder = new TextDecoder('utf-8'); // invalid sequences become U+FFFD

export function utf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Byte length of `s` in UTF-8 (lone surrogates count as U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

/** Replace lone surrogates with U+FFFD, as a UTF-8 round trip would. */
export function wellFormed(s: string): string {
  return /[\ud800-\udfff]/.test(s) ? s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd') : s;
}

/**
 * Whitespace as llama.cpp's unicode tables define it (Unicode White_Space): JS `\s` differs
 * (it lacks U+0085 and adds U+FEFF), so pre-tokenizer regexes use this class instead.
 */
export const WS_CLASS = '\\t-\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';

/** C `isspace` in the "C" locale: the ASCII whitespace llama.cpp strips around lstrip/rstrip tokens. */
export function isCSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

// GPT-2 byte-level table: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100 onwards in byte order, so that every byte is one visible character.
const byteToCharTable: string[] = new Array(256);
const charToByteTable = new Map<number, number>();
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const cp = printable ? b : 256 + n++;
    byteToCharTable[b] = String.fromCharCode(cp);
    charToByteTable.set(cp, b);
  }
}

export function byteToChar(b: number): string {
  return byteToCharTable[b]!;
}

/** The byte a byte-level BPE character stands for, or -1 if the character is not in the table. */
export function charToByte(cp: number): number {
  return charToByteTable.get(cp) ?? -1;
}

/** Bytes of `s` (UTF-8) written as byte-level BPE characters. */
export function byteEncode(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) { ascii = false; break; }
  let out = '';
  if (ascii) {
    for (let i = 0; i < s.length; i++) out += byteToCharTable[s.charCodeAt(i)];
    return out;
  }
  const bytes = utf8Encoder.encode(s);
  for (let i = 0; i < bytes.length; i++) out += byteToCharTable[bytes[i]!];
  return out;
}

/** Growable byte buffer. */
export class ByteBuffer {
  buf = new Uint8Array(256);
  length = 0;

  push(bytes: Uint8Array): void {
    if (this.length + bytes.length > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + bytes.length) cap *= 2;
      const nb = new Uint8Array(cap);
      nb.set(this.buf.subarray(0, this.length));
      this.buf = nb;
    }
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}
