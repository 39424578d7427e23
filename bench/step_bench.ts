/**
 * One sampler step of a PixArt-α-shaped transformer (28 × 1152, 16 heads × 72, 4096
 * image tokens, 120 caption tokens of 4096, batch 2 = [uncond, cond]) with random
 * Student-t weights (bench/random_model.ts), in ms:
 *
 * - `step_pixart_alpha_f32`, `step_pixart_alpha_f16`: dense weights and activations;
 * - `step_pixart_alpha_w4a8_tlq_ars`: every linear but the keep-FP ones (pos_embed.proj,
 *   adaln_single.*, caption_projection.*, proj_out; METHODS.md) as W4 TLQ codes with
 *   per-token A8 activations through the layer's ARS rotation (bench/random_quant.ts);
 * - `step_pixart_alpha_w4a8_tlq_ars_paro30_int8`: the same model with PARO self-attention
 *   at block density 0.3, INT8 Q/K/P/V (plugins/attention/paro.ts);
 * - `step_pixart_alpha_w4a8_tlq_ars_center_mean`: the W4A8 model with its layer inputs
 *   centred by the mean (quantize --center mean; runtime/ops/act_center.ts), the same plans;
 * - `step_pixart_alpha_w4a4_tlq_ars_center_mean_g16asym`: the same plans at A4 in
 *   asymmetric groups of 16 channels, centred (the bundled model's best W4A4 plan, less GPTQ
 *   and smoothing, which change no kernel);
 * - `step_pixart_alpha_w4a4_tlq_ars_center_mean_g16asym_cfgd`: the same with CFG delta
 *   (quantize --cfg-delta; runtime/ops/cfg_delta.ts): [uncond; cond − uncond] quantized,
 *   the uncond half's product added back after each integer GEMM.
 *
 * A step is what the sampling loop records per step: the forward with the cached caption
 * keys/values, the guidance combine and an update of the latents (one elementwise axpby,
 * the size of a DPM-Solver++ update). PyTorch's figures for the same shapes come from
 * tools/torch/bench_step.py (`torch_step_pixart_alpha_*`).
 *
 * The quantized rows' plans come from one FP32 calibration forward of the same model on
 * the bench's random inputs (step 0 of 1): the statistics of every linear input give ARS
 * its per-layer branch, smoothing and rotations; the attention maps give PARO its orders
 * and masks (one step group). Before timing, each quantized row's forward output is
 * compared with the FP32 output of that calibration forward (same weights and inputs):
 * cosine and relative L2 error in the note, and cosine > 0.9 asserted for W4A8 (a random
 * model at W4 differs; a bug would not stay that close).
 *
 * On a CPU adapter the shapes shrink to `step_pixart_tiny_*` (2 × 144, 256 tokens).
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/step_bench.ts
 *                          # → bench/results/<device>/<date>_step.{json,md}
 *     WEBDIT_STEP_ROWS=f32,w4a8,paro,center,w4a4g16,w4a4g16cfgd … # which rows (file
 *                                        # <date>_step_<rows>); default all but the variants
 *     WEBDIT_QUANT_WORKERS=8 …           # host workers quantizing the layers (default: cores)
 *     WEBDIT_STEP_LAYERS=4 …             # another depth (rows named …_l4_…), for quick checks
 *     WEBDIT_QUANT_ACT=f16 …             # quantized rows with f16 activation storage (…_f16)
 *     WEBDIT_STEP_PROFILE=1 …            # also print each row's kernels of one step (GPU time,
 *                                        # timestamp queries: small kernels read inflated)
 *
 * @module
 */
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, type Tensor } from "../runtime/gpu/tensor.ts";
import { denseLinears } from "../runtime/model/linear.ts";
import { StatsCollector } from "../runtime/quant/calibrate.ts";
import { ParoStatsObserver } from "../runtime/quant/paro_calibrate.ts";
import { maskDensity, planParo } from "../runtime/quant/paro_plan.ts";
import { DEFAULT_KEEP_FP, keepPattern } from "../runtime/quant/plan.ts";
import { ParoSelfAttention } from "../plugins/attention/paro.ts";
import {
  denseSelfAttention,
  type PixArtModel,
  type SelfAttention,
} from "../plugins/models/pixart.ts";
import { pixartWeightShapes } from "../plugins/models/pixart_config.ts";
import { BenchSuite, deviceSlug } from "./harness.ts";
import { profileStep } from "./step_profile.ts";
import {
  ALPHA,
  type Cond,
  configOf,
  forwardOutput,
  inputs,
  load,
  recordStep,
  type Shape,
  shapeNote,
  sourceOf,
  STEP,
  TINY,
} from "./pixart_step.ts";
import { defaultQuantWorkers } from "../runtime/quant/gptq_pool.ts";
import { compareOutputs, plannedLinears, planSummary, quantizeLayers } from "./random_quant.ts";
import type { ActBits } from "../runtime/quant/qlinear.ts";

