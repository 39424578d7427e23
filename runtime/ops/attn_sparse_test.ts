import {
  assert,
  assertClose,
  assertEquals,
  assertThrows,
  maxAbsDiff,
  rms,
} from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { blocksOf, candidatePermutations, maskWords, selectMask } from "../quant/paro_plan.ts";
import { attentionRef, type HostHeads } from "../reference/attention.ts";
import {
  attnSparseFloatRef,
  attnSparseQuantRef,
  type BlockCodes,
  kMeanRef,
  paddedHeadDim,
  quantizeBlocksRef,
} from "../reference/attn_sparse.ts";
import { attnSparse, attnSparseQuantized, type QuantizedQkv, quantizeQkv } from "./attn_sparse.ts";

/**
 * Random q/k/v [B, T, H·D] with per-channel offsets (so K's mean matters) and, with
 * `outliers`, six values scaled by 6 (they set their blocks' scales).
 */
function inputs(
  B: number,
  T: number,
  H: number,
  D: number,
  seed: number,
  outliers = true,
): Float32Array[] {
  const g = new Prng(seed);
  return [0, 1, 2].map((w) => {
    const x = g.normals(B * T * H * D);
    for (let i = 0; i < x.length; i++) x[i] = x[i] * 1.5 + (w === 1 ? ((i % (H * D)) % 5) - 2 : 0);
    for (let i = 0; i < (outliers ? 6 : 0); i++) x[g.nextU32() % x.length] *= 6;
    return x;
  });
}

/** Per-head orders (different per head) and masks at `density` from a random mass. */
function plan(h: number, w: number, H: number, G: number, density: number, seed: number) {
  const T = h * w;
  const nb = blocksOf(T);
  const cands = candidatePermutations(h, w);
  const perm = new Uint32Array(H * T);
  for (let i = 0; i < H; i++) perm.set(cands[(i + 1) % cands.length].perm, i * T);
  const g = new Prng(seed);
  const masks = new Uint32Array(H * G * nb * maskWords(nb));
  for (let i = 0; i < H * G; i++) {
    const mass = g.uniforms(nb * nb, 0, 1);
    masks.set(selectMask(mass, nb, density), i * nb * maskWords(nb));
  }
  return { perm, masks, nb };
}

const hh = (data: Float32Array, B: number, T: number, W: number): HostHeads => ({
  data,
  batch: B,
  tokens: T,
  width: W,
});

/** Reads GPU codes back into the reference's layout. */
async function readCodes(rt: Runtime, qq: QuantizedQkv) {
  const { batch: B, heads: H, tokens: T, headDim: D } = qq;
  const nb = blocksOf(T);
  const DP = paddedHeadDim(D);
  const sc = await readTensor(rt, qq.scales);
  const n = B * H * nb;
  const pick = (i: number, j: number) =>
    Float32Array.from({ length: n }, (_, x) => sc[(i * n + x) * 2 + j]);
  const bytes = async (t: typeof qq.q) => {
    const u = (await readTensorRaw(rt, t)) as Uint32Array;
    return new Int8Array(u.buffer, u.byteOffset, u.length * 4);
  };
  const vt = await bytes(qq.v);
  const v = new Int8Array(B * H * nb * 64 * DP);
  for (let bh = 0; bh < B * H; bh++) {
    for (let kb = 0; kb < nb; kb++) {
      for (let d = 0; d < D; d++) {
        for (let j = 0; j < 64; j++) {
          v[(bh * nb * 64 + kb * 64 + j) * DP + d] = vt[((bh * nb + kb) * D + d) * 64 + j];
        }
      }
    }
  }
  const codes = (c: Int8Array, i: number): BlockCodes => ({
    codes: c,
    scale: pick(i, 0),
    inv: pick(i, 1),
  });
  return {
    q: codes(await bytes(qq.q), 0),
    k: codes(await bytes(qq.k), 1),
    v: codes(v, 2),
    mean: await readTensor(rt, qq.kmean),
  };
}

