import { assertClose, assertEquals, assertThrows, rms } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import type { Runtime } from "../gpu/device.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { QuantLinear, type QuantLinearOptions } from "../quant/qlinear.ts";
import { DenseLinear, type Linear } from "./linear.ts";
import { planRowChunks, type RowBatch, rowChunked, widestScope } from "./row_chunks.ts";

const batch = (samples: number, rowsPerSample: number, cfgPair = false): RowBatch => ({
  samples,
  rowsPerSample,
  cfgPair,
});

Deno.test("planRowChunks: whole when it fits, else whole samples, pairs or parts", () => {
  // 4 samples of 8 rows, 100 bytes a row.
  assertEquals(planRowChunks(batch(4, 8), "row", 100, 3200, "ff"), undefined);
  assertEquals(planRowChunks(batch(4, 8), "sample", 100, 1700, "ff"), [
    { rows: [[0, 16]], samples: [[0, 2]], rowsPerSample: 8, cfgPair: false },
    { rows: [[16, 16]], samples: [[2, 2]], rowsPerSample: 8, cfgPair: false },
  ]);
  // A CFG pair [u0 u1; c0 c1] split into (u0, c0) and (u1, c1).
  assertEquals(planRowChunks(batch(4, 8, true), "pair", 100, 1600, "ff"), [
    { rows: [[0, 8], [16, 8]], samples: [[0, 1], [2, 1]], rowsPerSample: 8, cfgPair: true },
    { rows: [[8, 8], [24, 8]], samples: [[1, 1], [3, 1]], rowsPerSample: 8, cfgPair: true },
  ]);
  // Without a pair, pair-scoped layers split by samples (they take no CFG delta then).
  assertEquals(planRowChunks(batch(2, 8), "pair", 100, 800, "ff")?.length, 2);
  // Row scope under one sample: parts of a sample, each with its sample's gate row.
  assertEquals(planRowChunks(batch(2, 8), "row", 100, 500, "ff"), [
    { rows: [[0, 5]], samples: [[0, 1]], rowsPerSample: 5, cfgPair: false },
    { rows: [[5, 3]], samples: [[0, 1]], rowsPerSample: 3, cfgPair: false },
    { rows: [[8, 5]], samples: [[1, 1]], rowsPerSample: 5, cfgPair: false },
    { rows: [[13, 3]], samples: [[1, 1]], rowsPerSample: 3, cfgPair: false },
  ]);
});

Deno.test("planRowChunks: a chunk the layers cannot make is a RangeError naming the part", () => {
  assertThrows(
    () => planRowChunks(batch(2, 8), "sample", 100, 700, "blocks.3.ff"),
    RangeError,
    "blocks.3.ff: one sample (8 rows",
  );
  assertThrows(
    () => planRowChunks(batch(2, 8, true), "pair", 100, 1500, "ff"),
    RangeError,
    "one CFG pair (16 rows",
  );
  assertThrows(
    () => planRowChunks(batch(2, 8), "batch", 100, 1500, "ff"),
    RangeError,
    "the whole batch",
  );
  assertThrows(
    () => planRowChunks(batch(2, 8), "row", 100, 99, "ff"),
    RangeError,
    "one row (1 rows",
  );
  // Pair-scoped layers outside a CFG pair: whole samples (they may centre).
  assertThrows(() => planRowChunks(batch(2, 8), "pair", 100, 700, "ff"), RangeError, "one sample");
});

Deno.test("widestScope: the most coupled layer rules; a layer without a scope never splits", () => {
  const l = (rowScope?: Linear["rowScope"]) => ({ rowScope }) as Linear;
  assertEquals(widestScope([]), "row");
  assertEquals(widestScope([l("row"), l("sample")]), "sample");
  assertEquals(widestScope([l("pair"), l("sample")]), "pair");
  assertEquals(widestScope([l("row"), l()]), "batch");
});

