/**
 * Hugging Face tokenizers (tokenizer.json: T5's SentencePiece unigram, CLIP's byte-level BPE)
 * through `@huggingface/tokenizers`, padded and truncated as diffusers' pipelines call them:
 * `tokenizer(text, padding="max_length", max_length=L, truncation=True)`.
 *
 * @module
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { join } from "node:path";
import { CheckpointError } from "../../runtime/errors.ts";
import { exists } from "../../runtime/io/fs.ts";
import { readJsonFile } from "../../runtime/io/json.ts";
import { readSentencePiece, t5TokenizerJson } from "./spiece.ts";
import { type CharsmapReader, SpmCharsmap } from "./spm_charsmap.ts";

/** One tokenized caption. */
export interface PaddedTokens {
  /** [L] token ids: the special tokens kept, the text cut to fit, padding after. */
  ids: Uint32Array;
  /** [L] attention mask: 1 for tokens, 0 for padding. */
  mask: Float32Array;
  /** Whether the text was cut to fit L. */
  truncated: boolean;
}

/** The content of a special token entry of tokenizer_config.json (a string or {content}). */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (
    typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string"
  ) {
    return (v as { content: string }).content;
  }
  return undefined;
}

/**
 * Takes a leading `Precompiled` normalizer (T5's SentencePiece table) out of a tokenizer.json
 * so the text can be normalized by the table itself ({@linkcode SpmCharsmap}) instead of the
 * library's NFKC approximation; the rest of the normalizer sequence stays. Returns the table,
 * or undefined when there is none to take (the JSON is then unchanged).
 */
function takeCharsmap(json: Record<string, unknown>): SpmCharsmap | undefined {
  const n = json.normalizer as { type?: string; normalizers?: unknown[] } | null | undefined;
  const charsmap = (x: unknown) => {
    const c = x as { type?: string; precompiled_charsmap?: unknown } | null;
    return c?.type === "Precompiled" && typeof c.precompiled_charsmap === "string" &&
        c.precompiled_charsmap.length > 0
      ? SpmCharsmap.fromBase64(c.precompiled_charsmap)
      : undefined;
  };
  if (n?.type === "Precompiled") {
    const t = charsmap(n);
    if (t) json.normalizer = null;
    return t;
  }
  if (n?.type === "Sequence" && Array.isArray(n.normalizers)) {
    const t = charsmap(n.normalizers[0]); // only first: the table must run before the others
    if (t) json.normalizer = { ...n, normalizers: n.normalizers.slice(1) };
    return t;
  }
  return undefined;
}

/** A tokenizer folder (tokenizer.json + tokenizer_config.json) ready to pad captions. */
export class HfTokenizer {
  /** The folder it was read from. */
  readonly path: string;
  /** The pad token's id. */
  readonly padId: number;
  /** tokenizer_config.json's model_max_length, when it is a sane number (CLIP: 77). */
  readonly modelMaxLength: number | undefined;
  readonly #tok: Tokenizer;
  readonly #charsmap: { table: SpmCharsmap; reader: CharsmapReader } | undefined;

  private constructor(
    path: string,
    tok: Tokenizer,
    padId: number,
    modelMaxLength: number | undefined,
    charsmap: { table: SpmCharsmap; reader: CharsmapReader } | undefined,
  ) {
    this.path = path;
    this.#tok = tok;
    this.#charsmap = charsmap;
    this.padId = padId;
    this.modelMaxLength = modelMaxLength;
  }

