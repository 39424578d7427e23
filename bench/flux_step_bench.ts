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
 * default times reduced depths, 2 + 4 (`step_flux_f32`, the depth in the note) and 1 + 2
 * (`…_d1x2`); since FLUX.1 is 19 units of (1 double + 2 single), the full-depth step is
 * estimated as t(1+2) + 18·(t(2+4) − t(1+2)) (`…_est_full`, an extrapolation, not a
 * measurement). f16 rows too where the adapter has shader-f16.
 *
 * The W4A8 + PARO row (`step_flux_w4a8_tlq_ars_paro30_int8`) needs the TLQ W4A8
 * LinearFactory (issue 5) and the PARO attention (issue 7), which this commit does not
 * have: {@linkcode quantizedVariant} is the hook that builds them once they exist.
 *
 * On a CPU adapter (lavapipe) a tiny FLUX-shaped model instead (hidden 64, 64 image + 16
 * text tokens), rows named `step_flux_tiny_*`, so the run takes seconds.
 *
 * Correctness: the model is verified against PyTorch in tests/flux_fixtures_test.ts; here
 * each case checks that one step gives finite values of a sane size before timing.
 *
 * @module
 */
import { type AdapterChoice, createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import type { TensorInfo, TensorSource } from "../runtime/io/safetensors.ts";
import { f32ToF16Bits } from "../runtime/io/f16.ts";
import { Prng } from "../runtime/io/prng.ts";
import { denseLinears, type LinearFactory } from "../runtime/model/linear.ts";
import { cast } from "../runtime/ops/cast.ts";
import { elementwise } from "../runtime/ops/elementwise.ts";
import {
  type FluxConfig,
  fluxWeightShapes,
  parseFluxConfig,
} from "../plugins/models/flux_config.ts";
import { type FluxConditioning, type FluxModel, loadFlux } from "../plugins/models/flux.ts";
import type { SelfAttention } from "../plugins/models/pixart.ts";
import { fluxSampler } from "../plugins/models/flux_pipeline.ts";
import { FLUX_FLOW_CONFIG } from "../runtime/sampling/flow_euler.ts";
import {
  backendName,
  type BenchCase,
  type BenchResult,
  BenchSuite,
  commandLine,
  deviceSlug,
  gitCommit,
  type ResultsFile,
  resultsMarkdown,
  today,
  writeResults,
} from "./harness.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;

/** The model and input shapes of the run. */
interface Shape {
  tag: string;
  heads: number;
  headDim: number;
  axes: number[];
  joint: number;
  pooled: number;
  inChannels: number;
  latent: number;
  textTokens: number;
}

const SHAPE: Shape = onGpu
  ? {
    tag: "",
    heads: 24,
    headDim: 128,
    axes: [16, 56, 56],
    joint: 4096,
    pooled: 768,
    inChannels: 64,
    latent: 128,
    textTokens: 512,
  }
  : {
    tag: "_tiny",
    heads: 4,
    headDim: 16,
    axes: [4, 6, 6],
    joint: 64,
    pooled: 32,
    inChannels: 16,
    latent: 16,
    textTokens: 16,
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
const POOL = onGpu ? 1 << 22 : 1 << 16;
const pools = new Map<number, Float32Array>();

/**
 * POOL weights of std 1/√fanIn: Gaussian with Student-t tails (1 % of the entries drawn
 * from t with 4 degrees of freedom), as BENCHMARKS.md asks of shape benchmarks.
 */
function pool(fanIn: number): Float32Array {
  let p = pools.get(fanIn);
  if (!p) {
    const g = new Prng(fanIn);
    p = new Float32Array(POOL);
    const s = 1 / Math.sqrt(fanIn);
    for (let i = 0; i < POOL; i++) {
      let v = g.normal();
      if (g.uniform() < 0.01) {
        let chi = 0;
        for (let k = 0; k < 4; k++) chi += g.normal() ** 2;
        v /= Math.sqrt(chi / 4);
      }
      p[i] = v * s;
    }
    pools.set(fanIn, p);
  }
  return p;
}

/** Random FLUX weights by name (tiled from per-fan-in pools), without a file. */
class RandomFluxSource implements TensorSource {
  readonly path = "random FLUX weights";
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>> = {};
  #shapes: Map<string, number[]>;

  constructor(c: FluxConfig) {
    this.#shapes = fluxWeightShapes(c);
    const m = new Map<string, TensorInfo>();
    for (const [name, shape] of this.#shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      m.set(name, {
        dtype: "F32",
        shape,
        byteLength: 4 * n,
        offset: 0,
        dataOffsets: [0, 4 * n],
        file: this.path,
      });
    }
    this.tensors = m;
  }

  readF32(name: string): Promise<Float32Array> {
    const shape = this.#shapes.get(name);
    if (!shape) throw new RangeError(`no tensor ${name}`);
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    if (name.endsWith(".bias")) {
      out.set(pool(2500).subarray(0, n)); // std 0.02
    } else if (shape.length === 1) {
      out.fill(1); // RMSNorm weights
    } else {
      const p = pool(shape[1]);
      let off = (name.length * 7919) % POOL;
      for (let i = 0; i < n;) {
        const k = Math.min(n - i, POOL - off);
        out.set(p.subarray(off, off + k), i);
        i += k;
        off = 0;
      }
    }
    return Promise.resolve(out);
  }

  async readF16Bits(name: string): Promise<Uint16Array> {
    return f32ToF16Bits(await this.readF32(name));
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.readF32(name).then((a) => new Uint8Array(a.buffer));
  }

  async readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    return (await this.readRaw(name)).subarray(begin, end);
  }

  close(): void {}

  [Symbol.dispose](): void {}
}

