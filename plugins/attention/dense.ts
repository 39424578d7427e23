/**
 * The dense attention plugin: self-attention through the flash kernel
 * (runtime/ops/attention.ts), f32 or f16 as the activations. It needs no plan.
 *
 * @module
 */
import type { Runtime } from "../../runtime/gpu/device.ts";
import { attention } from "../../runtime/ops/attention.ts";
import type { AttentionImpl, AttentionPlugin } from "../types.ts";

/** Dense flash self-attention (holds nothing on the GPU). */
export function denseAttention(): AttentionImpl {
  return {
    run: (rec, _layer, q, k, v, ctx) => attention(rec, q, k, v, { heads: ctx.heads }),
    release: () => {},
  };
}

/** The dense attention plugin's descriptor. */
export const densePlugin: AttentionPlugin = {
  kind: "attention",
  name: "dense",
  description: "dense flash attention (online softmax in f32; f32 or f16 storage)",
  bits: [16],
  create: (_rt: Runtime) => denseAttention(),
};
