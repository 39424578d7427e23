import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import type { QuantizedWeight } from "../../plugins/types.ts";
import { tlqLut, tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import { uniformDequantize, uniformQuantize } from "../../plugins/quantizers/uniform.ts";
import { lutDequantize } from "../../plugins/quantizers/tlq.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { unpackInt8 } from "../quant/pack.ts";
import { gemmRef, type GemmRefOptions } from "../reference/gemm.ts";
import {
  decodeInt8,
  hasCompactTlq,
  int8Lut,
  qgemmIntRef,
  tlqCompactWords,
} from "../reference/qgemm.ts";
import { quantizedBytes } from "../quant/quantize.ts";
import { actQuant } from "./act_quant.ts";
import {
  type DotImpl,
  qgemmA16,
  type QGemmA16Version,
  qgemmInt,
  type QGemmIntVersion,
  uploadQWeight,
} from "./qgemm.ts";

type Kind = "tlq4" | "tlq3" | "u4" | "u3g" | "u8s" | "u4g";

function quantize(kind: Kind, data: Float32Array, rows: number, cols: number): QuantizedWeight {
  const w = { data, rows, cols };
  switch (kind) {
    case "tlq4":
      return tlqQuantize(w, { bits: 4, etas: [0, 0.02, 0.5], percentiles: [0.99, 1] });
    case "tlq3":
      return tlqQuantize(w, { bits: 3, etas: [0, 0.02, 0.5], percentiles: [0.99, 1] });
    case "u4":
      return uniformQuantize(w, { bits: 4 });
    case "u3g":
      return uniformQuantize(w, { bits: 3, groupSize: 32 });
    case "u4g":
      return uniformQuantize(w, { bits: 4, groupSize: 64 });
    case "u8s":
      return uniformQuantize(w, { bits: 8, symmetric: true });
  }
}

function dequant(q: QuantizedWeight): Float32Array {
  return q.params.lut ? lutDequantize(q) : uniformDequantize(q);
}

interface Case {
  M: number;
  N: number;
  K: number;
  xs: Float32Array;
  ws: Float32Array;
  bias: Float32Array;
  res: Float32Array;
  gate: Float32Array;
}

function makeCase(M: number, N: number, K: number, seed: number): Case {
  const g = new Prng(seed);
  return {
    M,
    N,
    K,
    xs: g.normals(M * K),
    ws: g.normals(N * K).map((v) => v / Math.sqrt(K)),
    bias: g.normals(N),
    res: g.normals(M * N),
    gate: g.normals(2 * N),
  };
}

/** Epilogue tensors and their reference options (gate over two batch halves). */
function epilogue(rt: Runtime, c: Case, dt: "f32" | "f16") {
  const r = (a: Float32Array) => dt === "f16" ? Float32Array.from(Float16Array.from(a)) : a;
  const ref: GemmRefOptions = {
    bias: r(c.bias),
    activation: "gelu",
    residual: r(c.res),
    gate: r(c.gate),
    rowsPerGate: Math.ceil(c.M / 2),
  };
  return {
    ref,
    gpu: {
      bias: uploadTensor(rt, c.bias, [c.N], dt),
      activation: "gelu" as const,
      residual: uploadTensor(rt, c.res, [c.M, c.N], dt),
      gate: uploadTensor(rt, c.gate, [2, c.N], dt),
      rowsPerGate: Math.ceil(c.M / 2),
    },
  };
}

const A16: QGemmA16Version[] = ["fused", "skinny", "dequant"];

Deno.test("qgemmA16 matches X·Ŵᵀ for every version and weight format (f32)", gpuTest, async () => {
  await withRuntime(async (rt) => {
    // Each shape with some of the formats (every format and version is covered).
    const plan = [
      [1, 45, 68, ["tlq3", "u8s"]],
      [37, 21, 128, ["u4g"]],
      [70, 33, 96, ["tlq4", "u3g"]],
    ] as const;
    for (const [M, N, K, kinds] of plan) {
      const c = makeCase(M, N, K, M + N);
      for (const kind of kinds as readonly Kind[]) {
        const q = quantize(kind, c.ws, N, K);
        const w = uploadQWeight(rt, q);
        const x = uploadTensor(rt, c.xs, [M, K]);
        const e = epilogue(rt, c, "f32");
        const want = gemmRef(c.xs, dequant(q), M, N, K, e.ref);
        for (const version of A16) {
          const rec = new Recorder(rt);
          const y = qgemmA16(rec, x, w, { ...e.gpu, version });
          await rec.submit();
          // f32 accumulation over K of products ~1: errors ~1e-6·K; the epilogue is O(1).
          assertClose(await readTensor(rt, y), want, {
            atol: 2e-5 * Math.sqrt(K),
            rtol: 1e-5,
            msg: `${M}x${N}x${K} ${kind} ${version}`,
          });
          y.release();
        }
        if (M === 37) {
          // The skinny kernel's row guards below 8 rows a workgroup, and other lane splits.
          const rec = new Recorder(rt);
          const y = qgemmA16(rec, x, w, {
            ...e.gpu,
            version: "skinny",
            tune: { mr: 3, kl: 8, cg: 4 },
          });
          await rec.submit();
          assertClose(await readTensor(rt, y), want, {
            atol: 2e-5 * Math.sqrt(K),
            rtol: 1e-5,
            msg: `${M}x${N}x${K} ${kind} skinny mr 3`,
          });
          y.release();
        }
        w.release();
      }
    }
  });
});

Deno.test("qgemmA16 with f16 activations, plain and with the epilogue", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const c = makeCase(66, 19, 64, 9);
    const xs = Float32Array.from(Float16Array.from(c.xs));
    const q = quantize("tlq4", c.ws, 19, 64);
    const w = uploadQWeight(rt, q);
    const x = uploadTensor(rt, xs, [66, 64], "f16");
    const e = epilogue(rt, c, "f16");
    const want = gemmRef(xs, dequant(q), 66, 19, 64, e.ref);
    for (const version of A16) {
      const rec = new Recorder(rt);
      const y = qgemmA16(rec, x, w, { ...e.gpu, version });
      await rec.submit();
      // One f16 rounding of outputs up to ~10: 5e-3 relative, plus the f32 sum.
      assertClose(await readTensor(rt, y), want, { atol: 2e-3, rtol: 2e-3, msg: version });
    }
  });
});