/**
 * The hook of the W4A8 + PARO row: the TLQ W4A8 LinearFactory (with the rotation of the
 * plan) and the PARO self-attention at 30 % density, INT8, for this model. Returns
 * undefined until the quantizer (issue 5) and PARO (issue 7) plugins exist; then build
 * them here and the case `step_flux_w4a8_tlq_ars_paro30_int8` runs.
 */
function quantizedVariant(
  _rt: Runtime,
  _c: FluxConfig,
): { linears: LinearFactory; selfAttention: SelfAttention } | undefined {
  return undefined;
}

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
  variant?: { linears: LinearFactory; selfAttention: SelfAttention },
): Promise<StepSetup> {
  const model = await loadFlux(rt, new RandomFluxSource(c), c, {
    dtype,
    linears: variant?.linears ?? denseLinears(dtype),
    selfAttention: variant?.selfAttention,
  });
  const g = new Prng(11);
  const L = SHAPE.textTokens;
  const emb = uploadTensor(
    rt,
    g.normals(L * c.jointAttentionDim),
    [1, L, c.jointAttentionDim],
    dtype,
  );
  const pooled = uploadTensor(
    rt,
    g.normals(c.pooledProjectionDim),
    [1, c.pooledProjectionDim],
    dtype,
  );
  const x = uploadTensor(rt, g.normals(c.latentChannels * SHAPE.latent ** 2), [
    1,
    c.latentChannels,
    SHAPE.latent,
    SHAPE.latent,
  ]);
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
  const xm = cast(rec, s.x, s.model.dtype);
  const v = s.model.forward(rec, xm, [s.t], s.cond, { index: 0, total: 28 });
  if (xm !== s.x) xm.release();
  const v32 = cast(rec, v, "f32");
  if (v32 !== v) v.release();
  elementwise(rec, "axpby", s.x, { y: v32, alpha: 1, beta: s.dt, out: s.out });
  v32.release();
  await rec.submit();
}

const steps = new Map<string, StepSetup>();

function stepCase(
  name: string,
  double: number,
  single: number,
  dtype: "f32" | "f16",
  variant?: (c: FluxConfig) => { linears: LinearFactory; selfAttention: SelfAttention },
): BenchCase {
  return {
    name,
    unit: "ms",
    timing: { minSampleMs: onGpu ? 200 : 100, iterations: 10 },
    setup: async () => {
      const c = fluxConfig(SHAPE, double, single);
      const t0 = performance.now();
      const s = await setup(c, dtype, variant?.(c));
      const loadS = (performance.now() - t0) / 1000;
      steps.set(name, s);
      await step(s);
      const y = await readTensor(rt, s.out);
      let ss = 0;
      for (const v of y) ss += v * v;
      const r = Math.sqrt(ss / y.length);
      if (!Number.isFinite(r) || r < 0.1 || r > 100) {
        throw new Error(`${name}: one step gave RMS ${r} (not finite or out of range)`);
      }
      const tokens = `${(SHAPE.latent / 2) ** 2} image + ${SHAPE.textTokens} text tokens`;
      return {
        device: rt.device,
        run: async (reps) => {
          for (let i = 0; i < reps; i++) await step(s);
        },
        note: `depth ${double} double + ${single} single (FLUX.1: 19 + 38), hidden ${c.innerDim} ` +
          `(${c.numAttentionHeads}×${c.attentionHeadDim}), ${tokens}, batch 1, ${dtype}, ` +
          `weights ${(s.weightGB * 1e3).toPrecision(3)} MB, loaded in ${
            loadS.toFixed(1)
          } s; step output finite ` +
          `(RMS ${r.toFixed(3)})`,
        dispose: () => {
          s.cond.release();
          s.model.release();
          s.x.release();
          s.out.release();
        },
      };
    },
  };
}

