/**
 * One FLUX sampler step (the transformer forward + the flow-matching Euler update, one
 * recording, one submit) on a FLUX.1-shaped random model: hidden 3072 (24 heads × 128),
 * joint_attention_dim 4096, pooled 768, in_channels 64, a 1024² image (128×128 latent →
 * 4096 image tokens) and 512 text tokens, batch 1 (no CFG, as FluxPipeline), guidance
 * embedder on (dev).
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/flux_step_bench.ts
 *                       # → bench/results/<device>/<date>_flux_step.{json,md}
 *     WEBDIT_FLUX_DEPTH=19,38 …   # another depth (double, single); default 2,4
 *     WEBDIT_FLUX_DTYPES=f32 …    # storage types to time; default f32,f16 (f16 where supported)
 *
 * Depth: FLUX.1 has 19 double + 38 single blocks (~12B parameters, 47 GB in f32). The
 * default times reduced depths, 2 + 4 (`step_flux_f32`, the depth in every row's note and in
 * `extra.depth`; committed files before 2026-11-29 lack it in the PARO row's note) and 1 + 2
 * (`…_d1x2`); since FLUX.1 is 19 units of (1 double + 2 single), the full-depth step is
 * estimated as t(1+2) + 18·(t(2+4) − t(1+2)) (`…_est_full`, an extrapolation, not a
 * measurement). f16 rows too where the adapter has shader-f16.
 *
 * The quantized rows (`step_flux_w4a8_tlq_ars`, `step_flux_w4a8_tlq_ars_paro30_int8`, at
 * the f32 rows' depth): every linear of the double and single blocks — attention, the
 * FFNs and the adaLN modulation linears included (issue 10; the paper's code kept the
 * last two in BF16) — as W4 TLQ codes with per-token A8 activations through the layer's
 * ARS rotation; x_embedder, context_embedder, time_text_embed.*, norm_out.linear and
 * proj_out stay f32 (FLUX_KEEP_FP, quantize's FLUX default). PARO at block density 0.3, INT8, over the
 * image tokens with the text tokens dense (plugins/attention/paro_flux.ts). The plans come from one
 * FP32 calibration forward of the same model on the bench inputs (linear-input statistics
 * for ARS, image×image attention maps for PARO); before timing the quantized forward's
 * output is compared with that FP32 output (cosine, relative L2 in the note; cosine > 0.9
 * asserted for W4A8, > 0.5 with PARO). `WEBDIT_FLUX_QUANT=0` skips them,
 * `WEBDIT_FLUX_DTYPES=none` times them alone.
 *
 * On a CPU adapter (lavapipe) a tiny FLUX-shaped model instead (hidden 64, 256 image + 64
 * text tokens), rows named `step_flux_tiny_*`, so the run takes seconds.
 *
 * Correctness: the model is verified against PyTorch in tests/flux_fixtures_test.ts; here
 * each case checks that one step gives finite values of a sane size before timing.
 *
 * @module
 */
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { denseLinears, type LinearFactory } from "../runtime/model/linear.ts";
import { cast } from "../runtime/ops/cast.ts";
import { elementwise } from "../runtime/ops/elementwise.ts";
import { StatsCollector } from "../runtime/quant/calibrate.ts";
import { ParoStatsObserver } from "../runtime/quant/paro_calibrate.ts";
import { planParo } from "../runtime/quant/paro_plan.ts";
import { FLUX_KEEP_FP, keepPattern } from "../runtime/quant/plan.ts";
import { FluxParoAttention, observeImageTokens } from "../plugins/attention/paro_flux.ts";
import {
  type FluxConfig,
  fluxWeightShapes,
  parseFluxConfig,
} from "../plugins/models/flux_config.ts";
import type { FluxConditioning, FluxModel } from "../plugins/models/flux.ts";
import { loadFlux } from "../plugins/models/flux_load.ts";
import { denseSelfAttention, type SelfAttention } from "../plugins/models/pixart.ts";
import { fluxSampler } from "../plugins/models/flux_pipeline.ts";
import { FLUX_FLOW_CONFIG } from "../runtime/sampling/flow_euler.ts";
import {
  type BenchCase,
  type BenchResult,
  BenchSuite,
  deviceSlug,
  estimateRow,
  gitCommit,
  type ResultsFile,
  resultsHeader,
  resultsMarkdown,
  writeResults,
} from "./harness.ts";
import { RandomFluxSource, setFluxPoolSize } from "./random_flux.ts";
import { profileStep } from "./step_profile.ts";
import { defaultQuantWorkers } from "../runtime/quant/gptq_pool.ts";
import { compareOutputs, plannedLinears, planSummary, quantizeLayers } from "./random_quant.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;

