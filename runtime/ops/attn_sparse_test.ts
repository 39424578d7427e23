import {
  assert,
  assertClose,
  assertEquals,
  assertThrows,
  maxAbsDiff,
  rms,
} from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { maskWords } from "../quant/paro_plan.ts";
import { attentionRef } from "../reference/attention.ts";
import { attnSparseFloatRef, attnSparseQuantRef } from "../reference/attn_sparse.ts";
import { attnSparse, attnSparseQuantized, quantizeQkv } from "./attn_sparse.ts";
import { hh, inputs, plan, readCodes } from "./attn_sparse_test_util.ts";

Deno.test(
  "attnSparse INT8/INT4 matches the kernel's reference on its own codes; dot4 emulation is bit-identical",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Every density × bit width on a 16×16 grid (256 tokens), then odd shapes.
      type Case = {
        h: number;
        w: number;
        H: number;
        D: number;
        B: number;
        bits: 8 | 4;
        density: number;
        pScale: "fixed" | "block";
      };
      const cases: Case[] = [];
      for (const density of [0.5, 0.3, 0.2]) {
        for (const bits of [8, 4] as const) {
          cases.push({ h: 16, w: 16, H: 2, D: 16, B: 2, bits, density, pScale: "fixed" });
        }
      }
      cases.push(
        { h: 16, w: 16, H: 2, D: 16, B: 1, bits: 8, density: 0.3, pScale: "block" },
        { h: 10, w: 15, H: 3, D: 24, B: 1, bits: 4, density: 0.5, pScale: "fixed" },
        { h: 9, w: 9, H: 1, D: 72, B: 2, bits: 8, density: 1, pScale: "fixed" },
        // d72 (the tiled kernel's partial channel slot) with a sparse mask over 3 blocks.
        { h: 12, w: 15, H: 2, D: 72, B: 1, bits: 8, density: 0.5, pScale: "block" },
        // d64: the benchmark's head dim (whole channel slots, 4 Q/K vec4s per row).
        { h: 10, w: 13, H: 1, D: 64, B: 1, bits: 4, density: 0.5, pScale: "fixed" },
        // 36 key blocks: mask rows of two words, walked across the word boundary.
        { h: 48, w: 48, H: 1, D: 16, B: 1, bits: 8, density: 0.2, pScale: "fixed" },
      );
      for (const c of cases) {
        const T = c.h * c.w;
        const G = 2;
        const xs = inputs(c.B, T, c.H, c.D, T * 7 + c.D, c.D !== 16);
        const { perm, masks, nb } = plan(c.h, c.w, c.H, G, c.density, T);
        const pt = uploadTensor(rt, perm, [c.H, T], "u32");
        const mt = uploadTensor(rt, masks, [c.H, G, nb, maskWords(nb)], "u32");
        const ts = xs.map((x) => uploadTensor(rt, x, [c.B, T, c.H * c.D]));
        const rec = new Recorder(rt);
        const qq = quantizeQkv(rec, ts[0], ts[1], ts[2], { heads: c.H, perm: pt, bits: c.bits });
        const o = { perm: pt, masks: mt, group: 1, pScale: c.pScale };
        const out = attnSparseQuantized(rec, qq, o);
        const emu = attnSparseQuantized(rec, qq, { ...o, tuning: { emulateDot4: true } });
        const wide = attnSparseQuantized(rec, qq, {
          ...o,
          tuning: { threads: 64, rowsPerThread: 1 },
        });
        // The GPUs' register-tiled kernel, forced here (same codes, same P codes).
        const tiled = attnSparseQuantized(rec, qq, { ...o, tuning: { kernel: "tiled" } });
        const tiledEmu = attnSparseQuantized(rec, qq, {
          ...o,
          tuning: { kernel: "tiled", emulateDot4: true },
        });
        await rec.submit();
        const got = await readTensor(rt, out);
        const label =
          `${c.h}x${c.w} H${c.H} D${c.D} B${c.B} INT${c.bits} d${c.density} ${c.pScale}`;
        assertEquals(
          Array.from(await readTensor(rt, emu)),
          Array.from(got),
          `emulated dot4 ${label}`,
        );
        const ops = await readCodes(rt, qq);
        const ref = attnSparseQuantRef(ops, perm, {
          heads: c.H,
          headDim: c.D,
          batch: c.B,
          tokens: T,
          masks,
          groups: G,
          group: 1,
          bits: c.bits,
          pScale: c.pScale,
        });
        // exp2 of the GPU and of the host may put a P code on the other side of a rounding
        // boundary: one code step of one key moves an output by ≤ max|v|/127 (INT8) relative
        // to l ≥ 1, a rare event; everything else agrees to f32 rounding.
        const vmax = Math.max(...Array.from(xs[2], Math.abs));
        const d = maxAbsDiff(got, ref);
        assert(d.max <= vmax / 127 / 4, `${label}: max |diff| ${d.max} at ${d.at}`);
        let close = 0;
        for (let i = 0; i < got.length; i++) {
          close += +(Math.abs(got[i] - ref[i]) <= 1e-5 * (1 + Math.abs(ref[i])));
        }
        assert(close / got.length >= 0.99, `${label}: only ${close}/${got.length} within 1e-5`);
        assertClose(await readTensor(rt, wide), got, {
          atol: 1e-5,
          rtol: 1e-5,
          msg: `64 threads ${label}`,
        });
        // Tiled: the same bound against the reference, and the rows kernel's output up to
        // f32 rounding (its row sums add 16 per-thread partials instead of one running sum).
        const gotT = await readTensor(rt, tiled);
        const dT = maxAbsDiff(gotT, ref);
        assert(dT.max <= vmax / 127 / 4, `tiled ${label}: max |diff| ${dT.max} at ${dT.at}`);
        assertClose(gotT, got, { atol: 1e-5, rtol: 1e-5, msg: `tiled vs rows ${label}` });
        assertEquals(
          Array.from(await readTensor(rt, tiledEmu)),
          Array.from(gotT),
          `tiled, emulated dot4 ${label}`,
        );
        // And close to float attention under the same mask (the quantization error itself).
        const fl = attnSparseFloatRef(
          hh(xs[0], c.B, T, c.H * c.D),
          hh(xs[1], c.B, T, c.H * c.D),
          hh(xs[2], c.B, T, c.H * c.D),
          perm,
          {
            heads: c.H,
            headDim: c.D,
            masks,
            groups: G,
            group: 1,
          },
        );
        const rel = rms(got.map((x, i) => x - fl[i])) / rms(fl);
        // A sanity bound, ~1.5× the measured errors (INT8 0.029–0.042, INT4 0.46–0.65 rms
        // relative to the float output: the softmax of these random scores is peaked, so P
        // codes carry most of the error; INT4 P has 7 levels).
        assert(rel < (c.bits === 8 ? 0.06 : 0.9), `${label}: error vs float ${rel}`);
        qq.release();
      }
    });
  },
);

