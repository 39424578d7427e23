/**
 * `deno task doctor`'s check of the fused rotate + quantize kernels (runtime/ops/rotq.ts)
 * against their CPU references (runtime/reference/rotq.ts).
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensorRaw, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import {
  composeOutlierQ,
  type QuantizedRows,
  quantizeRows,
  rotateHadamardRef,
  rotateOutlierRef,
  unpackCodes,
} from "../reference/rotq.ts";
import { type ActQuantRef, actQuantRef } from "../reference/act_quant.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import { detectFmaContraction, rotqHadamard, rotqOutlier, uploadOutlierTransform } from "./rotq.ts";
import type { SelfCheckResult } from "./selfcheck.ts";

/**
 * Self-check for `deno task doctor`: the hadamard kernels (registers, workgroup; CPU, on CPU
 * adapters) and the four outlier paths (row, tiled, fused and CPU kernels) on small odd shapes
 * against the CPU reference; codes must match exactly (maxError = codes that differ).
 */
export async function rotqSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const g = new Prng(77);
  const [M, K, B] = [5, 96, 32];
  const x = g.normals(M * K).map((v, i) => (i % K === 7 ? 50 * v : v));
  const s = Float32Array.from({ length: K }, (_, i) => (i % 3 ? 1 : -1) / Math.sqrt(B));
  // An orthogonal block: the normalised Hadamard with a row sign flip.
  const q = new Float32Array(B * B);
  for (let i = 0; i < B; i++) {
    for (let j = 0; j < B; j++) {
      let par = 0;
      for (let v = i & j; v; v &= v - 1) par ^= 1;
      q[i * B + j] = (par ? -1 : 1) * (i === 3 ? -1 : 1) / Math.sqrt(B);
    }
  }
  const perm = new Uint32Array(K).map((_, k) => (k * 5 + 1) % K);
  const params = { s, q1: q, q2: q, perm, block: B };
  const xt = uploadTensor(rt, x, [M, K]);
  const ot = uploadOutlierTransform(rt, params);
  const st = ot.s;
  const fused = await detectFmaContraction(rt);
  const rec = new Recorder(rt);
  const hr = rotqHadamard(rec, xt, { s: st, block: B }, 8, { kernel: "registers" });
  const h = rotqHadamard(rec, xt, { s: st, block: B }, 8, { kernel: "workgroup" });
  // The Hadamard CPU kernel runs on CPU adapters only (rotq_hadamard.ts): its row is theirs.
  const hc = rt.info.fallback
    ? rotqHadamard(rec, xt, { s: st, block: B }, 8, { kernel: "cpu" })
    : undefined;
  const o = rotqOutlier(rec, xt, ot, 8, { kernel: "rows" });
  const ot2 = rotqOutlier(rec, xt, ot, 8, { kernel: "tiled" });
  const of = rotqOutlier(rec, xt, ot, 8, { kernel: "fused" });
  const oc = rotqOutlier(rec, xt, ot, 8, { kernel: "cpu" });
  // quantize --act-group 16 --act-asym at A4: the groups quantized inside both kernels.
  const grouped = { group: 16, asym: true };
  const hg = rotqHadamard(rec, xt, { s: st, block: B }, 4, grouped);
  const og = rotqOutlier(rec, xt, ot, 4, { kernel: "fused", ...grouped });
  await rec.submit();
  const outRef = quantizeRows(rotateOutlierRef(x, M, K, params, fused), M, K, 8);
  const hadRef = quantizeRows(rotateHadamardRef(x, M, K, s, B), M, K, 8);
  const refs = [hadRef, hadRef, hadRef, outRef, outRef, outRef, outRef];
  const names = [
    "rotq_hadamard_registers_f32",
    "rotq_hadamard_f32",
    "rotq_hadamard_cpu_f32",
    "rotq_outlier_rows_f32",
    "rotq_outlier_tiled_f32",
    "rotq_outlier_fused_f32",
    "rotq_outlier_cpu_f32",
  ];
  const out: SelfCheckResult[] = [];
  for (const [i, got] of [hr, h, hc, o, ot2, of, oc].entries()) {
    if (got) out.push(await exactCodes(rt, names[i], got, refs[i], M, K));
  }
  const groupRefs = [
    actQuantRef(rotateHadamardRef(x, M, K, s, B), M, K, 4, 16, true),
    actQuantRef(
      rotateOutlierRef(x, M, K, params, fused),
      M,
      K,
      4,
      16,
      true,
    ),
  ];
  for (const [i, got] of [hg, og].entries()) {
    const codes = unpackCodes((await readTensorRaw(rt, got.q)) as Uint32Array, M, K);
    const { bad, ties } = groupedCodesDiffer(codes, groupRefs[i]);
    out.push({
      name: ["rotq_hadamard_a4_g16_asym_f32", "rotq_outlier_fused_a4_g16_asym_f32"][i],
      ok: bad === 0,
      maxError: bad,
      tolerance: 0,
      note: `codes that differ${ties ? ` (besides ${ties} at rounding ties)` : ""}`,
    });
    got.q.release();
    got.scales.release();
  }
  for (const t of [xt, st, ot.q1, ot.q2, ot.dest]) t.release();
  if (rt.info.fallback) out.push(await composedCheck(rt, x.subarray(0, M * B), M, B, q, fused));
  return out;
}

