import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../../runtime/gpu/tensor.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { loadPipeline, type Pipeline } from "../../runtime/pipeline.ts";
import { accumulateBlockStats, ParoStatsObserver } from "../../runtime/quant/paro_calibrate.ts";
import {
  blocksOf,
  candidatePermutations,
  maskWords,
  ParoPlan,
  type ParoPlanMeta,
  planParo,
  stepGroups,
} from "../../runtime/quant/paro_plan.ts";
import { attentionMapRef, blockStatsRef } from "../../runtime/reference/attn_sparse.ts";
import { createDefaultRegistry } from "../../runtime/builtins.ts";
import { cosine } from "../../runtime/eval/metrics.ts";
import { denseAttention, densePlugin } from "./dense.ts";
import { paroPlanData, paroPlugin, ParoSelfAttention } from "./paro.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test(
  "PARO calibration statistics on the GPU match the reference per candidate order",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [h, w, H, D, B, S] = [16, 16, 2, 16, 2, 2];
      const T = h * w;
      const g = new Prng(5);
      const obs = new ParoStatsObserver(rt);
      const data: Float32Array[][] = [];
      for (let step = 0; step < S; step++) {
        // Local attention plus noise, so blocks differ in mass, sparsity and incoherence.
        const q = g.normals(B * T * H * D);
        const k = g.normals(B * T * H * D);
        for (let t = 0; t < B * T; t++) {
          const tok = t % T;
          for (let c = 0; c < H * D; c += 2) {
            const a = ((tok % w) * 0.6 + Math.floor(tok / w) * 0.2) * (1 + (c % 5));
            q[t * H * D + c] += 2 * Math.cos(a);
            q[t * H * D + c + 1] += 2 * Math.sin(a);
            k[t * H * D + c] += 2 * Math.cos(a);
            k[t * H * D + c + 1] += 2 * Math.sin(a);
          }
        }
        data.push([q, k]);
        const rec = new Recorder(rt);
        const ctx = { heads: H, h, w, step, steps: S };
        obs.observe(
          rec,
          0,
          uploadTensor(rt, q, [B, T, H * D]),
          uploadTensor(rt, k, [B, T, H * D]),
          ctx,
        );
        await rec.submit();
      }
      const s = await obs.read();
      obs.release();
      const cands = candidatePermutations(h, w);
      assertEquals(s.candidates, cands.map((c) => c.name));
      assertEquals([s.layers, s.heads, s.steps, s.maps], [1, H, S, B]);
      let flips = 0;
      for (let step = 0; step < S; step++) {
        const hh = (x: Float32Array) => ({ data: x, batch: B, tokens: T, width: H * D });
        for (let hd = 0; hd < H; hd++) {
          const maps = [0, 1].map((b) =>
            attentionMapRef(hh(data[step][0]), hh(data[step][1]), b, hd, D)
          );
          cands.forEach((c, ci) => {
            const refs = maps.map((m) => blockStatsRef(m, T, c.perm));
            const sum = (f: (r: typeof refs[0]) => Float64Array) =>
              f(refs[0]).map((v, i) => v + f(refs[1])[i]);
            const got = s.stats[0][hd][step][ci];
            const label = `step ${step} head ${hd} ${c.name}`;
            assertClose(got.mass, sum((r) => r.mass), {
              atol: 1e-4,
              rtol: 1e-4,
              msg: `${label} mass`,
            });
            assertClose(got.incoherence, sum((r) => r.incoherence), {
              atol: 1e-3,
              rtol: 1e-3,
              msg: `${label} incoherence`,
            });
            const want = sum((r) => r.sparse);
            for (let i = 0; i < want.length; i++) flips += +(got.sparse[i] !== want[i]);
          });
        }
      }
      // A block's flag flips only when its near-zero count sits exactly at 90%.
      assert(flips <= 2, `${flips} sparse flags differ`);
    });
  },
);

Deno.test(
  "block statistics of a map with a partial last block match the reference",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [h, w] = [10, 13];
      const T = h * w; // 130 tokens: blocks of 64, 64 and 2
      const g = new Prng(9);
      const map = new Float32Array(T * T);
      for (let i = 0; i < T; i++) {
        let sum = 0;
        for (let j = 0; j < T; j++) {
          sum += map[i * T + j] = Math.exp(4 * g.normal()) * +(g.uniform() < 0.7);
        }
        for (let j = 0; j < T; j++) map[i * T + j] /= sum;
      }
      const cands = candidatePermutations(h, w);
      const perms = new Uint32Array(cands.length * T);
      cands.forEach((c, i) => perms.set(c.perm, i * T));
      const nb = blocksOf(T);
      const n = cands.length * nb * nb * 3;
      const stats = uploadTensor(rt, new Float32Array(n + 6).fill(0.5), [n + 6]);
      const rec = new Recorder(rt);
      accumulateBlockStats(
        rec,
        uploadTensor(rt, map, [T, T]),
        uploadTensor(rt, perms, [cands.length, T], "u32"),
        stats,
        3,
      );
      await rec.submit();
      const got = await readTensor(rt, stats);
      assertEquals(Array.from(got.subarray(0, 3)), [0.5, 0.5, 0.5], "before base untouched");
      assertEquals(Array.from(got.subarray(n + 3)), [0.5, 0.5, 0.5], "after the end untouched");
      cands.forEach((c, ci) => {
        const ref = blockStatsRef(map, T, c.perm);
        const at = (j: number) =>
          Float64Array.from(
            { length: nb * nb },
            (_, i) => got[3 + (ci * nb * nb + i) * 3 + j] - 0.5,
          );
        assertClose(at(0), ref.mass, { atol: 1e-5, rtol: 1e-5, msg: `${c.name} mass` });
        assertEquals(Array.from(at(1)), Array.from(ref.sparse), `${c.name} sparse`);
        assertClose(at(2), ref.incoherence, {
          atol: 1e-4,
          rtol: 1e-4,
          msg: `${c.name} incoherence`,
        });
      });
    });
  },
);

