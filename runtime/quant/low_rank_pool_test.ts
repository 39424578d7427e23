import { assertEquals, assertRejects } from "../../tests/assert.ts";
import { uniformQuantizer } from "../../plugins/quantizers/uniform.ts";
import type { HostMatrix } from "../../plugins/types.ts";
import { Prng } from "../io/prng.ts";
import { hessianBranch, hessianFactor, lowRankSplit } from "./low_rank.ts";
import { quantizeWithBranch } from "./low_rank_fit.ts";
import { LowRankPool } from "./low_rank_pool.ts";
import { gramRef } from "../reference/act_gram.ts";

/** W [N, K] and the Gram matrix of 2K rows with two loud channels. */
function layer(N: number, K: number, seed: number): { w: HostMatrix; h: Float64Array } {
  const g = new Prng(seed);
  const w: HostMatrix = { data: g.normals(N * K), rows: N, cols: K };
  const M = 2 * K;
  const x = g.normals(M * K).map((v, i) => (i % K < 2 ? 20 * v : v));
  const h = gramRef(x, M, K);
  return { w, h };
}

Deno.test("low-rank pool: workers give the calling thread's factor and branch, bit for bit", async () => {
  const [N, K, R] = [48, 64, 4];
  const { w, h } = layer(N, K, 3);
  const pool = new LowRankPool(2, 0); // every job to a worker
  try {
    const c = await pool.factor(h, K, 0.01);
    assertEquals(pool.started, 2);
    assertEquals(c, hessianFactor(h, K, 0.01));
    assertEquals(await pool.branch(w, c, R), hessianBranch(w, c, R));
    // A whole hessian fit: the same codes and branch as on this thread.
    const base = {
      wt: w,
      own: w,
      split: lowRankSplit(w, w, R),
      h,
      fit: "hessian" as const,
      dequantize: (q: Parameters<typeof uniformQuantizer.dequantize>[0]) =>
        uniformQuantizer.dequantize(q),
      quantizeRest: (rest: HostMatrix) =>
        Promise.resolve({ q: uniformQuantizer.calibrate(rest, { bits: 3 }), ms: 1 }),
    };
    const here = await quantizeWithBranch(base);
    const there = await quantizeWithBranch({ ...base, fitter: pool });
    assertEquals(there.r.q.codes, here.r.q.codes);
    assertEquals(there.branch, here.branch);
    // A worker's error rejects the job, naming the cause; the pool goes on.
    await assertRejects(() => pool.factor(new Float64Array(K * K).fill(NaN), K), Error);
    assertEquals(await pool.branch(w, c, R), hessianBranch(w, c, R));
  } finally {
    pool.close();
  }
});

Deno.test("low-rank pool: small jobs, or one worker, run on this thread", async () => {
  const { w, h } = layer(8, 16, 4);
  for (const pool of [new LowRankPool(2), new LowRankPool(1, 0)]) {
    try {
      const c = await pool.factor(h, 16);
      assertEquals(await pool.branch(w, c, 2), hessianBranch(w, c, 2));
      assertEquals(pool.started, 0);
    } finally {
      pool.close();
    }
  }
});