/**
 * CPU adapters: the CPU outlier kernel with Q1·P·Q2 composed (K one block, as the bundled
 * model's layers run it) against its reference; rows x [M, B], Q1 = Q2 = q.
 */
async function composedCheck(
  rt: Runtime,
  x: Float32Array,
  M: number,
  B: number,
  q: Float32Array,
  fused: boolean,
): Promise<SelfCheckResult> {
  const s = Float32Array.from({ length: B }, (_, i) => (i % 5 ? 1 : -1) / Math.sqrt(B));
  const perm = new Uint32Array(B).map((_, k) => (k * 7 + 2) % B);
  const params = { s, q1: q, q2: q, perm, block: B };
  const c = composeOutlierQ(params);
  const t = { ...uploadOutlierTransform(rt, params), composed: uploadTensor(rt, c, [B, B]) };
  const xt = uploadTensor(rt, x, [M, B]);
  const rec = new Recorder(rt);
  const got = rotqOutlier(rec, xt, t, 8, { kernel: "cpu" });
  await rec.submit();
  const ref = quantizeRows(rotateOutlierRef(x, M, B, params, fused, c), M, B, 8);
  const r = await exactCodes(rt, "rotq_outlier_cpu_composed_f32", got, ref, M, B);
  for (const u of [xt, t.s, t.q1, t.q2, t.dest, t.composed]) u.release();
  return { ...r, note: `${r.note}; one block, Q1·P·Q2 composed` };
}

/** A check that `got`'s codes (released here) equal `ref`'s exactly: maxError = codes that differ. */
async function exactCodes(
  rt: Runtime,
  name: string,
  got: QuantizedActivations,
  ref: QuantizedRows,
  M: number,
  K: number,
): Promise<SelfCheckResult> {
  const codes = unpackCodes((await readTensorRaw(rt, got.q)) as Uint32Array, M, K);
  got.q.release();
  got.scales.release();
  let bad = 0;
  for (let j = 0; j < M * K; j++) if (codes[j] !== ref.codes[j]) bad++;
  return { name, ok: bad === 0, maxError: bad, tolerance: 0, note: "codes that differ" };
}

/**
 * Codes that differ from the reference's, leaving out those one step off where x·(1/Δ) sits
 * at a rounding tie: a GPU's division may be 2.5 ulp off (WGSL allows it), moving Δ by an ulp.
 */
function groupedCodesDiffer(codes: Int8Array, ref: ActQuantRef): { bad: number; ties: number } {
  let bad = 0;
  let ties = 0;
  for (let j = 0; j < codes.length; j++) {
    if (codes[j] === ref.codes[j]) continue;
    const t = ref.scaled[j];
    const tie = Math.abs(Math.abs(t - Math.trunc(t)) - 0.5) <= 1e-6 * Math.abs(t) + 1e-6;
    if (tie && Math.abs(codes[j] - ref.codes[j]) === 1) ties++;
    else bad++;
  }
  return { bad, ties };
}