  /**
   * Reads `dir`/tokenizer_config.json and `dir`/tokenizer.json, or, for a T5 folder without
   * one (PixArt's), `dir`/spiece.model as transformers converts it.
   */
  static async load(dir: string): Promise<HfTokenizer> {
    let jsonPath = join(dir, "tokenizer.json");
    const cfgPath = join(dir, "tokenizer_config.json");
    const cfg = await readJsonFile(cfgPath) as Record<string, unknown>;
    let json: unknown;
    if (!(await exists(jsonPath)) && await exists(join(dir, "spiece.model"))) {
      jsonPath = join(dir, "spiece.model");
      const extra = cfg["extra_ids"] ?? 100;
      if (typeof extra !== "number" || !Number.isInteger(extra) || extra < 0) {
        throw new CheckpointError(cfgPath, "must be an integer ≥ 0", "extra_ids");
      }
      json = t5TokenizerJson(
        readSentencePiece(await Deno.readFile(jsonPath), jsonPath),
        extra,
        jsonPath,
      );
    } else {
      json = await readJsonFile(jsonPath);
    }
    let tok: Tokenizer;
    let charsmap: { table: SpmCharsmap; reader: CharsmapReader } | undefined;
    try {
      const table = takeCharsmap(json as Record<string, unknown>);
      // A spiece.model is read as transformers' slow tokenizer reads it (SentencePiece's own
      // normalizer); a tokenizer.json as the fast one (the Rust Precompiled normalizer).
      const reader = jsonPath.endsWith("spiece.model") ? "spm" : "hf";
      charsmap = table ? { table, reader } : undefined;
      tok = new Tokenizer(json as object, cfg);
    } catch (e) {
      throw new CheckpointError(
        jsonPath,
        `not a tokenizer this library reads: ${(e as Error).message}`,
      );
    }
    const pad = tokenText(cfg["pad_token"]);
    if (pad === undefined) throw new CheckpointError(cfgPath, "must name a pad token", "pad_token");
    const padId = tok.token_to_id(pad);
    if (padId === undefined) {
      throw new CheckpointError(
        cfgPath,
        `${JSON.stringify(pad)} is not in the vocabulary`,
        "pad_token",
      );
    }
    const mml = cfg["model_max_length"];
    const max = typeof mml === "number" && Number.isInteger(mml) && mml > 0 && mml < 1e6
      ? mml
      : undefined;
    return new HfTokenizer(dir, tok, padId, max, charsmap);
  }

  /** `text` through the SentencePiece table, when the tokenizer has one (takeCharsmap). */
  #normalized(text: string): string {
    const c = this.#charsmap;
    return c ? c.table.normalize(text, c.reader) : text;
  }

  /** The ids of `text` with the special tokens the tokenizer adds (no padding, no cut). */
  ids(text: string): number[] {
    return this.#tok.encode(this.#normalized(text)).ids;
  }

  /**
   * `text` as `L` ids: the tokenizer's template (e.g. T5's trailing `</s>`, CLIP's start and
   * end of text) around the text's tokens, the text cut so the whole fits L (transformers'
   * truncation of a single sequence), then padding with the pad id (mask 0).
   */
  encode(text: string, L: number): PaddedTokens {
    if (!Number.isInteger(L) || L < 1) {
      throw new RangeError(`max length must be a positive integer, got ${L}`);
    }
    text = this.#normalized(text);
    const full = this.#tok.encode(text).ids;
    let ids = full;
    let truncated = false;
    if (full.length > L) {
      // The special tokens are the template around the text's own tokens: keep them, cut the text.
      const body = this.#tok.encode(text, { add_special_tokens: false }).ids;
      const pre = full.findIndex((_, i) => body.every((t, j) => full[i + j] === t));
      if (pre < 0 || full.length - body.length > L) {
        throw new RangeError(`${this.path}: cannot cut a caption to ${L} tokens`);
      }
      const post = full.length - pre - body.length;
      ids = [
        ...full.slice(0, pre),
        ...body.slice(0, L - pre - post),
        ...full.slice(pre + body.length),
      ];
      truncated = true;
    }
    const out = new Uint32Array(L).fill(this.padId);
    out.set(ids);
    const mask = new Float32Array(L);
    mask.fill(1, 0, ids.length);
    return { ids: out, mask, truncated };
  }
}
