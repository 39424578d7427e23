/**
 * quantizeQkv (runtime/ops/attn_sparse.ts): the sparse attention's INT8/INT4 codes and K mean
 * against the CPU reference, bit for bit. The attention kernels' tests: attn_sparse_test.ts.
 */
import { assertClose, assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import type { HostHeads } from "../reference/attention.ts";
import { kMeanRef, quantizeBlocksRef } from "../reference/attn_sparse.ts";
import { quantizeQkv } from "./attn_sparse.ts";
import { hh, inputs, plan, readCodes } from "./attn_sparse_test_util.ts";

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
