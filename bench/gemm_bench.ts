/**
 * GEMM benchmark: our kernels (runtime/ops/gemm.ts) and the peers — ONNX Runtime Web's
 * WebGPU EP and tfjs-backend-webgpu — in one process on one GPU, each checked against a
 * CPU reference on sampled entries before it is timed.
 *
 *     deno task bench                                    # every bench, tables only
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/gemm_bench.ts
 *                                                        # + bench/results/<device>/<date>_gemm.{json,md}
 *     WEBDIT_GEMM_SWEEP=1 …                              # + a sweep of version-2 tile configs
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
  gemmOperandLoad,
  type GemmTune,
  type GemmVersion,
} from "../runtime/ops/gemm.ts";
import { type BenchCase, BenchSuite, deviceSlug, tflops } from "./harness.ts";
import { ortMatmul, type PeerMatmul } from "./peers/ort.ts";
import { tfjsMatmul } from "./peers/tfjs.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;
// TFLOP/s on GPUs; GFLOP/s on CPU adapters, where TFLOP/s would read as zeros.
const UNIT = onGpu ? "TFLOP/s" : "GFLOP/s";
const rate = (flops: number, ms: number) => tflops(flops, ms) * (onGpu ? 1 : 1e3);

type DType = "f32" | "f16";

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
function checkSampled(
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
  const g = new Prng(4242);
  let worst = 0;
  for (let s = 0; s < 256; s++) {
    const m = s === 0 ? M - 1 : Math.floor(g.uniform() * M);
    const n = s === 0 ? N - 1 : Math.floor(g.uniform() * N);
    let ref = 0;
    let mag = 0;
    for (let k = 0; k < K; k++) {
      const p = xs[m * K + k] * (wKN ? ws[k * N + n] : ws[n * K + k]);
      ref += p;
      mag += Math.abs(p);
    }
    const err = Math.abs(y[m * N + n] - ref);
    const tol = 1e-5 * mag + (f16 ? 1e-3 * Math.abs(ref) : 0) + 1e-6;
    if (!(err <= tol)) {
      throw new Error(
        `${label}: wrong result at [${m}, ${n}]: got ${y[m * N + n]}, expected ${ref} (tol ${tol})`,
      );
    }
    worst = Math.max(worst, err / tol);
  }
  return `checked 256 sampled entries (worst ${(100 * worst).toFixed(0)}% of tol)`;
}

/** Name of a shape: "4096" for a cube, else "MxKxN". */
function shapeName(M: number, K: number, N: number): string {
  return M === K && K === N ? `${M}` : `${M}x${K}x${N}`;
}

interface GemmCaseOptions {
  version?: GemmVersion;
  tune?: GemmTune;
  /** GEMMs recorded into one submit per timed run (amortises the submit for small shapes). */
  reps?: number;
  name?: string;
}

function gemmCase(M: number, K: number, N: number, dt: DType, o: GemmCaseOptions = {}): BenchCase {
  const version = o.version ?? defaultGemmVersion(rt);
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
        for (let i = 0; i < reps; i++) gemm(rec, x, w, { out, version, tune: o.tune });
        return rec.submit();
      };
      await record(1);
      const check = checkSampled(name, await readTensor(rt, out), xs, ws, M, K, N, dt === "f16");
      const reps = o.reps ?? 1;
      const load = gemmOperandLoad(version, dt, K);
      const tune = o.tune ? ` ${JSON.stringify(o.tune)}` : "";
      return {
        device: rt.device,
        run: () => record(reps),
        reps,
        value: (ms) => rate(2 * M * N * K, ms),
        note: `v${version} ${load}${tune}; ${check}`,
        dispose: () => out.release(),
      };
    },
    timing: { warmup: onGpu ? 3 : 1, iterations: 10 },
  };
}

type PeerKind = "ort" | "tfjs";
const PEERS: Record<PeerKind, typeof ortMatmul> = { ort: ortMatmul, tfjs: tfjsMatmul };
const livePeers: PeerMatmul[] = [];

