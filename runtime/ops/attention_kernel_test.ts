import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { chooseKernel, type KernelLimits } from "./attention_kernel.ts";
import { chunkedBytes, chunkedFetches, chunkedShape } from "./attention_chunked.ts";
import { tiledFetches } from "./attention_tiled.ts";

const H200: KernelLimits = { memory: 49152, threads: 1024, cpu: false };

Deno.test("chooseKernel: tiled at 64 query rows, else chunked, else rows; CPU rows", () => {
  // PixArt-α's 72 runs the tiled kernel's 64-row shape with 8 keys a thread (fetching 9 vec4s
  // of k and v ahead); d64's 16 × 8 × 2 has no room for them and keeps 4.
  assertEquals(chooseKernel(72, {}, H200), {
    kernel: "tiled",
    shape: { rg: 16, tc: 6, cv: 3, kpt: 8 },
  });
  assertEquals(chooseKernel(64, {}, H200), { kernel: "tiled", shape: { rg: 16, tc: 8, cv: 2 } });
  // FLUX's 128: the tiled kernel would get 32 threads; the chunked one 8 × 16 in 2 chunks.
  assertEquals(chooseKernel(128, {}, H200), {
    kernel: "chunked",
    shape: { rg: 8, tc: 16, nch: 2 },
  });
  // 32 KiB (lavapipe's limit, some GPUs'): the tiled kernel cannot run d128 at all.
  const small = { ...H200, memory: 32768 };
  assertEquals(chooseKernel(128, {}, small), {
    kernel: "chunked",
    shape: { rg: 8, tc: 8, nch: 2 },
  });
  assertEquals(chooseKernel(10, {}, H200), { kernel: "rows" });
  // CPU adapters (lavapipe: 32 KiB, 256 threads): the tiled kernel with 4 row groups a thread
  // at head dim 64; rows elsewhere, and whenever a row-kernel knob is given.
  const cpu: KernelLimits = { memory: 32768, threads: 256, cpu: true };
  assertEquals(chooseKernel(64, {}, cpu), {
    kernel: "tiled",
    shape: { rg: 16, tc: 4, cv: 4, qpt: 4 },
  });
  assertEquals(chooseKernel(64, { rowsPerThread: 4 }, cpu), { kernel: "rows" });
  for (const d of [16, 32, 72, 128]) assertEquals(chooseKernel(d, {}, cpu), { kernel: "rows" });
  assertEquals(chooseKernel(128, {}, { ...H200, cpu: true }), { kernel: "rows" });
  assertEquals(chooseKernel(128, { kernel: "rows" }, H200), { kernel: "rows" });
  assertEquals(chooseKernel(128, { kernel: "tiled" }, H200), {
    kernel: "tiled",
    shape: { rg: 8, tc: 4, cv: 8 },
  });
  // f16 operands: GPUs stage them as f16 in the same shapes; CPU adapters do not.
  // Staged as f16, 128 query rows with 8 keys a thread where they fetch ahead and fit.
  const f16 = { ...H200, f16: true };
  assertEquals(chooseKernel(72, {}, f16), {
    kernel: "tiled",
    shape: { rg: 32, tc: 6, cv: 3, half: true, kpt: 8 },
  });
  assertEquals(chooseKernel(64, { kernel: "tiled" }, f16), {
    kernel: "tiled",
    shape: { rg: 32, tc: 8, cv: 2, half: true, kpt: 8 },
  });
  // With 128 threads a workgroup at most, d72 keeps 64 rows and 4 keys a thread.
  assertEquals(chooseKernel(72, {}, { ...f16, threads: 128 }), {
    kernel: "tiled",
    shape: { rg: 16, tc: 6, cv: 3, half: true },
  });
  assertEquals(chooseKernel(64, {}, { ...cpu, f16: true }), chooseKernel(64, {}, cpu));
  // FLUX's 128 staged as f16 fits 64 rows in 48 KiB (10.9 against the chunked kernel's 13.6
  // ms); in 32 KiB with 8 vec4s a thread (on the H200 a tie with the chunked 8 × 8 × 2: 20.3
  // against 20.6 ms, 2026-11-29_attention_half_d128).
  assertEquals(chooseKernel(128, {}, f16), {
    kernel: "tiled",
    shape: { rg: 16, tc: 8, cv: 4, half: true },
  });
  assertEquals(chooseKernel(128, {}, { ...small, f16: true }), {
    kernel: "tiled",
    shape: { rg: 16, tc: 4, cv: 8, half: true },
  });
  // Two row groups a thread run only when asked for.
  const two = { rg: 16, tc: 9, cv: 2, qpt: 2 } as const;
  assertEquals(chooseKernel(72, { kernel: "tiled", tiled: two }, H200), {
    kernel: "tiled",
    shape: two,
  });
});