/** The model and input shapes of the run: FLUX.1's on GPUs. */
const GPU_SHAPE = {
  tag: "",
  heads: 24,
  headDim: 128,
  axes: [16, 56, 56],
  joint: 4096,
  pooled: 768,
  inChannels: 64,
  latent: 128,
  textTokens: 512,
};
type Shape = typeof GPU_SHAPE;

const SHAPE: Shape = onGpu ? GPU_SHAPE : {
  tag: "_tiny",
  heads: 4,
  headDim: 16,
  axes: [4, 6, 6],
  joint: 64,
  pooled: 32,
  inChannels: 16,
  latent: 32,
  textTokens: 64, // one whole block: PARO's image blocks stay aligned, as with 512 on the GPU
};

function depthOf(): [number, number] {
  const raw = Deno.env.get("WEBDIT_FLUX_DEPTH") ?? "2,4";
  const d = raw.split(",").map(Number);
  if (d.length !== 2 || d.some((v) => !Number.isInteger(v) || v < 0)) {
    throw new TypeError(`WEBDIT_FLUX_DEPTH must be "double,single", got ${raw}`);
  }
  return [d[0], d[1]];
}

function fluxConfig(s: Shape, double: number, single: number): FluxConfig {
  return parseFluxConfig({
    _class_name: "FluxTransformer2DModel",
    in_channels: s.inChannels,
    num_layers: double,
    num_single_layers: single,
    attention_head_dim: s.headDim,
    num_attention_heads: s.heads,
    joint_attention_dim: s.joint,
    pooled_projection_dim: s.pooled,
    guidance_embeds: true,
    axes_dims_rope: s.axes,
  });
}

// Distinct random values per fan-in: 4M on GPUs (tiled over larger matrices), 64K on CPUs.
setFluxPoolSize(onGpu ? 1 << 22 : 1 << 16);

/** A loaded model, its conditioning and latents, and how to record one step. */
interface StepSetup {
  model: FluxModel;
  cond: FluxConditioning;
  x: Tensor;
  out: Tensor;
  dt: number;
  t: number;
  weightGB: number;
}

async function setup(
  c: FluxConfig,
  dtype: "f32" | "f16",
  variant?: { linears: LinearFactory; selfAttention?: SelfAttention },
): Promise<StepSetup> {
  const model = await loadFlux(rt, new RandomFluxSource(c), c, {
    dtype,
    linears: variant?.linears ?? denseLinears(dtype),
    selfAttention: variant?.selfAttention,
  });
  const g = new Prng(11);
  // Random inputs of a shape (f32 latents, the model's dtype for the conditioning).
  const rand = (shape: number[], dt: "f32" | "f16" = dtype) =>
    uploadTensor(rt, g.normals(shape.reduce((p, d) => p * d, 1)), shape, dt);
  const emb = rand([1, SHAPE.textTokens, c.jointAttentionDim]);
  const pooled = rand([1, c.pooledProjectionDim]);
  const x = rand([1, c.latentChannels, SHAPE.latent, SHAPE.latent], "f32");
  const out = createTensor(rt, x.shape, "f32");
  const rec = new Recorder(rt, "flux conditioning");
  const cond = model.prepare(rec, emb, pooled, [3.5]);
  await rec.submit();
  emb.release();
  pooled.release();
  // The first step of a 28-step FLUX.1-dev schedule at this size.
  const s = fluxSampler(28, FLUX_FLOW_CONFIG, SHAPE.latent, SHAPE.latent);
  return {
    model,
    cond,
    x,
    out,
    dt: s.plan.dt[0],
    t: Math.fround(s.timesteps[0] / 1000),
    weightGB: model.weightBytes / 1e9,
  };
}

/**
 * Records one sampler step as sampleLoop does (f32 latents, casts around an f16 model,
 * forward, Euler update into `out`) and submits it; x stays, so every step is the same.
 */
async function step(s: StepSetup): Promise<void> {
  const rec = new Recorder(rt, "flux step");
  recordStep(rec, s);
  await rec.submit();
}