function peerCase(kind: PeerKind, S: number, reps = 1): BenchCase {
  const name = `${kind}_matmul_f32_${S}`;
  return {
    name,
    unit: UNIT,
    setup: async () => {
      const g = new Prng(S * 13 + (kind === "ort" ? 1 : 2));
      const a = g.uniforms(S * S, -1, 1) as Float32Array<ArrayBuffer>;
      const b = g.uniforms(S * S, -1, 1) as Float32Array<ArrayBuffer>; // B [K, N], as MatMul takes it
      const p = await PEERS[kind](a, b, S, S, S);
      livePeers.push(p); // ORT: releasing the last session destroys its device; keep them
      await p.run();
      await p.device.queue.onSubmittedWorkDone();
      const check = checkSampled(name, await p.read(), a, b, S, S, S, false, true);
      return {
        device: p.device,
        run: async () => {
          for (let i = 0; i < reps; i++) await p.run();
        },
        reps,
        value: (ms) => rate(2 * S * S * S, ms),
        note: `${p.note}; ${check}`,
      };
    },
    timing: { warmup: onGpu ? 3 : 1, iterations: 10 },
  };
}

const suite = new BenchSuite({
  what: "gemm",
  denoIterations: onGpu ? 10 : 2,
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: {
        vendor: rt.info.vendor,
        architecture: rt.info.architecture,
        fallback: rt.info.fallback,
        f16: rt.info.f16,
        default_version: defaultGemmVersion(rt),
        sweep: Deno.env.get("WEBDIT_GEMM_SWEEP") === "1",
      },
    }),
  teardown: async () => {
    for (const p of livePeers.splice(0).reverse()) await p.dispose().catch(() => {});
  },
});

if (onGpu) {
  for (const dt of ["f32", "f16"] as const) suite.add(gemmCase(1024, 1024, 1024, dt, { reps: 10 }));
  for (const dt of ["f32", "f16"] as const) {
    suite.add(gemmCase(4096, 4096, 4096, dt));
    suite.add(gemmCase(4096, 1152, 4608, dt));
    suite.add(gemmCase(4096, 1152, 1152, dt, { reps: 4 }));
  }
  suite.add(gemmCase(4096, 4096, 4096, "f32", { version: 1, name: "gemm_v1_f32_4096" }));
  suite.add(gemmCase(4096, 4096, 4096, "f32", { version: 3, name: "gemm_v3_f32_4096" }));
  suite.add(peerCase("ort", 4096));
  suite.add(peerCase("tfjs", 4096));
  suite.add(peerCase("ort", 1024, 10));
  suite.add(peerCase("tfjs", 1024, 10));
  if (Deno.env.get("WEBDIT_GEMM_SWEEP") === "1") {
    // Version-2 tile configs (BM = 8·ty, BN = 8·tx), validated then timed at 4096³.
    const configs: GemmTune[] = [
      { tx: 16, ty: 16, bk: 8 },
      { tx: 16, ty: 16, bk: 16 },
      { tx: 16, ty: 8, bk: 16 },
      { tx: 8, ty: 16, bk: 16 },
      { tx: 16, ty: 8, bk: 8 },
      { tx: 8, ty: 8, bk: 16 },
      { tx: 8, ty: 8, bk: 8 },
    ];
    for (const dt of ["f32", "f16"] as const) {
      for (const t of configs) {
        suite.add(gemmCase(4096, 4096, 4096, dt, {
          version: 2,
          tune: t,
          name: `gemm_${dt}_4096_v2_${8 * t.ty!}x${8 * t.tx!}_bk${t.bk}`,
        }));
      }
    }
  }
} else {
  for (const dt of ["f32", "f16"] as const) {
    suite.add(gemmCase(1024, 256, 1024, dt));
    suite.add(gemmCase(1024, 768, 1024, dt));
  }
  suite.add(gemmCase(1024, 256, 1024, "f32", { version: 2, name: "gemm_v2_f32_1024x256x1024" }));
  suite.add(gemmCase(1024, 256, 1024, "f32", { version: 1, name: "gemm_v1_f32_1024x256x1024" }));
  suite.add(gemmCase(256, 256, 256, "f32"));
  suite.add(peerCase("ort", 256));
  suite.add(peerCase("tfjs", 256));
}

suite.register();
