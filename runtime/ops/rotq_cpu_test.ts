import { assertEquals, assertThrows } from "../../tests/assert.ts";
import type { Runtime } from "../gpu/device.ts";
import { hadamardKernel, outlierKernel } from "./rotq.ts";

/** A CPU adapter's limits as rotq.ts reads them, with a small binding limit. */
function cpuAdapter(maxBind: number, fallback = true): Runtime {
  const limits = {
    maxStorageBufferBindingSize: maxBind,
    maxComputeWorkgroupStorageSize: 32768,
    maxComputeInvocationsPerWorkgroup: 256,
    maxComputeWorkgroupSizeX: 256,
    maxComputeWorkgroupSizeY: 256,
  };
  return { bindingLimit: maxBind, info: { fallback, limits } } as unknown as Runtime;
}

Deno.test("CPU adapters take the CPU rotation kernels where their f32 scratch binds", () => {
  const rt = cpuAdapter(4096); // 1024 f32: 8 rows of 128
  assertEquals(outlierKernel(rt, 8, 128, 128, true), { kernel: "cpu" });
  assertEquals(outlierKernel(rt, 8, 128, 128, false), { kernel: "cpu" });
  // Past the binding limit: the kernels without an [M, K] scratch.
  assertEquals(outlierKernel(rt, 64, 128, 128, true), { kernel: "fused", tokens: 8 });
  assertEquals(outlierKernel(rt, 64, 128, 128, false).kernel, "rows");
  // An explicit choice stands.
  assertEquals(outlierKernel(rt, 8, 128, 128, true, { kernel: "rows" }).kernel, "rows");
});

Deno.test("the Hadamard CPU kernel: CPU adapters, blocks of 4 to 1024, a scratch that binds", () => {
  const rt = cpuAdapter(4096);
  assertEquals(hadamardKernel(rt, 8, 128, 128), "cpu");
  assertEquals(hadamardKernel(rt, 64, 128, 128), "workgroup"); // past the binding limit
  assertEquals(hadamardKernel(rt, 8, 128, 2), "workgroup");
  assertEquals(hadamardKernel(rt, 8, 128, 128, { chunk: 64 }), "workgroup");
  assertThrows(() => hadamardKernel(rt, 8, 128, 2, { kernel: "cpu" }), RangeError, "blocks of 4");
  const gpu = cpuAdapter(4096, false);
  assertEquals(hadamardKernel(gpu, 8, 128, 128), "workgroup");
  assertThrows(
    () => hadamardKernel(gpu, 8, 128, 128, { kernel: "cpu" }),
    RangeError,
    "CPU adapters",
  );
});
