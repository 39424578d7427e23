import { assert, assertClose, assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { LinearEpilogue, LinearFactory } from "../model/linear.ts";
import { actCentresRef } from "../reference/act_center.ts";
import { actStatsRef, type ChannelStats } from "../reference/act_stats.ts";
import {
  calibrate,
  calibrationCacheName,
  layerJ,
  loadCalibration,
  StatsCollector,
  transformerWeightsHash,
} from "./calibrate.ts";
import { runCalibration } from "./calibration_run.ts";
import { gramError, gramStride } from "../ops/act_gram.ts";
import { gramRef } from "../reference/act_gram.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;
const PROMPTS = ["red apple", "a big blue car with yellow eyes"];

/** Keeps a copy of every layer input (test only), to compute the statistics on the CPU. */
function keeper(inputs: Map<string, Tensor[]>, epilogues?: Map<string, LinearEpilogue[]>) {
  return (inner: LinearFactory): LinearFactory => ({
    create: async (rt, src) => {
      const l = await inner.create(rt, src);
      return {
        name: l.name,
        inFeatures: l.inFeatures,
        outFeatures: l.outFeatures,
        weightBytes: l.weightBytes,
        forward: (rec, x, e) => {
          const copy = createTensor(rt, x.shape, x.dtype);
          rec.copy(x, copy, x.size * 4);
          if (!inputs.has(l.name)) inputs.set(l.name, []);
          inputs.get(l.name)!.push(copy);
          if (epilogues) epilogues.set(l.name, [...epilogues.get(l.name) ?? [], { ...e }]);
          return l.forward(rec, x, e);
        },
        release: () => l.release(),
      };
    },
  });
}

Deno.test(
  "calibration statistics equal the CPU statistics of every observed input",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const inputs = new Map<string, Tensor[]>();
      const collector = new StatsCollector(24, 2 * 3, 40);
      await runCalibration(rt, {
        path: FIXTURE,
        prompts: PROMPTS,
        steps: 3,
        linears: (inner) => collector.wrap(keeper(inputs)(inner)),
      });
      const stats = await collector.read(rt);
      // k and v see q's input tensor: they share its Gram matrix (checked equal below).
      assert(collector.sharedGrams >= 4, `shared Gram matrices: ${collector.sharedGrams}`);
      collector.release();
      assertEquals(stats.size, inputs.size);
      assert(stats.has("transformer_blocks.1.ff.net.2"), "ff2 of the last block observed");
      for (const [name, list] of inputs) {
        const s = stats.get(name)!;
        let ref: ChannelStats | undefined;
        const gram = new Float64Array(s.cols * s.cols);
        const rows: Float32Array[] = [];
        for (const t of list) {
          const x = await readTensor(rt, t);
          rows.push(x);
          const M = x.length / s.cols;
          ref = actStatsRef(x, M, s.cols, ref);
          const S = gramStride(M, 40);
          const picked = x.filter((_, i) => Math.floor(i / s.cols) % S === 0);
          gramRef(picked, picked.length / s.cols, s.cols, gram);
          t.release();
        }
        assert(gramError(s.gram!, gram, s.cols) < 1e-5, `${name} gram`);
        assertEquals(s.rows, ref!.rows, `${name} rows`);
        assertEquals(s.calls, list.length, `${name} calls`);
        assertEquals(Array.from(s.absmax), Array.from(ref!.absmax), `${name} absmax`);
        assertEquals(Array.from(s.min), Array.from(ref!.min), `${name} min`);
        assertEquals(Array.from(s.max), Array.from(ref!.max), `${name} max`);
        assertClose(s.sumsq, ref!.sumsq, { rtol: 1e-5, atol: 1e-30, msg: `${name} sumsq` });
        // Every sampled row is one of the observed input rows.
        assert(s.sampleRows > 0 && s.sampleRows <= 24, `${name} sample rows ${s.sampleRows}`);
        const seen = new Set<string>();
        for (const x of rows) {
          for (let r = 0; r < x.length / s.cols; r++) {
            seen.add(x.subarray(r * s.cols, (r + 1) * s.cols).join(","));
          }
        }
        for (let r = 0; r < s.sampleRows; r++) {
          const row = s.sample.subarray(r * s.cols, (r + 1) * s.cols).join(",");
          assert(seen.has(row), `${name}: sample row ${r} is not an input row`);
        }
      }
      // Block linears see every step (batch 2 × 64 tokens); the caption layers once per prompt.
      assertEquals(stats.get("transformer_blocks.0.attn1.to_q")!.rows, 2 * 3 * 2 * 64);
      assertEquals(stats.get("transformer_blocks.0.attn2.to_k")!.calls, 2);
    });
  },
);

/** x̃ as QuantLinear forms it (CPU): a CFG pair's [u; c − u], minus each sample's mean. */
function quantInputRef(x: Float32Array, K: number, e: LinearEpilogue): Float32Array {
  const M = x.length / K;
  const d = x.slice();
  if (e.cfgPair) { for (let i = (M / 2) * K; i < M * K; i++) d[i] = x[i] - x[i - (M / 2) * K]; }
  if (e.rowsPerSample === undefined) return d;
  const R = e.rowsPerSample;
  const c = actCentresRef(d, R, K, "mean");
  return d.map((v, i) => v - c[Math.floor(i / (R * K)) * K + (i % K)]);
}

