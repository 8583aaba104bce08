// Streaming detokenizer: turns token ids into text as they arrive, never emitting half of a
// multi-byte UTF-8 character (a character split across byte tokens is emitted once complete).
// Pieces are llama.cpp's token_to_piece per token: no leading-space removal, no clean-up.

import type { Tokenizer } from './types.js';

export interface StreamDecoderOptions {
  /** render control and unknown tokens as nothing (default false: as their text) */
  skipSpecial?: boolean;
}

interface HasPiece {
  piece(id: number, special: boolean): Uint8Array;
}

export class StreamDecoder {
  private readonly decoder = new TextDecoder('utf-8');
  private readonly skipSpecial: boolean;

  constructor(private readonly tok: Tokenizer, opts: StreamDecoderOptions = {}) {
    this.skipSpecial = opts.skipSpecial ?? false;
  }

  /** The complete text so far not yet returned; a partial character is held back. */
  push(id: number): string {
    return this.decoder.decode(this.bytesOf(id), { stream: true });
  }

  /** Whatever is held back (an incomplete character becomes U+FFFD); the decoder starts afresh. */
  flush(): string {
    return this.decoder.decode();
  }

  private bytesOf(id: number): Uint8Array {
    if (!this.skipSpecial) return this.tok.tokenBytes(id);
    const p = this.tok as unknown as Partial<HasPiece>;
    if (typeof p.piece === 'function') return p.piece(id, false);
    return this.tok.isControl(id) ? new Uint8Array(0) : this.tok.tokenBytes(id);
  }
}
