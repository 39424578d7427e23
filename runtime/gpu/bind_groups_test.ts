import { assert, assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { BindGroupCache, objectId, UNIFORM_CHUNK, UniformChunks } from "./bind_groups.ts";

Deno.test(
  "BindGroupCache: one group per layout and buffers, least recently used dropped",
  gpuTest,
  async () => {
    await withRuntime((rt) => {
      const d = rt.device;
      const layout = d.createBindGroupLayout({
        entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } }],
      });
      const bufs = [0, 1, 2].map(() =>
        d.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE })
      );
      const cache = new BindGroupCache(d, 2);
      const a = cache.get(layout, [{ buffer: bufs[0] }]);
      assertEquals(cache.get(layout, [{ buffer: bufs[0] }]), a);
      cache.get(layout, [{ buffer: bufs[1] }]);
      assertEquals([cache.size, cache.created], [2, 2]);
      cache.get(layout, [{ buffer: bufs[0] }]); // a is now the most recent
      cache.get(layout, [{ buffer: bufs[2] }]); // drops bufs[1]'s group
      assertEquals([cache.size, cache.created], [2, 3]);
      assertEquals(cache.get(layout, [{ buffer: bufs[0] }]), a);
      cache.get(layout, [{ buffer: bufs[1] }]);
      assertEquals(cache.created, 4);
      // A size is part of the key: another binding window is another group.
      cache.get(layout, [{ buffer: bufs[1], size: 64 }]);
      assertEquals(cache.created, 5);
      // So is the layout: the same buffer under another layout is another group.
      const readOnly = d.createBindGroupLayout({
        entries: [{
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: "read-only-storage" },
        }],
      });
      cache.get(readOnly, [{ buffer: bufs[1], size: 64 }]);
      assertEquals(cache.created, 6);
      assert(objectId(bufs[0]) !== objectId(bufs[1]));
      assertEquals(objectId(bufs[0]), objectId(bufs[0]));
    });
  },
);

Deno.test(
  "UniformChunks: given back in order, taken again in the same order",
  gpuTest,
  async () => {
    await withRuntime((rt) => {
      const u = new UniformChunks(rt.device);
      const first = [u.take(), u.take()];
      assertEquals(first[0].buffer.size, UNIFORM_CHUNK);
      u.give(first);
      assertEquals(u.free, 2);
      assertEquals([u.take(), u.take()], first);
      u.give(first);
      u.clear();
      assertEquals(u.free, 0);
    });
  },
);
