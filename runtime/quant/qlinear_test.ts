import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { lutDequantize, tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { gemmRef } from "../reference/gemm.ts";
import { type ActBits, IdentityTransform, QuantLinear } from "./qlinear.ts";

Deno.test(
  "QuantLinear: A16 equals X·Ŵᵀ + b; A8 through the identity transform equals the default",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [M, N, K] = [24, 40, 64];
      const g = new Prng(8);
      const xs = g.normals(M * K);
      const ws = g.normals(N * K).map((v) => v / 8);
      const bias = g.normals(N);
      const q = tlqQuantize({ data: ws, rows: N, cols: K }, { bits: 4 });
      const x = uploadTensor(rt, xs, [M, K]);
      const a16 = new QuantLinear(rt, "l", q, bias, { abits: 16 });
      assertEquals([a16.inFeatures, a16.outFeatures, a16.wbits], [K, N, 4]);
      // Codes (4 bits) + TLQ compact parameters (8 bytes a row, η) + bias.
      assertEquals(a16.weightBytes, (N * K) / 2 + N * 8 + 4 + N * 4);
      assertClose(
        await runAndRead(rt, (r) => a16.forward(r, x)),
        gemmRef(xs, lutDequantize(q), M, N, K, { bias }),
        { atol: 1e-4, rtol: 1e-4 },
      );
      const a8 = new QuantLinear(rt, "l", q, bias, { abits: 8 });
      const a8t = new QuantLinear(rt, "l", q, bias, {
        abits: 8,
        transform: new IdentityTransform(),
      });
      const y1 = await runAndRead(rt, (r) => a8.forward(r, x));
      const y2 = await runAndRead(rt, (r) => a8t.forward(r, x));
      assertEquals(Array.from(y1), Array.from(y2));
      // A8 stays near A16 (per-token int8 activations, int8 LUT).
      const y16 = await runAndRead(rt, (r) => a16.forward(r, x));
      let e = 0;
      let s = 0;
      for (let i = 0; i < y1.length; i++) {
        e += (y1[i] - y16[i]) ** 2;
        s += y16[i] ** 2;
      }
      assert(Math.sqrt(e / s) < 0.03, `A8 vs A16 relative error ${Math.sqrt(e / s)}`);
      // The identity's apply is a copy the caller owns.
      const c = await runAndRead(rt, (r) => new IdentityTransform().apply(r, x));
      assertEquals(Array.from(c), Array.from(xs));
      for (const l of [a16, a8, a8t]) l.release();
    });
  },
);

Deno.test("QuantLinear rejects bad abits and bias lengths", gpuTest, async () => {
  await withRuntime((rt) => {
    const q = tlqQuantize({ data: new Prng(9).normals(8 * 16), rows: 8, cols: 16 }, { bits: 3 });
    assertThrows(
      () => new QuantLinear(rt, "l", q, undefined, { abits: 5 as ActBits }),
      RangeError,
      "abits",
    );
    assertThrows(
      () => new QuantLinear(rt, "l", q, new Float32Array(3), { abits: 8 }),
      RangeError,
      "bias has 3",
    );
  });
});
