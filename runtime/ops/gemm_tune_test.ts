import { assertEquals, assertThrows } from "../../tests/assert.ts";
import type { Runtime } from "../gpu/device.ts";
import {
  checkGemmTune,
  gemmDefaultTune,
  gemmGpuTiles,
  gemmTileBytes,
  type GemmTune,
} from "./gemm_tune.ts";

/** A GPU adapter's limits as checkGemmTune reads them. */
function gpuAdapter(workgroupBytes: number): Runtime {
  const limits = { maxComputeWorkgroupStorageSize: workgroupBytes };
  return { info: { fallback: false, limits } } as unknown as Runtime;
}

const tune = (o: GemmTune = {}, cpu = false) => ({ ...gemmDefaultTune("vec4", cpu), ...o });

Deno.test("gemmDefaultTune: one buffer and warp patches on GPUs, two buffers on CPU adapters", () => {
  assertEquals([tune().sbuf, tune().wmap, tune().lmap], [1, 1, 1]);
  assertEquals([tune({}, true).sbuf, tune({}, true).wmap, tune({}, true).lmap], [0, 0, 0]);
});

Deno.test("gemmGpuTiles: 64×64 under 512 workgroups of 128×128, else the defaults", () => {
  // PixArt-α's 1152-wide outputs at 4096 tokens (288 workgroups), T5's 512 rows (320).
  assertEquals([gemmGpuTiles(4096, 1152), gemmGpuTiles(512, 10240)], [
    { tx: 8, ty: 8, wmap: 0 },
    { tx: 8, ty: 8, wmap: 0 },
  ]);
  // 4096 × 4608 (1152 workgroups), and exactly 512.
  assertEquals([gemmGpuTiles(4096, 4608), gemmGpuTiles(4096, 2048)], [{}, {}]);
});

Deno.test("gemmTileBytes and checkGemmTune: workgroup memory refused past the adapter's limit", () => {
  assertEquals(gemmTileBytes(tune()), 16384); // GPU default: one buffer, 128×128, BK 16
  assertEquals(gemmTileBytes(tune({ sbuf: 0 })), 32768); // two buffers (the CPU default)
  assertEquals(gemmTileBytes(tune(gemmGpuTiles(1, 1))), 8192); // small grids
  assertEquals(gemmTileBytes(tune({ hs: 1 })), 8192); // staged as f16
  // An adapter at WebGPU's minimum (16 KiB; wgpu itself does not check): two buffers refused.
  const rt = gpuAdapter(16384);
  checkGemmTune(2, tune(), rt);
  assertThrows(
    () => checkGemmTune(2, tune({ sbuf: 0 }), rt),
    RangeError,
    "32768 bytes of workgroup memory; this adapter allows 16384",
  );
});

Deno.test("checkGemmTune names the knob out of range", () => {
  const rt = gpuAdapter(49152);
  assertThrows(() => checkGemmTune(2, tune({ wmap: 1, tx: 4 }), rt), RangeError, "wmap");
  assertThrows(() => checkGemmTune(2, tune({ sbuf: 2 }), rt), RangeError, "sbuf");
  assertThrows(() => checkGemmTune(2, tune({ hs: 2 }), rt), RangeError, "hs");
  assertThrows(() => checkGemmTune(2, tune({ bk: 12 }), rt), RangeError, "bk");
  assertThrows(() => checkGemmTune(4, tune({ ct: 9 }), rt), RangeError, "ct");
});
