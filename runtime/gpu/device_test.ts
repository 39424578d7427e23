import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { gpuTest } from "../../tests/gpu.ts";
import { DeviceLostError, ShaderCompileError, UnsupportedFeatureError } from "../errors.ts";
import { createRuntime } from "./device.ts";
import { composeWgsl } from "./compose.ts";
import { type KernelSpec, Recorder } from "./kernel.ts";
import { createTensor, readTensor, uploadTensor } from "./tensor.ts";

Deno.test("createRuntime rejects an unknown adapter choice with a TypeError", gpuTest, async () => {
  await assertRejects(
    () => createRuntime({ adapter: "tpu" as "gpu" }),
    TypeError,
    "auto, gpu, cpu",
  );
  await assertRejects(() => createRuntime({ f16: "yes" as unknown as boolean }), TypeError, "f16");
});

Deno.test("createRuntime reports the adapter, features and raised limits", gpuTest, async () => {
  const rt = await createRuntime();
  try {
    assert(rt.info.description.length > 0);
    assert(rt.info.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024);
    assertEquals(
      rt.device.limits.maxStorageBufferBindingSize,
      rt.info.limits.maxStorageBufferBindingSize,
    );
    assertEquals(rt.info.f16, rt.device.features.has("shader-f16"));
  } finally {
    rt.destroy();
  }
});

Deno.test(
  "maxBindingBytes caps what the runtime binds below the adapter's limit",
  gpuTest,
  async () => {
    await assertRejects(
      () => createRuntime({ maxBindingBytes: 100 }),
      RangeError,
      "maxBindingBytes",
    );
    const rt = await createRuntime({ maxBindingBytes: 1 << 20 });
    try {
      assertEquals(rt.bindingLimit, 1 << 20);
      assert(rt.device.limits.maxStorageBufferBindingSize > 1 << 20); // the device keeps its own
      createTensor(rt, [1 << 18]).release(); // 1 MiB of f32: binds
      assertThrows(() => createTensor(rt, [(1 << 18) + 1]), RangeError, "binding limit of 1048576");
    } finally {
      rt.destroy();
    }
  },
);

Deno.test("Runtime.exclusive runs sections one at a time, past a failed one", gpuTest, async () => {
  const rt = await createRuntime();
  try {
    const log: string[] = [];
    const section = (name: string, ms: number, fail = false) =>
      rt.exclusive(async () => {
        log.push(`${name} start`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`${name} end`);
        if (fail) throw new Error(name);
        return name;
      });
    const all = Promise.allSettled([section("a", 30), section("b", 1, true), section("c", 1)]);
    const r = await all;
    assertEquals(r.map((x) => x.status), ["fulfilled", "rejected", "fulfilled"]);
    assertEquals(log, ["a start", "a end", "b start", "b end", "c start", "c end"]);
  } finally {
    rt.destroy();
  }
});

Deno.test(
  "an f16 tensor on a runtime without f16 is an UnsupportedFeatureError",
  gpuTest,
  async () => {
    const rt = await createRuntime({ f16: false });
    try {
      assertEquals(rt.info.f16, false);
      assertThrows(() => createTensor(rt, [4], "f16"), UnsupportedFeatureError, "shader-f16");
    } finally {
      rt.destroy();
    }
  },
);

Deno.test("a WGSL compile error names the kernel and the line in its file", gpuTest, async () => {
  const rt = await createRuntime();
  try {
    const c = composeWgsl(
      "@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n" +
        "@compute @workgroup_size(1)\nfn main() {\n  o[0] = undefined_name;\n}\n",
    );
    const spec: KernelSpec<null> = {
      name: "broken_kernel",
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["read_write"],
      dispatch: () => [1],
    };
    const err = await assertRejects(
      () => rt.pipelines.compile(spec, null),
      ShaderCompileError,
      "broken_kernel",
    );
    assertEquals((err as ShaderCompileError).line, 4);
    // The recorder refuses to submit work with a kernel that did not compile.
    const rec = new Recorder(rt);
    rec.dispatch(spec, null, [createTensor(rt, [1])]);
    await assertRejects(() => rec.submit(), ShaderCompileError, "line 4");
  } finally {
    rt.destroy();
  }
});

Deno.test(
  "a lost device becomes a DeviceLostError and a new runtime works after it",
  gpuTest,
  async () => {
    const rt = await createRuntime();
    const t = uploadTensor(rt, new Float32Array([1, 2, 3]), [3]);
    rt.destroy();
    const lost = await rt.lost;
    assert(lost instanceof DeviceLostError);
    assertEquals(lost.reason, "destroyed");
    assertThrows(() => new Recorder(rt), DeviceLostError);
    await assertRejects(() => readTensor(rt, t), DeviceLostError);
    const again = await createRuntime();
    try {
      const u = uploadTensor(again, new Float32Array([4, 5]), [2]);
      assertEquals([...await readTensor(again, u)], [4, 5]);
    } finally {
      again.destroy();
    }
  },
);

Deno.test({
  name: "createRuntime keeps wgpu on Vulkan on Linux: Mesa's EGL/gallium never load",
  ignore: Deno.build.os !== "linux",
  ...gpuTest,
  fn: async () => {
    const rt = await createRuntime();
    try {
      // A user's own choice stands; otherwise createRuntime chose Vulkan.
      const backend = Deno.env.get("DENO_WEBGPU_BACKEND");
      assert(backend !== undefined);
      if (backend === "vulkan") {
        // Mesa's EGL only: NVIDIA's Vulkan driver (libGLX_nvidia) maps glvnd's libEGL itself.
        const maps = await Deno.readTextFile("/proc/self/maps");
        const egl = maps.split("\n").filter((l) => l.includes("libEGL")).map((l) =>
          l.split(/\s+/).pop()
        );
        assert(
          !maps.includes("libEGL_mesa"),
          `Mesa's EGL is mapped: wgpu's GL backend was initialised (${
            [...new Set(egl)].join(", ")
          })`,
        );
      }
    } finally {
      rt.destroy();
    }
  },
});
