/**
 * The bundled emoji model's word tokenizer (tokenizer/vocab.json): NFKD, combining marks
 * dropped, lowercased, maximal runs of [a-z0-9]; "<pad>" = 0, "<null>" = 1, "<unk>" = 2.
 * Unknown words are reported, never dropped silently; a prompt with no known word is an
 * error.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";

/** Token ids of the special tokens. */
export const PAD_ID = 0;
/** The unconditional caption's token. */
export const NULL_ID = 1;
/** Unknown words. */
export const UNK_ID = 2;

/** A tokenized caption: ids and mask of length maxLength, and what was not understood. */
export interface Tokenized {
  /** Token ids, padded with PAD_ID. */
  ids: Uint32Array;
  /** 1 for real tokens, 0 for padding. */
  mask: Float32Array;
  /** Words not in the vocabulary (they become <unk>). */
  unknown: string[];
  /** Words cut because the caption is longer than maxLength. */
  truncated: string[];
}

/** Splits text into the tokenizer's lowercase words. */
export function words(text: string): string[] {
  const t = text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  return t.match(/[a-z0-9]+/g) ?? [];
}

/** The word-level tokenizer. */
export class EmojiTokenizer {
  /** The vocabulary, by id. */
  readonly vocab: readonly string[];
  /** Tokens per caption. */
  readonly maxLength: number;
  readonly #ids: Map<string, number>;

  /** Builds the tokenizer; the vocabulary must start with <pad>, <null>, <unk>. */
  constructor(vocab: readonly string[], maxLength = 16, file = "vocab.json") {
    if (!Array.isArray(vocab) || vocab.some((w) => typeof w !== "string")) {
      throw new CheckpointError(file, "vocabulary must be a JSON array of strings");
    }
    if (vocab[0] !== "<pad>" || vocab[1] !== "<null>" || vocab[2] !== "<unk>") {
      throw new CheckpointError(file, 'vocabulary must start with "<pad>", "<null>", "<unk>"');
    }
    this.vocab = vocab;
    this.maxLength = maxLength;
    this.#ids = new Map(vocab.map((w, i) => [w, i]));
  }

  /** True when the word is in the vocabulary. */
  has(word: string): boolean {
    return this.#ids.has(word);
  }

  /** Encodes one caption. Throws a TypeError when no word of it is known. */
  encode(text: string): Tokenized {
    if (typeof text !== "string") throw new TypeError("The prompt must be a string");
    const all = words(text);
    const ws = all.slice(0, this.maxLength);
    const unknown = ws.filter((w) => !this.#ids.has(w));
    if (ws.length === 0 || unknown.length === ws.length) {
      throw new TypeError(
        ws.length === 0
          ? "The prompt has no words (letters or digits)"
          : `No word of the prompt is in the model's vocabulary: ${unknown.join(", ")}`,
      );
    }
    const ids = new Uint32Array(this.maxLength);
    const mask = new Float32Array(this.maxLength);
    ws.forEach((w, i) => {
      ids[i] = this.#ids.get(w) ?? UNK_ID;
      mask[i] = 1;
    });
    return { ids, mask, unknown, truncated: all.slice(this.maxLength) };
  }

  /** The unconditional caption: [<null>] with mask [1, 0, …]. */
  nullCaption(): Tokenized {
    const ids = new Uint32Array(this.maxLength);
    const mask = new Float32Array(this.maxLength);
    ids[0] = NULL_ID;
    mask[0] = 1;
    return { ids, mask, unknown: [], truncated: [] };
  }
}
