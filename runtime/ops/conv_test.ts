import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import {
  conv3x3Ref,
  conv3x3WeightNhwc,
  groupNormRef,
  type ImageShape,
  transposeRef,
} from "../reference/conv.ts";
import { conv3x3, transposeImage } from "./conv.ts";
import { groupNorm } from "./group_norm.ts";

Deno.test(
  "conv3x3 matches the reference: padding, upsampling, residual, row chunks",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const g = new Prng(3);
      const s: ImageShape = { B: 2, H: 5, W: 7, C: 8 };
      const N = 5;
      const xs = g.normals(s.B * s.H * s.W * s.C);
      const torchW = g.normals(N * s.C * 9).map((v) => v / 6);
      const wn = conv3x3WeightNhwc(torchW, N, s.C);
      const bias = g.normals(N);
      const x = uploadTensor(rt, xs, [s.B * s.H * s.W, s.C]);
      const w = uploadTensor(rt, wn, [N, 9 * s.C]);
      const b = uploadTensor(rt, bias, [N]);
      for (const upsample of [false, true]) {
        const f = upsample ? 2 : 1;
        const M = s.B * s.H * f * s.W * f;
        const res = g.normals(M * N);
        const r = uploadTensor(rt, res, [M, N]);
        const ref = conv3x3Ref(xs, s, wn, bias, N, upsample).map((v, i) => v + res[i]);
        // The GEMM reading x as its im2col; an explicit im2col of whole samples, then in
        // chunks of 2 output rows (the im2col of one row: W'·9C·4 bytes).
        const ways = [
          { im2col: "implicit" },
          { im2col: "explicit" },
          { im2col: "explicit", chunkBytes: 2 * s.W * f * 9 * s.C * 4 },
        ] as const;
        for (const way of ways) {
          const got = await runAndRead(
            rt,
            (rec) => conv3x3(rec, x, s, w, { bias: b, upsample, residual: r, ...way }),
          );
          const msg = `upsample ${upsample} ${JSON.stringify(way)}`;
          assertClose(got, ref, { atol: 1e-5, rtol: 1e-5, msg });
        }
        r.release();
      }
      assertThrows(() => conv3x3(null as never, x, s, b), RangeError, "w must be [N, 72]");
      for (const t of [x, w, b]) t.release();
    });
  },
);

Deno.test("conv3x3WeightNhwc reorders torch's [N, C, 3, 3] taps to [N, 3, 3, C]", () => {
  const w = Float32Array.from({ length: 2 * 3 * 9 }, (_, i) => i);
  const r = conv3x3WeightNhwc(w, 2, 3);
  // n 1, tap (ky 2, kx 0) = 6, channel 2: torch index (1·3 + 2)·9 + 6 = 51.
  assertEquals(r[(1 * 9 + 6) * 3 + 2], 51);
});

Deno.test("transposeImage swaps channels first and last", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const xs = new Prng(4).normals(2 * 12 * 5);
    const x = uploadTensor(rt, xs, [2, 12, 5]);
    const got = await runAndRead(rt, (rec) => transposeImage(rec, x, 2, 12, 5));
    assertEquals(got, transposeRef(xs, 2, 12, 5));
    x.release();
  });
});

Deno.test("groupNorm matches torch's GroupNorm (+ SiLU) over several chunks", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const g = new Prng(5);
    // 64×64 positions × 4 channels a group: two chunks a group. A large mean per channel.
    const s: ImageShape = { B: 2, H: 64, W: 64, C: 16 };
    const xs = g.normals(s.B * s.H * s.W * s.C).map((v, i) => 3 * v + (i % s.C) * 10);
    const gamma = g.normals(s.C);
    const beta = g.normals(s.C);
    const x = uploadTensor(rt, xs, [s.B * s.H * s.W, s.C]);
    const gt = uploadTensor(rt, gamma, [s.C]);
    const bt = uploadTensor(rt, beta, [s.C]);
    for (const silu of [false, true]) {
      const got = await runAndRead(
        rt,
        (rec) => groupNorm(rec, x, s, gt, bt, { groups: 4, eps: 1e-6, silu }),
      );
      const ref = groupNormRef(xs, s, 4, gamma, beta, 1e-6, silu);
      assertClose(got, ref, { atol: 2e-5, rtol: 1e-4, msg: `silu ${silu}` });
    }
    assertThrows(() => groupNorm(null as never, x, s, gt, bt, { groups: 5 }), RangeError, "divide");
    for (const t of [x, gt, bt]) t.release();
  });
});