/** gelu(x·W1ᵀ + b1)·W2ᵀ + b2, gated per sample and added to x, on `rows` of `b`. */
function feedForward(
  rt: Runtime,
  ff1: Linear,
  ff2: Linear,
  b: RowBatch,
  x: Tensor,
  gate: Tensor,
  limit: number,
): Promise<Float32Array> {
  const o = { batch: b, layers: [ff1, ff2], width: ff1.outFeatures, what: "ff", limit };
  return runAndRead(rt, (rec) =>
    rowChunked(rec, o, (c) => {
      const f = ff1.forward(rec, c.rows(x), { activation: "gelu", ...c.tokens });
      try {
        return ff2.forward(rec, f, {
          residual: c.rows(x),
          gate: c.perSample(gate),
          rowsPerGate: c.rowsPerGate,
          ...c.tokens,
        });
      } finally {
        f.release();
      }
    }));
}

/** A feed-forward of K → 4K → K on 4 samples of 16 rows, dense or quantized. */
function ffCase(rt: Runtime, seed: number, quant?: QuantLinearOptions) {
  const [S, T, K] = [4, 16, 32];
  const g = new Prng(seed);
  const src = (name: string, n: number, k: number) => ({
    name,
    weight: g.normals(n * k).map((v) => v / Math.sqrt(k)),
    bias: g.normals(n).map((v) => v / 10),
    outFeatures: n,
    inFeatures: k,
  });
  const layer = (s: ReturnType<typeof src>): Linear =>
    quant
      ? new QuantLinear(
        rt,
        s.name,
        tlqQuantize({ data: s.weight, rows: s.outFeatures, cols: s.inFeatures }, { bits: 4 }),
        s.bias,
        quant,
      )
      : new DenseLinear(rt, s, "f32");
  const ff1 = layer(src("ff1", 4 * K, K));
  const ff2 = layer(src("ff2", K, 4 * K));
  // Per-sample offsets, as adaLN's shift gives, so centring has something to take out.
  const off = g.normals(S * K);
  const x = uploadTensor(
    rt,
    g.normals(S * T * K).map((v, i) => v + 2 * off[Math.floor(i / (T * K)) * K + (i % K)]),
    [S * T, K],
  );
  const gate = uploadTensor(rt, g.normals(S * K), [S, K]);
  const release = () => [ff1, ff2, x, gate].forEach((t) => t.release());
  return { S, T, K, ff1, ff2, x, gate, release };
}

Deno.test("rowChunked: chunked feed-forwards give the whole batch's values", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const cases: [string, QuantLinearOptions | undefined, boolean][] = [
      ["dense", undefined, false],
      ["W4A8", { abits: 8 }, true],
      ["W4A8 centred", { abits: 8, center: "mean" }, false],
      ["W4A8 centred, CFG delta", { abits: 8, center: "mean", cfgDelta: true }, true],
    ];
    for (const [name, quant, cfgPair] of cases) {
      const c = ffCase(rt, 7, quant);
      try {
        const b = batch(c.S, c.T, cfgPair);
        const scope = widestScope([c.ff1, c.ff2]);
        const row = 4 * c.ff1.outFeatures * 4; // bytes of an intermediate row, as sized
        const whole = await feedForward(rt, c.ff1, c.ff2, b, c.x, c.gate, Infinity);
        const limits = scope === "row"
          ? [2 * c.T * row, c.T * row, 5 * row] // two samples, one, parts of one
          : scope === "sample"
          ? [2 * c.T * row, c.T * row]
          : [2 * c.T * row]; // one pair
        for (const limit of limits) {
          const split = await feedForward(rt, c.ff1, c.ff2, b, c.x, c.gate, limit);
          const msg = `${name} (${scope}) at ${limit / row} rows a chunk`;
          // The same kernels on fewer rows: the same sums, but for the dense GEMM, which on a
          // CPU adapter takes another version under 64 rows (defaultGemmVersion).
          if (limit / row < 64 && !quant && rt.info.fallback) {
            assertClose(split, whole, { atol: 1e-5 * rms(whole), rtol: 1e-5, msg });
          } else {
            assertEquals(split, whole, msg);
          }
        }
      } finally {
        c.release();
      }
    }
  });
});
