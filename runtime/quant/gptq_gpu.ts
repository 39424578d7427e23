/**
 * GPTQ on the GPU: the same rounding as {@linkcode gptqRound} (runtime/quant/gptq.ts, the
 * f64 CPU reference) — same set-up, grid, column order and dampening retries — with the
 * factor U (Uᵀ U = (H + λI)⁻¹) and the rounding in f32 WGSL (wgsl/gptq_factor.wgsl,
 * wgsl/gptq_round.wgsl). One submission a try: the factor and the rounding in blocks of 32
 * columns (about 6·K/32 launches); then the codes and the pivots come back in one read.
 * Where f32 and f64 round a weight that sits near the middle of two levels differently, the
 * codes differ: the tests bound how often and that the output error stays the same.
 *
 * @module
 */
import type { CodeGrid, HostMatrix, QuantizedWeight } from "../../plugins/types.ts";
import type { Runtime } from "../gpu/device.ts";
import { type KernelSpec, type LaunchTime, Recorder } from "../gpu/kernel.ts";
import {
  createTensor,
  readBytesMany,
  readTensor,
  type Tensor,
  uploadTensor,
} from "../gpu/tensor.ts";
import { gemm } from "../ops/gemm.ts";
import {
  gptqDampings,
  type GptqOptions,
  gptqSetup,
  notPositiveDefinite,
  permutedWeight,
  sortedGrid,
} from "./gptq.ts";
import { packCodes } from "./pack.ts";
import factorSrc from "../../wgsl/gptq_factor.wgsl" with { type: "text" };
import roundSrc from "../../wgsl/gptq_round.wgsl" with { type: "text" };
import gatherSrc from "../../wgsl/gptq_gather.wgsl" with { type: "text" };

interface FactorParams {
  K: number;
  j0: number;
}

interface RoundParams {
  N: number;
  K: number;
  c0: number;
  L: number;
  NG: number;
}

const BW = 32; // the factor's blocks and the rounding's batches (both WGSL files)
const g16 = (n: number) => Math.max(1, Math.ceil(n / 16));

function factorSpec(
  entryPoint: string,
  dispatch: (p: FactorParams) => [number, number],
): KernelSpec<FactorParams> {
  return {
    name: `gptq_${entryPoint}`,
    source: factorSrc,
    entryPoint,
    bindings: ["uniform", "read_write", "read_write", "read_write", "read_write", "read_write"],
    uniform: { fields: ["u32", "u32"], values: (p) => [p.K, p.j0] },
    dispatch,
  };
}

/** Rows after the block that starts at j0. */
const below = (p: FactorParams) => Math.max(0, p.K - Math.min(p.K, p.j0 + BW));
const CHOL_DIAG = factorSpec("chol_diag", () => [1, 1]);
const CHOL_PANEL = factorSpec("chol_panel", (p) => [Math.ceil(below(p) / 64), 1]);
const CHOL_UPDATE = factorSpec("chol_update", (p) => [g16(below(p)), g16(below(p))]);
const INV_ROWS = factorSpec("inv_rows", (p) => [Math.min(p.K, p.j0 + BW), 1]);
const REVERSE = factorSpec("reverse", (p) => [g16(p.K), g16(p.K)]);

function roundSpec(
  entryPoint: string,
  dispatch: (p: RoundParams) => [number, number],
): KernelSpec<RoundParams> {
  return {
    name: `gptq_${entryPoint}`,
    source: roundSrc,
    entryPoint,
    bindings: ["uniform", "read_write", "read", "read_write", "read", "read", "read", "read_write"],
    uniform: {
      fields: ["u32", "u32", "u32", "u32", "u32"],
      values: (p) => [p.N, p.K, p.c0, p.L, p.NG],
    },
    dispatch,
  };
}

const ROUND_BLOCK = roundSpec("block", (p) => [Math.ceil(p.N / 64), 1]);
const ROUND_UPDATE = roundSpec(
  "update",
  (p) => [g16(p.K - Math.min(p.K, p.c0 + BW)), g16(p.N)],
);

const GATHER: KernelSpec<{ K: number }> = {
  name: "gptq_gather",
  source: gatherSrc,
  bindings: ["uniform", "read", "read", "read", "read_write"],
  uniform: { fields: ["u32"], values: (p) => [p.K] },
  dispatch: (p) => [g16(p.K), g16(p.K)],
};

/** The factor's scratch for width K: L⁻¹'s diagonal blocks, L⁻¹, the pivots. */
interface FactorScratch {
  dinv: Tensor;
  x: Tensor;
  piv: Tensor;
}

/** Allocates {@linkcode FactorScratch} for width K. */
function factorScratch(rt: Runtime, K: number): FactorScratch {
  return {
    dinv: createTensor(rt, [Math.ceil(K / BW) * BW * BW]),
    x: createTensor(rt, [K, K]),
    piv: createTensor(rt, [K]),
  };
}

