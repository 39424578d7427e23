/**
 * The GEMM's self-check for `deno task doctor` (runtime/ops/selfcheck.ts).
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { gemmRef } from "../reference/gemm.ts";
import { gemm, gemmGpuTiles, type GemmTune, type GemmVersion } from "./gemm.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";

/** One kernel the self-check runs: a version and its tile knobs, named as doctor prints it. */
interface CheckedKernel {
  name: string;
  version: GemmVersion;
  tune?: GemmTune;
}

/**
 * The kernels the op runs on `rt`: on GPUs version 2 in both of its tile choices (one buffer
 * and warp patches for large grids, 64×64 for small ones; forced, since the odd shape alone
 * would only ever pick the small tiles) and version 4 (f32 up to 128 rows); on CPU adapters
 * versions 2 and 3.
 */
function checkedKernels(rt: Runtime): CheckedKernel[] {
  if (rt.info.fallback) return [{ name: "v2", version: 2 }, { name: "v3", version: 3 }];
  return [
    { name: "v2", version: 2 },
    { name: "v2_64x64", version: 2, tune: gemmGpuTiles(1, 1) },
    { name: "v4", version: 4 },
  ];
}

/**
 * Self-check for `deno task doctor`: each kernel the adapter runs (see checkedKernels) at an
 * odd shape with every epilogue term, against the CPU reference; f16 too where the adapter
 * has it.
 */
export async function gemmSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const [M, N, K] = [18, 37, 72];
  const out: SelfCheckResult[] = [];
  for (const dt of ["f32", "f16"] as const) {
    if (dt === "f16" && !rt.info.f16) {
      for (const kernel of checkedKernels(rt)) {
        const name = `gemm_${kernel.name}_${dt}`;
        out.push({ name, ok: true, maxError: 0, tolerance: 0, note: "skipped: no shader-f16" });
      }
      continue;
    }
    const g = new Prng(17);
    // f16 data is rounded before the reference sees it, as the upload rounds it.
    const r = (a: Float32Array) => dt === "f16" ? Float32Array.from(Float16Array.from(a)) : a;
    const xs = r(g.normals(M * K));
    const ws = r(g.normals(N * K).map((v) => v / Math.sqrt(K)));
    const bias = r(g.normals(N));
    const res = r(g.normals(M * N));
    const gate = r(g.normals(2 * N));
    const want = gemmRef(xs, ws, M, N, K, {
      bias,
      activation: "gelu",
      residual: res,
      gate,
      rowsPerGate: M / 2,
    });
    const operands = [
      uploadTensor(rt, xs, [M, K], dt),
      uploadTensor(rt, ws, [N, K], dt),
      uploadTensor(rt, bias, [N], dt),
      uploadTensor(rt, res, [M, N], dt),
      uploadTensor(rt, gate, [2, N], dt),
    ];
    const [x, w, b, residual, gt] = operands;
    try {
      for (const kernel of checkedKernels(rt)) {
        const rec = new Recorder(rt);
        const y = gemm(rec, x, w, {
          bias: b,
          activation: "gelu",
          residual,
          gate: gt,
          version: kernel.version,
          tune: kernel.tune,
        });
        await rec.submit();
        const got = await readTensor(rt, y);
        y.release();
        const err = maxError(got, want); // NaN counts as infinitely wrong
        const tolerance = dt === "f32" ? 1e-4 : 1e-2; // f16: half an ulp of outputs up to ~16
        out.push({
          name: `gemm_${kernel.name}_${dt}`,
          ok: err <= tolerance,
          maxError: err,
          tolerance,
        });
      }
    } finally {
      for (const t of operands) t.release();
    }
  }
  return out;
}
