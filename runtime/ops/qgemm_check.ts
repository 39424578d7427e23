/**
 * The quantized GEMMs' self-check for `deno task doctor`: the adapter's default versions
 * at an odd shape against runtime/reference/qgemm.ts — the integer path's i32 sums
 * bit for bit (dot4I8Packed, or its emulation where the adapter lacks it), the
 * weight-only path within f32 rounding. The weight is TLQ W4 uploaded as by default: the
 * compact parameters (MODE 5/6, LUTs rebuilt in-kernel); two more integer checks take weights
 * in groups: uniform (MODE 7) and TLQ (MODE 2 with a table a group), and one a low-rank
 * branch (quantize --low-rank; fused into the tiled kernel on GPUs).
 *
 * @module
 */
import { lutDequantize, tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import { uniformQuantize } from "../../plugins/quantizers/uniform.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { unpackInt8 } from "../quant/pack.ts";
import { gemmRef } from "../reference/gemm.ts";
import { decodeInt8, int8Groups, int8Lut, qgemmIntRef } from "../reference/qgemm.ts";
import { lowRankAddRef } from "../reference/low_rank.ts";
import { actQuant } from "./act_quant.ts";
import { qgemmIntLowRank } from "./low_rank.ts";
import {
  defaultA16Version,
  defaultIntVersion,
  qgemmA16,
  qgemmInt,
  uploadQWeight,
} from "./qgemm.ts";

/** The result shape of a self-check (see runtime/ops/selfcheck.ts). */
interface CheckResult {
  name: string;
  ok: boolean;
  maxError: number;
  tolerance: number;
  note?: string;
}

/** Runs the integer and weight-only GEMMs once each against the reference. */
export async function qgemmSelfCheck(rt: Runtime): Promise<CheckResult[]> {
  const [M, N, K] = [19, 37, 72];
  const g = new Prng(23);
  const xs = g.normals(M * K);
  const ws = g.normals(N * K).map((v) => v / Math.sqrt(K));
  const q = tlqQuantize({ data: ws, rows: N, cols: K }, {
    bits: 4,
    etas: [0.02],
    percentiles: [0.999],
  });
  const w = uploadQWeight(rt, q, { a16: true, int: true });
  const x = uploadTensor(rt, xs, [M, K]);
  const out: CheckResult[] = [];
  try {
    // Integer: raw i32 sums, exact.
    let rec = new Recorder(rt);
    const xa = actQuant(rec, x, 8);
    const dot = rt.info.packedDot ? "native" : "emulated";
    const yi = qgemmInt(rec, xa, w, { raw: true, dot });
    await rec.submit();
    const x8 = unpackInt8((await readTensorRaw(rt, xa.q)) as Uint32Array, M, K);
    const lut = int8Lut(q);
    const ref = qgemmIntRef(
      x8,
      await readTensor(rt, xa.scales),
      decodeInt8(q, lut),
      lut.scale,
      M,
      N,
      K,
    );
    const got = new Int32Array((await readTensor(rt, yi)).buffer);
    let wrong = 0;
    for (let i = 0; i < got.length; i++) if (got[i] !== ref.acc[i]) wrong++;
    out.push({
      name: `qgemm_int_${defaultIntVersion(rt)}_w4a8`,
      ok: wrong === 0,
      maxError: wrong,
      tolerance: 0,
      note: `dot4 ${dot}; TLQ MODE ${w.int!.mode}; error = i32 sums that differ`,
    });
    for (const t of [xa.q, xa.scales, yi]) t.release();
    // Weight-only: f32 accumulation.
    rec = new Recorder(rt);
    const ya = qgemmA16(rec, x, w);
    await rec.submit();
    const want = gemmRef(xs, lutDequantize(q), M, N, K);
    const y = await readTensor(rt, ya);
    let err = 0;
    for (let i = 0; i < y.length; i++) {
      const d = Math.abs(y[i] - want[i]);
      if (!(d <= err)) err = d;
    }
    if (Number.isNaN(err)) err = Infinity;
    out.push({
      name: `qgemm_a16_${defaultA16Version(rt, M)}_w4`,
      ok: err <= 1e-4,
      maxError: err,
      tolerance: 1e-4,
      note: `TLQ MODE ${w.a16!.mode}`,
    });
    ya.release();
  } finally {
    w.release();
    x.release();
  }
  out.push(await groupedCheck(rt));
  out.push(await groupedCheck(rt, 32));
  out.push(await groupedCheck(rt, 32, "tlq"));
  out.push(await groupedCheck(rt, 0, "tlq", 8));
  return out;
}

/**
 * The integer GEMM with asymmetric activation groups of 16 (quantize --act-group 16
 * --act-asym) on TLQ W4; with `wgroup`, on W4 in weight groups of that many channels
 * (quantize --group-size): uniform (MODE 7) or TLQ (MODE 2 with a table a group); with
 * `rank`, plus a low-rank branch of that rank (qgemmIntLowRank).
 */
async function groupedCheck(
  rt: Runtime,
  wgroup = 0,
  quantizer: "uniform" | "tlq" = wgroup ? "uniform" : "tlq",
  rank = 0,
): Promise<CheckResult> {
  const [M, N, K, group] = [19, 37, 96, 16];
  const g = new Prng(29);
  const xs = g.normals(M * K).map((v, i) => (i % 31 === 4 ? 20 : 1) * v + 0.5);
  const wm = { data: g.normals(N * K).map((v) => v / Math.sqrt(K)), rows: N, cols: K };
  const uniform = quantizer === "uniform";
  const q = uniform
    ? uniformQuantize(wm, { bits: 4, groupSize: wgroup })
    : tlqQuantize(wm, { bits: 4, etas: [0.02], percentiles: [0.999], groupSize: wgroup });
  const w = uploadQWeight(rt, q, { a16: false, int: true });
  const x = uploadTensor(rt, xs, [M, K]);
  const [as, bs] = [g.normals(rank * K).map((v) => v / Math.sqrt(K)), g.normals(N * rank)];
  const lr = rank
    ? { a: uploadTensor(rt, as, [rank, K]), b: uploadTensor(rt, bs, [N, rank]) }
    : undefined;
  try {
    const rec = new Recorder(rt);
    const xa = actQuant(rec, x, 4, { group, asym: true });
    const y = lr ? qgemmIntLowRank(rec, xa, w, x, lr.a, lr.b) : qgemmInt(rec, xa, w);
    await rec.submit();
    const G = M * K / group;
    const sz = await readTensor(rt, xa.scales);
    const lut = uniform ? undefined : int8Lut(q);
    const wg = uniform ? int8Groups(q) : undefined;
    const ref = qgemmIntRef(
      unpackInt8((await readTensorRaw(rt, xa.q)) as Uint32Array, M, K),
      sz.subarray(0, G),
      wg?.w8 ?? decodeInt8(q, lut!),
      wg?.scale ?? lut!.scale,
      M,
      N,
      K,
      {},
      group,
      sz.subarray(G),
      wgroup,
    );
    const want = rank ? lowRankAddRef(ref.y, xs, as, bs, M, N, K, rank) : ref.y;
    const got = await readTensor(rt, y);
    let err = 0;
    for (let i = 0; i < got.length; i++) {
      const d = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
      if (!(d <= err)) err = d;
    }
    if (Number.isNaN(err)) err = Infinity;
    for (const t of [xa.q, xa.scales, y]) t.release();
    return {
      name: `qgemm_int_${defaultIntVersion(rt)}_w4${
        wgroup ? `${uniform ? "" : "lut"}g${wgroup}` : ""
      }a4_g16_asym${rank ? `_lr${rank}` : ""}`,
      ok: err <= 1e-5,
      maxError: err,
      tolerance: 1e-5,
      note: `activation groups of 16 with zero points${
        wgroup ? `, ${uniform ? "uniform" : "TLQ"} weights in groups of ${wgroup}` : ""
      } (MODE ${w.int!.mode})${
        rank ? `, a rank-${rank} branch added before the epilogue` : ""
      }; error relative to 1 + |y|`,
    };
  } finally {
    for (const t of [lr?.a, lr?.b, x]) t?.release();
    w.release();
  }
}