/** Records one step into `rec`, into `s.out`. */
function recordStep(rec: Recorder, s: StepSetup): void {
  const xm = cast(rec, s.x, s.model.dtype);
  const v = s.model.forward(rec, xm, [s.t], s.cond, { index: 0, total: 28 });
  if (xm !== s.x) xm.release();
  const v32 = cast(rec, v, "f32");
  if (v32 !== v) v.release();
  elementwise(rec, "axpby", s.x, { y: v32, alpha: 1, beta: s.dt, out: s.out });
  v32.release();
}

/** The sampler position of every timed step (PARO reads its mask group from it). */
const STEP = { index: 0, total: 28 };

/** Runs the forward alone and reads its output (f32), for the checks. */
async function forwardOutput(
  s: StepSetup,
  at: { index: number; total: number },
): Promise<Float32Array> {
  const rec = new Recorder(rt, "flux check forward");
  const xm = cast(rec, s.x, s.model.dtype);
  const v = s.model.forward(rec, xm, [s.t], s.cond, at);
  if (xm !== s.x) xm.release();
  await rec.submit();
  const y = await readTensor(rt, v);
  v.release();
  return y;
}

/** Runs one step and checks its output is finite, of a sane RMS; returns the RMS. */
async function checkedStep(name: string, s: StepSetup): Promise<number> {
  await step(s);
  const y = await readTensor(rt, s.out);
  let ss = 0;
  for (const v of y) ss += v * v;
  const r = Math.sqrt(ss / y.length);
  if (!Number.isFinite(r) || r < 0.1 || r > 100) {
    throw new Error(`${name}: one step gave RMS ${r} (not finite or out of range)`);
  }
  return r;
}

function releaseStep(s: StepSetup): void {
  s.cond.release();
  s.model.release();
  s.x.release();
  s.out.release();
}

function shapeNote(c: FluxConfig, double: number, single: number): string {
  const tokens = `${(SHAPE.latent / 2) ** 2} image + ${SHAPE.textTokens} text tokens`;
  return `depth ${double} double + ${single} single (FLUX.1: 19 + 38), hidden ${c.innerDim} ` +
    `(${c.numAttentionHeads}×${c.attentionHeadDim}), ${tokens}, batch 1`;
}

const timing = { minSampleMs: onGpu ? 200 : 100, iterations: 10 };

function stepCase(name: string, double: number, single: number, dtype: "f32" | "f16"): BenchCase {
  return {
    name,
    unit: "ms",
    timing,
    setup: async () => {
      const c = fluxConfig(SHAPE, double, single);
      const t0 = performance.now();
      const s = await setup(c, dtype);
      const loadS = (performance.now() - t0) / 1000;
      const r = await checkedStep(name, s);
      await profileStep(rt, name, (rec) => { // s.out outlives the step: nothing to release
        recordStep(rec, s);
      });
      return {
        device: rt.device,
        run: async (reps) => {
          for (let i = 0; i < reps; i++) await step(s);
        },
        note: `${shapeNote(c, double, single)}, ${dtype}, weights ${
          (s.weightGB * 1e3).toPrecision(3)
        } MB, loaded in ${loadS.toFixed(1)} s; step output finite (RMS ${r.toFixed(3)})`,
        dispose: () => releaseStep(s),
      };
    },
  };
}

/** The W4A8 model (shared by both quantized rows), its PARO attention and the notes. */
interface QuantFlux {
  s: StepSetup;
  paro: FluxParoAttention;
  notes: { w4a8: string; paro: string };
}

let quantFlux: Promise<QuantFlux> | undefined;

/**
 * One FP32 calibration forward (linear-input statistics, image×image attention maps),
 * ARS + TLQ W4 per layer on the host workers, the PARO plan, the W4A8 model; both
 * variants checked against the FP32 forward.
 */
