/**
 * One sampler step of a PixArt-α-shaped transformer (28 × 1152, 16 heads × 72, 4096
 * image tokens, 120 caption tokens of 4096, batch 2 = [uncond, cond]) with random
 * weights, in f32 and f16: `step_pixart_alpha_{f32,f16}` (ms). A step is what the
 * sampling loop records per step: the forward with the cached caption keys/values, the
 * guidance combine and an update of the latents (one elementwise axpby, the size of a
 * DPM-Solver++ update). PyTorch's figures for the same shapes come from
 * tools/torch/bench_step.py (`torch_step_pixart_alpha_*`).
 *
 * On a CPU adapter the shapes shrink to `step_pixart_tiny_*` (2 × 144, 256 tokens).
 *
 * Run: `WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/step_bench.ts`
 *
 * @module
 */
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { denseLinears } from "../runtime/model/linear.ts";
import { elementwise } from "../runtime/ops/elementwise.ts";
import { duplicateBatchGpu, guideGpu, nchwLayout } from "../runtime/sampling/guidance.ts";
import { cast } from "../runtime/ops/cast.ts";
import { addedConditions, loadPixArt, type PixArtModel } from "../plugins/models/pixart.ts";
import { parsePixArtConfig, pixartWeightShapes } from "../plugins/models/pixart_config.ts";
import { BenchSuite, deviceSlug } from "./harness.ts";
import { RandomSource } from "./random_model.ts";

const adapter = (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto" | "gpu" | "cpu";
const runtime: Runtime = await createRuntime({ adapter });

interface Shape {
  tag: string;
  layers: number;
  heads: number;
  headDim: number;
  latent: number;
  captionTokens: number;
  captionChannels: number;
}

const ALPHA: Shape = {
  tag: "alpha",
  layers: 28,
  heads: 16,
  headDim: 72,
  latent: 128,
  captionTokens: 120,
  captionChannels: 4096,
};
const TINY: Shape = {
  tag: "tiny",
  layers: 2,
  heads: 2,
  headDim: 72,
  latent: 32,
  captionTokens: 16,
  captionChannels: 64,
};

async function build(r: Runtime, s: Shape, dtype: "f32" | "f16") {
  const config = parsePixArtConfig({
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
  const source = new RandomSource(pixartWeightShapes(config), 7, `pixart-${s.tag}`);
  const model = await loadPixArt(r, source, config, { dtype, linears: denseLinears(dtype) });
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
  const cond = model.prepare(rec, emb, mask, addedConditions(rows, 8 * s.latent, 8 * s.latent));
  await rec.submit();
  const xLatent = uploadTensor(r, g.normals(B * 4 * s.latent * s.latent), [
    B,
    4,
    s.latent,
    s.latent,
  ]);
  return { model, cond, xLatent, B };
}

/** Records one sampler step as the sampling loop does: [x; x] → forward → CFG → update. */
function recordStep(
  rec: Recorder,
  model: PixArtModel,
  cond: ReturnType<PixArtModel["prepare"]>,
  x: Tensor,
  dtype: "f32" | "f16",
): Tensor {
  const [B, C, H, W] = x.shape;
  const x2 = duplicateBatchGpu(rec, x);
  const xin = cast(rec, x2, dtype);
  if (xin !== x2) x2.release();
  const out = model.forward(rec, xin, [500, 500], cond, { index: 0, total: 20 });
  xin.release();
  const out32 = cast(rec, out, "f32");
  if (out32 !== out) out.release();
  const eps = guideGpu(rec, out32, nchwLayout(B, C, 8, H, W), 4.5, { shape: [B, C, H, W] });
  if (eps !== out32) out32.release();
  const next = elementwise(rec, "axpby", x, { y: eps, alpha: 1, beta: -0.05 });
  eps.release();
  return next;
}

const suite = new BenchSuite({
  what: "step",
  describe: () => {
    const r = runtime;
    return Promise.resolve({
      device: r.info.description,
      slug: deviceSlug(r.info.description, r.info.fallback),
      extra: {
        note: "one sampler step: forward (cached caption K/V) + CFG combine + axpby update",
      },
    });
  },
  teardown: () => runtime.destroy(),
});

const shape = runtime.info.fallback ? TINY : ALPHA;
for (const dtype of ["f32", "f16"] as const) {
  suite.add({
    name: `step_pixart_${shape.tag}_${dtype}`,
    unit: "ms",
    setup: async () => {
      const r = runtime;
      if (dtype === "f16" && !r.info.f16) throw new Error("no shader-f16 on this adapter");
      const s = shape;
      const { model, cond, xLatent } = await build(r, s, dtype);
      // Check before timing: the step's output is finite, and f16 agrees with f32 is in the tests.
      const rec = new Recorder(r);
      const y = recordStep(rec, model, cond, xLatent, dtype);
      await rec.submit();
      const v = await readTensor(r, y);
      y.release();
      if (!v.every(Number.isFinite)) throw new Error("non-finite step output");
      return {
        device: r.device,
        run: async (reps) => {
          const rec = new Recorder(r);
          for (let i = 0; i < reps; i++) recordStep(rec, model, cond, xLatent, dtype).release();
          await rec.submit();
        },
        note: `pixart-${s.tag}: ${s.layers} layers × ${s.heads * s.headDim}, ${
          (s.latent / 2) ** 2
        } tokens, batch 2; weights ${(model.weightBytes / 2 ** 20).toFixed(0)} MiB`,
        dispose: () => {
          cond.release();
          model.release();
        },
      };
    },
    timing: { iterations: 10, minSampleMs: 300, maxReps: 16 },
  });
}

suite.register();
