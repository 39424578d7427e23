/**
 * T5 encoder configs (transformers' T5Config, text_encoder/config.json of PixArt-α/Σ and
 * text_encoder_2/ of FLUX) and T5's relative position buckets.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";

/** The fields of a T5 encoder's config.json that its forward uses. */
export interface T5Config {
  /** Rows of the token embedding (`vocab_size`). */
  vocabSize: number;
  /** Hidden width (`d_model`). */
  dModel: number;
  /** Width of one head (`d_kv`); heads · d_kv need not equal d_model. */
  dKv: number;
  /** Feed-forward width (`d_ff`). */
  dFf: number;
  /** Encoder layers (`num_layers`). */
  numLayers: number;
  /** Attention heads (`num_heads`). */
  numHeads: number;
  /** `relative_attention_num_buckets` (32). */
  numBuckets: number;
  /** `relative_attention_max_distance` (128). */
  maxDistance: number;
  /** RMSNorm epsilon (`layer_norm_epsilon`, 1e-6). */
  eps: number;
  /** The gated feed-forward's activation: gelu_new (T5 v1.1: "gated-gelu") or silu ("gated-silu"). */
  activation: "gelu" | "silu";
}

/** Whether a text_encoder config.json describes a T5 encoder. */
export function isT5Config(raw: unknown): boolean {
  const c = raw as Record<string, unknown> | null;
  return typeof c === "object" && c !== null && c["model_type"] === "t5";
}

/** Parses a T5 encoder's config.json (transformers' T5Config). */
export function parseT5Config(raw: unknown, file = "config.json"): T5Config {
  if (!isT5Config(raw)) {
    throw new CheckpointError(file, 'expected a T5 config (model_type "t5")', "model_type");
  }
  const c = raw as Record<string, unknown>;
  const int = (k: string, dflt?: number) => {
    const v = c[k] ?? dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new CheckpointError(file, `must be a positive integer, got ${JSON.stringify(v)}`, k);
    }
    return v;
  };
  const eps = c["layer_norm_epsilon"] ?? 1e-6;
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new CheckpointError(file, "must be a positive number", "layer_norm_epsilon");
  }
  const ff = c["feed_forward_proj"] ?? "relu";
  const acts: Record<string, "gelu" | "silu"> = { "gated-gelu": "gelu", "gated-silu": "silu" };
  const activation = acts[ff as string];
  if (!activation) {
    throw new CheckpointError(
      file,
      `${JSON.stringify(ff)} is not supported: webdit runs T5 v1.1's gated feed-forward ` +
        '("gated-gelu", as PixArt and FLUX use) or "gated-silu"',
      "feed_forward_proj",
    );
  }
  const cfg: T5Config = {
    vocabSize: int("vocab_size"),
    dModel: int("d_model"),
    dKv: int("d_kv"),
    dFf: int("d_ff"),
    numLayers: int("num_layers"),
    numHeads: int("num_heads"),
    numBuckets: int("relative_attention_num_buckets", 32),
    maxDistance: int("relative_attention_max_distance", 128),
    eps,
    activation,
  };
  if (cfg.dKv > 128) throw new CheckpointError(file, "must be at most 128", "d_kv");
  if (cfg.numBuckets < 4) {
    throw new CheckpointError(file, "must be at least 4", "relative_attention_num_buckets");
  }
  return cfg;
}

/**
 * T5's bidirectional bucket of a relative position (key − query), as transformers'
 * `T5Attention._relative_position_bucket` computes it: half the buckets for each sign, exact
 * below a quarter of the buckets, logarithmic up to `maxDistance`. The logarithmic part is
 * float32 arithmetic there (torch.log of a float tensor), so it is rounded to f32 here too:
 * a bucket boundary is where the f32 value crosses an integer.
 */
export function t5Bucket(rel: number, numBuckets: number, maxDistance: number): number {
  const half = Math.floor(numBuckets / 2);
  const base = rel > 0 ? half : 0;
  const n = Math.abs(rel);
  const maxExact = Math.floor(half / 2);
  if (n < maxExact) return base + n;
  const f = Math.fround;
  const lg = f(Math.log(f(n / maxExact)));
  const scaled = f(f(lg / f(Math.log(maxDistance / maxExact))) * (half - maxExact));
  return base + Math.min(maxExact + Math.trunc(scaled), half - 1);
}

/** The bucket of each relative position j − i for Tq queries and Tk keys, at j − i + Tq − 1. */
export function t5Buckets(
  tq: number,
  tk: number,
  c: Pick<T5Config, "numBuckets" | "maxDistance">,
): Uint32Array {
  return Uint32Array.from(
    { length: tq + tk - 1 },
    (_, i) => t5Bucket(i - (tq - 1), c.numBuckets, c.maxDistance),
  );
}
