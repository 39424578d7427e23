/**
 * A quick check of every kernel family against its CPU reference on small shapes,
 * used by `deno task doctor`. Each family registers its check here.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { map, silu } from "../reference/elementwise.ts";
import { cfgCombineRef, cfgDeltaRef } from "../reference/cfg_delta.ts";
import { cfgCombine, cfgDelta } from "./cfg_delta.ts";
import { lowRankAddRef } from "../reference/low_rank.ts";
import { lowRankAdd } from "./low_rank.ts";
import { elementwise } from "./elementwise.ts";
import { gemmSelfCheck } from "./gemm_check.ts";
import { normSelfCheck } from "./norm.ts";
import { softmaxSelfCheck } from "./softmax.ts";
import { attentionSelfCheck } from "./attention.ts";
import { embedSelfCheck } from "./embed.ts";
import { patchSelfCheck } from "./patch.ts";
import { rotqSelfCheck } from "./rotq_check.ts";
import { actStatsSelfCheck } from "./act_stats.ts";
import { actGramSelfCheck } from "./act_gram.ts";
import { ropeSelfCheck } from "./rope.ts";
import { latentPackSelfCheck } from "./latent_pack.ts";
import { attnSparseSelfCheck } from "./attn_sparse.ts";
import { actQuantSelfCheck } from "./act_quant.ts";
import { qgemmSelfCheck } from "./qgemm_check.ts";
import { convSelfCheck } from "./conv_check.ts";

/** The outcome of one self-check. */
export interface SelfCheckResult {
  /** Kernel (variant) checked. */
  name: string;
  /** True when the error is within tolerance. */
  ok: boolean;
  /** The largest absolute error found. */
  maxError: number;
  /** The tolerance it was held to. */
  tolerance: number;
  /** Why it was skipped, or other remarks. */
  note?: string;
}

/** One registered self-check: runs a kernel and compares with the reference. */
export type SelfCheck = (rt: Runtime) => Promise<SelfCheckResult[]>;

/** Largest |a − b|; Infinity when any difference is NaN (NaN counts as infinitely wrong). */
export function maxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    // A NaN kept as the running max would be replaced by the next finite difference.
    if (Number.isNaN(d)) return Infinity;
    if (d > m) m = d;
  }
  return m;
}

const elementwiseCheck: SelfCheck = async (rt) => {
  const xs = new Prng(7).normals(1031);
  const x = uploadTensor(rt, xs, [xs.length]);
  const rec = new Recorder(rt);
  const y = elementwise(rec, "silu", x);
  await rec.submit();
  const err = maxError(await readTensor(rt, y), map(xs, silu));
  return [{ name: "elementwise_silu_f32", ok: err <= 1e-5, maxError: err, tolerance: 1e-5 }];
};

// CFG delta (quantize --cfg-delta): the pair exactly, the combine with a bias and GELU.
const cfgDeltaCheck: SelfCheck = async (rt) => {
  const [M, N] = [2 * 37, 21];
  const g = new Prng(9);
  const [xs, bs] = [g.normals(M * N), g.normals(N)];
  const x = uploadTensor(rt, xs, [M, N]);
  const b = uploadTensor(rt, bs, [N]);
  const rec = new Recorder(rt);
  const d = cfgDelta(rec, x);
  const y = cfgCombine(rec, uploadTensor(rt, xs, [M, N]), { bias: b, activation: "gelu" });
  await rec.submit();
  const errD = maxError(await readTensor(rt, d), cfgDeltaRef(xs));
  const errY = maxError(
    await readTensor(rt, y),
    cfgCombineRef(xs, M, N, { bias: bs, activation: "gelu" }),
  );
  for (const t of [x, b, d, y]) t.release();
  return [
    { name: "cfg_delta_f32", ok: errD === 0, maxError: errD, tolerance: 0 },
    { name: "cfg_combine_gelu_f32", ok: errY <= 1e-5, maxError: errY, tolerance: 1e-5 },
  ];
};

// The low-rank branch (quantize --low-rank): odd shapes, accumulated under GELU.
const lowRankCheck: SelfCheck = async (rt) => {
  const [M, N, K, R] = [37, 21, 70, 8];
  const g = new Prng(11);
  const [zs, xs, as, bs] = [g.normals(M * N), g.normals(M * K), g.normals(R * K), g.normals(N * R)];
  const t = (v: Float32Array, s: number[]) => uploadTensor(rt, v, s);
  const [x, a, b, z] = [t(xs, [M, K]), t(as, [R, K]), t(bs, [N, R]), t(zs, [M, N])];
  const rec = new Recorder(rt);
  lowRankAdd(rec, z, x, a, b, { activation: "gelu" });
  await rec.submit();
  const ref = lowRankAddRef(zs, xs, as, bs, M, N, K, R, { activation: "gelu" });
  const err = maxError(await readTensor(rt, z), ref);
  for (const v of [x, a, b, z]) v.release();
  return [{ name: "low_rank_add_gelu_f32", ok: err <= 1e-4, maxError: err, tolerance: 1e-4 }];
};

/** The registered checks, in the order doctor prints them. */
export const SELF_CHECKS: SelfCheck[] = [
  elementwiseCheck,
  gemmSelfCheck,
  normSelfCheck,
  softmaxSelfCheck,
  attentionSelfCheck,
  embedSelfCheck,
  patchSelfCheck,
  rotqSelfCheck,
  actStatsSelfCheck,
  actGramSelfCheck,
  ropeSelfCheck,
  latentPackSelfCheck,
  attnSparseSelfCheck,
  actQuantSelfCheck,
  qgemmSelfCheck,
  cfgDeltaCheck,
  lowRankCheck,
  convSelfCheck,
];

/** Runs every registered check. */
export async function runSelfChecks(rt: Runtime): Promise<SelfCheckResult[]> {
  const out: SelfCheckResult[] = [];
  for (const check of SELF_CHECKS) out.push(...await check(rt));
  return out;
}
