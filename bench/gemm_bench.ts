/**
 * GEMM benchmark: our kernels (runtime/ops/gemm.ts) and the peers — ONNX Runtime Web's
 * WebGPU EP and tfjs-backend-webgpu — in one process on one GPU, each checked against a
 * CPU reference on sampled entries before it is timed.
 *
 *     deno task bench                                    # every bench, tables only
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/gemm_bench.ts
 *                                                        # + bench/results/<device>/<date>_gemm.{json,md}
 *     WEBDIT_GEMM_SWEEP=only …                           # instead: version-2 tile configs at the
 *                                                        # sweep's shapes (<date>_gemm_sweep, BEST_TUNE)
 *     WEBDIT_GEMM_SWEEP=small_m …                        # instead: text-encoder and conditioning shapes
 *                                                        # (M 2–512) under smaller tiles and version 4
 *     WEBDIT_GEMM_SWEEP=half …                           # instead: f16 at the sweep's shapes (and T5's),
 *                                                        # default tiles staged as f32 (_hs0) and f16 (_hs1)
 *
 * On a GPU: 1024³, 4096³ and the DiT shapes (M=4096 tokens, K=1152, N=1152 and 4608), f32
 * and f16, the version-1 kernel as a naive baseline, and the peers at 1024³ and 4096³.
 * On a CPU adapter (lavapipe) small shapes only, in GFLOP/s, so the run takes minutes.
 *
 * @module
 */
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import {
  defaultGemmVersion,
  gemm,
  gemmGpuTiles,
  gemmOperandLoad,
  type GemmTune,
  type GemmVersion,
} from "../runtime/ops/gemm.ts";
import { type BenchCase, BenchSuite, deviceSlug, tflops } from "./harness.ts";
import type { ortMatmul, PeerMatmul } from "./peers/ort.ts";
import { checkSampled, type SampledRef } from "./sampled_check.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;
// TFLOP/s on GPUs; GFLOP/s on CPU adapters, where TFLOP/s would read as zeros.
const UNIT = onGpu ? "TFLOP/s" : "GFLOP/s";
const rate = (flops: number, ms: number) => tflops(flops, ms) * (onGpu ? 1 : 1e3);

type DType = "f32" | "f16";

/** WEBDIT_GEMM_SWEEP's modes and the results file each writes instead of the default cases'. */
const SWEEP_FILES: Record<string, string> = {
  only: "gemm_sweep",
  small_m: "gemm_small_m",
  half: "gemm_half",
};
const sweepMode = Deno.env.get("WEBDIT_GEMM_SWEEP") ?? "";
const SWEEP_ONLY = Object.hasOwn(SWEEP_FILES, sweepMode);

/** Host data and its GPU copy, shared by every case of the same shape. */
interface Operands {
  xs: Float32Array;
  ws: Float32Array;
  x: Tensor;
  w: Tensor;
}

const operandCache = new Map<string, Operands>();

/** Uniform(−1, 1) X [M, K] and W [N, K], rounded to f16 for f16 storage (as uploaded). */
function operands(M: number, K: number, N: number, dt: DType): Operands {
  const key = `${M}x${K}x${N}:${dt}`;
  let o = operandCache.get(key);
  if (!o) {
    const g = new Prng(M * 31 + K * 7 + N);
    let xs = g.uniforms(M * K, -1, 1);
    let ws = g.uniforms(N * K, -1, 1);
    if (dt === "f16") {
      xs = Float32Array.from(Float16Array.from(xs));
      ws = Float32Array.from(Float16Array.from(ws));
    }
    o = { xs, ws, x: uploadTensor(rt, xs, [M, K], dt), w: uploadTensor(rt, ws, [N, K], dt) };
    operandCache.set(key, o);
  }
  return o;
}

/**
 * Checks 256 sampled entries of Y = X·Wᵀ (W [N, K], or [K, N] when `wKN`) against a
 * double-precision dot product: |y − ref| ≤ 1e-5·Σ|x·w| (f32 accumulation), plus half
 * an f16 ulp of the output (≤ 1e-3·|ref|) for f16 storage.
 */
