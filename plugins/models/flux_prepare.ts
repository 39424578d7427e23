/**
 * FLUX's prompt conditioning (FluxModel.prepare): the context embedder over the prompt's
 * tokens, the pooled text embedding and, for dev models, the guidance embedding.
 *
 * @module
 */
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { Linear } from "../../runtime/model/linear.ts";
import type { FluxConfig } from "./flux_config.ts";
import { times1000 } from "./flux_time.ts";
import { sinusoid } from "./dit_common.ts";

/** The prompt-dependent state of one batch: projected text tokens and static embeddings. */
export interface FluxConditioning {
  /** Batch size B. */
  batch: number;
  /** Text tokens L. */
  textTokens: number;
  /** context_embedder(prompt_embeds) [B, L, D]. */
  context: Tensor;
  /** text_embedder(pooled) [B, D]. */
  static: Tensor;
  /** guidance_embedder(sinusoid(1000·g)) [B, D] (FLUX.1-dev), or undefined. */
  guidance: Tensor | undefined;
  /** The batch is a true-CFG pair [negative…, positive…] (quantized layers may use CFG delta). */
  cfgPair: boolean;
  /** Frees the tensors. */
  release(): void;
}

/** What the conditioning reads of a loaded model. */
export interface FluxParts {
  /** The parsed config. */
  config: FluxConfig;
  /** Activation storage type. */
  dtype: "f32" | "f16";
  /** The model's top-level linears by checkpoint name (context_embedder, time_text_embed.*). */
  linears: Record<string, Linear>;
}

/** FluxModel.prepare: see there. */
export function prepareFlux(
  rec: Recorder,
  m: FluxParts,
  promptEmbeds: Tensor,
  pooled: Tensor,
  guidance?: readonly number[],
  opts: { cfgPair?: boolean } = {},
): FluxConditioning {
  const c = m.config;
  const l = m.linears;
  const s = promptEmbeds.shape;
  if (s.length !== 3 || s[2] !== c.jointAttentionDim) {
    throw new RangeError(`prompt embeddings must be [B, L, ${c.jointAttentionDim}], got [${s}]`);
  }
  const [B, L] = s;
  if (pooled.size !== B * c.pooledProjectionDim) {
    throw new RangeError(
      `pooled embeddings must be [${B}, ${c.pooledProjectionDim}], got [${pooled.shape}]`,
    );
  }
  for (
    const [n, t] of [["prompt embeddings", promptEmbeds], ["pooled embeddings", pooled]] as const
  ) {
    if (t.dtype !== m.dtype) {
      throw new TypeError(`${n} are ${t.dtype}, the model is ${m.dtype}`);
    }
  }
  if (c.guidanceEmbeds && guidance === undefined) {
    throw new TypeError("This model has a guidance embedder (FLUX.1-dev): pass a guidance scale");
  }
  if (!c.guidanceEmbeds && guidance !== undefined) {
    throw new TypeError("This model has no guidance embedder (FLUX.1-schnell): pass no guidance");
  }
  if (guidance && guidance.length !== B) {
    throw new RangeError(`expected ${B} guidance scales, got ${guidance.length}`);
  }
  const cfgPair = opts.cfgPair ?? false;
  if (cfgPair && B % 2 !== 0) throw new RangeError(`a CFG pair needs an even batch, got ${B}`);
  const context = l["context_embedder"].forward(rec, promptEmbeds.reshape([B * L, s[2]]))
    .reshape([B, L, c.innerDim]);
  const tte = "time_text_embed";
  const h = l[`${tte}.text_embedder.linear_1`].forward(
    rec,
    pooled.reshape([B, c.pooledProjectionDim]),
    {
      activation: "silu",
    },
  );
  const stat = l[`${tte}.text_embedder.linear_2`].forward(rec, h);
  h.release();
  let gemb: Tensor | undefined;
  if (guidance) {
    const sin = rec.upload(
      sinusoid(guidance.map((g) => times1000(g, m.dtype)), 256),
      [B, 256],
      m.dtype,
    );
    const g1 = l[`${tte}.guidance_embedder.linear_1`].forward(rec, sin, { activation: "silu" });
    gemb = l[`${tte}.guidance_embedder.linear_2`].forward(rec, g1);
    for (const t of [sin, g1]) t.release();
  }
  return {
    batch: B,
    textTokens: L,
    context,
    static: stat,
    guidance: gemb,
    cfgPair,
    release: () => {
      context.release();
      stat.release();
      gemb?.release();
    },
  };
}
