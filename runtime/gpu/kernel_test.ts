import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { type KernelSpec, Recorder, uniformReadable } from "./kernel.ts";
import { createTensor, readTensor, uploadTensor } from "./tensor.ts";

/** y = x · k, one invocation per element (k: an override, so each k is its own pipeline). */
function scaleSpec(name: string): KernelSpec<{ n: number; k: number }> {
  return {
    name,
    source: `override K: f32 = 1.0;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&x)) { y[g.x] = x[g.x] * K; }
}`,
    bindings: ["read", "read_write"],
    constants: (p) => ({ K: p.k }),
    dispatch: (p) => [Math.ceil(p.n / 64)],
  };
}

Deno.test(
  "a profiling recorder times every launch in order and computes the same",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      if (!rt.info.timestamps) return;
      const n = 4096;
      const x = uploadTensor(rt, Float32Array.from({ length: n }, (_, i) => i), [n]);
      const y = createTensor(rt, [n]);
      const z = createTensor(rt, [n]);
      const rec = new Recorder(rt, "profile test", { profile: true });
      rec.dispatch(scaleSpec("double"), { n, k: 2 }, [x, y]);
      const w = rec.upload(new Float32Array(n).fill(1), [n]); // a copy between the launches
      rec.dispatch(scaleSpec("triple"), { n, k: 3 }, [y, z]);
      rec.dispatch(scaleSpec("double"), { n, k: 2 }, [w, y]);
      await rec.submit();
      const times = await rec.launchTimes();
      assertEquals(times.map((t) => t.name), ["double", "triple", "double"]);
      for (const t of times) assert(t.ms > 0 && t.ms < 1000, `${t.name}: ${t.ms} ms`);
      assertEquals((await readTensor(rt, z))[5], 30);
      assertEquals((await readTensor(rt, y))[5], 2);
    });
  },
);

Deno.test("launchTimes needs a profiling recorder, after its submit", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const plain = new Recorder(rt);
    await plain.submit();
    await assertRejects(() => plain.launchTimes(), Error, "not made with profile");
    if (!rt.info.timestamps) return;
    const rec = new Recorder(rt, "profile", { profile: true });
    await assertRejects(() => rec.launchTimes(), Error, "submit first");
    rec.discard();
  });
});

/** y = y · u.k + u.c in place (its factors in the uniform). */
const affineSpec: KernelSpec<{ n: number; k: number; c: number }> = {
  name: "affine_test",
  source: `struct U { k: f32, c: f32, n: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < u.n) { y[g.x] = y[g.x] * u.k + u.c; }
}`,
  bindings: ["uniform", "read_write"],
  uniform: { fields: ["f32", "f32", "u32", "u32"], values: (p) => [p.k, p.c, p.n, 0] },
  dispatch: (p) => [Math.ceil(p.n / 64)],
};

Deno.test(
  "launches of one kernel on the same buffers share a bind group but keep their own uniforms",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const n = 100;
      const y = uploadTensor(rt, new Float32Array(n).fill(1), [n]);
      const z = uploadTensor(rt, new Float32Array(n).fill(1), [n]);
      const rec = new Recorder(rt);
      // 300 launches: past one uniform chunk (256 slots), so a second chunk buffer is bound.
      let want = 1;
      for (let i = 0; i < 300; i++) {
        const [k, c] = [i % 2 ? 0.5 : 2, i % 7];
        rec.dispatch(affineSpec, { n, k, c }, [y]);
        want = want * k + c;
      }
      rec.dispatch(affineSpec, { n, k: 3, c: 1 }, [z]); // other buffers: their own group
      await rec.submit();
      const got = await readTensor(rt, y);
      assertEquals(got[0], Math.fround(want));
      assertEquals(got[n - 1], Math.fround(want));
      assertEquals((await readTensor(rt, z))[0], 4);
    });
  },
);

Deno.test(
  "recordings in flight reuse the runtime's bind groups and uniform chunks, each with its own uniforms",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const n = 100;
      const y = uploadTensor(rt, new Float32Array(n).fill(1), [n]);
      // Five recordings submitted without waiting: each takes the chunk the one before gave
      // back at its submit, while the GPU may still run that one.
      let want = 1;
      const created: number[] = [];
      for (let r = 0; r < 5; r++) {
        const rec = new Recorder(rt);
        rec.dispatch(affineSpec, { n, k: 2, c: r }, [y]);
        rec.dispatch(affineSpec, { n, k: 0.5, c: 1 }, [y]);
        want = (want * 2 + r) * 0.5 + 1;
        await rec.submit();
        created.push(rt.bindGroups.created);
      }
      const got = await readTensor(rt, y);
      assertEquals(got[0], Math.fround(want));
      assertEquals(got[n - 1], Math.fround(want));
      // One group for the kernel on (chunk, y), made by the first recording only.
      assertEquals(created, [created[0], created[0], created[0], created[0], created[0]]);
      assert(rt.uniforms.free >= 1);
    });
  },
);

Deno.test(
  "a read_uniform binding reads a tensor as a uniform where uniformReadable allows it",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Pooled buffers have UNIFORM usage on CPU adapters only.
      const t = uploadTensor(rt, Float32Array.from({ length: 8 }, (_, i) => i + 1), [8]);
      assertEquals(uniformReadable(rt, t), rt.info.fallback);
      const limit = rt.info.limits.maxUniformBufferBindingSize ?? 65536;
      const big = createTensor(rt, [limit / 4 + 4]);
      assert(!uniformReadable(rt, big), "a tensor past maxUniformBufferBindingSize");
      big.release();
      if (!rt.info.fallback) return;
      assert(t.buffer.size > t.byteLength); // a 256-byte bucket, bound for its 32 bytes
      const spec: KernelSpec<{ n: number }> = {
        name: "uniform_read_test",
        source: `@group(0) @binding(0) var<uniform> c: array<vec4<f32>, 2>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(8) fn main(@builtin(local_invocation_index) i: u32) {
  y[i] = c[i / 4u][i % 4u] * 2.0;
}`,
        bindings: ["read_uniform", "read_write"],
        dispatch: () => [1],
      };
      const y = createTensor(rt, [8]);
      const rec = new Recorder(rt);
      rec.dispatch(spec, { n: 8 }, [t, y]);
      await rec.submit();
      assertEquals(Array.from(await readTensor(rt, y)), [2, 4, 6, 8, 10, 12, 14, 16]);
    });
  },
);