function checkProduct(
  label: string,
  y: Float32Array,
  xs: Float32Array,
  ws: Float32Array,
  M: number,
  K: number,
  N: number,
  f16: boolean,
  wKN = false,
): string {
  const ref = (m: number, n: number) => {
    let v = 0;
    let mag = 0;
    for (let k = 0; k < K; k++) {
      const p = xs[m * K + k] * (wKN ? ws[k * N + n] : ws[n * K + k]);
      v += p;
      mag += Math.abs(p);
    }
    return { v, mag };
  };
  const tol = (r: SampledRef) => 1e-5 * r.mag + (f16 ? 1e-3 * Math.abs(r.v) : 0) + 1e-6;
  return checkSampled(label, y, M, N, ref, tol);
}

/** Name of a shape: "4096" for a cube, else "MxKxN". */
function shapeName(M: number, K: number, N: number): string {
  return M === K && K === N ? `${M}` : `${M}x${K}x${N}`;
}

interface GemmCaseOptions {
  version?: GemmVersion;
  tune?: GemmTune;
  name?: string;
}

function gemmCase(M: number, K: number, N: number, dt: DType, o: GemmCaseOptions = {}): BenchCase {
  const version = o.version ?? defaultGemmVersion(rt, { M, K, dtype: dt });
  const name = o.name ?? `gemm_${dt}_${shapeName(M, K, N)}`;
  return {
    name,
    unit: UNIT,
    setup: async () => {
      if (dt === "f16" && !rt.info.f16) throw new Error("this adapter has no shader-f16");
      const { xs, ws, x, w } = operands(M, K, N, dt);
      const out = createTensor(rt, [M, N], dt);
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        // Unforced, gemm picks the version and (GPUs) the small-grid tiles as a model's call does.
        for (let i = 0; i < reps; i++) gemm(rec, x, w, { out, version: o.version, tune: o.tune });
        return rec.submit();
      };
      await record(1);
      const check = checkProduct(name, await readTensor(rt, out), xs, ws, M, K, N, dt === "f16");
      const load = gemmOperandLoad(version, dt, K);
      const tune = o.tune ? ` ${JSON.stringify(o.tune)}` : "";
      // The tiles an unforced version-2 call gets on a GPU (gemm.ts: 64×64 on small grids).
      const small = onGpu && version === 2 && !o.version && gemmGpuTiles(M, N).tx === 8;
      const tiles = version === 2 ? (small ? " 64×64" : " 128×128") : "";
      return {
        device: rt.device,
        run: record, // reps GEMMs in one submit
        value: (ms) => rate(2 * M * N * K, ms),
        note: `v${version}${o.tune?.tx ? "" : tiles} ${load}${tune}; ${check}`,
        dispose: () => out.release(),
      };
    },
    timing: { minSampleMs: SWEEP_ONLY ? 80 : 150 },
  };
}

type PeerKind = "ort" | "tfjs";
// Imported when a peer case runs: the sweeps run where those npm packages are not installed.
const PEERS: Record<PeerKind, () => Promise<typeof ortMatmul>> = {
  ort: async () => (await import("./peers/ort.ts")).ortMatmul,
  tfjs: async () => (await import("./peers/tfjs.ts")).tfjsMatmul,
};
const livePeers: PeerMatmul[] = [];

function peerCase(kind: PeerKind, S: number): BenchCase {
  const name = `${kind}_matmul_f32_${S}`;
  return {
    name,
    unit: UNIT,
    setup: async () => {
      const g = new Prng(S * 13 + (kind === "ort" ? 1 : 2));
      const a = g.uniforms(S * S, -1, 1) as Float32Array<ArrayBuffer>;
      const b = g.uniforms(S * S, -1, 1) as Float32Array<ArrayBuffer>; // B [K, N], as MatMul takes it
      const p = await (await PEERS[kind]())(a, b, S, S, S);
      livePeers.push(p); // ORT: releasing the last session destroys its device; keep them
      await p.run();
      await p.device.queue.onSubmittedWorkDone();
      const check = checkProduct(name, await p.read(), a, b, S, S, S, false, true);
      return {
        device: p.device,
        run: async (reps) => { // back to back, one wait at the end of the sample
          for (let i = 0; i < reps; i++) await p.run();
        },
        value: (ms) => rate(2 * S * S * S, ms),
        note: `${p.note}; ${check}`,
      };
    },
  };
}

/** The latency of an empty submit until onSubmittedWorkDone resolves (what batching hides). */
function submitCase(): BenchCase {
  return {
    name: "webgpu_submit_roundtrip",
    unit: "ms",
    setup: () =>
      Promise.resolve({
        device: rt.device,
        run: () => rt.device.queue.submit([rt.device.createCommandEncoder().finish()]),
        note: "one empty submit, awaited (not batched)",
      }),
    timing: { minSampleMs: 0 },
  };
}

