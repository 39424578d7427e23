/**
 * SentencePiece models (spiece.model, a protobuf ModelProto) as the tokenizer.json that
 * transformers' T5Converter makes of them, so a T5 tokenizer folder without tokenizer.json
 * (PixArt-α/Σ's tokenizer/: spiece.model + tokenizer_config.json) reads like one with it:
 * the model's own normalisation table (Precompiled), runs of spaces to one, Metaspace, the
 * unigram pieces with their scores, `$A </s>`, and T5's <extra_id_*> sentinels after the pieces.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";

/** What a SentencePiece model holds that a tokenizer needs. */
export interface SentencePieceModel {
  /** Pieces in id order: text, score, type (1 normal, 2 unknown, 3 control, 4 user defined, 5 byte, 6 unused). */
  pieces: { piece: string; score: number; type: number }[];
  /** normalizer_spec.precompiled_charsmap (empty when the model has none). */
  charsmap: Uint8Array;
  /** trainer_spec.model_type: 1 unigram, 2 BPE, 3 word, 4 char. */
  modelType: number;
}

/** A protobuf reader over the wire format: varints, fixed32, length-delimited. */
class Wire {
  #at = 0;
  constructor(readonly bytes: Uint8Array, readonly file: string) {}
  get done(): boolean {
    return this.#at >= this.bytes.length;
  }
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.#byte();
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
    throw new CheckpointError(this.file, "bad varint in the SentencePiece model");
  }
  #byte(): number {
    if (this.#at >= this.bytes.length) {
      throw new CheckpointError(this.file, "truncated SentencePiece model");
    }
    return this.bytes[this.#at++]!;
  }
  take(n: number): Uint8Array {
    if (this.#at + n > this.bytes.length) {
      throw new CheckpointError(this.file, "truncated SentencePiece model");
    }
    const out = this.bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }
  /** Each field as [number, wire type, value]: a number (varint, fixed) or bytes (length-delimited). */
  *fields(): Generator<[number, number, number | Uint8Array]> {
    while (!this.done) {
      const key = this.varint();
      const wt = key & 7;
      const field = Math.floor(key / 8);
      if (wt === 0) yield [field, wt, this.varint()];
      else if (wt === 5) {
        yield [field, wt, new DataView(this.take(4).slice().buffer).getFloat32(0, true)];
      } else if (wt === 1) yield [field, wt, (this.take(8), 0)];
      else if (wt === 2) yield [field, wt, this.take(this.varint())];
      else throw new CheckpointError(this.file, `unsupported protobuf wire type ${wt}`);
    }
  }
}

/** Parses spiece.model. @throws {CheckpointError} naming the file for a malformed model. */
export function readSentencePiece(bytes: Uint8Array, file = "spiece.model"): SentencePieceModel {
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const out: SentencePieceModel = { pieces: [], charsmap: new Uint8Array(0), modelType: 1 };
  for (const [f, , v] of new Wire(bytes, file).fields()) {
    if (f === 1 && v instanceof Uint8Array) {
      const p = { piece: "", score: 0, type: 1 };
      for (const [g, , w] of new Wire(v, file).fields()) {
        if (g === 1 && w instanceof Uint8Array) p.piece = utf8.decode(w);
        if (g === 2 && typeof w === "number") p.score = w;
        if (g === 3 && typeof w === "number") p.type = w;
      }
      out.pieces.push(p);
    } else if (f === 2 && v instanceof Uint8Array) {
      for (const [g, , w] of new Wire(v, file).fields()) {
        if (g === 3 && typeof w === "number") out.modelType = w;
      }
    } else if (f === 3 && v instanceof Uint8Array) {
      for (const [g, , w] of new Wire(v, file).fields()) {
        if (g === 2 && w instanceof Uint8Array) out.charsmap = w;
      }
    }
  }
  if (out.pieces.length === 0) {
    throw new CheckpointError(file, "holds no pieces: not a SentencePiece model");
  }
  return out;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

const token = (id: number, content: string) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
});

/**
 * The tokenizer.json of a T5 SentencePiece model with `extraIds` sentinels (T5: 100), as
 * transformers' T5Converter writes it. @throws {CheckpointError} for a model that is not
 * unigram or lacks `</s>` or `<unk>`.
 */
export function t5TokenizerJson(
  m: SentencePieceModel,
  extraIds = 100,
  file = "spiece.model",
): object {
  if (m.modelType !== 1) {
    throw new CheckpointError(file, `is model type ${m.modelType}, T5's is unigram (1)`);
  }
  const eos = m.pieces.findIndex((p) => p.piece === "</s>");
  const unk = m.pieces.findIndex((p) => p.type === 2);
  if (eos < 0 || unk < 0) throw new CheckpointError(file, "has no </s> or no unknown piece");
  const n = m.pieces.length;
  const added = m.pieces.flatMap((p, i) => p.type === 2 || p.type === 3 ? [token(i, p.piece)] : []);
  for (let i = extraIds - 1; i >= 0; i--) {
    added.push(token(n + extraIds - 1 - i, `<extra_id_${i}>`));
  }
  const seq = (id: string) => ({ Sequence: { id, type_id: 0 } });
  const eosTok = { SpecialToken: { id: "</s>", type_id: 0 } };
  const meta = { replacement: "\u2581", prepend_scheme: "always", split: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: "Sequence",
      normalizers: [
        ...(m.charsmap.length
          ? [{ type: "Precompiled", precompiled_charsmap: base64(m.charsmap) }]
          : []),
        { type: "Replace", pattern: { Regex: " {2,}" }, content: " " },
      ],
    },
    pre_tokenizer: { type: "Metaspace", ...meta },
    post_processor: {
      type: "TemplateProcessing",
      single: [seq("A"), eosTok],
      pair: [seq("A"), eosTok, seq("B"), eosTok],
      special_tokens: { "</s>": { id: "</s>", ids: [eos], tokens: ["</s>"] } },
    },
    decoder: { type: "Metaspace", ...meta },
    model: {
      type: "Unigram",
      unk_id: unk,
      vocab: m.pieces.map((p) => [p.piece, p.score]),
      byte_fallback: false,
    },
  };
}