/**
 * Records U (upper, Uᵀ U = H⁻¹) into `u` from `a` = P H P [K, K] f32 (H index-reversed),
 * which it overwrites with L; `f.piv` gets the Cholesky pivots (all > 0 if and only if H is
 * positive definite, up to f32). Blocks of 32: 4 launches a block, one more for U.
 */
function recordInverseCholeskyUpper(
  rec: Recorder,
  a: Tensor,
  u: Tensor,
  f: FactorScratch,
  K: number,
): void {
  const bufs = [a, f.dinv, f.x, u, f.piv];
  for (let j0 = 0; j0 < K; j0 += BW) {
    rec.dispatch(CHOL_DIAG, { K, j0 }, bufs);
    if (j0 + BW < K) {
      rec.dispatch(CHOL_PANEL, { K, j0 }, bufs);
      rec.dispatch(CHOL_UPDATE, { K, j0 }, bufs);
    }
  }
  for (let i0 = 0; i0 < K; i0 += BW) rec.dispatch(INV_ROWS, { K, j0: i0 }, bufs);
  rec.dispatch(REVERSE, { K, j0: 0 }, bufs);
}

/**
 * The gather's source rows: idx[i] = order[K−1−i], or K−1−i without an order, so that
 * A[i, j] = H[idx[i], idx[j]] is H in GPTQ's order (permutedGram in runtime/quant/gptq.ts),
 * index-reversed (P·P).
 */
function gatherRows(K: number, order?: readonly number[]): Uint32Array {
  return Uint32Array.from({ length: K }, (_, i) => order ? order[K - 1 - i] : K - 1 - i);
}

/**
 * A's diagonal for the gather: H's at `idx` (1 for a dead input, `dead` in rounding order)
 * plus λ, in f32 as a host-built f32 matrix would hold it.
 */
function dampedDiagonal(
  h: ArrayLike<number>,
  idx: Uint32Array,
  lambda: number,
  dead?: Uint8Array,
): Float32Array {
  const K = idx.length;
  return Float32Array.from(
    { length: K },
    (_, i) => Math.fround(dead?.[K - 1 - i] ? 1 : h[idx[i] * K + idx[i]]) + lambda,
  );
}

/** H [K, K] on the GPU as it is (f32): the gather builds each try's A from it. */
function uploadGram(rt: Runtime, h: ArrayLike<number>, K: number): Tensor {
  return uploadTensor(rt, h instanceof Float32Array ? h : Float32Array.from(h), [K, K]);
}

/**
 * U with Uᵀ U = H⁻¹ computed on the GPU in f32 (the factor {@linkcode gptqRoundGpu} uses),
 * or undefined when H is not positive definite (a pivot ≤ 0 or not finite); `profile` gets
 * every launch's GPU time.
 */
export async function gpuInverseCholeskyUpper(
  rt: Runtime,
  h: ArrayLike<number>,
  K: number,
  o: { profile?: LaunchTime[] } = {},
): Promise<Float32Array | undefined> {
  const idx = gatherRows(K);
  const gather = [
    uploadGram(rt, h, K),
    uploadTensor(rt, idx, [K], "u32"),
    uploadTensor(rt, dampedDiagonal(h, idx, 0), [K]),
  ];
  const a = createTensor(rt, [K, K]);
  const u = createTensor(rt, [K, K]);
  const f = factorScratch(rt, K);
  try {
    const rec = new Recorder(rt, "gptq factor", { profile: o.profile !== undefined });
    rec.dispatch(GATHER, { K }, [...gather, a]);
    recordInverseCholeskyUpper(rec, a, u, f, K);
    await rec.submit();
    if (o.profile) o.profile.push(...await rec.launchTimes());
    const [ub, pb] = await readBytesMany(rt, [
      { buffer: u.buffer, bytes: 4 * K * K },
      { buffer: f.piv.buffer, bytes: 4 * K },
    ]);
    return pivotsOk(pb, K) ? new Float32Array(ub.buffer, ub.byteOffset, K * K).slice() : undefined;
  } finally {
    for (const t of [...gather, a, u, f.dinv, f.x, f.piv]) t.release();
  }
}

function pivotsOk(bytes: Uint8Array, K: number): boolean {
  const p = new Float32Array(bytes.buffer, bytes.byteOffset, K);
  return p.every((d) => d > 0 && Number.isFinite(d));
}

/**
 * {@linkcode gptqRound} on the GPU: the codes of `q` re-chosen by GPTQ on the quantizer's
 * grid, for inputs whose Gram matrix is `h` [K, K]; f32 throughout. Returns a copy of `q`
 * with new codes and `meta.gptqDamp` / `meta.gptqActOrder` (as the CPU version). With
 * `profile` (benchmarks; needs timestamp-query) every launch's GPU time is appended to it.
 */
