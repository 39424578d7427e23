/**
 * One PixArt-α DiT block, webdit vs tfjs-backend-webgpu (issue 9's same-runtime peer), in
 * one process on one GPU, same weights and inputs, in ms:
 *
 * - `block_pixart_alpha_f32`: block 0 of a one-layer PixArt-α-shaped model through the
 *   model's own block code (plugins/models/pixart.ts `blockForward`: adaLN-single
 *   modulation, self-attention, cross-attention, GELU-tanh FF, our GEMM and flash
 *   attention kernels); value2 = TFLOP/s counting 2·M·14·D² for the linears,
 *   4·B·T²·D and 4·B·T·L·D for the attentions;
 * - `tfjs_block_pixart_alpha_f32`: the same block from tfjs-core ops
 *   (bench/peers/tfjs_block.ts).
 *
 * Shape: hidden 1152 (16 heads × 72), 4096 image tokens (64×64), batch 2 (the CFG batch),
 * cross-attention to 120 caption tokens (their keys/values precomputed, as in a sampling
 * step), random Student-t weights (bench/random_model.ts), f32. A timed unit is one block;
 * a sample chains blocks, each fed the previous output. The results file's
 * `extra.speedup_vs_tfjs` is tfjs's median over ours (issue 9 asks ≥ 3).
 *
 * Check before timing: tfjs's output against ours for the same input, relative max error
 * max|a − b| / max|b| ≤ 1e−3, of the output and of the block's update y − x (f32 both; the
 * two differ in summation order and softmax form).
 * CPU adapter: a tiny block (2 heads × 72, 256 tokens, 16 caption tokens), `_tiny` names.
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/block_bench.ts
 *                          # → bench/results/<device>/<date>_block.{json,md}
 *
 * @module
 */
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { denseLinears } from "../runtime/model/linear.ts";
import { elementwise } from "../runtime/ops/elementwise.ts";
import { addedConditions } from "../plugins/models/pixart.ts";
import { loadPixArt } from "../plugins/models/pixart_load.ts";
import { parsePixArtConfig, pixartWeightShapes } from "../plugins/models/pixart_config.ts";
import { BenchSuite, deviceSlug, tflops } from "./harness.ts";
import { RandomSource } from "./random_model.ts";
import { readBlockWeights, type TfjsBlock, tfjsPixArtBlock } from "./peers/tfjs_block.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;

/** The block's shape. */
interface Shape {
  tag: string;
  heads: number;
  headDim: number;
  /** Token grid side (T = grid²). */
  grid: number;
  captionTokens: number;
  captionChannels: number;
  batch: number;
}

const SHAPE: Shape = onGpu
  ? {
    tag: "alpha",
    heads: 16,
    headDim: 72,
    grid: 64,
    captionTokens: 120,
    captionChannels: 4096,
    batch: 2,
  }
  : {
    tag: "tiny",
    heads: 2,
    headDim: 72,
    grid: 16,
    captionTokens: 16,
    captionChannels: 64,
    batch: 2,
  };

/** FLOPs of one block (multiply-adds × 2). */
function blockFlops(s: Shape): number {
  const D = s.heads * s.headDim;
  const T = s.grid * s.grid;
  const M = s.batch * T;
  return 2 * M * 14 * D * D + 4 * s.batch * T * T * D + 4 * s.batch * T * s.captionTokens * D;
}

/** max|a − b| / max|b|. */
function relMaxError(a: Float32Array, b: Float32Array): number {
  let e = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return Number.isFinite(e) ? e / m : Infinity;
}

