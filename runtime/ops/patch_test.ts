import { assertClose, assertEquals, assertThrows, rms } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { concatRef, im2colRef, patchConvRef, unpatchifyRef } from "../reference/patch.ts";
import { concat, im2col, slice, unpatchify } from "./patch.ts";

Deno.test(
  "im2col matches the reference, and im2col·Wᵀ + b is PatchEmbed's conv",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // H = 7 is not a multiple of p = 2: the conv (and im2col) drop the last row.
      const [B, C, H, W, p, O] = [2, 3, 7, 10, 2, 5];
      const g = new Prng(13);
      const xs = g.normals(B * C * H * W);
      const x = uploadTensor(rt, xs, [B, C, H, W]);
      const cols = await runAndRead(rt, (r) => im2col(r, x, p));
      assertEquals([...cols], [...im2colRef(xs, [B, C, H, W], p)]);
      // Host GEMM of the GPU columns with the flattened conv weight [O, C·p·p].
      const K = C * p * p;
      const ws = g.normals(O * K);
      const bs = g.normals(O);
      const [h, w] = [3, 5];
      const conv = patchConvRef(xs, [B, C, H, W], ws, O, p, bs); // [B, O, h, w]
      const got = new Float32Array(B * h * w * O);
      const want = new Float32Array(B * h * w * O); // flatten(2).transpose(1, 2): [B, h·w, O]
      for (let row = 0; row < B * h * w; row++) {
        for (let o = 0; o < O; o++) {
          let s = bs[o];
          for (let k = 0; k < K; k++) s += cols[row * K + k] * ws[o * K + k];
          got[row * O + o] = s;
          const b = Math.floor(row / (h * w));
          want[row * O + o] = conv[(b * O + o) * h * w + (row % (h * w))];
        }
      }
      assertClose(got, want, { atol: 1e-5 * rms(want), rtol: 1e-6 });
      // f16 storage copies exactly too.
      if (rt.info.f16) {
        const x16 = uploadTensor(rt, xs, [B, C, H, W], "f16");
        const c16 = await runAndRead(rt, (r) => im2col(r, x16, p));
        const ref16 = im2colRef(Float32Array.from(Float16Array.from(xs)), [B, C, H, W], p);
        assertEquals([...c16], [...ref16]);
      }
    });
  },
);

Deno.test("unpatchify is PixArt's reshape + einsum nhwpqc->nchpwq", gpuTest, async () => {
  await withRuntime(async (rt) => {
    // Hand-checked element: token (h=1, w=0) of a 2×3 grid, p = 2, C = 2, sub-pixel
    // (p=1, q=0), channel 1 lands at out[0, 1, 1·2 + 1, 0·2 + 0].
    const [B, h, w, p, C] = [1, 2, 3, 2, 2];
    const xs = Float32Array.from({ length: B * h * w * p * p * C }, (_, i) => i);
    const x = uploadTensor(rt, xs, [B, h * w, p * p * C]);
    const got = await runAndRead(
      rt,
      (r) => unpatchify(r, x, { height: h, width: w, patch: p, channels: C }),
    );
    const src = ((1 * w + 0) * p * p + 1 * p + 0) * C + 1;
    assertEquals(got[(1 * h * p + 3) * w * p + 0], src);
    assertEquals([...got], [...unpatchifyRef(xs, B, h, w, p, C)]);
    // Odd grid, batch 3, 8 output channels (learned sigma), as [B·h·w, p·p·C].
    const [B2, h2, w2, p2, C2] = [3, 5, 7, 2, 8];
    const ys = new Prng(14).normals(B2 * h2 * w2 * p2 * p2 * C2);
    const y = uploadTensor(rt, ys, [B2 * h2 * w2, p2 * p2 * C2]);
    const got2 = await runAndRead(
      rt,
      (r) => unpatchify(r, y, { height: h2, width: w2, patch: p2, channels: C2 }),
    );
    assertEquals([...got2], [...unpatchifyRef(ys, B2, h2, w2, p2, C2)]);
  });
});

Deno.test("concat and slice along the last dim and the token dim", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const g = new Prng(15);
    const a = g.normals(2 * 3 * 5);
    const b = g.normals(2 * 3 * 7);
    const c = g.normals(2 * 4 * 5);
    const ta = uploadTensor(rt, a, [2, 3, 5]);
    const tb = uploadTensor(rt, b, [2, 3, 7]);
    const tc = uploadTensor(rt, c, [2, 4, 5]);
    const last = await runAndRead(rt, (r) => concat(r, [ta, tb]));
    assertEquals([...last], [...concatRef([a, b], [[2, 3, 5], [2, 3, 7]], 2)]);
    // FLUX-style [text, image] along tokens.
    const tokens = await runAndRead(rt, (r) => concat(r, [tc, ta], 1));
    assertEquals([...tokens], [...concatRef([c, a], [[2, 4, 5], [2, 3, 5]], 1)]);
    // slice undoes concat.
    const back = await runAndRead(rt, (r) => slice(r, concat(r, [ta, tb]), -1, 5, 7));
    assertEquals([...back], [...b]);
    const mid = await runAndRead(rt, (r) => slice(r, tc, 1, 1, 2));
    const want = new Float32Array(2 * 2 * 5);
    for (let n = 0; n < 2; n++) want.set(c.subarray(n * 20 + 5, n * 20 + 15), n * 10);
    assertEquals([...mid], [...want]);
    if (rt.info.f16) {
      // f16 rows of odd length: elements straddle 4-byte words.
      const a16 = uploadTensor(rt, a, [2, 3, 5], "f16");
      const b16 = uploadTensor(rt, b, [2, 3, 7], "f16");
      const h = await runAndRead(rt, (r) => concat(r, [a16, b16]));
      const r16 = (x: Float32Array) => Float32Array.from(Float16Array.from(x));
      assertEquals([...h], [...concatRef([r16(a), r16(b)], [[2, 3, 5], [2, 3, 7]], 2)]);
    }
  });
});

Deno.test("layout ops validate their arguments", gpuTest, async () => {
  await withRuntime((rt) => {
    const rec = new Recorder(rt);
    const x = uploadTensor(rt, new Float32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
    const y = uploadTensor(rt, new Float32Array(2 * 3 * 5), [2, 3, 5]);
    const z = uploadTensor(rt, new Float32Array(2 * 4 * 6), [2, 4, 6]);
    assertThrows(() => im2col(rec, x, 5), RangeError, "patch");
    assertThrows(() => im2col(rec, y, 2), RangeError, "[B, C, H, W]");
    assertThrows(
      () => unpatchify(rec, y, { height: 1, width: 1, patch: 2, channels: 2 }),
      RangeError,
      "is not",
    );
    assertThrows(() => concat(rec, [y, z]), RangeError, "does not match");
    assertThrows(() => slice(rec, y, 2, 3, 3), RangeError, "outside");
    assertThrows(() => concat(rec, [y], -1, y), RangeError, "share");
  });
});
