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
import { defaultGemmVersion, gemm } from "./gemm.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";

/**
 * Self-check for `deno task doctor`: the adapter's default version at an odd shape with
 * every epilogue term, against the CPU reference; f16 too where the adapter has it.
 */
export async function gemmSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const version = defaultGemmVersion(rt);
  const [M, N, K] = [18, 37, 72];
  const out: SelfCheckResult[] = [];
  for (const dt of ["f32", "f16"] as const) {
    const name = `gemm_v${version}_${dt}`;
    if (dt === "f16" && !rt.info.f16) {
      out.push({ name, ok: true, maxError: 0, tolerance: 0, note: "skipped: no shader-f16" });
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
    const rec = new Recorder(rt);
    const y = gemm(rec, uploadTensor(rt, xs, [M, K], dt), uploadTensor(rt, ws, [N, K], dt), {
      bias: uploadTensor(rt, bias, [N], dt),
      activation: "gelu",
      residual: uploadTensor(rt, res, [M, N], dt),
      gate: uploadTensor(rt, gate, [2, N], dt),
    });
    await rec.submit();
    const got = await readTensor(rt, y);
    const want = gemmRef(xs, ws, M, N, K, {
      bias,
      activation: "gelu",
      residual: res,
      gate,
      rowsPerGate: M / 2,
    });
    const err = maxError(got, want); // NaN counts as infinitely wrong
    const tolerance = dt === "f32" ? 1e-4 : 1e-2; // f16: half an ulp of outputs up to ~16
    out.push({ name, ok: err <= tolerance, maxError: err, tolerance });
  }
  return out;
}