const [D, S] = depthOf();
const suiteDescribe = () =>
  Promise.resolve({
    device: rt.info.description,
    slug: deviceSlug(rt.info.description, rt.info.fallback),
    extra: { shape: SHAPE, depth: [D, S] },
  });
const suite = new BenchSuite({ what: "flux_step", describe: suiteDescribe });
const dtypes = (Deno.env.get("WEBDIT_FLUX_DTYPES") ?? "f32,f16").split(",").filter((d) => {
  if (d !== "f32" && d !== "f16") throw new TypeError(`WEBDIT_FLUX_DTYPES: unknown dtype ${d}`);
  return d === "f32" || rt.info.f16;
}) as ("f32" | "f16")[];
// The full-depth estimate needs depths 2 + 4 and 1 + 2; tiny CPU shapes are overhead-bound.
const estimate = onGpu && D === 2 && S === 4;
for (const dt of dtypes) {
  suite.add(stepCase(`step_flux${SHAPE.tag}_${dt}`, D, S, dt));
  if (estimate) suite.add(stepCase(`step_flux${SHAPE.tag}_${dt}_d1x2`, 1, 2, dt));
}
const q = quantizedVariant(rt, fluxConfig(SHAPE, D, S));
if (q) {
  suite.add(
    stepCase(
      `step_flux${SHAPE.tag}_w4a8_tlq_ars_paro30_int8`,
      D,
      S,
      "f32",
      (c) => quantizedVariant(rt, c)!,
    ),
  );
} else {
  console.log(
    "step_flux_w4a8_tlq_ars_paro30_int8: skipped (needs the TLQ W4A8 linears and PARO attention; " +
      "see quantizedVariant in bench/flux_step_bench.ts)",
  );
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
  for (const c of suite.cases) {
    // One case at a time: time it, then free its model before the next loads.
    const one = new BenchSuite({ what: "flux_step", describe: () => suiteDescribe() });
    one.add(c);
    results.push(...await one.run());
    await one.prepare(c).then((p) => p.dispose?.(), () => {});
  }
  if (estimate) {
    for (const dt of dtypes) {
      const a = results.find((r) => r.name === `step_flux${SHAPE.tag}_${dt}_d1x2`);
      const b = results.find((r) => r.name === `step_flux${SHAPE.tag}_${dt}`);
      if (!a || !b || !Number.isFinite(a.median_ms) || !Number.isFinite(b.median_ms)) continue;
      const est = (x: number, y: number) => Number((x + 18 * (y - x)).toPrecision(4));
      results.push({
        name: `step_flux${SHAPE.tag}_${dt}_est_full`,
        value: est(a.median_ms, b.median_ms),
        unit: "ms",
        median_ms: est(a.median_ms, b.median_ms),
        min_ms: est(a.min_ms, b.min_ms),
        note:
          "extrapolated, not measured: t(1+2) + 18·(t(2+4) − t(1+2)) for FLUX.1's 19 + 38 blocks",
      });
    }
  }
  const file: ResultsFile = {
    device: rt.info.description,
    adapter: backendName(),
    deno: Deno.version.deno,
    commit: await gitCommit(),
    date: today(),
    command: commandLine(),
    results,
    extra: { shape: SHAPE, depth: [D, S], host_load_average: Deno.loadavg() },
  };
  console.log("\n" + resultsMarkdown(file));
  if (Deno.env.get("WEBDIT_BENCH_WRITE") === "1") {
    const paths = await writeResults(
      deviceSlug(rt.info.description, rt.info.fallback),
      "flux_step",
      file,
    );
    console.log(`wrote ${paths.json} and ${paths.md}`);
  }
  rt.destroy();
}

Deno.bench({
  name: "flux_step: protocol and results file",
  n: 1,
  warmup: 0,
  fn: async () => {
    await runOnce();
  },
});
