import { assertEquals, assertThrows } from "../../tests/assert.ts";
import type { Runtime } from "../gpu/device.ts";
import { hadamardKernel, outlierKernel } from "./rotq.ts";
import { hadamardRegShape } from "./rotq_hadamard_reg.ts";

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

Deno.test("the Hadamard kernels: registers where K allows, then CPU (CPU adapters), then workgroup", () => {
  const rt = cpuAdapter(4096);
  // The register kernel where 16 or 32 values a thread divide K, on CPU adapters too.
  assertEquals(hadamardKernel(rt, 8, 128, 128), "registers");
  assertEquals(hadamardKernel(rt, 64, 128, 2), "registers");
  // Else the CPU kernel (blocks of 4 to 1024, a scratch that binds), else the workgroup kernel.
  assertEquals(hadamardKernel(rt, 8, 12, 4), "cpu");
  assertEquals(hadamardKernel(rt, 128, 12, 4), "workgroup"); // past the binding limit
  assertEquals(hadamardKernel(rt, 8, 12, 2), "workgroup");
  assertEquals(hadamardKernel(rt, 8, 128, 128, { kernel: "cpu" }), "cpu");
  assertEquals(hadamardKernel(rt, 8, 128, 128, { chunk: 64 }), "workgroup");
  assertThrows(() => hadamardKernel(rt, 8, 128, 2, { kernel: "cpu" }), RangeError, "blocks of 4");
  const gpu = cpuAdapter(4096, false);
  assertEquals(hadamardKernel(gpu, 8, 128, 128), "registers");
  assertEquals(hadamardKernel(gpu, 8, 128, 128, { kernel: "workgroup" }), "workgroup");
  assertThrows(
    () => hadamardKernel(gpu, 8, 128, 128, { kernel: "cpu" }),
    RangeError,
    "CPU adapters",
  );
});

Deno.test("the Hadamard register kernel: 16 or 32 values a thread, rows as threads and memory allow", () => {
  const gpu = cpuAdapter(1 << 30, false); // 256 threads, 32 KiB
  assertEquals(hadamardRegShape(gpu, 1152), { values: 16, rows: 3 }); // 72 threads a row
  assertEquals(hadamardRegShape(gpu, 4608), { values: 32, rows: 1 }); // 144 threads a row
  assertEquals(hadamardRegShape(gpu, 2048), { values: 16, rows: 2 });
  assertEquals(hadamardRegShape(gpu, 2048, undefined, 32), { values: 32, rows: 3 });
  assertEquals(hadamardRegShape(gpu, 4096), { values: 16, rows: 1 }); // memory: one row
  assertEquals(typeof hadamardRegShape(gpu, 12288), "string"); // 384 threads a row
  assertEquals(typeof hadamardRegShape(gpu, 1152, 4), "string"); // 288 threads
  assertThrows(() => hadamardRegShape(gpu, 1152, 0), RangeError, "opts.rows");
  assertThrows(() => hadamardRegShape(gpu, 1152, 1, 8 as 16), RangeError, "opts.values");
  assertThrows(
    () => hadamardKernel(gpu, 8, 12, 4, { kernel: "registers" }),
    RangeError,
    "no 16 or 32 values",
  );
  assertThrows(
    () => hadamardKernel(gpu, 8, 128, 4, { kernel: "registers", chunk: 64 }),
    RangeError,
    "opts.chunk",
  );
});
