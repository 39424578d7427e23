import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { uniformQuantizer } from "../../plugins/quantizers/uniform.ts";
import type { HostMatrix } from "../../plugins/types.ts";
import { Prng } from "../io/prng.ts";
import { lowRankSplit } from "./low_rank.ts";
import {
  fitForShapes,
  HESSIAN_FIT_MAX_K,
  LOW_RANK_ROUNDS,
  quantizeWithBranch,
} from "./low_rank_fit.ts";

Deno.test("quantizeWithBranch: svd keeps the split, refit and hessian fit the branch to the codes", async () => {
  const [N, K, R] = [24, 32, 4];
  const g = new Prng(11);
  const w: HostMatrix = { data: g.normals(N * K), rows: N, cols: K };
  const x = g.normals(64 * K).map((v, i) => (i % K < 2 ? 20 * v : v)); // two loud channels
  const h = new Float64Array(K * K);
  for (let m = 0; m < 64; m++) {
    for (let i = 0; i < K; i++) {
      for (let j = 0; j < K; j++) h[i * K + j] += x[m * K + i] * x[m * K + j];
    }
  }
  const split = lowRankSplit(w, w, R);
  let calls = 0;
  const base = {
    wt: w,
    own: w,
    split,
    h,
    dequantize: (q: Parameters<typeof uniformQuantizer.dequantize>[0]) =>
      uniformQuantizer.dequantize(q),
    quantizeRest: (rest: HostMatrix) => {
      calls++;
      return Promise.resolve({ q: uniformQuantizer.calibrate(rest, { bits: 3 }), ms: 1 });
    },
  };
  const svd = await quantizeWithBranch({ ...base, fit: "svd" });
  assertEquals(calls, 1);
  assertEquals(svd.branch?.a, split.a);
  const refit = await quantizeWithBranch({ ...base, fit: "refit" });
  assertEquals(calls, 2);
  assertEquals(refit.r.q.codes, svd.r.q.codes); // same codes, another down factor
  assert(refit.sqnrDb > svd.sqnrDb, `${refit.sqnrDb} vs ${svd.sqnrDb}`);
  const hess = await quantizeWithBranch({ ...base, fit: "hessian" });
  assertEquals(calls, 3 + LOW_RANK_ROUNDS);
  assertEquals(hess.r.ms, 1 + LOW_RANK_ROUNDS); // every round's time
  // The output error on the inputs H is of: the hessian fit leaves the least.
  const outErr = (f: typeof svd) => {
    const { a, b } = f.branch!;
    const e = new Float64Array(N * K); // W − Ê − B·A
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        let ba = 0;
        for (let r = 0; r < R; r++) ba += b[n * R + r] * a[r * K + k];
        e[n * K + k] = w.data[n * K + k] - f.deq[n * K + k] - ba;
      }
    }
    let t = 0; // tr(E·H·Eᵀ)
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < K; i++) {
        for (let j = 0; j < K; j++) t += e[n * K + i] * h[i * K + j] * e[n * K + j];
      }
    }
    return t;
  };
  assert(outErr(hess) < outErr(refit) && outErr(refit) < outErr(svd), "hessian < refit < svd");
  // No branch: the weight is quantized whole, once.
  const plain = await quantizeWithBranch({ ...base, split: undefined, fit: "hessian" });
  assertEquals(plain.branch, undefined);
  await assertRejects(
    () => quantizeWithBranch({ ...base, h: undefined, fit: "hessian" }),
    RangeError,
    "needs the layer's Gram matrix",
  );
});

Deno.test("fitForShapes: a defaulted hessian fit becomes refit past HESSIAN_FIT_MAX_K; a chosen one stands", () => {
  const settings = {
    quantizer: "uniform",
    wbits: 4,
    abits: 8,
    rotation: "none",
    attention: "dense",
    density: null,
    attnBits: null,
    groupSize: 0,
    symmetric: false,
    gptq: true,
    lowRank: 32,
    lowRankFit: "hessian" as const,
    keepFp: ["proj_out"],
  };
  const wide = HESSIAN_FIT_MAX_K + 4; // a multiple of 4: quantized
  type Shapes = [string, { shape: number[] }][];
  const shapes = (list: [string, number[]][]): Shapes => list.map(([n, shape]) => [n, { shape }]);
  const narrow = shapes([
    ["blocks.0.ff.weight", [3072, HESSIAN_FIT_MAX_K]],
    ["blocks.0.ff.bias", [wide]],
    ["proj_out.weight", [64, wide]], // kept in full precision: no branch
  ]);
  assertEquals(fitForShapes(settings, narrow, false), "hessian");
  const withWide = [...narrow, ...shapes([["blocks.1.ff.weight", [3072, wide]]])];
  assertEquals(fitForShapes(settings, withWide, false), "refit");
  assertEquals(fitForShapes(settings, withWide, true), "hessian"); // the caller's choice
  // A wide layer without a branch (override rank 0) does not count.
  const noBranch = { ...settings, lowRankOverride: [{ pattern: "blocks.1.*", rank: 0 }] };
  assertEquals(fitForShapes(noBranch, withWide, false), "hessian");
  assertEquals(fitForShapes({ ...settings, lowRankFit: "svd" }, withWide, false), "svd");
  // Nor does one that stays in full precision for its K (not a multiple of 4).
  const odd = [...narrow, ...shapes([["blocks.1.ff.weight", [3072, HESSIAN_FIT_MAX_K + 1]]])];
  assertEquals(fitForShapes(settings, odd, false), "hessian");
});