/** Uploads x, quantizes it on the GPU, and reads the codes back for the reference. */
async function quantized(rt: Runtime, c: Case, bits: number) {
  const x = uploadTensor(rt, c.xs, [c.M, c.K]);
  const rec = new Recorder(rt);
  const xa = actQuant(rec, x, bits);
  await rec.submit();
  const words = (await readTensorRaw(rt, xa.q)) as Uint32Array;
  return {
    xa,
    x8: unpackInt8(words, c.M, c.K),
    xScale: await readTensor(rt, xa.scales),
  };
}

const INT_VERSIONS: QGemmIntVersion[] = ["tiled", "cpu"];

function assertSums(got: Int32Array, want: Int32Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) throw new Error(`${what}: sum ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

Deno.test(
  "qgemmInt sums match the reference bit for bit (every version, both dots)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const dots: DotImpl[] = rt.info.packedDot ? ["native", "emulated"] : ["emulated"];
      for (const [M, N, K] of [[1, 9, 36], [41, 37, 100], [67, 20, 128]] as const) {
        const c = makeCase(M, N, K, 3 * M + N);
        for (const kind of ["tlq4", "tlq3", "u4", "u8s"] as Kind[]) {
          const q = quantize(kind, c.ws, N, K);
          const lut = int8Lut(q);
          const w8 = decodeInt8(q, lut);
          // TLQ both ways: compact (MODE 6, the default) and the uploaded int8 LUT (MODE 2).
          const forms = kind.startsWith("tlq") ? ["compact", "lut"] as const : [undefined];
          for (const tlq of forms) {
            const w = uploadQWeight(rt, q, { a16: false, int: true, tlq });
            const mode = { u8s: 3, u4: 4 }[kind as string] ?? (tlq === "lut" ? 2 : 6);
            assertEquals(w.int!.mode, mode);
            for (const bits of [8, 4]) {
              const { xa, x8, xScale } = await quantized(rt, c, bits);
              const ref = qgemmIntRef(x8, xScale, w8, lut.scale, M, N, K);
              for (const version of INT_VERSIONS) {
                for (const dot of dots) {
                  const rec = new Recorder(rt);
                  const y = qgemmInt(rec, xa, w, { version, dot, raw: true });
                  await rec.submit();
                  const got = new Int32Array((await readTensor(rt, y)).buffer);
                  const what = `${M}x${N}x${K} ${kind} MODE ${mode} A${bits} ${version} ${dot}`;
                  assertSums(got, ref.acc, what);
                  y.release();
                }
              }
            }
            w.release();
          }
        }
      }
    });
  },
);

Deno.test("qgemmInt scales and applies the epilogue (f32, and f16 output)", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const c = makeCase(35, 27, 64, 11);
    const q = quantize("tlq4", c.ws, 27, 64);
    const w = uploadQWeight(rt, q, { int: true });
    const lut = int8Lut(q);
    const { xa, x8, xScale } = await quantized(rt, c, 8);
    for (const dt of rt.info.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
      const e = epilogue(rt, c, dt);
      const want = qgemmIntRef(x8, xScale, decodeInt8(q, lut), lut.scale, 35, 27, 64, e.ref).y;
      for (const version of INT_VERSIONS) {
        const rec = new Recorder(rt);
        const y = qgemmInt(rec, xa, w, { ...e.gpu, dtype: dt, version });
        await rec.submit();
        const tol = dt === "f32" ? { atol: 1e-5, rtol: 1e-5 } : { atol: 5e-3, rtol: 5e-3 };
        assertClose(await readTensor(rt, y), want, { ...tol, msg: `${dt} ${version}` });
      }
    }
  });
});

Deno.test(
  "the integer path approximates the float product (A8, W4 TLQ and W8)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const c = makeCase(64, 48, 192, 12);
      const exact = gemmRef(c.xs, c.ws, 64, 48, 192);
      const rel = (y: Float32Array) => {
        let e = 0;
        let s = 0;
        for (let i = 0; i < y.length; i++) {
          e += (y[i] - exact[i]) ** 2;
          s += exact[i] ** 2;
        }
        return Math.sqrt(e / s);
      };
      for (const [kind, bound] of [["u8s", 0.02], ["tlq4", 0.15]] as const) {
        const w = uploadQWeight(rt, quantize(kind, c.ws, 48, 192), { int: true });
        const { xa } = await quantized(rt, c, 8);
        const rec = new Recorder(rt);
        const y = qgemmInt(rec, xa, w);
        await rec.submit();
        const r = rel(await readTensor(rt, y));
        assert(r < bound, `${kind}: relative error ${r} ≥ ${bound}`);
      }
    });
  },
);

Deno.test(
  "quantized GEMMs reject mismatched shapes, missing paths and aliasing",
  gpuTest,
  async () => {
    await withRuntime((rt) => {
      const c = makeCase(4, 8, 16, 13);
      const q = quantize("u4", c.ws, 8, 16);
      const w = uploadQWeight(rt, q);
      const rec = new Recorder(rt);
      const x = uploadTensor(rt, c.xs, [4, 16]);
      const bad = uploadTensor(rt, new Float32Array(4 * 12), [4, 12]);
      assertThrows(() => qgemmA16(rec, bad, w), RangeError, "K = 12");
      const xa = actQuant(rec, x, 8);
      assertThrows(() => qgemmInt(rec, xa, w), RangeError, "without integer parameters");
      const w2 = uploadQWeight(rt, q, { a16: false, int: true });
      assertThrows(() => qgemmA16(rec, x, w2), RangeError, "without A16 parameters");
      const res: Tensor = uploadTensor(rt, new Float32Array(32), [4, 8]);
      assertThrows(() => qgemmA16(rec, x, w, { residual: res, out: res }), RangeError, "residual");
      assertThrows(
        () =>
          uploadQWeight(
            rt,
            uniformQuantize({ ...c, data: c.ws.subarray(0, 8 * 6), cols: 6, rows: 8 }, { bits: 4 }),
          ),
        RangeError,
        "multiple of 4",
      );
      assertThrows(
        () =>
          uploadQWeight(rt, uniformQuantize({ data: c.ws, rows: 8, cols: 16 }, { bits: 8 }), {
            int: true,
          }),
        RangeError,
        "symmetric",
      );
    });
  },
);

// TLQ compact parameters (MODE 5 / 6): the LUTs rebuilt on the GPU from 8 bytes a row + η.

Deno.test(
  "TLQ compact A16 decodes params.lut bit for bit (skinny, dequant), within ulps (fused)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // X = I: Y = Ŵᵀ exactly (one product 1·ŵ a sum), so Y shows the decoded weights.
      const [N, K] = [37, 128];
      const eye = new Float32Array(K * K);
      for (let k = 0; k < K; k++) eye[k * K + k] = 1;
      const x = uploadTensor(rt, eye, [K, K]);
      for (const kind of ["tlq4", "tlq3"] as const) {
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
      const plan = [[1, 37, 128, "tlq4"], [3, 45, 128, "tlq3"], [5, 70, 1152, "tlq4"]] as const;
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
            const rec = new Recorder(rt);
            const y = qgemmInt(rec, xa, w, { version, raw: true });
            await rec.submit();
            const got = new Int32Array((await readTensor(rt, y)).buffer);
            assertSums(got, ref.acc, `${M}x${N}x${K} ${kind} A${bits} ${version}`);
            y.release();
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