/** A plan with the given per-head orders and all-ones (or given-density) masks for a grid. */
function fullPlan(h: number, w: number, layers: number, heads: number, bits: 8 | 4 | 16): ParoPlan {
  const T = h * w;
  const nb = blocksOf(T);
  const cands = candidatePermutations(h, w);
  const steps = 4;
  const G = stepGroups(steps);
  const meta: ParoPlanMeta = {
    method: "paro",
    version: 1,
    h,
    w,
    tokens: T,
    block: 64,
    heads,
    layers,
    steps,
    groups: G,
    density: 1,
    bits,
    alpha: 0.5,
    pScale: "fixed",
    orders: [],
  };
  const ls = Array.from({ length: layers }, (_, l) => {
    const perm = new Uint32Array(heads * T);
    const orders: string[] = [];
    for (let hd = 0; hd < heads; hd++) {
      const c = cands[(l + hd + 1) % cands.length];
      perm.set(c.perm, hd * T);
      orders.push(c.name);
    }
    const masks = new Uint32Array(heads * G * nb * maskWords(nb)).fill(2 ** nb - 1);
    return { orders, perm, masks };
  });
  meta.orders = ls.map((l) => l.orders);
  return new ParoPlan(meta, ls);
}

async function sample(pipe: Pipeline, seed: number): Promise<Float32Array> {
  const r = await pipe.generate({ prompt: "red apple", seed, steps: 4, height: 32, width: 32 });
  return r.latents;
}

Deno.test(
  "PARO self-attention in the fixture model: full masks reproduce dense; calibrated sparse plans run",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const pipe = await loadPipeline(rt, { path: FIXTURE });
      try {
        const c = pipe.transformer.config;
        const [h, w] = [16, 16]; // 32×32 pixels, patch 2: 256 tokens, 4 blocks
        const dense = await sample(pipe, 3);
        // Float, every block kept, every head reordered: permutation-invariant, so = dense.
        const full = new ParoSelfAttention(
          rt,
          fullPlan(h, w, c.numLayers, c.numAttentionHeads, 16),
        );
        pipe.transformer.selfAttention = full;
        const f = await sample(pipe, 3);
        full.release();
        assertClose(f, dense, { atol: 2e-4, rtol: 2e-4, msg: "full-mask float PARO vs dense" });
        const full8 = new ParoSelfAttention(
          rt,
          fullPlan(h, w, c.numLayers, c.numAttentionHeads, 8),
        );
        pipe.transformer.selfAttention = full8;
        const q8 = await sample(pipe, 3);
        full8.release();
        const c8 = cosine(q8, dense);
        assert(c8 > 0.999, `full-mask INT8 cosine ${c8}`);

        // Calibrate (one prompt, 4 steps) through the observer, plan, run at 0.5 INT8 / INT4.
        const obs = new ParoStatsObserver(rt);
        pipe.transformer.selfAttention = obs.wrap(denseAttention());
        await sample(pipe, 0);
        const stats = await obs.read();
        obs.release();
        assertEquals([stats.layers, stats.heads, stats.steps, stats.maps], [
          c.numLayers,
          c.numAttentionHeads,
          4,
          2,
        ]);
        const results: number[] = [];
        for (const bits of [16, 8, 4] as const) {
          const plan = planParo(stats, { density: 0.5, bits });
          const attn = paroPlugin.create(rt, paroPlanData(plan));
          pipe.transformer.selfAttention = attn;
          const x = await sample(pipe, 3);
          attn.release();
          assert(x.every(Number.isFinite), `bits ${bits}: finite`);
          results.push(cosine(x, dense));
        }
        // Half the blocks dropped changes the result, and quantization adds to it.
        assert(results[0] < 0.99999 && results[0] > 0.9, `0.5 float cosine ${results[0]}`);
        assert(results[1] > 0.9 && results[2] > 0.5, `0.5 INT8/INT4 cosines ${results.slice(1)}`);
      } finally {
        pipe.release();
      }
    });
  },
);

Deno.test(
  "attention plugins are registered; PARO refuses a missing plan or another grid",
  gpuTest,
  async () => {
    const r = createDefaultRegistry();
    assertEquals(r.get("attention", "dense"), densePlugin);
    assertEquals(r.get("attention", "paro"), paroPlugin);
    await withRuntime((rt) => {
      assertThrows(() => paroPlugin.create(rt), TypeError, "needs a plan");
      const attn = new ParoSelfAttention(rt, fullPlan(8, 8, 1, 1, 8));
      const x = uploadTensor(rt, new Float32Array(2 * 128 * 16), [2, 128, 16]);
      const rec = new Recorder(rt);
      const ctx = { heads: 1, h: 8, w: 16, step: 0, steps: 4 };
      assertThrows(() => attn.run(rec, 0, x, x, x, ctx), RangeError, "re-plan");
      assertThrows(() => attn.run(rec, 1, x, x, x, { ...ctx, w: 8 }), RangeError, "layer 1");
      attn.release();
    });
  },
);
