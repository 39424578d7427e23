import { assert, assertClose, assertEquals, assertThrows, maxAbsDiff } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { gatherRowsRef, posEmbed2dRef, timestepEmbeddingRef } from "../reference/embed.ts";
import { gatherRows, posEmbed2d, timestepEmbedding } from "./embed.ts";

const PIXART = { flipSinToCos: true, downscaleFreqShift: 0 } as const;

Deno.test("timestep embedding reference: diffusers' formula and PixArt's layout", () => {
  // t = 0: sin 0 = 0, cos 0 = 1; flipped (PixArt) puts the cos half first.
  const e = timestepEmbeddingRef([0], 8, PIXART);
  assertEquals([...e], [1, 1, 1, 1, 0, 0, 0, 0]);
  // Unflipped, shift 1 (diffusers' defaults): freq_k = exp(−ln(1e4)·k/(half − 1)).
  const t = 3;
  const d = timestepEmbeddingRef([t], 7);
  for (let k = 0; k < 3; k++) {
    const arg = t * Math.exp((-Math.log(10000) * k) / 2);
    assert(Math.abs(d[k] - Math.sin(arg)) < 1e-6 && Math.abs(d[3 + k] - Math.cos(arg)) < 1e-6);
  }
  assertEquals(d[6], 0); // odd dim: zero pad
});

Deno.test(
  "timestepEmbedding matches the torch-f32 reference (PixArt settings, odd dim)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Integer and fractional timesteps over PixArt's range, and a batch of 7.
      const ts = new Float32Array([0, 1, 2.5, 17, 250.25, 500, 999]);
      const t = uploadTensor(rt, ts, [ts.length]);
      const got = await runAndRead(rt, (r) => timestepEmbedding(r, t, 256, PIXART));
      const ref = timestepEmbeddingRef(ts, 256, PIXART);
      // Arguments are f32 as in torch; a 1-ulp difference of exp in a frequency moves
      // t·freq by up to t·2^-24·2, so the bound grows with t. Most entries match to 1e-6.
      for (let b = 0; b < ts.length; b++) {
        const row = (a: Float32Array) => a.subarray(b * 256, (b + 1) * 256);
        assertClose(row(got), row(ref), {
          atol: 2e-6 + ts[b] * 1.2e-7,
          rtol: 0,
          msg: `t = ${ts[b]}`,
        });
      }
      let close = 0;
      for (let i = 0; i < got.length; i++) if (Math.abs(got[i] - ref[i]) <= 1e-6) close++;
      assert(close >= 0.97 * got.length, `only ${close} of ${got.length} within 1e-6`);
      // diffusers' defaults (no flip, shift 1), scale 2, odd dim, f16 output.
      const opts = { scale: 2, maxPeriod: 5000 };
      const odd = await runAndRead(rt, (r) => timestepEmbedding(r, t, 33, opts));
      const refOdd = timestepEmbeddingRef(ts, 33, opts);
      assertClose(odd, refOdd, { atol: 2e-6 + 2 * 999 * 1.2e-7, rtol: 0 });
      if (rt.info.f16) {
        const h = await runAndRead(
          rt,
          (r) => timestepEmbedding(r, t, 256, { ...PIXART, dtype: "f16" }),
        );
        assertClose(h, ref, { atol: 1e-3, rtol: 0 });
      }
    });
  },
);

Deno.test(
  "posEmbed2d matches get_2d_sincos_pos_embed (square, non-square, interpolation)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const cases = [
        // PixArt-512: 64×64 latent, patch 2 → 32×32 grid, base 32, interpolation 1.
        { embedDim: 48, gridH: 32, gridW: 32, baseSize: 32, interpolationScale: 1 },
        // Non-square grid of PixArt-1024 (base 64, interpolation 2).
        { embedDim: 1152, gridH: 3, gridW: 7, baseSize: 64, interpolationScale: 2 },
        { embedDim: 8, gridH: 5, gridW: 2, baseSize: 4, interpolationScale: 1.5 },
      ];
      for (const c of cases) {
        const got = await runAndRead(rt, (r) => posEmbed2d(r, c));
        const ref = posEmbed2dRef(c);
        assertClose(got, ref, { atol: 1e-5, rtol: 0, msg: JSON.stringify(c) });
      }
    });
  },
);

Deno.test("posEmbed2d reference: h/w order and position scaling as diffusers", () => {
  // Token (h=1, w=2) of a 2×3 grid, base 3, interpolation 1: pos_w = 2/(3/3) = 2,
  // pos_h = 1/(2/3) = 1.5. Columns: [sin w | cos w | sin h | cos h], E/4 = 2 freqs.
  const e = posEmbed2dRef({ embedDim: 8, gridH: 2, gridW: 3, baseSize: 3, interpolationScale: 1 });
  const row = e.subarray(5 * 8, 6 * 8);
  const om = [1, 1 / 100];
  const want = [
    ...om.map((o) => Math.sin(2 * o)),
    ...om.map((o) => Math.cos(2 * o)),
    ...om.map((o) => Math.sin(1.5 * o)),
    ...om.map((o) => Math.cos(1.5 * o)),
  ];
  assert(maxAbsDiff(row, want).max < 1e-7, `got ${row}, want ${want}`);
});

Deno.test(
  "gatherRows picks table rows by u32 id; ids past the table give zeros",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [V, C] = [11, 37];
      const tbl = new Prng(12).normals(V * C);
      const idv = new Uint32Array([3, 0, 10, 3, 99, 7]);
      const table = uploadTensor(rt, tbl, [V, C]);
      const ids = uploadTensor(rt, idv, [idv.length], "u32");
      const got = await runAndRead(rt, (r) => gatherRows(r, table, ids));
      assertEquals([...got], [...gatherRowsRef(tbl, C, idv)]);
      if (rt.info.f16) {
        const t16 = uploadTensor(rt, tbl, [V, C], "f16");
        const h = await runAndRead(rt, (r) => gatherRows(r, t16, ids));
        assertClose(h, gatherRowsRef(tbl, C, idv), { atol: 2e-3, rtol: 1e-3 });
      }
    });
  },
);

Deno.test("embedding ops validate their arguments", gpuTest, async () => {
  await withRuntime((rt) => {
    const rec = new Recorder(rt);
    const t = uploadTensor(rt, new Float32Array(2), [2]);
    const ids = uploadTensor(rt, new Uint32Array(2), [2], "u32");
    assertThrows(() => timestepEmbedding(rec, ids, 8), TypeError, "f32");
    assertThrows(() => timestepEmbedding(rec, t, 2), RangeError, "downscaleFreqShift");
    const pos = { embedDim: 6, gridH: 2, gridW: 2, baseSize: 2, interpolationScale: 1 };
    assertThrows(() => posEmbed2d(rec, pos), RangeError, "multiple of 4");
    assertThrows(() => gatherRows(rec, t, ids), TypeError, "table");
    const table = uploadTensor(rt, new Float32Array(4), [2, 2]);
    assertThrows(() => gatherRows(rec, table, t), TypeError, "ids");
  });
});