const envTune = Deno.env.get("WEBDIT_GEMM_TUNE");
// Knobs for the default version's named cases, e.g. the winner of a sweep run.
const namedTune: GemmTune | undefined = envTune ? JSON.parse(envTune) : undefined;

/** Version-2 tile configs of the sweep (BM = 8·ty, BN = 8·tx). */
const SWEEP: GemmTune[] = [
  { tx: 16, ty: 16, bk: 16, lmap: 1 },
  { tx: 16, ty: 16, bk: 16, lmap: 1, sbuf: 1 },
  { tx: 16, ty: 16, bk: 16, lmap: 1, sbuf: 1, wmap: 1 },
  { tx: 16, ty: 8, bk: 8, lmap: 1, sbuf: 1 },
  { tx: 8, ty: 8, bk: 16, lmap: 1, sbuf: 1 },
];

/** The sweep's shapes (M, K, N): square, PixArt-α's and FLUX.1's linears at 1024 px. */
const SWEEP_SHAPES: [number, number, number][] = [
  [4096, 4096, 4096],
  [4096, 1152, 4608],
  [4096, 1152, 1152],
  [4096, 4608, 1152],
  [4608, 3072, 3072],
  [4608, 3072, 12288],
];

/** A version-2 sweep row's name: its storage, shape and knobs (reportBest reads rows back by it). */
function v2Name(dt: DType, M: number, K: number, N: number, t: GemmTune): string {
  return `gemm_${dt}_${shapeName(M, K, N)}_v2_${tuneName(t)}`;
}

/** A version-2 sweep row: knobs `t` at one shape. */
function v2Case(M: number, K: number, N: number, dt: DType, t: GemmTune): BenchCase {
  return gemmCase(M, K, N, dt, { version: 2, tune: t, name: v2Name(dt, M, K, N, t) });
}

function tuneName(t: GemmTune): string {
  return `${8 * t.ty!}x${8 * t.tx!}_bk${t.bk}${t.lmap ? "_lmap" : ""}${t.epi ? "_epi" : ""}${
    t.wmap ? "_wmap" : ""
  }${t.sbuf ? "_sbuf" : ""}`;
}

/** The small-M sweep's tile configs (version 2): 128 or 64 rows and columns a tile. */
const SMALL_M_TUNES: GemmTune[] = [
  { tx: 16, ty: 16, bk: 16 },
  { tx: 16, ty: 8, bk: 16 },
  { tx: 16, ty: 16, bk: 16, sbuf: 1 },
  { tx: 16, ty: 8, bk: 16, sbuf: 1 },
  { tx: 16, ty: 8, bk: 8 },
  { tx: 8, ty: 8, bk: 16, sbuf: 1 },
];

const suite = new BenchSuite({
  what: SWEEP_ONLY ? SWEEP_FILES[sweepMode] : "gemm",
  denoIterations: onGpu ? 3 : 2,
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: {
        vendor: rt.info.vendor,
        architecture: rt.info.architecture,
        fallback: rt.info.fallback,
        f16: rt.info.f16,
        default_version: rt.info.fallback ? "2 (f32, M >= 64) or 3 (f16, K % 8 == 0; M < 64)" : 2,
        tune: namedTune ?? "defaults",
        sweep: sweepMode || false,
      },
    }),
  teardown: async () => {
    for (const p of livePeers.splice(0).reverse()) await p.dispose().catch(() => {});
    if (sweepMode === "only") reportBest();
  },
});

/** Prints (and writes to WEBDIT_GEMM_BEST) the sweep config with the best geometric-mean time. */
function reportBest(): void {
  const rows = suite.lastResults;
  let best: { tune: GemmTune; score: number } | undefined;
  for (const t of SWEEP) {
    const ms = SWEEP_SHAPES.map(([M, K, N]) =>
      rows.find((r) => r.name === v2Name("f32", M, K, N, t))?.median_ms ?? NaN
    );
    const score = Math.exp(ms.reduce((a, v) => a + Math.log(v), 0) / ms.length);
    if (Number.isFinite(score) && (!best || score < best.score)) best = { tune: t, score };
  }
  if (!best) return;
  console.log(`BEST_TUNE ${JSON.stringify(best.tune)}`);
  const path = Deno.env.get("WEBDIT_GEMM_BEST");
  if (path) Deno.writeTextFileSync(path, JSON.stringify(best.tune));
}