Deno.test(
  "quantizeQkv: codes match the reference bit for bit (INT8/INT4, padded D, partial block)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      for (
        const [h, w, H, D, bits] of [[16, 16, 2, 16, 8], [10, 20, 2, 72, 4], [
          5,
          7,
          1,
          8,
          8,
        ]] as const
      ) {
        const B = 2;
        const T = h * w;
        const [xq, xk, xv] = inputs(B, T, H, D, T + D);
        const { perm } = plan(h, w, H, 1, 1, 3);
        const rec = new Recorder(rt);
        const ts = [xq, xk, xv].map((x) => uploadTensor(rt, x, [B, T, H * D]));
        const qq = quantizeQkv(rec, ts[0], ts[1], ts[2], {
          heads: H,
          perm: uploadTensor(rt, perm, [H, T], "u32"),
          bits,
        });
        await rec.submit();
        const got = await readCodes(rt, qq);
        const mean = kMeanRef(hh(xk, B, T, H * D), H, D);
        assertClose(got.mean, mean, { atol: 1e-5, rtol: 1e-5, msg: "K mean" });
        const o = { heads: H, headDim: D, bits };
        const refs = [
          quantizeBlocksRef(hh(xq, B, T, H * D), perm, o),
          quantizeBlocksRef(hh(xk, B, T, H * D), perm, { ...o, mean: got.mean }),
          quantizeBlocksRef(hh(xv, B, T, H * D), perm, o),
        ];
        const gots = [got.q, got.k, got.v];
        for (let i = 0; i < 3; i++) {
          assertClose(gots[i].scale, refs[i].scale, { atol: 0, rtol: 1e-6, msg: `scale ${i}` });
          assertClose(gots[i].inv, refs[i].inv, { atol: 0, rtol: 1e-6, msg: `inv ${i}` });
          // Codes from the GPU's own inv (WGSL division need not be correctly rounded).
          const exact = quantizeBlocksRef(hh([xq, xk, xv][i], B, T, H * D), perm, {
            ...o,
            mean: i === 1 ? got.mean : undefined,
            inv: gots[i].inv,
          });
          assertEquals(
            Array.from(gots[i].codes.subarray(0, exact.codes.length)),
            Array.from(exact.codes),
            `codes ${i} ${h}x${w} D${D} INT${bits}`,
          );
        }
        qq.release();
      }
    });
  },
);

Deno.test(
  "quantizeQkv: K mean over token chunks (T below, at, past a 64-token chunk) and codes of " +
    "fused-qkv views at D 4/64/128, f32 and f16",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const cases = [
        [1, 3, 4, 8],
        [63, 2, 128, 4],
        [64, 1, 64, 8],
        [65, 2, 4, 8],
        [200, 3, 128, 8],
        [321, 1, 64, 4],
      ] as const;
      for (const dtype of rt.info.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
        for (const [T, H, D, bits] of cases) {
          const B = 2;
          const W = 3 * H * D + 4;
          const g = new Prng(T * 7 + D);
          // Per-column offsets up to ±20 so a token summed twice or missed shows in the mean.
          let x = g.normals(B * T * W);
          for (let i = 0; i < x.length; i++) x[i] += ((i % W) % 41) - 20;
          if (dtype === "f16") x = Float32Array.from(Float16Array.from(x));
          const perm = new Uint32Array(H * T);
          for (let h = 0; h < H; h++) {
            for (let i = 0; i < T; i++) perm[h * T + i] = (i * (2 * h + 1) + h) % T;
          }
          const cols = [H * D + 4, 4, 2 * H * D + 4];
          const t = uploadTensor(rt, x, [B, T, W], dtype);
          const rec = new Recorder(rt);
          const views = cols.map((column) => ({ tensor: t, column, width: H * D }));
          const qq = quantizeQkv(rec, views[0], views[1], views[2], {
            heads: H,
            perm: uploadTensor(rt, perm, [H, T], "u32"),
            bits,
          });
          await rec.submit();
          const label = `${dtype} T${T} H${H} D${D} INT${bits}`;
          const got = await readCodes(rt, qq);
          const host = (column: number): HostHeads => ({
            data: x,
            batch: B,
            tokens: T,
            width: W,
            column,
          });
          const mean = kMeanRef(host(cols[1]), H, D);
          assertClose(got.mean, mean, { atol: 1e-5, rtol: 1e-6, msg: `K mean ${label}` });
          const gots = [got.q, got.k, got.v];
          for (let i = 0; i < 3; i++) {
            const exact = quantizeBlocksRef(host(cols[i]), perm, {
              heads: H,
              headDim: D,
              bits,
              mean: i === 1 ? got.mean : undefined,
              inv: gots[i].inv,
            });
            assertClose(gots[i].scale, exact.scale, {
              atol: 0,
              rtol: 1e-6,
              msg: `scale ${i} ${label}`,
            });
            assertEquals(
              Array.from(gots[i].codes.subarray(0, exact.codes.length)),
              Array.from(exact.codes),
              `codes ${i} ${label}`,
            );
          }
          qq.release();
          t.release();
        }
      }
    });
  },
);

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
