/**
 * The outlier-aware rotate + quantize in one launch (wgsl/rotq_outlier_fused.wgsl): a
 * workgroup keeps T token rows in workgroup memory through both block products, the
 * permutation and the quantizer. The default of rotqOutlier (rotq.ts) where the rows fit
 * (K ≤ 12 blocks); the tiled path (rotq_outlier_tiled.ts) or the row kernel runs otherwise.
 *
 * @module
 */
import { expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { OutlierTransformTensors } from "./rotq.ts";
import { rotqSpec, workgroupBytes } from "./rotq_outlier_tiled.ts";
import fusedSrc from "../../wgsl/rotq_outlier_fused.wgsl" with { type: "text" };
import mac4Src from "../../wgsl/rotq_mac4.wgsl" with { type: "text" };
import productSrc from "../../wgsl/rotq_outlier_fused_product.wgsl" with { type: "text" };

/** The kernel with its two block products pasted in, each reading its own matrix. */
const kernelSrc = expandMarkers(fusedSrc, {
  product_q1: productSrc.trimEnd().replaceAll("Q_IN", "q1").split("\n"),
  product_q2: productSrc.trimEnd().replaceAll("Q_IN", "q2").split("\n"),
}, "rotq_outlier_fused.wgsl");

/** Most blocks a row may have (the kernel's named accumulators). */
export const FUSED_MAX_BLOCKS = 12;

/** Why T tokens a workgroup do not suit K and block B on this adapter, or "" when they do. */
export function fusedProblem(rt: Runtime, K: number, B: number, tokens: number): string {
  if (B % 4 !== 0 || K % B !== 0) return `block ${B} must be a multiple of 4 dividing K = ${K}`;
  if (K / B > FUSED_MAX_BLOCKS) return `K = ${K} has more than ${FUSED_MAX_BLOCKS} blocks`;
  if (![1, 2, 4, 8, 16].includes(tokens)) return `tokens ${tokens} must be 1, 2, 4, 8 or 16`;
  const lim = rt.info.limits;
  if ((B / 4) * tokens > (lim.maxComputeInvocationsPerWorkgroup ?? 256)) {
    return "too many invocations";
  }
  if (
    B / 4 > (lim.maxComputeWorkgroupSizeX ?? 256) || tokens > (lim.maxComputeWorkgroupSizeY ?? 256)
  ) {
    return "workgroup size over the adapter's limits";
  }
  if ((tokens * K + tokens * B / 4) * 4 > workgroupBytes(rt)) return "workgroup memory";
  return "";
}

/**
 * Tokens per workgroup for the fused kernel: on GPUs 2, else 1 (H200, K = 1152: 108 µs
 * at 2 against 113 / 115 / 117 at 1 / 4 / 8; fewer rows in workgroup memory leave more of
 * it to the cache); on CPU adapters the most that fit of 8, 4, 2, 1. 0 when none fits.
 *
 * Where its time goes (H200, session 37, 8192 × 1152 f16, throwaway probes): 0.211 ms, of
 * which each block product ~0.09 (27 TFLOP/s) and the row loads + quantize 0.03. Two tokens
 * a thread, each Q read feeding twice the multiply-adds, was slower (0.238–0.252 ms), so Q's
 * traffic is not what bounds it. Choosing Q1 or Q2 at each load (a function of the stage) did
 * cost time: each stage's product pasted with its own matrix took the bench's f16 row 0.211 →
 * 0.198 ms.
 * In a probe with one matrix, 1 token a workgroup ran 5 % faster than 2; not yet timed in a step.
 */
export function fusedTokens(rt: Runtime, K: number, B: number): number {
  const order = rt.info.fallback ? [8, 4, 2, 1] : [2, 1];
  for (const t of order) if (!fusedProblem(rt, K, B, t)) return t;
  return 0;
}

interface FusedParams {
  M: number;
  K: number;
  block: number;
  tokens: number;
  bits: number;
  /** Values a scale (0: the token). */
  group: number;
  asym: boolean;
}

const specs = new Map<StorageType, KernelSpec<FusedParams>>();
function fusedSpec(storage: StorageType): KernelSpec<FusedParams> {
  let spec = specs.get(storage);
  if (!spec) {
    spec = rotqSpec(`rotq_outlier_fused_${storage}`, kernelSrc, storage, [5, 2], {
      constants: (p) => ({
        B: p.block,
        T: p.tokens,
        NB: p.K / p.block,
        BITS: p.bits,
        GROUP: p.group,
        ASYM: p.asym ? 1 : 0,
      }),
      uniform: (p) => [p.M, p.K, 0, 0],
      dispatch: (p) => grid1d(Math.ceil(p.M / p.tokens)),
      libs: [mac4Src],
    });
    specs.set(storage, spec);
  }
  return spec;
}

/**
 * Records the fused kernel: x [M, K] → codes [M, K/4] u32 + scales [M] f32, or with a
 * `group` scales [M, K/group] (asymmetric: [2, M, K/group], the Δs then the zero points).
 */
export function recordFused(
  rec: Recorder,
  x: Tensor,
  t: OutlierTransformTensors,
  tokens: number,
  M: number,
  K: number,
  out: { codes: Tensor; scales: Tensor },
  bits: number,
  group = 0,
  asym = false,
): void {
  rec.dispatch(
    fusedSpec(x.dtype as StorageType),
    { M, K, block: t.block, tokens, bits, group, asym },
    [x, t.s, t.q1, t.q2, t.dest, out.codes, out.scales],
  );
}
