import { assert, assertClose, assertEquals, assertThrows, rms } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { type DType, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { fluxPositionIds, ropeFreqs, ropeRef } from "../reference/rope.ts";
import { rope } from "./rope.ts";

function stored(x: Float32Array, dtype: DType): Float32Array {
  return dtype === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
}

Deno.test("FLUX position ids and the rotation table", () => {
  // 2 text tokens (ids 0), then a 2×3 grid (0, row, col) in raster order.
  assertEquals(Array.from(fluxPositionIds(2, 2, 3)), [
    ...[0, 0, 0, 0, 0, 0],
    ...[0, 0, 0, 0, 0, 1, 0, 0, 2],
    ...[0, 1, 0, 0, 1, 1, 0, 1, 2],
  ]);
  // axes (2, 4): pair 0 is axis 0 (freq 1), pairs 1, 2 axis 1 (freqs 1, θ^(−1/2) = 0.01).
  const f = ropeFreqs([5, 7], [2, 4]);
  const want = [5, 7, 0.07].flatMap((a) => [Math.fround(Math.cos(a)), Math.fround(Math.sin(a))]);
  assertClose(f, want, { atol: 0, rtol: 0 });
  // Text tokens (all ids 0) rotate by nothing.
  const t = ropeFreqs(fluxPositionIds(1, 1, 1), [4, 6, 6]);
  assertEquals(Array.from(t.subarray(0, 16)), [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
  assertThrows(() => ropeFreqs([1, 2, 3], [2, 3]), RangeError);
});

Deno.test("rope of two parts with per-part RMSNorm matches the reference", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const g = new Prng(5);
    // Odd heads (3), head dim 16 (axes 4, 6, 6), a 3×5 grid after 7 text tokens, batch 2;
    // and head dim 128 (FLUX.1) with one head, batch 1, one text token.
    const cases = [
      { B: 2, L: 7, h: 3, w: 5, H: 3, D: 16, axes: [4, 6, 6] },
      { B: 1, L: 1, h: 2, w: 2, H: 1, D: 128, axes: [16, 56, 56] },
    ];
    for (const dtype of ["f32", "f16"] as const) {
      if (dtype === "f16" && !rt.info.f16) continue;
      for (const { B, L, h, w, H, D, axes } of cases) {
        const T = h * w;
        const xt = stored(g.normals(B * L * H * D), dtype);
        const xi = stored(g.normals(B * T * H * D).map((v) => 4 * v + 1), dtype);
        const wt = stored(g.normals(D), dtype);
        const wi = stored(g.normals(D), dtype);
        const f = ropeFreqs(fluxPositionIds(L, h, w), axes);
        const freqs = uploadTensor(rt, f, [L + T, D / 2, 2]);
        const parts = [
          { data: xt, tokens: L, width: H * D, normWeight: wt },
          { data: xi, tokens: T, width: H * D, normWeight: wi },
        ];
        const ref = ropeRef(parts, f, { batch: B, heads: H, headDim: D, normalize: true });
        // Text as [B·L, W] rows (as a linear writes them) with batch given; image 3-D.
        const got = await runAndRead(rt, (r) =>
          rope(
            r,
            [
              {
                tensor: uploadTensor(rt, xt, [B * L, H * D], dtype),
                normWeight: uploadTensor(rt, wt, [D], dtype),
              },
              {
                tensor: uploadTensor(rt, xi, [B, T, H * D], dtype),
                normWeight: uploadTensor(rt, wi, [D], dtype),
              },
            ],
            freqs,
            { heads: H, normalize: true, batch: B },
          ));
        const tol = dtype === "f32" ? 1e-5 * rms(ref) : 2e-3 * rms(ref);
        assertClose(got, ref, { atol: tol, rtol: 0, msg: `${dtype} D=${D}` });
      }
    }
  });
});

Deno.test("rope of one part, no norm, read from a column of a wider row", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const g = new Prng(6);
    const [B, S, H, D, W, col] = [3, 5, 2, 6, 20, 7];
    const xs = g.normals(B * S * W);
    const ids = Float32Array.from({ length: S * 3 }, (_, i) => (i * 7) % 11);
    const f = ropeFreqs(ids, [2, 2, 2], 10000);
    const ref = ropeRef([{ data: xs, tokens: S, width: W, column: col }], f, {
      batch: B,
      heads: H,
      headDim: D,
    });
    const got = await runAndRead(
      rt,
      (r) =>
        rope(
          r,
          [{ tensor: uploadTensor(rt, xs, [B, S, W]), column: col }],
          uploadTensor(rt, f, [S, 3, 2]),
          {
            heads: H,
            headDim: D,
          },
        ),
    );
    assertClose(got, ref, { atol: 1e-6, rtol: 1e-6 });
    // The rotation keeps each pair's length (a norm-free rope is an isometry).
    const x0 = xs.subarray(col, col + 2);
    const n0 = Math.hypot(x0[0], x0[1]);
    assert(Math.abs(Math.hypot(got[0], got[1]) - n0) < 1e-5, "pair length changed");
  });
});

Deno.test("rope rejects bad arguments", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const x = uploadTensor(rt, new Float32Array(2 * 4 * 8), [2, 4, 8]);
    const f = uploadTensor(rt, new Float32Array(4 * 8), [4, 4, 2]);
    await runAndRead(rt, (r) => {
      assertThrows(() => rope(r, [], f, { heads: 1 }), RangeError, "one or two");
      assertThrows(() => rope(r, [x], f, { heads: 3 }), RangeError, "headDim");
      assertThrows(() => rope(r, [x, x], f, { heads: 1 }), RangeError, "freqs");
      assertThrows(
        () => rope(r, [{ tensor: x, column: 4 }], f, { heads: 1, headDim: 8 }),
        RangeError,
        "exceed",
      );
      assertThrows(() => rope(r, [x], f, { heads: 1, out: x }), RangeError, "share");
      return rope(r, [x], f, { heads: 1 });
    });
  });
});