Deno.test(
  "attnSparse float path matches the masked-softmax reference; full mask in raster order is dense attention",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const dtypes = rt.info.f16 ? (["f32", "f16"] as const) : (["f32"] as const);
      for (const dt of dtypes) {
        for (
          const [h, w, H, D, B, density] of [[16, 16, 2, 16, 2, 0.3], [10, 13, 2, 72, 1, 0.5], [
            3,
            5,
            1,
            8,
            1,
            1,
          ]] as const
        ) {
          const T = h * w;
          let xs = inputs(B, T, H, D, T + D + 1);
          if (dt === "f16") xs = xs.map((x) => Float32Array.from(Float16Array.from(x)));
          const { perm, masks, nb } = plan(h, w, H, 1, density, T + 5);
          const ts = xs.map((x) => uploadTensor(rt, x, [B, T, H * D], dt));
          const rec = new Recorder(rt);
          const out = attnSparse(rec, ts[0], ts[1], ts[2], {
            heads: H,
            perm: uploadTensor(rt, perm, [H, T], "u32"),
            masks: uploadTensor(rt, masks, [H, 1, nb, maskWords(nb)], "u32"),
            bits: 16,
          });
          await rec.submit();
          const ref = attnSparseFloatRef(
            hh(xs[0], B, T, H * D),
            hh(xs[1], B, T, H * D),
            hh(xs[2], B, T, H * D),
            perm,
            {
              heads: H,
              headDim: D,
              masks,
              groups: 1,
              group: 0,
            },
          );
          const tol = dt === "f32" ? { atol: 2e-5, rtol: 2e-5 } : { atol: 4e-3, rtol: 4e-3 };
          assertClose(await readTensor(rt, out), ref, { ...tol, msg: `${dt} ${h}x${w} D${D}` });
          if (density === 1) {
            const dense = attentionRef(
              hh(xs[0], B, T, H * D),
              hh(xs[1], B, T, H * D),
              hh(xs[2], B, T, H * D),
              { heads: H, headDim: D },
            );
            assertClose(ref, dense, { atol: 1e-6, rtol: 1e-6, msg: "full mask = dense" });
          }
        }
      }
    });
  },
);