async function buildQuantFlux(c: FluxConfig, double: number, single: number): Promise<QuantFlux> {
  const t0 = performance.now();
  const collector = new StatsCollector(256, 1);
  const observer = new ParoStatsObserver(rt);
  const cal = await setup(c, "f32", {
    linears: collector.wrap(denseLinears("f32")),
    selfAttention: observeImageTokens(observer, denseSelfAttention),
  });
  let ref: Float32Array;
  try {
    ref = await forwardOutput(cal, { index: 0, total: 1 }); // one step: one PARO mask group
  } finally {
    releaseStep(cal);
  }
  const stats = await collector.read(rt);
  const paroStats = await observer.read();
  collector.release();
  observer.release();
  const tCal = (performance.now() - t0) / 1000;

  const names = [...fluxWeightShapes(c)]
    .filter(([n, shape]) => n.endsWith(".weight") && shape.length >= 2)
    .map(([n]) => n.slice(0, -".weight".length))
    .filter((n) => !keepPattern(n, FLUX_KEEP_FP));
  const workers = defaultQuantWorkers();
  const t1 = performance.now();
  let shown = 0;
  const plans = await quantizeLayers(new RandomFluxSource(c), names, stats, {
    wbits: 4,
    workers,
    onLayer: (done, total) => {
      if (done === total || (done / total) * 10 >= shown + 1) {
        shown = Math.floor((done / total) * 10);
        console.log(`flux bench: quantized ${done}/${total} layers`);
      }
    },
  });
  const tQuant = (performance.now() - t1) / 1000;
  const paro = new FluxParoAttention(rt, planParo(paroStats, { density: 0.3, bits: 8 }), L0);
  const s = await setup(c, "f32", { linears: plannedLinears(plans, { abits: 8 }) });
  const y = await forwardOutput(s, STEP);
  const cmp = compareOutputs(y, ref);
  if (!(cmp.cosine > 0.9)) {
    throw new Error(`W4A8 FLUX forward vs FP32: cosine ${cmp.cosine.toFixed(4)} ≤ 0.9`);
  }
  s.model.selfAttention = paro;
  const cmpP = compareOutputs(await forwardOutput(s, STEP), ref);
  if (!(cmpP.cosine > 0.5)) {
    throw new Error(`W4A8 + PARO FLUX forward vs FP32: cosine ${cmpP.cosine.toFixed(4)} ≤ 0.5`);
  }
  const vs = (m: { cosine: number; relL2: number }) =>
    `forward vs FP32: cosine ${m.cosine.toFixed(4)}, rel L2 ${m.relL2.toFixed(3)}`;
  const w4a8 = `${shapeNote(c, double, single)}; W4 TLQ + A8 per token on every block linear ` +
    `(FFNs and adaLN linears included), f32: ${FLUX_KEEP_FP.join(" ")}; ${planSummary(plans)}; ` +
    `plan from one FP32 calibration forward on the bench inputs (${tCal.toFixed(1)} s), ` +
    `${plans.size} layers quantized in ${tQuant.toFixed(1)} s on ${workers} workers; weights ${
      (s.model.weightBytes / 1e6).toPrecision(3)
    } MB; ${vs(cmp)}`;
  const paroNote = `depth ${double} double + ${single} single; ` +
    `as w4a8_tlq_ars + PARO over the image tokens (masks from the calibration ` +
    `forward's image×image maps, 1 step group, density 0.3 of the image blocks), text tokens ` +
    `dense (joint mask density ${paro.jointDensity(L0).toFixed(3)}), INT8 Q/K/P/V; ${vs(cmpP)}`;
  return { s, paro, notes: { w4a8, paro: paroNote } };
}

function quantCase(name: string, double: number, single: number, row: "w4a8" | "paro"): BenchCase {
  return {
    name,
    unit: "ms",
    timing,
    setup: async () => {
      quantFlux ??= buildQuantFlux(fluxConfig(SHAPE, double, single), double, single);
      const q = await quantFlux;
      const attn: SelfAttention = row === "paro" ? q.paro : denseSelfAttention;
      q.s.model.selfAttention = attn;
      const r = await checkedStep(name, q.s);
      return {
        device: rt.device,
        run: async (reps) => {
          q.s.model.selfAttention = attn; // the two rows share the model
          for (let i = 0; i < reps; i++) await step(q.s);
        },
        note: `${row === "paro" ? q.notes.paro : q.notes.w4a8}; step output RMS ${r.toFixed(3)}`,
        // The PARO row comes last: it frees the shared model.
        dispose: row === "paro"
          ? () => {
            releaseStep(q.s);
            q.paro.release();
          }
          : undefined,
      };
    },
  };
}

const L0 = SHAPE.textTokens;
const [D, S] = depthOf();
const suiteDescribe = () =>
  Promise.resolve({
    device: rt.info.description,
    slug: deviceSlug(rt.info.description, rt.info.fallback),
    extra: { shape: SHAPE, depth: [D, S] },
  });