export async function gptqRoundGpu(
  rt: Runtime,
  w: HostMatrix,
  q: QuantizedWeight,
  grid: CodeGrid,
  h: ArrayLike<number>,
  o: GptqOptions = {},
  profile?: LaunchTime[],
): Promise<QuantizedWeight> {
  const setup = gptqSetup(w, q, grid, h, o);
  const { N, K, ng, damp, actOrder, order, mean } = setup;
  const L = 2 ** q.bits;
  const wp = permutedWeight(w, setup, true);
  const cols = new Uint32Array(2 * K);
  for (let a = 0; a < K; a++) {
    cols[a] = order[a];
    cols[K + a] = Math.floor(order[a] / grid.groupSize);
  }
  const sorted = sortedGrid(grid.values, L);
  const own: Tensor[] = [];
  const keep = <T extends Tensor>(t: T) => (own.push(t), t);
  try {
    const vals = keep(uploadTensor(rt, sorted.vals, [sorted.vals.length]));
    const vcode = keep(uploadTensor(rt, sorted.codes, [sorted.codes.length], "u32"));
    const colsT = keep(uploadTensor(rt, cols, [2 * K], "u32"));
    const u = keep(createTensor(rt, [K, K]));
    const f = factorScratch(rt, K);
    own.push(f.dinv, f.x, f.piv);
    const e = keep(createTensor(rt, [N, BW]));
    const codes = keep(createTensor(rt, [N, K], "u32"));
    // H goes up as it is; the GPU gathers it into A = P H P (the factor overwrites A).
    const hT = keep(uploadGram(rt, h, K));
    const idx = gatherRows(K, order);
    const idxT = keep(uploadTensor(rt, idx, [K], "u32"));
    const a = keep(createTensor(rt, [K, K]));
    let used = damp;
    for (used of gptqDampings(damp)) {
      const diagT = uploadTensor(rt, dampedDiagonal(h, idx, used * mean, setup.dead), [K]);
      const wt = uploadTensor(rt, wp, [N, K]); // the rounding updates it in place
      try {
        const rec = new Recorder(rt, "gptq", { profile: profile !== undefined });
        rec.dispatch(GATHER, { K }, [hT, idxT, diagT, a]);
        recordInverseCholeskyUpper(rec, a, u, f, K);
        const bufs = [wt, u, e, vals, vcode, colsT, codes];
        for (let c0 = 0; c0 < K; c0 += BW) {
          const p = { N, K, c0, L, NG: ng };
          rec.dispatch(ROUND_BLOCK, p, bufs);
          if (c0 + BW < K) rec.dispatch(ROUND_UPDATE, p, bufs);
        }
        await rec.submit();
        if (profile) profile.push(...await rec.launchTimes());
        const [cb, pb] = await readBytesMany(rt, [
          { buffer: codes.buffer, bytes: 4 * N * K },
          { buffer: f.piv.buffer, bytes: 4 * K },
        ]);
        if (!pivotsOk(pb, K)) continue;
        const c32 = new Uint32Array(cb.buffer, cb.byteOffset, N * K);
        const c8 = new Uint8Array(N * K);
        for (let i = 0; i < c8.length; i++) c8[i] = c32[i]; // (a plain loop: from() is slow)
        return {
          ...q,
          codes: packCodes(c8, N, K, q.bits),
          meta: { ...q.meta, gptqDamp: used, gptqActOrder: actOrder },
        };
      } finally {
        for (const t of [diagT, wt]) t.release();
      }
    }
    throw notPositiveDefinite(used);
  } finally {
    for (const t of own) t.release();
  }
}

/**
 * outputSqnrsDb (runtime/quant/gptq.ts) with its N·K² part on the GPU: the rows of W and of
 * each error ŵ − W times H by the runtime's f32 GEMM, the row products summed on the host in
 * f64. For `quantize --gptq --report` next to GPU GPTQ (the CPU version is N·K² of JS a layer).
 */
export async function outputSqnrsDbGpu(
  rt: Runtime,
  w: Float32Array,
  deqs: readonly Float32Array[],
  h: ArrayLike<number>,
  N: number,
  K: number,
): Promise<number[]> {
  const n = deqs.length;
  const v = new Float32Array((1 + n) * N * K);
  v.set(w.subarray(0, N * K));
  deqs.forEach((d, i) => {
    const o = (1 + i) * N * K;
    for (let j = 0; j < N * K; j++) v[o + j] = d[j] - w[j];
  });
  const vt = uploadTensor(rt, v, [(1 + n) * N, K]);
  const ht = uploadTensor(rt, Float32Array.from(h), [K, K]);
  let y: Tensor | undefined;
  try {
    const rec = new Recorder(rt, "gptq output sqnr");
    y = gemm(rec, vt, ht); // V·Hᵀ = V·H
    await rec.submit();
    const vh = await readTensor(rt, y);
    const sums = new Float64Array(1 + n);
    for (let s = 0; s <= n; s++) {
      const o = s * N * K;
      let acc = 0;
      for (let j = 0; j < N * K; j++) acc += vh[o + j] * v[o + j];
      sums[s] = acc;
    }
    return Array.from(sums.subarray(1), (x) => x > 0 ? 10 * Math.log10(sums[0] / x) : Infinity);
  } finally {
    vt.release();
    ht.release();
    y?.release();
  }
}