/** Both blocks built from the same weights and inputs, checked against each other. */
async function build(s: Shape) {
  const D = s.heads * s.headDim;
  const T = s.grid * s.grid;
  const B = s.batch;
  const L = s.captionTokens;
  const config = parsePixArtConfig({
    num_attention_heads: s.heads,
    attention_head_dim: s.headDim,
    in_channels: 4,
    out_channels: 8,
    num_layers: 1,
    cross_attention_dim: D,
    sample_size: 2 * s.grid,
    patch_size: 2,
    caption_channels: s.captionChannels,
  });
  const source = new RandomSource(pixartWeightShapes(config), 7, `pixart-block-${s.tag}`);
  const model = await loadPixArt(rt, source, config, {
    dtype: "f32",
    linears: denseLinears("f32"),
  });
  const g = new Prng(5);
  const emb = uploadTensor(rt, g.normals(B * L * s.captionChannels), [B, L, s.captionChannels]);
  const maskHost = new Float32Array(B * L).fill(1);
  const mask = uploadTensor(rt, maskHost, [B, L]);
  let rec = new Recorder(rt, "prepare");
  const cond = model.prepare(rec, emb, mask, addedConditions(B, 16 * s.grid, 16 * s.grid));
  await rec.submit();
  emb.release();
  const xHost = g.normals(B * T * D);
  // A modulation of the size adaln_single gives (shift/scale/gate ~ 0.3).
  const t6Host = g.normals(B * 6 * D).map((v) => 0.3 * v);
  const x0 = uploadTensor(rt, xHost, [B * T, D]);
  const t6 = uploadTensor(rt, t6Host, [B, 6 * D]);
  const grid = { h: s.grid, w: s.grid };
  rec = new Recorder(rt, "block check");
  const y = model.blockForward(rec, 0, elementwise(rec, "copy", x0), t6, cond, grid);
  await rec.submit();
  const ours = await readTensor(rt, y);
  y.release();
  if (!ours.every(Number.isFinite)) throw new Error("webdit block: non-finite output");

  const tfjs = await tfjsPixArtBlock(
    await readBlockWeights(source, 0),
    { batch: B, tokens: T, captionTokens: L, heads: s.heads, headDim: s.headDim },
    {
      x: xHost,
      t6: t6Host,
      keys: await readTensor(rt, cond.keys[0]),
      values: await readTensor(rt, cond.values[0]),
      mask: maskHost,
    },
  );
  tfjs.run(1);
  const theirs = await tfjs.read();
  const err = relMaxError(theirs, ours);
  // The block's update y − x too: the residual x alone would make any two outputs look close.
  const errUpdate = relMaxError(
    theirs.map((v, i) => v - xHost[i]),
    ours.map((v, i) => v - xHost[i]),
  );
  if (!(err <= 1e-3 && errUpdate <= 1e-3)) {
    throw new Error(`tfjs block vs webdit block: relative max error ${err}, of y − x ${errUpdate}`);
  }
  const check = `relative max error ${err.toExponential(2)} (of the update y − x ${
    errUpdate.toExponential(2)
  })`;
  return { model, cond, x0, t6, grid, tfjs, check };
}

let built: ReturnType<typeof build> | undefined;
let tfjsBlock: TfjsBlock | undefined;

const suite: BenchSuite = new BenchSuite({
  what: "block",
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: { shape: SHAPE },
    }),
  extraOf: (rows) => {
    const ours = rows.find((r) => r.name === `block_pixart_${SHAPE.tag}_f32`);
    const peer = rows.find((r) => r.name === `tfjs_block_pixart_${SHAPE.tag}_f32`);
    const speedup = ours && peer ? Number((peer.median_ms / ours.median_ms).toPrecision(3)) : null;
    return { speedup_vs_tfjs: speedup };
  },
  teardown: () => {
    tfjsBlock?.dispose();
    rt.destroy();
  },
});

const shapeNote = `hidden ${SHAPE.heads * SHAPE.headDim} (${SHAPE.heads}×${SHAPE.headDim}), ` +
  `${SHAPE.grid ** 2} tokens, batch ${SHAPE.batch}, cross-attention to ${SHAPE.captionTokens} ` +
  `caption tokens (K/V precomputed), f32`;
const timing = { iterations: 10, minSampleMs: onGpu ? 200 : 300 };

suite.add({
  name: `block_pixart_${SHAPE.tag}_f32`,
  unit: "ms",
  unit2: "TFLOP/s",
  timing,
  setup: async () => {
    built ??= build(SHAPE);
    const b = await built;
    return {
      device: rt.device,
      run: async (reps) => {
        const rec = new Recorder(rt, "blocks");
        let h = elementwise(rec, "copy", b.x0);
        for (let i = 0; i < reps; i++) h = b.model.blockForward(rec, 0, h, b.t6, b.cond, b.grid);
        h.release();
        await rec.submit();
      },
      value2: (ms) => tflops(blockFlops(SHAPE), ms),
      note: `webdit block (plugins/models/pixart.ts blockForward), ${shapeNote}; ` +
        `tfjs block agrees: ${b.check}`,
    };
  },
});

suite.add({
  name: `tfjs_block_pixart_${SHAPE.tag}_f32`,
  unit: "ms",
  timing,
  setup: async () => {
    built ??= build(SHAPE);
    const b = await built;
    tfjsBlock = b.tfjs;
    return {
      device: b.tfjs.device,
      run: (reps) => b.tfjs.run(reps),
      note: `${b.tfjs.note}; ${shapeNote}; output vs webdit's: ${b.check}`,
    };
  },
});

suite.register();
