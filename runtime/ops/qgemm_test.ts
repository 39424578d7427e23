import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { uniformQuantize } from "../../plugins/quantizers/uniform.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { unpackInt8 } from "../quant/pack.ts";
import { gemmRef } from "../reference/gemm.ts";
import { decodeInt8, int8Groups, int8Lut, qgemmIntRef } from "../reference/qgemm.ts";
import { actQuant } from "./act_quant.ts";
import { type DotImpl, qgemmA16, qgemmInt, uploadQWeight } from "./qgemm.ts";
import {
  A16,
  assertSums,
  dequant,
  epilogue,
  INT_VERSIONS,
  type Kind,
  makeCase,
  quantize,
  quantized,
} from "./qgemm_test_util.ts";

Deno.test("qgemmA16 matches X·Ŵᵀ for every version and weight format (f32)", gpuTest, async () => {
  await withRuntime(async (rt) => {
    // Each shape with some of the formats (every format and version is covered).
    const plan = [
      [1, 45, 68, ["tlq3", "u8s"]],
      [37, 21, 128, ["u4g", "km4g"]],
      [70, 33, 96, ["tlq4", "u3g", "km3"]],
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
        // The skinny kernel's row guards (below 8 and up to 16 rows a workgroup) and other lane
        // splits with one k step an iteration, and two (the default) with a tail (K4 = 32,
        // 12 lanes: 24 a step).
        const tunes = M === 37
          ? [
            { mr: 3, kl: 8, cg: 4, k2: false },
            { mr: 13, kl: 16, cg: 8, k2: false },
            { mr: 5, kl: 12, cg: 4, k2: true },
          ]
          : [];
        for (const tune of tunes) {
          const rec = new Recorder(rt);
          const y = qgemmA16(rec, x, w, { ...e.gpu, version: "skinny", tune });
          await rec.submit();
          assertClose(await readTensor(rt, y), want, {
            atol: 2e-5 * Math.sqrt(K),
            rtol: 1e-5,
            msg: `${M}x${N}x${K} ${kind} skinny ${JSON.stringify(tune)}`,
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

Deno.test(
  "qgemmInt sums match the reference bit for bit (every version, both dots)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const dots: DotImpl[] = rt.info.packedDot ? ["native", "emulated"] : ["emulated"];
      for (const [M, N, K] of [[1, 9, 36], [41, 37, 100], [67, 20, 128]] as const) {
        const c = makeCase(M, N, K, 3 * M + N);
        // k-means: an int8 LUT a row (MODE 2; in groups: qgemm_lut_groups_test.ts).
        for (const kind of ["tlq4", "tlq3", "u4", "u8s", "km3"] as Kind[]) {
          const q = quantize(kind, c.ws, N, K);
          const lut = int8Lut(q);
          const w8 = decodeInt8(q, lut);
          // TLQ both ways: compact (MODE 6, the default) and the uploaded int8 LUT (MODE 2).
          const forms = kind.startsWith("tlq") ? ["compact", "lut"] as const : [undefined];
          for (const tlq of forms) {
            const w = uploadQWeight(rt, q, { a16: false, int: true, tlq });
            const lutMode = tlq === "lut" || kind.startsWith("km");
            const mode = { u8s: 3, u4: 4 }[kind as string] ?? (lutMode ? 2 : 6);
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
  "qgemmInt with a scale (and a zero point) per group of channels: the reference, every version",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // K = 192: groups of 32 (the tiled version's 16- and 32-channel tiles), 64, 16 (the
      // 16-channel tile only) and 48 (the CPU version's one-word steps; the tiled one refuses
      // groups that split its tiles).
      const c = makeCase(37, 29, 192, 21);
      const q = quantize("tlq4", c.ws, 29, 192);
      const w = uploadQWeight(rt, q, { int: true });
      const lut = int8Lut(q);
      const e = epilogue(rt, c, "f32");
      const x = uploadTensor(rt, c.xs.map((v, i) => (i % 50 === 7 ? 30 : 1) * v), [37, 192]);
      const cases = [[32, false], [64, false], [48, false], [16, true], [48, true]] as const;
      for (const [group, asym] of cases) {
        const rec = new Recorder(rt);
        const xa = actQuant(rec, x, 6, { group, asym });
        await rec.submit();
        const G = 37 * 192 / group;
        const x8 = unpackInt8((await readTensorRaw(rt, xa.q)) as Uint32Array, 37, 192);
        const sz = await readTensor(rt, xa.scales);
        const [xs, zs] = asym ? [sz.subarray(0, G), sz.subarray(G)] : [sz, undefined];
        const w8 = decodeInt8(q, lut);
        const ref = qgemmIntRef(x8, xs, w8, lut.scale, 37, 29, 192, e.ref, group, zs);
        for (const [version, bkw] of [["cpu", 4], ["tiled", 4], ["tiled", 8]] as const) {
          const opts = { ...e.gpu, version, tune: { bkw } };
          if (version === "tiled" && group % (4 * bkw) !== 0) {
            assertThrows(() => qgemmInt(new Recorder(rt), xa, w, opts), RangeError, "tile");
            continue;
          }
          const r2 = new Recorder(rt);
          const y = qgemmInt(r2, xa, w, opts);
          await r2.submit();
          const what = `group ${group}${asym ? " asym" : ""}, ${version} bkw ${bkw}`;
          assertClose(await readTensor(rt, y), ref.y, { atol: 1e-5, rtol: 1e-5, msg: what });
        }
        xa.q.release();
        xa.scales.release();
      }
    });
  },
);

Deno.test(
  "qgemmInt with uniform weights in groups (MODE 7): per-token and grouped activations, every version",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const c = makeCase(37, 29, 256, 23);
      const e = epilogue(rt, c, "f32");
      const x = uploadTensor(rt, c.xs.map((v, i) => (i % 50 === 7 ? 30 : 1) * v), [37, 256]);
      // [weight group, activation group, asym]: per token; groups larger, smaller and equal.
      const cases = [[64, 0, false], [32, 0, false], [64, 16, true], [32, 64, false], [
        128,
        128,
        true,
      ]] as const;
      for (const [wg, group, asym] of cases) {
        const q = uniformQuantize({ data: c.ws, rows: 29, cols: 256 }, { bits: 4, groupSize: wg });
        const w = uploadQWeight(rt, q, { int: true });
        assertEquals(w.int?.mode, 7);
        // MODE 1 (weight-only) and MODE 7 read one tensor of scales and zeros.
        assert(w.int?.params === w.a16?.params, "one params tensor");
        assertEquals(w.byteLength, w.codes.byteLength + w.a16!.params.byteLength);
        const g = int8Groups(q);
        const rec = new Recorder(rt);
        const xa = actQuant(rec, x, group ? 4 : 8, group ? { group, asym } : {});
        await rec.submit();
        const x8 = unpackInt8((await readTensorRaw(rt, xa.q)) as Uint32Array, 37, 256);
        const sz = await readTensor(rt, xa.scales);
        const n = group ? 37 * 256 / group : 37;
        const [xs, zs] = asym ? [sz.subarray(0, n), sz.subarray(n)] : [sz, undefined];
        const ref = qgemmIntRef(x8, xs, g.w8, g.scale, 37, 29, 256, e.ref, group, zs, wg);
        for (const [version, bkw] of [["cpu", 4], ["tiled", 4], ["tiled", 8]] as const) {
          const opts = { ...e.gpu, version, tune: { bkw } };
          if (version === "tiled" && (group || wg) % (4 * bkw) !== 0) {
            assertThrows(() => qgemmInt(new Recorder(rt), xa, w, opts), RangeError, "tile");
            continue;
          }
          const r2 = new Recorder(rt);
          const y = qgemmInt(r2, xa, w, opts);
          await r2.submit();
          const what = `w groups ${wg}, x groups ${group}${asym ? " asym" : ""}, ${version} ${bkw}`;
          assertClose(await readTensor(rt, y), ref.y, { atol: 1e-5, rtol: 1e-5, msg: what });
        }
        xa.q.release();
        xa.scales.release();
        w.release();
      }
      // Groups that do not nest (48 and 64), and weight groups that do not divide K, are refused.
      const x192 = uploadTensor(rt, c.xs.subarray(0, 37 * 192), [37, 192]);
      const ws192 = c.ws.subarray(0, 29 * 192);
      const w64 = uploadQWeight(
        rt,
        uniformQuantize({ data: ws192, rows: 29, cols: 192 }, { bits: 4, groupSize: 64 }),
        { int: true },
      );
      const rec = new Recorder(rt);
      const xa = actQuant(rec, x192, 8, { group: 48 });
      assertThrows(
        () => qgemmInt(rec, xa, w64, { version: "cpu" }),
        RangeError,
        "divide the other",
      );
      const x3 = uploadTensor(rt, new Float32Array(37 * 240), [37, 240]);
      const w3 = uniformQuantize({ data: c.ws.subarray(0, 29 * 240), rows: 29, cols: 240 }, {
        bits: 4,
        groupSize: 64,
      });
      assertThrows(() => uploadQWeight(rt, w3, { int: true }), RangeError, "divide K = 240");
      // Asymmetric W8 in groups: code − zero leaves int8 (all-positive weights: zero 0).
      const w8a = uniformQuantize(
        { data: c.ws.map(Math.abs), rows: 29, cols: 256 },
        { bits: 8, groupSize: 64 },
      );
      assertThrows(() => uploadQWeight(rt, w8a, { int: true }), RangeError, "symmetric");
      x192.release();
      w64.release();
      x3.release();
    });
  },
);

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
