/**
 * The PixArt-shaped step of the step benchmarks (bench/step_bench.ts,
 * bench/row_chunks_bench.ts): shapes, random weights (bench/random_model.ts), inputs, and
 * one sampler step recorded as the sampling loop records it.
 *
 * @module
 */
import type { Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import type { LinearFactory } from "../runtime/model/linear.ts";
import { elementwise } from "../runtime/ops/elementwise.ts";
import { cast } from "../runtime/ops/cast.ts";
import { duplicateBatchGpu, guideGpu, nchwLayout } from "../runtime/sampling/guidance.ts";
import { addedConditions, type PixArtModel, type SelfAttention } from "../plugins/models/pixart.ts";
import { loadPixArt } from "../plugins/models/pixart_load.ts";
import {
  parsePixArtConfig,
  type PixArtConfig,
  pixartWeightShapes,
} from "../plugins/models/pixart_config.ts";
import { RandomSource } from "./random_model.ts";

/** A PixArt-shaped random model and its step inputs. */
export interface Shape {
  tag: string;
  layers: number;
  heads: number;
  headDim: number;
  latent: number;
  captionTokens: number;
  captionChannels: number;
}

/** PixArt-α at 1024²: 28 × 1152, 4096 image tokens, 120 caption tokens of 4096. */
export const ALPHA: Shape = {
  tag: "alpha",
  layers: 28,
  heads: 16,
  headDim: 72,
  latent: 128,
  captionTokens: 120,
  captionChannels: 4096,
};
/** The CPU adapter's shape: 2 × 144, 256 tokens. */
export const TINY: Shape = {
  tag: "tiny",
  layers: 2,
  heads: 2,
  headDim: 72,
  latent: 32,
  captionTokens: 16,
  captionChannels: 64,
};

/** The timestep of every step here, and the sampler position PARO's step group is read from. */
export const T_STEP = [500, 500];
/** The sampler position of every timed step. */
export const STEP = { index: 0, total: 20 };

/** The diffusers config of a shape. */
export function configOf(s: Shape): PixArtConfig {
  return parsePixArtConfig({
    num_attention_heads: s.heads,
    attention_head_dim: s.headDim,
    in_channels: 4,
    out_channels: 8,
    num_layers: s.layers,
    cross_attention_dim: s.heads * s.headDim,
    sample_size: s.latent,
    patch_size: 2,
    caption_channels: s.captionChannels,
  });
}

/** The random weights: the same seed for every row, so every model has the same weights. */
export function sourceOf(s: Shape): RandomSource {
  return new RandomSource(pixartWeightShapes(configOf(s)), 7, `pixart-${s.tag}`);
}

/** Loads the shape's random model on `r`. */
export async function load(
  r: Runtime,
  s: Shape,
  dtype: "f32" | "f16",
  linears: LinearFactory,
  selfAttention?: SelfAttention,
): Promise<PixArtModel> {
  return await loadPixArt(r, sourceOf(s), configOf(s), { dtype, linears, selfAttention });
}

/** The step's inputs (the same values for every row): caption conditioning and latents. */
export async function inputs(r: Runtime, model: PixArtModel, s: Shape, dtype: "f32" | "f16") {
  const B = 1;
  const rows = 2 * B; // [uncond, cond]
  const g = new Prng(11);
  const L = s.captionTokens;
  const emb = uploadTensor(
    r,
    g.normals(rows * L * s.captionChannels),
    [rows, L, s.captionChannels],
    dtype,
  );
  const mask = uploadTensor(r, new Float32Array(rows * L).fill(1), [rows, L], dtype);
  const rec = new Recorder(r, "prepare");
  // A CFG pair, as the pipeline marks it under guidance (only CFG-delta layers read the mark).
  const cond = model.prepare(
    rec,
    emb,
    mask,
    addedConditions(rows, 8 * s.latent, 8 * s.latent),
    { cfgPair: true },
  );
  await rec.submit();
  emb.release();
  const xLatent = uploadTensor(r, g.normals(B * 4 * s.latent * s.latent), [
    B,
    4,
    s.latent,
    s.latent,
  ]);
  return { cond, xLatent };
}

/** The caption conditioning of a step. */
export type Cond = ReturnType<PixArtModel["prepare"]>;

/** Runs the forward alone on [x; x] and reads its output (f32), for the checks. */
export async function forwardOutput(
  r: Runtime,
  model: PixArtModel,
  cond: Cond,
  x: Tensor,
  step: { index: number; total: number },
): Promise<Float32Array> {
  const rec = new Recorder(r, "check forward");
  const x2 = duplicateBatchGpu(rec, x);
  const xin = cast(rec, x2, model.dtype);
  if (xin !== x2) x2.release();
  const out = model.forward(rec, xin, T_STEP, cond, step);
  xin.release();
  await rec.submit();
  const v = await readTensor(r, out);
  out.release();
  return v;
}

/** Records one sampler step as the sampling loop does: [x; x] → forward → CFG → update. */
export function recordStep(
  rec: Recorder,
  model: PixArtModel,
  cond: Cond,
  x: Tensor,
): Tensor {
  const [B, C, H, W] = x.shape;
  const x2 = duplicateBatchGpu(rec, x);
  const xin = cast(rec, x2, model.dtype);
  if (xin !== x2) x2.release();
  const out = model.forward(rec, xin, T_STEP, cond, STEP);
  xin.release();
  const out32 = cast(rec, out, "f32");
  if (out32 !== out) out.release();
  const eps = guideGpu(rec, out32, nchwLayout(B, C, 8, H, W), 4.5, { shape: [B, C, H, W] });
  if (eps !== out32) out32.release();
  const next = elementwise(rec, "axpby", x, { y: eps, alpha: 1, beta: -0.05 });
  eps.release();
  return next;
}

/** The shape in words, for notes. */
export function shapeNote(s: Shape): string {
  return `pixart-${s.tag}: ${s.layers} layers × ${s.heads * s.headDim}, ${
    (s.latent / 2) ** 2
  } tokens, batch 2`;
}