const dtypesEnv = Deno.env.get("WEBDIT_FLUX_DTYPES") ?? "f32,f16";
const dtypes = (dtypesEnv === "none" ? [] : dtypesEnv.split(",")).filter((d) => {
  if (d !== "f32" && d !== "f16") throw new TypeError(`WEBDIT_FLUX_DTYPES: unknown dtype ${d}`);
  return d === "f32" || rt.info.f16;
}) as ("f32" | "f16")[];
const quantRows = Deno.env.get("WEBDIT_FLUX_QUANT") !== "0";
// The results file: <date>_flux_step, or <date>_flux_step_quant for the quantized rows alone.
const what = dtypes.length === 0 ? "flux_step_quant" : "flux_step";
const suite = new BenchSuite({ what, describe: suiteDescribe });
// The full-depth estimate needs depths 2 + 4 and 1 + 2; tiny CPU shapes are overhead-bound.
const estimate = onGpu && D === 2 && S === 4;
for (const dt of dtypes) {
  suite.add(stepCase(`step_flux${SHAPE.tag}_${dt}`, D, S, dt));
  if (estimate) suite.add(stepCase(`step_flux${SHAPE.tag}_${dt}_d1x2`, 1, 2, dt));
}
if (quantRows) {
  suite.add(quantCase(`step_flux${SHAPE.tag}_w4a8_tlq_ars`, D, S, "w4a8"));
  suite.add(quantCase(`step_flux${SHAPE.tag}_w4a8_tlq_ars_paro30_int8`, D, S, "paro"));
}

/** Runs the suite, frees each model after its case, adds the full-depth estimates, writes. */
let ran: Promise<void> | undefined;

/** Runs the suite once (deno bench may call its function more than once). */
function runOnce(): Promise<void> {
  ran ??= runAll();
  return ran;
}

async function runAll(): Promise<void> {
  const results: BenchResult[] = [];
  const commit = await gitCommit();
  const write = Deno.env.get("WEBDIT_BENCH_WRITE") === "1";
  for (const [i, c] of suite.cases.entries()) {
    // One case at a time: time it, then free its model before the next loads.
    const one = new BenchSuite({ what, describe: () => suiteDescribe() });
    one.add(c);
    results.push(...await one.run());
    await one.prepare(c).then((p) => p.dispose?.(), () => {});
    // Written after each case too, so a run stopped at a time limit keeps what it measured.
    if (write && i < suite.cases.length - 1) {
      await writeFile(fileOf([...results], commit, `${i + 1} of ${suite.cases.length} cases`));
    }
  }
  if (estimate) {
    for (const dt of dtypes) {
      const a = results.find((r) => r.name === `step_flux${SHAPE.tag}_${dt}_d1x2`);
      const b = results.find((r) => r.name === `step_flux${SHAPE.tag}_${dt}`);
      if (!a || !b || !Number.isFinite(a.median_ms) || !Number.isFinite(b.median_ms)) continue;
      const est = (x: number, y: number) => Number((x + 18 * (y - x)).toPrecision(4));
      results.push(estimateRow(
        `step_flux${SHAPE.tag}_${dt}_est_full`,
        est(a.median_ms, b.median_ms),
        "ms",
        `${a.name} and ${b.name} (medians): t(1+2) + 18·(t(2+4) − t(1+2)) for FLUX.1's 19 + 38 ` +
          "blocks",
      ));
    }
  }
  const file = fileOf(results, commit);
  console.log("\n" + resultsMarkdown(file));
  if (write) {
    const paths = await writeFile(file);
    console.log(`wrote ${paths.json} and ${paths.md}`);
  }
  rt.destroy();
}

/** The results file of these rows (`partial`: how many cases of all are in). */
function fileOf(results: BenchResult[], commit: string, partial?: string): ResultsFile {
  const extra: Record<string, unknown> = {
    shape: SHAPE,
    depth: [D, S],
    host_load_average: Deno.loadavg(),
  };
  if (partial) extra.partial = partial;
  return { ...resultsHeader(rt.info.description, commit), results, extra };
}

function writeFile(file: ResultsFile): Promise<{ json: string; md: string }> {
  return writeResults(deviceSlug(rt.info.description, rt.info.fallback), what, file);
}

Deno.bench({
  name: "flux_step: protocol and results file",
  n: 1,
  warmup: 0,
  fn: async () => {
    await runOnce();
  },
});
