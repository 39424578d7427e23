import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { uploadTensor } from "../../runtime/gpu/tensor.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { attentionRef, type HostHeads } from "../../runtime/reference/attention.ts";
import { attnSparseFloatRef } from "../../runtime/reference/attn_sparse.ts";
import {
  blocksOf,
  candidatePermutations,
  maskHas,
  maskWords,
  ParoPlan,
  selectMask,
} from "../../runtime/quant/paro_plan.ts";
import { FluxParoAttention, jointParoLayer } from "./paro_flux.ts";
import { paroPlanData, paroPlugin, ParoSelfAttention } from "./paro.ts";
import type { FluxAttentionContext } from "../models/flux.ts";

/** A synthetic image plan: orders from the candidates, random masks at `density`. */
function imagePlan(h: number, w: number, H: number, G: number, density: number, seed: number) {
  const T = h * w;
  const nb = blocksOf(T);
  const g = new Prng(seed);
  const cands = candidatePermutations(h, w);
  const layers = [0, 1].map((l) => {
    const perm = new Uint32Array(H * T);
    const masks = new Uint32Array(H * G * nb * maskWords(nb));
    const orders: string[] = [];
    for (let hd = 0; hd < H; hd++) {
      const c = cands[(l + hd) % cands.length];
      orders.push(c.name);
      perm.set(c.perm, hd * T);
      for (let gi = 0; gi < G; gi++) {
        masks.set(
          selectMask(g.uniforms(nb * nb, 0, 1), nb, density),
          (hd * G + gi) * nb * maskWords(nb),
        );
      }
    }
    return { orders, perm, masks };
  });
  return new ParoPlan({
    method: "paro",
    version: 1,
    h,
    w,
    tokens: T,
    block: 64,
    heads: H,
    layers: 2,
    steps: 2 * (G - 1) || 1,
    groups: G,
    density,
    bits: 16,
    alpha: 0.5,
    pScale: "fixed",
    orders: layers.map((l) => l.orders),
  }, layers);
}

Deno.test("jointParoLayer: text first and dense, image part as the plan (aligned L)", () => {
  const plan = imagePlan(16, 16, 2, 2, 0.4, 1); // 256 image tokens = 4 blocks
  const L = 128; // 2 text blocks
  const J = L + 256;
  const nb = blocksOf(J);
  const { perm, masks } = jointParoLayer(plan, 1, L);
  for (let h = 0; h < 2; h++) {
    const p = perm.subarray(h * J, (h + 1) * J);
    assertEquals(new Set(p).size, J, "a permutation");
    for (let i = 0; i < L; i++) assertEquals(p[i], i);
    for (let j = 0; j < 256; j++) assertEquals(p[L + j], L + plan.layers[1].perm[h * 256 + j]);
    for (let g = 0; g < 2; g++) {
      const m = masks.subarray(
        (h * 2 + g) * nb * maskWords(nb),
        (h * 2 + g + 1) * nb * maskWords(nb),
      );
      const im = plan.mask(1, h, g);
      for (let qb = 0; qb < nb; qb++) {
        for (let kb = 0; kb < nb; kb++) {
          const want = qb < 2 || kb < 2 || maskHas(im, 4, qb - 2, kb - 2);
          assertEquals(maskHas(m, nb, qb, kb), want, `h${h} g${g} (${qb}, ${kb})`);
        }
      }
    }
  }
});

Deno.test("jointParoLayer: unaligned L keeps a superset of the image plan's pairs", () => {
  const plan = imagePlan(12, 12, 3, 1, 0.3, 2); // 144 image tokens = 3 blocks (last partial)
  const L = 40;
  const J = L + 144;
  const nb = blocksOf(J);
  const { masks } = jointParoLayer(plan, 0, L);
  for (let h = 0; h < 3; h++) {
    const m = masks.subarray(h * nb * maskWords(nb), (h + 1) * nb * maskWords(nb));
    const im = plan.mask(0, h, 0);
    for (let qb = 0; qb < nb; qb++) {
      // Joint block 0 holds the text: its row and column are kept whole.
      assert(maskHas(m, nb, 0, qb) && maskHas(m, nb, qb, 0), `text block ${qb}`);
    }
    for (let qi = 0; qi < 3; qi++) {
      for (let ki = 0; ki < 3; ki++) {
        if (!maskHas(im, 3, qi, ki)) continue;
        // Image block i spans joint positions L + 64i … : both joint blocks they touch.
        for (const qp of [L + 64 * qi, Math.min(J, L + 64 * qi + 63)]) {
          for (const kp of [L + 64 * ki, Math.min(J, L + 64 * ki + 63)]) {
            assert(maskHas(m, nb, qp >> 6, kp >> 6), `image pair (${qi}, ${ki})`);
          }
        }
      }
    }
  }
});

