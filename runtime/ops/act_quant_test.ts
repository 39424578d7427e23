import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import {
  createTensor,
  readTensor,
  readTensorRaw,
  uploadTensor,
  writeTensor,
} from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { unpackInt8 } from "../quant/pack.ts";
import { actQuantErrorRef, actQuantRef, roundHalfEven } from "../reference/act_quant.ts";
import { actQuant, actQuantError, type ActQuantVersion } from "./act_quant.ts";

/**
 * Compares GPU codes with the reference: equal everywhere, except ±1 where x·inv lies
 * within 1e-4 of a rounding tie (the GPU's 1/Δ may differ from the host's by an ulp).
 */
function checkCodes(got: Int8Array, ref: ReturnType<typeof actQuantRef>, what: string): void {
  let ties = 0;
  for (let i = 0; i < got.length; i++) {
    if (got[i] === ref.codes[i]) continue;
    const near = Math.abs(Math.abs(ref.scaled[i] % 1) - 0.5) < 1e-4;
    assert(
      near && Math.abs(got[i] - ref.codes[i]) === 1,
      `${what}: code ${i} ${got[i]} vs ${ref.codes[i]}`,
    );
    ties++;
  }
  assert(ties <= 2, `${what}: ${ties} tie mismatches`);
}

/**
 * Relative tolerance of a scale Δ = amax/qmax: 1e-7 on CPU adapters; on GPUs WGSL's division
 * bound, 2.5 ulp (an ulp is at most 2^-23 of the value).
 */
function divTol(rt: Runtime): number {
  return rt.info.fallback ? 1e-7 : 2.5 * 2 ** -23;
}

Deno.test("roundHalfEven rounds ties to even like WGSL round()", () => {
  assertEquals([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 2, -3]);
});

Deno.test(
  "actQuant matches the reference at odd shapes, A8/A6/A4, both layouts, f32",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const g = new Prng(5);
      for (const [M, K] of [[1, 9], [7, 36], [33, 101]] as const) {
        const xs = g.normals(M * K).map((v, i) => (i % 17 === 3 ? 40 : 2) * v);
        xs.fill(0, 0, K); // row 0 all zero: Δ = 0, codes 0
        for (const bits of [8, 6, 4]) {
          for (const version of ["rows", "wg"] as ActQuantVersion[]) {
            const x = uploadTensor(rt, xs, [M, K]);
            const rec = new Recorder(rt);
            const a = actQuant(rec, x, bits, { version });
            await rec.submit();
            assertEquals(a.q.shape, [M, Math.ceil(K / 4)]);
            const words = (await readTensorRaw(rt, a.q)) as Uint32Array;
            const ref = actQuantRef(xs, M, K, bits);
            const what = `${M}x${K} A${bits} ${version}`;
            checkCodes(unpackInt8(words, M, K), ref, what);
            // Padding of the last word of each row is zero.
            if (K % 4) {
              for (let m = 0; m < M; m++) {
                const w = words[m * Math.ceil(K / 4) + Math.ceil(K / 4) - 1];
                assertEquals(w >>> (8 * (K % 4)), 0, `${what}: padding of row ${m}`);
              }
            }
            const sc = await readTensor(rt, a.scales);
            for (let m = 0; m < M; m++) {
              const tol = divTol(rt) * ref.scales[m];
              assert(Math.abs(sc[m] - ref.scales[m]) <= tol, `${what}: Δ ${m}`);
            }
            assertEquals(sc[0], 0);
            for (const t of [x, a.q, a.scales]) t.release();
          }
        }
      }
    });
  },
);

Deno.test("actQuant reads f16 activations", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, K] = [6, 64];
    const xs = Float32Array.from(Float16Array.from(new Prng(6).normals(M * K)));
    for (const version of ["rows", "wg"] as ActQuantVersion[]) {
      const x = uploadTensor(rt, xs, [M, K], "f16");
      const rec = new Recorder(rt);
      const a = actQuant(rec, x, 8, { version });
      await rec.submit();
      const words = (await readTensorRaw(rt, a.q)) as Uint32Array;
      checkCodes(unpackInt8(words, M, K), actQuantRef(xs, M, K, 8), `f16 ${version}`);
    }
  });
});

