// The tokenizer interface the rest of the engine codes against.

export interface EncodeOptions {
  /** prepend BOS; default: the model's rule (tokenizer.ggml.add_bos_token, else llama.cpp's default for the model type) */
  addBos?: boolean;
  /** default true: special/control token text such as <|im_start|> becomes that token */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /**
   * Drop special tokens: control and unknown tokens render as nothing, and a leading BOS /
   * trailing EOS is removed when the model adds them (llama.cpp's remove_special).
   * Default false: control tokens render as their text.
   */
  skipSpecial?: boolean;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  /** tokenizer.ggml.add_bos_token, or the llama.cpp default for the model type */
  readonly addBosDefault: boolean;
  /** end-of-generation ids: eos, eot, <|im_end|>, <end_of_turn>, <|eot_id|>, <|endoftext|> etc. as llama.cpp decides */
  readonly eog: ReadonlySet<number>;
  encode(text: string, opts?: EncodeOptions): number[];
  /** the raw bytes this token stands for (llama.cpp token_to_piece with special=true); empty for unused tokens and ids out of range */
  tokenBytes(id: number): Uint8Array;
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** the vocab string as stored */
  tokenText(id: number): string;
  isControl(id: number): boolean;
}

/** llama.cpp's per-token attributes (bit flags). */
export const Attr = {
  UNDEFINED: 0,
  UNKNOWN: 1 << 0,
  UNUSED: 1 << 1,
  NORMAL: 1 << 2,
  CONTROL: 1 << 3,
  USER_DEFINED: 1 << 4,
  BYTE: 1 << 5,
  NORMALIZED: 1 << 6,
  LSTRIP: 1 << 7,
  RSTRIP: 1 << 8,
  SINGLE_WORD: 1 << 9,
} as const;

/** GGUF tokenizer.ggml.token_type values. */
export const TokenType = { UNDEFINED: 0, NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
