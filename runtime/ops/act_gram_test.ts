import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { gramRef } from "../reference/act_gram.ts";
import {
  actGram,
  ActGramAccumulator,
  actGramSelfCheck,
  gramError,
  gramStride,
  mirrorUpper,
} from "./act_gram.ts";

Deno.test("act gram adds xᵀx over many calls and mirrors a symmetric matrix", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const K = 45; // not a multiple of the 16-wide tiles
    const g = new Prng(9);
    const acc = new ActGramAccumulator(rt, K);
    let ref: Float64Array | undefined;
    const rec = new Recorder(rt);
    for (const M of [1, 70, 17]) {
      const x = g.normals(M * K).map((v, i) => v * (1 + (i % 5)) + 0.25);
      acc.record(rec, uploadTensor(rt, x, [M, K]));
      ref = gramRef(x, M, K, ref);
    }
    await rec.submit();
    const got = await acc.read(rt);
    acc.release();
    assertEquals(acc.rows, 88);
    assert(gramError(got, ref!, K) < 1e-5, `gram error ${gramError(got, ref!, K)}`);
    for (let i = 0; i < K; i++) {
      for (let j = 0; j < i; j++) assertEquals(got[i * K + j], got[j * K + i]);
    }
  });
});

Deno.test("act gram reads f16 activations", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, K] = [20, 33];
    const x = Float32Array.from(Float16Array.from(new Prng(3).normals(M * K)));
    const acc = new ActGramAccumulator(rt, K);
    const rec = new Recorder(rt);
    acc.record(rec, uploadTensor(rt, x, [M, K], "f16"));
    await rec.submit();
    const got = await acc.read(rt);
    acc.release();
    assert(gramError(got, gramRef(x, M, K), K) < 1e-5);
  });
});

Deno.test(
  "act gram rejects a buffer of the wrong size and its self-check passes",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const x = uploadTensor(rt, new Float32Array(12), [3, 4]);
      const bad = uploadTensor(rt, new Float32Array(15), [15]);
      assertThrows(() => actGram(new Recorder(rt), x, bad), RangeError, "[4, 4]");
      for (const r of await actGramSelfCheck(rt)) assert(r.ok, `${r.name}: ${r.maxError}`);
    });
  },
);

Deno.test("mirrorUpper copies the upper triangle down", () => {
  const g = Float32Array.from([1, 2, 3, 9, 4, 5, 9, 9, 6]);
  assertEquals(Array.from(mirrorUpper(g, 3)), [1, 2, 3, 2, 4, 5, 3, 5, 6]);
});

Deno.test("act gram with a row budget samples every S-th row (S odd)", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [M, K] = [70, 19];
    const x = new Prng(12).normals(M * K);
    const acc = new ActGramAccumulator(rt, K, 10);
    const rec = new Recorder(rt);
    acc.record(rec, uploadTensor(rt, x, [M, K]));
    await rec.submit();
    const got = await acc.read(rt);
    acc.release();
    const S = gramStride(M, 10);
    assertEquals(S, 7);
    const picked = x.filter((_, i) => Math.floor(i / K) % S === 0);
    assertEquals(acc.rows, 10);
    assert(gramError(got, gramRef(picked, 10, K), K) < 1e-5);
  });
});

Deno.test("gramStride: 1 within budget, else odd and covering", () => {
  assertEquals(gramStride(100, 0), 1);
  assertEquals(gramStride(100, 256), 1);
  assertEquals(gramStride(2048, 256), 9);
  assertEquals(gramStride(4096, 256), 17);
});