Deno.test(
  "calibration keeps the sampled rows as a centring, CFG-delta plan's quantizer sees them",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const inputs = new Map<string, Tensor[]>();
      const epilogues = new Map<string, LinearEpilogue[]>();
      const collector = new StatsCollector(12, 2 * 2, 0, { center: "mean", cfgDelta: true });
      await runCalibration(rt, {
        path: FIXTURE,
        prompts: PROMPTS,
        steps: 2,
        linears: (inner) => collector.wrap(keeper(inputs, epilogues)(inner)),
      });
      const stats = await collector.read(rt);
      collector.release();
      let paired = 0;
      for (const [name, list] of inputs) {
        const s = stats.get(name)!;
        const K = s.cols;
        // Input row → its x̃ rows: block 0's u and c halves are equal rows before any cross-attention.
        const want = new Map<string, Float32Array[]>();
        for (const [i, t] of list.entries()) {
          const x = await readTensor(rt, t);
          t.release();
          const e = epilogues.get(name)![i];
          if (e.cfgPair && e.rowsPerSample !== undefined) paired++;
          const q = quantInputRef(x, K, e);
          for (let r = 0; r < x.length / K; r++) {
            const key = x.subarray(r * K, (r + 1) * K).join(",");
            want.set(key, [...want.get(key) ?? [], q.subarray(r * K, (r + 1) * K)]);
          }
        }
        assertEquals(s.quantSample!.length, s.sample.length, `${name} quantSample`);
        for (let r = 0; r < s.sampleRows; r++) {
          const qs = want.get(s.sample.subarray(r * K, (r + 1) * K).join(","));
          assert(qs, `${name}: sample row ${r} is not an input row`);
          const got = s.quantSample!.subarray(r * K, (r + 1) * K);
          const err = (q: Float32Array) => Math.max(...q.map((v, i) => Math.abs(v - got[i])));
          const best = qs.reduce((a, q) => (err(q) < err(a) ? q : a));
          assertClose(got, best, { rtol: 1e-4, atol: 1e-5, msg: `${name} row ${r}` });
        }
      }
      assert(paired > 0, "some calls were CFG pairs with samples of tokens");
    });
  },
);

Deno.test("the row sample draws its calls uniformly over the whole run", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [K, M, calls, rows] = [4, 8, 400, 16];
    const collector = new StatsCollector(rows, calls); // one row a call, 16 slots
    const identity: LinearFactory = {
      create: (_, src) => ({
        name: src.name,
        inFeatures: K,
        outFeatures: K,
        weightBytes: 0,
        forward: (_rec, x) => x,
        release: () => {},
      }),
    };
    const src = { name: "l", weight: new Float32Array(K * K), bias: undefined };
    const l = await collector.wrap(identity).create(rt, { ...src, inFeatures: K, outFeatures: K });
    const xs: Tensor[] = [];
    for (let c = 0; c < calls; c++) { // every value of call c's rows is c
      const rec = new Recorder(rt);
      const x = uploadTensor(rt, new Float32Array(M * K).fill(c), [M, K]);
      l.forward(rec, x);
      await rec.submit();
      xs.push(x);
    }
    const s = (await collector.read(rt)).get("l")!;
    collector.release();
    for (const x of xs) x.release();
    assertEquals(s.sampleRows, rows);
    const drawn = Array.from({ length: rows }, (_, r) => s.sample[r * K]);
    assertEquals(new Set(drawn).size, rows, `one row a call: ${drawn}`);
    // The run's last 16 calls would all be ≥ 384; a uniform draw spans the run.
    const early = drawn.filter((c) => c < calls / 2).length;
    assert(early >= 3 && early <= 13, `calls drawn: ${drawn.sort((a, b) => a - b)}`);
  });
});

Deno.test("calibrate caches by model hash and settings", gpuTest, async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withRuntime(async (rt) => {
      const opts = {
        path: FIXTURE,
        prompts: PROMPTS,
        steps: 2,
        sampleRows: 8,
        gramRows: 16,
        quantInput: { center: "mean" as const },
        cacheDir: dir,
      };
      const a = await calibrate(rt, opts);
      const hash = await transformerWeightsHash(FIXTURE);
      assertEquals(a.modelHash, hash);
      assertEquals(hash.length, 64);
      const file = `${dir}/${calibrationCacheName(hash, a.settings)}`;
      const b = await loadCalibration(file);
      assertEquals(b.settings, a.settings);
      for (const [name, s] of a.layers) {
        const t = b.layers.get(name)!;
        assertEquals(Array.from(t.absmax), Array.from(s.absmax));
        assertEquals(Array.from(t.sumsq), Array.from(s.sumsq));
        assertEquals(Array.from(t.sample), Array.from(s.sample));
        assertEquals(Array.from(t.gram!), Array.from(s.gram!));
        assertEquals(Array.from(t.quantSample!), Array.from(s.quantSample!));
        assertEquals([t.rows, t.calls, t.sampleRows], [s.rows, s.calls, s.sampleRows]);
        assert(layerJ(t) > 0 && Number.isFinite(layerJ(t)), `${name} J`);
      }
      // A second call is served from the file (a different object with the same numbers).
      const t0 = performance.now();
      const c = await calibrate(rt, opts);
      assert(performance.now() - t0 < 2000, "served from the cache");
      assertEquals(c.layers.size, a.layers.size);
      // Other settings, another file; no Gram matrices: the key of the settings without them.
      assertEquals(a.settings.gramRows, 16);
      const { gramRows: _, ...plain } = a.settings;
      assert(calibrationCacheName(hash, plain) !== calibrationCacheName(hash, a.settings));
      assertEquals(a.settings.quantInput, { center: "mean" }); // likewise the quantizer's rows
      const { quantInput: _q, ...raw } = a.settings;
      assert(calibrationCacheName(hash, raw) !== calibrationCacheName(hash, a.settings));
      assert(
        calibrationCacheName(hash, { ...a.settings, steps: 3 }) !==
          calibrationCacheName(hash, a.settings),
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