Deno.test(
  "FluxParoAttention: the sparse kernel over [text; image] matches the reference, text rows dense",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [h, w, H, D, L, B] = [12, 12, 2, 16, 64, 1]; // J = 208: a partial last block
      const T = h * w;
      const J = L + T;
      const W = H * D;
      const plan = imagePlan(h, w, H, 2, 0.3, 3);
      const g = new Prng(5);
      const xs = [0, 1, 2].map(() => g.normals(B * J * W));
      const [q, k, v] = xs.map((x) => uploadTensor(rt, x, [B, J, W]));
      const attn = new FluxParoAttention(rt, plan, L);
      const ctx: FluxAttentionContext = {
        heads: H,
        h,
        w,
        step: 1,
        steps: 2,
        textTokens: L,
        block: "single",
      };
      const got = await runAndRead(rt, (rec) => attn.run(rec, 1, q, k, v, ctx));
      const hh = (data: Float32Array): HostHeads => ({ data, batch: B, tokens: J, width: W });
      const joint = jointParoLayer(plan, 1, L);
      const ref = attnSparseFloatRef(hh(xs[0]), hh(xs[1]), hh(xs[2]), joint.perm, {
        heads: H,
        headDim: D,
        masks: joint.masks,
        groups: 2,
        group: 1, // step 1 of 2 on a 2-step plan
      });
      let worst = 0;
      for (let i = 0; i < ref.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - ref[i]) / (1 + Math.abs(ref[i])));
      }
      assert(worst < 1e-4, `float PARO vs reference: ${worst}`);
      // Text queries attend to every key: they equal dense attention.
      const dense = attentionRef(hh(xs[0]), hh(xs[1]), hh(xs[2]), { heads: H, headDim: D });
      for (let i = 0; i < L * W; i++) {
        assert(Math.abs(got[i] - dense[i]) < 1e-4 * (1 + Math.abs(dense[i])), `text row ${i}`);
      }
      // And the image queries do not (the masks drop blocks).
      let diff = 0;
      for (let i = L * W; i < J * W; i++) diff = Math.max(diff, Math.abs(got[i] - dense[i]));
      assert(diff > 1e-3, "image rows should be sparse");
      const jd = attn.jointDensity(L);
      assert(jd > 0.3 && jd < 1, `joint density ${jd}`);
      attn.release();
      for (const t of [q, k, v]) t.release();
    });
  },
);

Deno.test(
  "paro plugin: a flux-joint plan from the artifact builds the joint form per text length",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [h, w, H, D, B] = [12, 12, 2, 16, 1];
      const T = h * w;
      const plan = imagePlan(h, w, H, 2, 0.3, 7);
      const lazy = paroPlugin.create(rt, paroPlanData(plan, "flux-joint"));
      assert(lazy instanceof FluxParoAttention, "flux-joint → FluxParoAttention");
      const image = paroPlugin.create(rt, paroPlanData(plan));
      assert(image instanceof ParoSelfAttention, "the default form is the image one");
      image.release();
      const bad = { ...paroPlanData(plan), meta: { ...plan.meta, form: "joint" } };
      assertThrows(() => paroPlugin.create(rt, bad), TypeError, "form must be");
      const g = new Prng(9);
      for (const L of [64, 7]) { // two text lengths through one attention: one plan each
        const J = L + T;
        const xs = [0, 1, 2].map(() => g.normals(B * J * H * D));
        const [q, k, v] = xs.map((x) => uploadTensor(rt, x, [B, J, H * D]));
        const ctx: FluxAttentionContext = {
          heads: H,
          h,
          w,
          step: 0,
          steps: 2,
          textTokens: L,
          block: "double",
        };
        const eager = new FluxParoAttention(rt, plan, L);
        const got = await runAndRead(rt, (rec) => lazy.run(rec, 0, q, k, v, ctx));
        const want = await runAndRead(rt, (rec) => eager.run(rec, 0, q, k, v, ctx));
        assertEquals([...got], [...want], `L = ${L}`);
        eager.release();
        for (const t of [q, k, v]) t.release();
      }
      assertThrows(
        () =>
          lazy.run(
            undefined as never,
            0,
            undefined as never,
            undefined as never,
            undefined as never,
            { heads: H, h: 4, w: 4, step: 0, steps: 1 },
          ),
        RangeError,
        "re-plan for this size",
      );
      lazy.release();
    });
  },
);