if (onGpu && sweepMode === "small_m") {
  // T5-XXL (2 × 120 and 512 tokens: q/k/v/o, wi, wo) and CLIP-L (77 tokens) linears.
  const shapes: [number, number, number][] = [
    [240, 4096, 4096],
    [240, 4096, 10240],
    [240, 10240, 4096],
    [512, 4096, 4096],
    [512, 4096, 10240],
    [512, 10240, 4096],
    [77, 768, 768],
    [77, 768, 3072],
    // Fewer rows: conditioning linears (PixArt's adaLN 1152 → 6912, FLUX's 3072 → 18432).
    [2, 1152, 6912],
    [16, 1152, 6912],
    [2, 3072, 18432],
    [128, 768, 3072],
  ];
  for (const [M, K, N] of shapes) {
    for (const t of SMALL_M_TUNES) suite.add(v2Case(M, K, N, "f32", t));
    suite.add(gemmCase(M, K, N, "f32", { version: 4, name: `gemm_f32_${shapeName(M, K, N)}_v4` }));
  }
} else if (onGpu && sweepMode === "half") {
  // The default version-2 tiles (64×64 on small grids) with f16 tiles staged as f32 and as f16,
  // alternating per shape; T5-XXL's 512-token linears too.
  for (const [M, K, N] of [...SWEEP_SHAPES, [512, 4096, 10240], [512, 10240, 4096]]) {
    for (const hs of [0, 1]) {
      suite.add(gemmCase(M, K, N, "f16", {
        tune: { hs },
        name: `gemm_f16_${shapeName(M, K, N)}_hs${hs}`,
      }));
    }
  }
  // f16 tiles leave room for two buffers a tile again (one barrier a K tile; 16 KiB).
  for (const [M, K, N] of SWEEP_SHAPES.slice(0, 2)) {
    suite.add(gemmCase(M, K, N, "f16", {
      tune: { hs: 1, sbuf: 0 },
      name: `gemm_f16_${shapeName(M, K, N)}_hs1_2buf`,
    }));
  }
} else if (onGpu && sweepMode === "only") {
  for (const t of SWEEP) {
    for (const [M, K, N] of SWEEP_SHAPES) suite.add(v2Case(M, K, N, "f32", t));
    suite.add(v2Case(4096, 1152, 4608, "f16", t));
  }
} else if (onGpu) {
  suite.add(submitCase());
  for (const dt of ["f32", "f16"] as const) {
    suite.add(gemmCase(1024, 1024, 1024, dt, { tune: namedTune }));
    suite.add(gemmCase(4096, 4096, 4096, dt, { tune: namedTune }));
    suite.add(gemmCase(4096, 1152, 4608, dt, { tune: namedTune }));
    suite.add(gemmCase(4096, 1152, 1152, dt, { tune: namedTune }));
  }
  suite.add(gemmCase(4096, 4096, 4096, "f32", { version: 1, name: "gemm_v1_f32_4096" }));
  suite.add(peerCase("ort", 4096));
  suite.add(peerCase("tfjs", 4096));
  suite.add(peerCase("ort", 1024));
  suite.add(peerCase("tfjs", 1024));
} else {
  suite.add(submitCase());
  for (const dt of ["f32", "f16"] as const) {
    suite.add(gemmCase(1024, 256, 1024, dt));
    suite.add(gemmCase(1024, 768, 1024, dt));
  }
  // The defaults are v2 for f32 and v3 for f16 here; the CPU variant (v3) in f32 as well.
  for (const K of [256, 768]) {
    suite.add(gemmCase(1024, K, 1024, "f32", { version: 3, name: `gemm_v3_f32_1024x${K}x1024` }));
  }
  suite.add(gemmCase(1024, 256, 1024, "f32", { version: 1, name: "gemm_v1_f32_1024x256x1024" }));
  suite.add(gemmCase(2048, 128, 512, "f32")); // bundled-model FFN shape (1024 tokens × 2)
  suite.add(gemmCase(2048, 128, 512, "f16"));
  suite.add(gemmCase(256, 256, 256, "f32"));
  suite.add(peerCase("ort", 256));
  suite.add(peerCase("tfjs", 256));
}

suite.register();