Deno.test(
  "attnSparse INT8 tiled kernel with f16 operands matches the rows kernel",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      if (!rt.info.f16) return;
      const [h, w, H, D, B] = [10, 11, 2, 24, 2];
      const T = h * w;
      const xs = inputs(B, T, H, D, 5).map((x) => Float32Array.from(Float16Array.from(x)));
      const { perm, masks, nb } = plan(h, w, H, 1, 0.5, 9);
      const ts = xs.map((x) => uploadTensor(rt, x, [B, T, H * D], "f16"));
      const o = {
        heads: H,
        perm: uploadTensor(rt, perm, [H, T], "u32"),
        masks: uploadTensor(rt, masks, [H, 1, nb, maskWords(nb)], "u32"),
        bits: 8 as const,
      };
      const rec = new Recorder(rt);
      const tiled = attnSparse(rec, ts[0], ts[1], ts[2], { ...o, tuning: { kernel: "tiled" } });
      const rows = attnSparse(rec, ts[0], ts[1], ts[2], o);
      await rec.submit();
      assertEquals(tiled.dtype, "f16");
      // Both write f16 from f32 values that agree to ~1e-7: at most one f16 step apart.
      assertClose(await readTensor(rt, tiled), await readTensor(rt, rows), {
        atol: 2e-3,
        rtol: 1e-3,
        msg: "f16 tiled vs rows",
      });
    });
  },
);

Deno.test("attnSparse rejects bad arguments", gpuTest, async () => {
  await withRuntime((rt) => {
    const x = uploadTensor(rt, new Float32Array(2 * 64 * 32), [2, 64, 32]);
    const perm = uploadTensor(rt, new Uint32Array(128).map((_, i) => i % 64), [2, 64], "u32");
    const masks = uploadTensor(rt, new Uint32Array(2), [2, 1, 1, 1], "u32");
    const rec = new Recorder(rt);
    const o = { heads: 2, perm, masks, bits: 8 as const };
    assertThrows(() => attnSparse(rec, x, x, x, { ...o, heads: 0 }), RangeError, "heads");
    assertThrows(() => attnSparse(rec, x, x, x, { ...o, heads: 3 }), RangeError, "headDim");
    assertThrows(() => attnSparse(rec, x, x, x, { ...o, bits: 6 as 8 }), RangeError, "bits");
    assertThrows(() => attnSparse(rec, x, x, x, { ...o, group: 1 }), RangeError, "group");
    assertThrows(() => attnSparse(rec, x, x, x, { ...o, perm: masks }), RangeError, "perm");
    assertThrows(() => attnSparse(rec, x, x, x, { ...o, masks: perm }), RangeError, "masks");
    assertThrows(
      () => attnSparse(rec, x, x, x, { ...o, tuning: { threads: 24 } }),
      RangeError,
      "divide 64",
    );
    assertThrows(
      () => attnSparse(rec, x, x, x, { ...o, tuning: { kernel: "wide" as "rows" } }),
      RangeError,
      "tuning.kernel",
    );
    const y = uploadTensor(rt, new Float32Array(2 * 63 * 32), [2, 63, 32]);
    assertThrows(() => attnSparse(rec, x, y, x, o), RangeError, "tokens");
  });
});

Deno.test({
  name:
    "attnSparse: the GPU launch shape (head dim compiled in, 64 threads × 1 row) gives the same bits",
  // Compiling the unrolled pipelines takes minutes on lavapipe: WEBDIT_SLOW_TESTS=1 runs it.
  ignore: Deno.env.get("WEBDIT_SLOW_TESTS") !== "1",
  ...gpuTest,
  fn: async () => {
    await withRuntime(async (rt) => {
      const [h, w, H, B, D] = [16, 12, 2, 1, 64];
      const T = h * w;
      const xs = inputs(B, T, H, D, 64, false);
      const { perm, masks, nb } = plan(h, w, H, 1, 0.5, 11);
      const ts = xs.map((x) => uploadTensor(rt, x, [B, T, H * D]));
      const o = {
        heads: H,
        perm: uploadTensor(rt, perm, [H, T], "u32"),
        masks: uploadTensor(rt, masks, [H, 1, nb, maskWords(nb)], "u32"),
      };
      const tuning = { dynamicHeadDim: false, threads: 64, rowsPerThread: 1 };
      for (const bits of [8, 4, 16] as const) {
        const rec = new Recorder(rt);
        const a = attnSparse(rec, ts[0], ts[1], ts[2], { ...o, bits, tuning });
        const b = attnSparse(rec, ts[0], ts[1], ts[2], { ...o, bits });
        await rec.submit();
        assertEquals(
          Array.from(await readTensor(rt, a)),
          Array.from(await readTensor(rt, b)),
          `bits ${bits}`,
        );
      }
    });
  },
});