Deno.test("chooseKernel refuses forced shapes that cannot run, naming the field", () => {
  const bad = [
    [{ kernel: "chunked" }, "tuning.chunked"],
    [{ kernel: "chunked", chunked: { rg: 16, tc: 8, nch: 1 } }, "tuning.chunked"], // 67 KB
    [{ kernel: "chunked", chunked: { rg: 8, tc: 5, nch: 2 } }, "tuning.chunked"], // 16 % 5
    [{ chunked: { rg: 8, tc: 8, nch: 2 } }, 'needs kernel "chunked"'],
    [{ tiled: { rg: 8, tc: 4, cv: 8 } }, 'needs kernel "tiled"'],
    [{ kernel: "tiled", tiled: { rg: 8, tc: 3, cv: 8 } }, "tuning.tiled"],
    [{ kernel: "tiled", tiled: { rg: 8, tc: 4, cv: 8, half: true } }, "tuning.tiled.half"], // f32
    [{ kernel: "tiled", tiled: { rg: 5, tc: 4, cv: 8, qpt: 2 } }, "tuning.tiled.qpt"], // 5 % 2
    [{ kernel: "tiled", tiled: { rg: 4, tc: 4, cv: 8, qpt: 3 } }, "tuning.tiled.qpt"],
    [{ kernel: "tiled", tiled: { rg: 4, tc: 4, cv: 8, qpt: 2, kpt: 8 } }, "tuning.tiled.kpt"],
    [{ kernel: "tiled", tiled: { rg: 4, tc: 4, cv: 8, kpt: 6 } }, "tuning.tiled.kpt"],
    [{ kernel: "warp" }, "tuning.kernel"],
  ] as const;
  for (const [t, msg] of bad) {
    // deno-lint-ignore no-explicit-any
    assertThrows(() => chooseKernel(128, t as any, H200), RangeError, msg);
  }
});

Deno.test("chunkedShape fits the limit it is given, or gives null", () => {
  for (const d of [16, 64, 72, 96, 128]) {
    for (const memory of [8192, 16384, 32768, 49152, 65536]) {
      const s = chunkedShape(d, memory, 256);
      if (s) assertEquals(chunkedBytes(d, s) <= memory, true, `${d} @ ${memory}`);
    }
  }
  assertEquals(chunkedShape(128, 4096, 256), null);
  assertEquals(chunkedShape(10, 65536, 256), null);
});

Deno.test("fetches ahead: the tiled kernel up to 5 vec4s of k and v a thread (9 with 8 keys), else none", () => {
  assertEquals(tiledFetches(72, { rg: 16, tc: 6, cv: 3 }), 5); // PixArt-α on an H200
  assertEquals(tiledFetches(64, { rg: 16, tc: 8, cv: 2 }), 4);
  assertEquals(tiledFetches(128, { rg: 8, tc: 4, cv: 8 }), 0); // 16 a thread: staged directly
  // Two row groups a thread halve the threads: the defaults' shapes then stage directly.
  assertEquals(tiledFetches(72, { rg: 16, tc: 9, cv: 2, qpt: 2 }), 0);
  assertEquals(tiledFetches(72, { rg: 8, tc: 9, cv: 2, qpt: 2 }), 0);
  assertEquals(tiledFetches(16, { rg: 8, tc: 2, cv: 2, qpt: 2 }), 4);
  // 8 keys a thread double the block: PixArt-α's d72 fetches 9 at 16 row groups, 5 at 32.
  assertEquals(tiledFetches(72, { rg: 16, tc: 6, cv: 3, kpt: 8 }), 9);
  assertEquals(tiledFetches(72, { rg: 32, tc: 6, cv: 3, kpt: 8 }), 5);
  assertEquals(tiledFetches(72, { rg: 8, tc: 6, cv: 3, kpt: 8 }), 0); // 18: staged directly
  assertEquals(chunkedFetches(128, { rg: 8, tc: 16, nch: 2 }), 8); // FLUX on an H200
  assertEquals(chunkedFetches(128, { rg: 16, tc: 8, nch: 4 }), 2);
});
