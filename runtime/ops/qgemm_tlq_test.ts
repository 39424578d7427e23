import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { lutDequantize, tlqLut } from "../../plugins/quantizers/tlq.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { quantizedBytes } from "../quant/quantize.ts";
import { gemmRef } from "../reference/gemm.ts";
import {
  decodeInt8,
  hasCompactTlq,
  int8Lut,
  qgemmIntRef,
  tlqCompactWords,
} from "../reference/qgemm.ts";
import { expandIntTables, type IntTune, qgemmA16, qgemmInt, uploadQWeight } from "./qgemm.ts";
import { decLibs } from "./qgemm_tlq.ts";
import {
  A16,
  assertSums,
  dequant,
  epilogue,
  identityInput,
  INT_VERSIONS,
  makeCase,
  quantize,
  quantized,
} from "./qgemm_test_util.ts";

// TLQ compact parameters (MODE 5 / 6): the LUTs rebuilt on the GPU from 8 bytes a row + η.

Deno.test(
  "TLQ compact A16 decodes params.lut bit for bit (skinny, dequant), within ulps (fused)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [N, K] = [37, 128];
      const x = identityInput(rt, K); // Y = Ŵᵀ exactly
      for (const kind of ["tlq4", "tlq3", "tlq4mse", "tlq3mse"] as const) {
        const q = quantize(kind, makeCase(1, N, K, 31).ws, N, K);
        const w = uploadQWeight(rt, q);
        assertEquals(w.a16!.mode, 5);
        const h = lutDequantize(q);
        const want = new Float32Array(K * N); // Ŵᵀ
        for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) want[k * N + n] = h[n * K + k];
        for (const version of A16) {
          const rec = new Recorder(rt);
          const y = qgemmA16(rec, x, w, { version });
          await rec.submit();
          const got = await readTensor(rt, y);
          if (version === "fused") { // exp2 per weight: a few f32 ulps of 2^x, then − η
            assertClose(got, want, { atol: 1e-7, rtol: 2e-6, msg: `${kind} fused` });
          } else {
            // !== takes −0 for +0 (a −0 level sums to +0)
            const off = want.findIndex((v, i) => got[i] !== v);
            assertEquals(off, -1, `${kind} ${version}: ${got[off]} vs ${want[off]} at ${off}`);
          }
          y.release();
        }
        w.release();
      }
    });
  },
);

Deno.test(
  "TLQ compact A16 at odd shapes (M = 1, K = 128 and 1152; f32 and f16; W3 and W4)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const plan = [[1, 37, 128, "tlq4"], [1, 45, 128, "tlq3"], [5, 70, 1152, "tlq4"]] as const;
      for (const [M, N, K, kind] of plan) {
        const c = makeCase(M, N, K, 7 * N + M);
        const q = quantize(kind, c.ws, N, K);
        const w = uploadQWeight(rt, q);
        assertEquals(w.a16!.mode, 5);
        for (const dt of rt.info.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
          const xs = dt === "f16" ? Float32Array.from(Float16Array.from(c.xs)) : c.xs;
          const x = uploadTensor(rt, xs, [M, K], dt);
          const e = epilogue(rt, c, dt);
          const want = gemmRef(xs, dequant(q), M, N, K, e.ref);
          for (const version of A16) {
            const rec = new Recorder(rt);
            const y = qgemmA16(rec, x, w, { ...e.gpu, version });
            await rec.submit();
            const tol = dt === "f32"
              ? { atol: 2e-5 * Math.sqrt(K), rtol: 1e-5 }
              : { atol: 2e-3, rtol: 2e-3 }; // one f16 rounding of the output (and W in dequant)
            assertClose(await readTensor(rt, y), want, {
              ...tol,
              msg: `${M}x${N}x${K} ${kind} ${dt} ${version}`,
            });
            y.release();
          }
        }
        w.release();
      }
    });
  },
);

