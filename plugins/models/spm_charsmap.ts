/**
 * SentencePiece's precompiled normalization table (`normalizer_spec.precompiled_charsmap` of
 * a spiece.model; the `Precompiled` normalizer of a tokenizer.json, base64): a Darts double
 * array over UTF-8 byte strings whose leaves point into a blob of NUL-terminated
 * replacements. Two readers apply it, and they differ where a key is a prefix of another:
 *
 * - "spm", SentencePiece's normalizer (transformers' slow T5Tokenizer, PixArt's pipeline): at
 *   each position the longest key that prefixes the rest of the text is replaced, else one
 *   character is kept;
 * - "hf", the Rust tokenizers' Precompiled normalizer (T5TokenizerFast, FLUX's pipeline): each
 *   grapheme cluster of under 6 bytes that some key prefixes becomes the first (shortest)
 *   such key's replacement, whole; other clusters go character by character.
 *
 * `@huggingface/tokenizers` approximates this table by Unicode NFKC plus fixed whitespace and
 * control-character rules; on the fixture's nmt_nfkc table (225,275 keys) that differs for
 * U+200D (the zero-width joiner of emoji sequences: the table keeps it, the approximation
 * makes it a space) and U+A7F1 with its combining sequences. HfTokenizer applies this table
 * instead (spm_charsmap_test.ts checks both readers against the two libraries' ids).
 *
 * @module
 */
import { concatBytes } from "../../runtime/io/bytes.ts";

/** Which library's reading of the table to follow (see the module doc). */
export type CharsmapReader = "spm" | "hf";

/** A parsed precompiled charsmap. */
export class SpmCharsmap {
  readonly #units: Uint32Array;
  readonly #strings: Uint8Array;
  readonly #decoder = new TextDecoder();
  readonly #encoder = new TextEncoder();

  /**
   * Parses the blob: a little-endian u32 byte size of the double array, the array's u32
   * units, then the replacement strings.
   * @throws {RangeError} for a blob too short for its own sizes.
   */
  constructor(blob: Uint8Array) {
    if (blob.byteLength < 4) throw new RangeError("charsmap: shorter than its 4-byte header");
    const size = new DataView(blob.buffer, blob.byteOffset, 4).getUint32(0, true);
    if (size % 4 !== 0 || 4 + size > blob.byteLength || size === 0) {
      throw new RangeError(
        `charsmap: a double array of ${size} bytes does not fit ${blob.byteLength}`,
      );
    }
    this.#units = new Uint32Array(blob.slice(4, 4 + size).buffer);
    this.#strings = blob.slice(4 + size);
  }

  /** From a tokenizer.json's base64 `precompiled_charsmap`. */
  static fromBase64(b64: string): SpmCharsmap {
    return new SpmCharsmap(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  }

  /**
   * The keys that prefix bytes[start, end), shortest first: [byte length, replacement offset]
   * each. (Darts' common-prefix search: each unit packs a label, a leaf flag and the offset
   * to its children.)
   */
  #prefixes(bytes: Uint8Array, start: number, end: number): [number, number][] {
    const u = this.#units;
    const offset = (x: number) => (x >>> 10) << ((x & 0x200) >>> 6);
    const found: [number, number][] = [];
    let pos = offset(u[0]);
    for (let i = start; i < end; i++) {
      pos ^= bytes[i];
      if (pos >= u.length) break;
      const unit = u[pos];
      if ((unit & 0x800000ff) !== bytes[i]) break; // another label: no key continues here
      pos ^= offset(unit);
      if ((unit >>> 8) & 1) found.push([i + 1 - start, u[pos] & 0x7fffffff]);
    }
    return found;
  }

  #replacement(at: number): Uint8Array {
    let end = at;
    while (end < this.#strings.length && this.#strings[end] !== 0) end++;
    return this.#strings.subarray(at, end);
  }

  /** `text` normalized by the table as `reader` applies it (see the module doc). */
  normalize(text: string, reader: CharsmapReader): string {
    return reader === "spm" ? this.#spm(text) : this.#hf(text);
  }

  #spm(text: string): string {
    const bytes = this.#encoder.encode(text);
    const out: Uint8Array[] = [];
    let i = 0;
    let keep = 0; // start of the run of bytes copied unchanged
    while (i < bytes.length) {
      const hit = this.#prefixes(bytes, i, bytes.length).at(-1); // the longest
      if (hit) {
        if (keep < i) out.push(bytes.subarray(keep, i));
        out.push(this.#replacement(hit[1]));
        i += hit[0];
        keep = i;
      } else {
        i += utf8Length(bytes[i]);
      }
    }
    if (keep < bytes.length) out.push(bytes.subarray(keep));
    return this.#decoder.decode(concatBytes(out));
  }

  #hf(text: string): string {
    const out: string[] = [];
    // The first key prefixing a chunk's bytes replaces the whole chunk (the Rust crate's
    // transform).
    const transform = (b: Uint8Array): string | undefined => {
      const hit = this.#prefixes(b, 0, b.length)[0];
      return hit ? this.#decoder.decode(this.#replacement(hit[1])) : undefined;
    };
    for (const { segment } of GRAPHEMES.segment(text)) {
      const bytes = this.#encoder.encode(segment);
      const whole = bytes.length < 6 ? transform(bytes) : undefined;
      if (whole !== undefined) {
        out.push(whole);
        continue;
      }
      for (const c of segment) out.push(transform(this.#encoder.encode(c)) ?? c);
    }
    return out.join("");
  }
}

const GRAPHEMES = new Intl.Segmenter("en", { granularity: "grapheme" });

/** Bytes of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte). */
function utf8Length(lead: number): number {
  return lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}
