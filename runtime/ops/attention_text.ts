/**
 * The text encoders' attention (T5, CLIP): softmax(scale·q·kᵀ + bias)·v with a key mask, a
 * causal mask and T5's relative position bias — biases that depend on the query row, which
 * the DiTs' attention kernel (attention.ts) does not take. f32, sequences of text length.
 *
 * @module
 */
import type { KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import src from "../../wgsl/attention_text.wgsl" with { type: "text" };

const WG = 64;

interface Params {
  b: number;
  tq: number;
  tk: number;
  heads: number;
  hd: number;
  flags: number;
  scale: number;
}

const spec: KernelSpec<Params> = {
  name: "attention_text",
  source: src,
  bindings: ["uniform", "read", "read", "read", "read", "read", "read", "read_write"],
  constants: () => ({ WG }),
  uniform: {
    fields: ["u32", "u32", "u32", "u32", "u32", "u32", "f32", "u32"],
    values: (p) => [p.tq, p.tk, p.heads, p.hd, p.heads * p.hd, p.flags, p.scale, 0],
  },
  dispatch: (p) => [Math.ceil(p.tq / WG), p.heads, p.b],
};

/** T5's relative position bias, as the kernel reads it. */
export interface RelativeBias {
  /** relative_attention_bias.weight [numBuckets, heads], f32. */
  table: Tensor;
  /** Bucket of each relative position j − i (key − query), at index j − i + Tq − 1: [Tq + Tk − 1] u32. */
  buckets: Tensor;
}

/** Options of {@linkcode textAttention}. */
export interface TextAttentionOptions {
  /** Heads H. */
  heads: number;
  /** Score scale (T5: 1, CLIP: 1/√D). */
  scale: number;
  /** Key mask [B, Tk] f32: 0 drops a key (padding). */
  mask?: Tensor;
  /** Drop the keys after each query (CLIP). */
  causal?: boolean;
  /** T5's relative position bias. */
  relativeBias?: RelativeBias;
}

/**
 * Records attention over q [B, Tq, H·D] and k, v [B, Tk, H·D] (f32, D ≤ 128) → [B, Tq, H·D].
 * Dropped keys (mask, causal) get probability exactly 0; a row left with none gives zeros.
 */
export function textAttention(
  rec: Recorder,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  o: TextAttentionOptions,
): Tensor {
  for (const [n, t] of [["q", q], ["k", k], ["v", v]] as const) {
    if (t.dtype !== "f32" || t.shape.length !== 3) {
      throw new TypeError(
        `textAttention: ${n} must be an f32 [B, T, H·D] tensor, got ${t.dtype} [${t.shape}]`,
      );
    }
  }
  const [B, Tq, W] = q.shape as [number, number, number];
  const Tk = k.shape[1]!;
  const H = o.heads;
  if (!Number.isInteger(H) || H < 1 || W % H) {
    throw new RangeError(`textAttention: heads ${H} must divide the width ${W}`);
  }
  const D = W / H;
  if (D > 128) throw new RangeError(`textAttention: head dim ${D} is over 128`);
  if (
    k.shape[0] !== B || v.shape[0] !== B || k.shape[2] !== W || v.shape[1] !== Tk ||
    v.shape[2] !== W
  ) {
    throw new RangeError(
      `textAttention: k [${k.shape}] and v [${v.shape}] must be [${B}, Tk, ${W}]`,
    );
  }
  if (o.mask && (o.mask.dtype !== "f32" || o.mask.size !== B * Tk)) {
    throw new RangeError(
      `textAttention: mask must be f32 [${B}, ${Tk}], got ${o.mask.dtype} [${o.mask.shape}]`,
    );
  }
  const rb = o.relativeBias;
  if (rb) {
    if (rb.table.shape.length !== 2 || rb.table.shape[1] !== H || rb.table.dtype !== "f32") {
      throw new RangeError(
        `textAttention: the bias table must be f32 [buckets, ${H}], got [${rb.table.shape}]`,
      );
    }
    if (rb.buckets.dtype !== "u32" || rb.buckets.size !== Tq + Tk - 1) {
      throw new RangeError(
        `textAttention: buckets must be u32 [${Tq + Tk - 1}], got [${rb.buckets.shape}]`,
      );
    }
  }
  // Unused bindings still need a buffer.
  const dummy: Tensor[] = [];
  const stub = (dtype: "f32" | "u32") => {
    const t = rec.upload(dtype === "f32" ? new Float32Array(1) : new Uint32Array(1), [1], dtype);
    dummy.push(t);
    return t;
  };
  const out = createTensor(rec.runtime, [B, Tq, W], "f32");
  const flags = (o.mask ? 1 : 0) | (o.causal ? 2 : 0) | (rb ? 4 : 0);
  rec.dispatch(spec, { b: B, tq: Tq, tk: Tk, heads: H, hd: D, flags, scale: o.scale }, [
    q,
    k,
    v,
    o.mask ?? stub("f32"),
    rb?.table ?? stub("f32"),
    rb?.buckets ?? stub("u32"),
    out,
  ]);
  for (const t of dummy) t.release();
  return out;
}