Deno.test(
  "TLQ compact integer (MODE 6): sums bit for bit at odd shapes, A8 and A4, W3 and W4",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // K = 100: 25 words a row, a last K tile of one word (the tiled kernel's tail guard).
      const plan = [
        [1, 37, 128, "tlq4"],
        [3, 45, 128, "tlq3"],
        [5, 70, 1152, "tlq4"],
        [2, 19, 100, "tlq4"],
        [3, 45, 128, "tlq4mse"],
        [2, 37, 128, "tlq3mse"],
      ] as const;
      for (const [M, N, K, kind] of plan) {
        const c = makeCase(M, N, K, 5 * N + M);
        const q = quantize(kind, c.ws, N, K);
        const w = uploadQWeight(rt, q, { a16: false, int: true });
        assertEquals(w.int!.mode, 6);
        const lut = int8Lut(q);
        const w8 = decodeInt8(q, lut);
        for (const bits of [8, 4]) {
          const { xa, x8, xScale } = await quantized(rt, c, bits);
          const ref = qgemmIntRef(x8, xScale, w8, lut.scale, M, N, K);
          for (const version of INT_VERSIONS) {
            // The tiled kernel: tables expanded per call (default), or built per workgroup.
            const tunes: (IntTune | undefined)[] = version === "tiled"
              ? [undefined, { tables: "workgroup" }]
              : [undefined];
            for (const tune of tunes) {
              const rec = new Recorder(rt);
              const y = qgemmInt(rec, xa, w, { version, raw: true, tune });
              await rec.submit();
              const got = new Int32Array((await readTensor(rt, y)).buffer);
              const what = `${M}x${N}x${K} ${kind} A${bits} ${version} ${
                JSON.stringify(tune ?? {})
              }`;
              assertSums(got, ref.acc, what);
              y.release();
            }
            // Scaled (s_token·s_row rebuilt in-kernel), plain f32 output.
            const rec2 = new Recorder(rt);
            const y2 = qgemmInt(rec2, xa, w, { version });
            await rec2.submit();
            assertClose(await readTensor(rt, y2), ref.y, {
              atol: 1e-6,
              rtol: 1e-5,
              msg: `${M}x${N}x${K} ${kind} A${bits} ${version} scaled`,
            });
            y2.release();
          }
        }
        w.release();
      }
    });
  },
);

Deno.test(
  "expandIntTables: MODE 6 tables expanded once give the per-call expansion's outputs bit for bit",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      for (const [M, N, K, kind] of [[3, 45, 128, "tlq3"], [5, 70, 1152, "tlq4mse"]] as const) {
        const c = makeCase(M, N, K, 7 * N + M);
        const q = quantize(kind, c.ws, N, K);
        const w = uploadQWeight(rt, q, { a16: false, int: true });
        // Only the tiled version expands tables; other weights and versions come back as given.
        assertEquals(await expandIntTables(rt, w, "cpu"), w);
        const a16 = uploadQWeight(rt, q);
        assertEquals(await expandIntTables(rt, a16, "tiled"), a16);
        a16.release();
        const e = await expandIntTables(rt, w, "tiled");
        assertEquals(e.int!.mode, 2);
        assertEquals(e.byteLength, w.byteLength + 4 * N * (1 + 2 ** q.bits / 4));
        const { xa } = await quantized(rt, c, 8);
        for (const raw of [true, false]) {
          const out = [];
          for (const weight of [w, e]) {
            const rec = new Recorder(rt);
            const y = qgemmInt(rec, xa, weight, { version: "tiled", raw });
            await rec.submit();
            out.push(new Uint32Array((await readTensor(rt, y)).buffer));
            y.release();
          }
          assertEquals(out[1], out[0], `${M}x${N}x${K} ${kind} raw ${raw}`);
        }
        e.release(); // w's tensors too
      }
    });
  },
);