const adapter = (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto" | "gpu" | "cpu";
const runtime: Runtime = await createRuntime({ adapter });

/** The quantized model (shared by the quantized rows), its PARO attention and checks. */
interface QuantSetup {
  model: PixArtModel;
  /** The same plans with other activation quantizers (each loaded only for its row). */
  variant: (v: Variant) => Promise<{ model: PixArtModel; note: string }>;
  cond: Cond;
  xLatent: Tensor;
  paro: ParoSelfAttention;
  notes: { w4a8: string; paro: string };
}

let quantSetup: Promise<QuantSetup> | undefined;

/** The quantized rows beside w4a8 that load the plans with another activation quantizer. */
type Variant = "center" | "w4a4g16" | "w4a4g16cfgd";
interface VariantSpec {
  abits: ActBits;
  actGroup?: number;
  cfgDelta?: boolean;
  what: string;
}
const G16 = "W4A4 centred, asymmetric groups of 16";
const VARIANTS: Record<Variant, VariantSpec> = {
  center: { abits: 8, what: "W4A8 centred" },
  w4a4g16: { abits: 4, actGroup: 16, what: G16 },
  w4a4g16cfgd: { abits: 4, actGroup: 16, cfgDelta: true, what: `${G16}, CFG delta` },
};

/**
 * Calibrates (one FP32 forward with the linear-input and attention-map observers), plans
 * and quantizes every linear on the host workers, loads the W4A8 model and checks it and
 * its PARO variant against the FP32 output.
 */
async function buildQuantized(r: Runtime, s: Shape, act: "f32" | "f16"): Promise<QuantSetup> {
  const t0 = performance.now();
  const collector = new StatsCollector(256, 1);
  const observer = new ParoStatsObserver(r);
  const cal = await load(
    r,
    s,
    "f32",
    collector.wrap(denseLinears("f32")),
    observer.wrap(denseSelfAttention),
  );
  let ref: Float32Array;
  try {
    const { cond, xLatent } = await inputs(r, cal, s, "f32");
    // One calibration step: step 0 of 1 (PARO's plan then has one mask group for every step).
    ref = await forwardOutput(r, cal, cond, xLatent, { index: 0, total: 1 });
    cond.release();
    xLatent.release();
  } finally {
    cal.release();
  }
  const stats = await collector.read(r);
  const paroStats = await observer.read();
  collector.release();
  observer.release();
  const tCal = (performance.now() - t0) / 1000;

  const source = sourceOf(s);
  const names = [...pixartWeightShapes(configOf(s))]
    .filter(([n, shape]) => n.endsWith(".weight") && shape.length >= 2)
    .map(([n]) => n.slice(0, -".weight".length))
    .filter((n) => !keepPattern(n, DEFAULT_KEEP_FP));
  const workers = defaultQuantWorkers();
  const t1 = performance.now();
  let shown = 0;
  const plans = await quantizeLayers(source, names, stats, {
    wbits: 4,
    workers,
    onLayer: (done, total) => {
      if (done === total || (done / total) * 10 >= shown + 1) {
        shown = Math.floor((done / total) * 10);
        console.log(`step bench: quantized ${done}/${total} layers`);
      }
    },
  });
  const tQuant = (performance.now() - t1) / 1000;

  const model = await load(r, s, act, plannedLinears(plans, { abits: 8, dtype: act }));
  const plan = planParo(paroStats, { density: 0.3, bits: 8 });
  const paro = new ParoSelfAttention(r, plan);
  const { cond, xLatent } = await inputs(r, model, s, act);
  // A quantized model's forward against the FP32 one: finite, and cosine above `min`.
  const checked = async (m: PixArtModel, what: string, min: number) => {
    const y = await forwardOutput(r, m, cond, xLatent, STEP);
    const c = compareOutputs(y, ref);
    if (!y.every(Number.isFinite)) throw new Error(`${what} step output is not finite`);
    if (!(c.cosine > min)) {
      throw new Error(`${what} forward vs FP32: cosine ${c.cosine.toFixed(4)} ≤ ${min}`);
    }
    return c;
  };
  model.selfAttention = denseSelfAttention;
  const cmp = await checked(model, "W4A8", 0.9);
  model.selfAttention = paro;
  const cmpP = await checked(model, "W4A8 + PARO", 0.5);
  let dens = 0;
  const orders = new Map<string, number>();
  for (let l = 0; l < plan.meta.layers; l++) {
    for (let h = 0; h < plan.meta.heads; h++) {
      dens += maskDensity(plan.mask(l, h, 0), Math.ceil(plan.meta.tokens / 64));
      const o = plan.layers[l].orders[h];
      orders.set(o, (orders.get(o) ?? 0) + 1);
    }
  }
  dens /= plan.meta.layers * plan.meta.heads;
  const mib = (model.weightBytes / 2 ** 20).toFixed(0);
  const w4a8 =
    `${shapeNote(s)}; W4 TLQ + A8 per token, ${act} activation storage, keep-FP ${
      DEFAULT_KEEP_FP.join(" ")
    }; ` +
    `${planSummary(plans)}; plan from one FP32 calibration forward on the bench inputs ` +
    `(${tCal.toFixed(1)} s), ${plans.size} layers quantized in ${
      tQuant.toFixed(1)
    } s on ${workers} workers; weights ${mib} MiB; forward vs FP32: cosine ${
      cmp.cosine.toFixed(4)
    }, rel L2 ${cmp.relL2.toFixed(3)}`;
  const paroNote = `as w4a8_tlq_ars + PARO self-attention (masks from the calibration ` +
    `forward's maps, 1 step group), INT8 Q/K/P/V, mean block density ${dens.toFixed(3)}, ` +
    `orders ${[...orders].map(([o, n]) => `${o} ${n}`).join(", ")}; forward vs FP32: cosine ${
      cmpP.cosine.toFixed(4)
    }, rel L2 ${cmpP.relL2.toFixed(3)}`;
  const variants = new Map<Variant, Promise<{ model: PixArtModel; note: string }>>();
  const loadVariant = async (v: Variant) => {
    const { abits, actGroup, cfgDelta, what } = VARIANTS[v];
    const center = "mean" as const;
    const opts = { abits, dtype: act, center, actGroup, actAsym: !!actGroup, cfgDelta };
    const m = await load(r, s, act, plannedLinears(plans, opts));
    m.selfAttention = denseSelfAttention;
    // A4 on random weights: only a sanity bound (a wrong kernel lands near 0).
    const c = await checked(m, what, abits === 8 ? 0.9 : 0.5);
    const note = `as w4a8_tlq_ars with every quantized layer's input centred by its mean over ` +
      `the sample's tokens${
        actGroup ? `, A${abits} with an asymmetric scale per ${actGroup} channels` : ""
      }${
        cfgDelta ? ", CFG delta ([uncond; cond − uncond] quantized)" : ""
      } (the plans as they are: not re-planned on centred statistics); ` +
      `forward vs FP32: cosine ${c.cosine.toFixed(4)}, rel L2 ${c.relL2.toFixed(3)} ` +
      `(W4A8 uncentred ${cmp.cosine.toFixed(4)}, ${cmp.relL2.toFixed(3)})`;
    return { model: m, note };
  };
  return {
    model,
    variant: (v) => {
      if (!variants.has(v)) variants.set(v, loadVariant(v));
      return variants.get(v)!;
    },
    cond,
    xLatent,
    paro,
    notes: { w4a8, paro: paroNote },
  };
}

// Activation storage of the quantized rows: f32 (default: only the quantization differs from the
// f32 row) or f16 (WEBDIT_QUANT_ACT=f16; rows named …_f16).
const QUANT_ACT = (Deno.env.get("WEBDIT_QUANT_ACT") ?? "f32") as "f32" | "f16";
if (QUANT_ACT !== "f32" && QUANT_ACT !== "f16") {
  throw new TypeError(`WEBDIT_QUANT_ACT must be f32 or f16, got ${QUANT_ACT}`);
}

const ROWS = ["f32", "f16", "w4a8", "paro", "center", "w4a4g16", "w4a4g16cfgd"] as const;
type Row = typeof ROWS[number];
const rowsEnv = Deno.env.get("WEBDIT_STEP_ROWS");
// The variant rows load another quantized model each: only when asked for.
const rows = (rowsEnv ? rowsEnv.split(",") : ROWS.filter((r) => !(r in VARIANTS))) as Row[];
for (const r of rows) {
  if (!ROWS.includes(r)) throw new TypeError(`WEBDIT_STEP_ROWS: unknown row ${r} (${ROWS})`);
}

const suite = new BenchSuite({
  what: rowsEnv ? `step_${rows.join("_")}` : "step",
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

const baseShape = runtime.info.fallback ? TINY : ALPHA;
const layersEnv = Deno.env.get("WEBDIT_STEP_LAYERS");
if (layersEnv && !(Number.isInteger(Number(layersEnv)) && Number(layersEnv) > 0)) {
  throw new TypeError(`WEBDIT_STEP_LAYERS must be a positive integer, got ${layersEnv}`);
}
// Another depth (quick checks): the rows' names then carry it, e.g. step_pixart_tiny_l28_f32.
const shape: Shape = layersEnv
  ? { ...baseShape, layers: Number(layersEnv), tag: `${baseShape.tag}_l${layersEnv}` }
  : baseShape;
const timing = { iterations: 10, minSampleMs: 300, maxReps: 16 };

for (const dtype of ["f32", "f16"] as const) {
  if (!rows.includes(dtype)) continue;
  suite.add({
    name: `step_pixart_${shape.tag}_${dtype}`,
    unit: "ms",
    setup: async () => {
      const r = runtime;
      if (dtype === "f16" && !r.info.f16) throw new Error("no shader-f16 on this adapter");
      const s = shape;
      const model = await load(r, s, dtype, denseLinears(dtype));
      const { cond, xLatent } = await inputs(r, model, s, dtype);
      // Check before timing: the step's output is finite (f16 vs f32 agreement is in the tests).
      const rec = new Recorder(r);
      const y = recordStep(rec, model, cond, xLatent);
      await rec.submit();
      const v = await readTensor(r, y);
      y.release();
      if (!v.every(Number.isFinite)) throw new Error("non-finite step output");
      await profileStep(
        r,
        `step_pixart_${shape.tag}_${dtype}`,
        (rec) => recordStep(rec, model, cond, xLatent),
      );
      return {
        device: r.device,
        run: async (reps) => {
          const rec = new Recorder(r);
          for (let i = 0; i < reps; i++) recordStep(rec, model, cond, xLatent).release();
          await rec.submit();
        },
        note: `${shapeNote(s)}; weights ${(model.weightBytes / 2 ** 20).toFixed(0)} MiB`,
        dispose: () => {
          cond.release();
          model.release();
        },
      };
    },
    timing,
  });
}

for (const row of ["w4a8", "paro", "center", "w4a4g16", "w4a4g16cfgd"] as const) {
  if (!rows.includes(row)) continue;
  const tail = {
    w4a8: "w4a8_tlq_ars",
    paro: "w4a8_tlq_ars_paro30_int8",
    center: "w4a8_tlq_ars_center_mean",
    w4a4g16: "w4a4_tlq_ars_center_mean_g16asym",
    w4a4g16cfgd: "w4a4_tlq_ars_center_mean_g16asym_cfgd",
  }[row];
  suite.add({
    name: `step_pixart_${shape.tag}_${tail}${QUANT_ACT === "f16" ? "_f16" : ""}`,
    unit: "ms",
    setup: async () => {
      const r = runtime;
      quantSetup ??= buildQuantized(r, shape, QUANT_ACT);
      const q = await quantSetup;
      const c = row in VARIANTS ? await q.variant(row as Variant) : undefined;
      const model = c?.model ?? q.model;
      const attn: SelfAttention = row === "paro" ? q.paro : denseSelfAttention;
      // Check before timing: a whole step with this attention gives finite latents.
      model.selfAttention = attn;
      const rec = new Recorder(r);
      const y = recordStep(rec, model, q.cond, q.xLatent);
      await rec.submit();
      const v = await readTensor(r, y);
      y.release();
      if (!v.every(Number.isFinite)) throw new Error("non-finite step output");
      await profileStep(
        r,
        `step_pixart_${shape.tag}_${tail}`,
        (rec) => recordStep(rec, model, q.cond, q.xLatent),
      );
      return {
        device: r.device,
        run: async (reps) => {
          model.selfAttention = attn; // the w4a8 and paro rows share the model
          const rec = new Recorder(r);
          for (let i = 0; i < reps; i++) recordStep(rec, model, q.cond, q.xLatent).release();
          await rec.submit();
        },
        note: c?.note ?? (row === "paro" ? q.notes.paro : q.notes.w4a8),
      };
    },
    timing,
  });
}

suite.register();