Deno.test("actQuantError accumulates Σ(x − x̂)² and Σx² per slot", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [M, K] = [70, 45];
    const xs = new Prng(7).normals(M * K);
    const x = uploadTensor(rt, xs, [M, K]);
    const acc = createTensor(rt, [4]);
    writeTensor(rt, acc, new Float32Array(4));
    const rec = new Recorder(rt);
    actQuantError(rec, x, 4, acc, 1);
    actQuantError(rec, x, 4, acc, 1); // twice: sums double
    await rec.submit();
    const got = await readTensor(rt, acc);
    const ref = actQuantErrorRef(xs, M, K, 4);
    assertEquals([got[0], got[1]], [0, 0]);
    assert(Math.abs(got[2] - 2 * ref.err) < 1e-3 * ref.err, `err ${got[2]} vs ${2 * ref.err}`);
    assert(Math.abs(got[3] - 2 * ref.sum) < 1e-4 * ref.sum, `sum ${got[3]} vs ${2 * ref.sum}`);
  });
});

Deno.test(
  "actQuant with a scale per group, symmetric or not: the reference's codes and scales",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [M, K] = [9, 96];
      const xs = new Prng(8).normals(M * K).map((v, i) => (i % 29 === 5 ? 25 : 1) * v);
      xs.fill(0, K, K + 32); // row 1's first group all zero: Δ = 0, codes 0
      const cases = [[8, 32, false], [4, 12, false], [6, 96, false], [4, 32, true], [8, 12, true]];
      for (const [bits, group, asym] of cases as [number, number, boolean][]) {
        const x = uploadTensor(rt, xs, [M, K]);
        const rec = new Recorder(rt);
        const a = actQuant(rec, x, bits, { group, asym });
        await rec.submit();
        const G = M * K / group;
        assertEquals([a.group, a.scales.size], [group, asym ? 2 * G : G]);
        const ref = actQuantRef(xs, M, K, bits, group, asym);
        const what = `A${bits} groups of ${group}${asym ? " asym" : ""}`;
        checkCodes(unpackInt8((await readTensorRaw(rt, a.q)) as Uint32Array, M, K), ref, what);
        const scales = await readTensor(rt, a.scales);
        const want = asym ? [...ref.scales, ...ref.zeros!] : ref.scales;
        for (let i = 0; i < scales.length; i++) {
          // A z = lo + 2^(b−1)·Δ may sit near 0; on GPUs it carries Δ's error 2^(b−1)-fold.
          const tol = rt.info.fallback
            ? 1e-7 * Math.abs(want[i]) + (i >= G ? 1e-7 : 0)
            : 8 * 2 ** -24 * (i < G ? want[i] : Math.abs(want[i]) + 2 ** bits * want[i - G]);
          assert(Math.abs(scales[i] - want[i]) <= tol, `${what}: ${i}: ${scales[i]} vs ${want[i]}`);
        }
        if (group === 32) assertEquals(scales[K / group], 0);
        // The error accumulator groups the same way.
        const acc = createTensor(rt, [2]);
        writeTensor(rt, acc, new Float32Array(2));
        const r2 = new Recorder(rt);
        actQuantError(r2, x, bits, acc, 0, group, asym);
        await r2.submit();
        const got = await readTensor(rt, acc);
        const e = actQuantErrorRef(xs, M, K, bits, group, asym);
        assert(Math.abs(got[0] - e.err) < 1e-3 * e.err, `${what}: err ${got[0]} vs ${e.err}`);
        for (const t of [x, a.q, a.scales, acc]) t.release();
      }
    });
  },
);

Deno.test("actQuant rejects bad bits and dtypes", gpuTest, async () => {
  await withRuntime((rt) => {
    const rec = new Recorder(rt);
    const x = uploadTensor(rt, new Float32Array(8), [2, 4]);
    assertThrows(() => actQuant(rec, x, 5), RangeError, "bits");
    for (const group of [2, 3, 8]) {
      assertThrows(() => actQuant(rec, x, 8, { group }), RangeError, "divides K = 4");
    }
    const u = createTensor(rt, [2, 4], "u32");
    assertThrows(() => actQuant(rec, u, 8), TypeError, "f32 or f16");
  });
});