Deno.test(
  "TLQ compact upload: codes + 8·N + 4 bytes, one tensor for both paths; LUT modes on request or for old weights",
  gpuTest,
  async () => {
    await withRuntime((rt) => {
      const [N, K] = [45, 128];
      for (const kind of ["tlq4", "tlq3"] as const) {
        const bits = kind === "tlq4" ? 4 : 3;
        const q = quantize(kind, makeCase(1, N, K, 41).ws, N, K);
        assert(hasCompactTlq(q));
        const codes = q.codes.byteLength;
        const both = uploadQWeight(rt, q, { a16: true, int: true });
        assertEquals([both.a16!.mode, both.int!.mode], [5, 6]);
        assert(both.a16!.params === both.int!.params, "one parameter tensor");
        assertEquals(both.byteLength, codes + 8 * N + 4);
        for (const abits of [16, 8]) assertEquals(quantizedBytes(q, abits), codes + 8 * N + 4);
        both.release();
        const lut = uploadQWeight(rt, q, { a16: true, int: true, tlq: "lut" });
        assertEquals([lut.a16!.mode, lut.int!.mode], [0, 2]);
        assertEquals(lut.byteLength, codes + 4 * N * 2 ** bits + 4 * N + N * 2 ** bits);
        lut.release();
        // The words hold Δ± as f16, z± as i16 and η: unpacked, they rebuild params.lut.
        const words = tlqCompactWords(q);
        assertEquals(words.length, 2 * N + 1);
        const halves = new Float16Array(new Uint16Array(words.buffer).buffer);
        const zs = new Int16Array(words.buffer);
        const p = {
          deltaPos: [] as number[],
          deltaNeg: [] as number[],
          zeroPos: [] as number[],
          zeroNeg: [] as number[],
        };
        for (let n = 0; n < N; n++) {
          p.deltaPos.push(halves[4 * n]);
          p.deltaNeg.push(halves[4 * n + 1]);
          p.zeroPos.push(zs[4 * n + 2]);
          p.zeroNeg.push(zs[4 * n + 3]);
        }
        const eta = new Float32Array(words.buffer)[2 * N];
        assertEquals(eta, Math.fround(Number(q.meta.eta)));
        const rebuilt = tlqLut(
          {
            deltaPos: Float32Array.from(p.deltaPos),
            zeroPos: Float32Array.from(p.zeroPos),
            deltaNeg: Float32Array.from(p.deltaNeg),
            zeroNeg: Float32Array.from(p.zeroNeg),
          },
          eta,
          bits,
        );
        assertEquals(Array.from(rebuilt), Array.from(q.params.lut));
      }
      // A weight of an older version (Δ not an f16): LUT modes by default, compact refused.
      const q = quantize("tlq4", makeCase(1, N, K, 42).ws, N, K);
      const old = {
        ...q,
        params: { ...q.params, deltaPos: q.params.deltaPos.map((d) => d * (1 + 1e-6)) },
      };
      assert(!hasCompactTlq(old));
      const w = uploadQWeight(rt, old, { int: true });
      assertEquals([w.a16!.mode, w.int!.mode], [0, 2]);
      w.release();
      assertThrows(() => uploadQWeight(rt, old, { tlq: "compact" }), RangeError, "not an f16");
      const far = { ...q, params: { ...q.params, zeroNeg: q.params.zeroNeg.map(() => 40000) } };
      assertThrows(() => tlqCompactWords(far), RangeError, "i16");
      const noEta = { ...q, meta: { ...q.meta, eta: undefined as unknown as number } };
      assertThrows(() => tlqCompactWords(noEta), RangeError, "η");
      assertThrows(() => uploadQWeight(rt, q, { tlq: "x" as "lut" }), RangeError, "tlq");
      // The skinny kernel's table holds 4·cg rows of 2^b words: at most 2688 words.
      const wc = uploadQWeight(rt, q);
      const x = uploadTensor(rt, new Float32Array(2 * K), [2, K]);
      const rec = new Recorder(rt);
      assertThrows(
        () => qgemmA16(rec, x, wc, { version: "skinny", tune: { kl: 1, cg: 256 } }),
        RangeError,
        "TLQ table",
      );
      wc.release();
    });
  },
);

Deno.test("decLibs: table fragments for the compact modes; MODE 6 never without a table", () => {
  assertEquals(decLibs(5, true)[1], "_tlq");
  assertEquals(decLibs(6, true)[1], "_tlq");
  assertEquals(decLibs(5, false)[1], "");
  assertEquals(decLibs(2, true)[1], "");
  assertThrows(() => decLibs(6, false), RangeError, "MODE 6");
});
