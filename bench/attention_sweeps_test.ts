import { assertEquals } from "../tests/assert.ts";
import { denseSweeps } from "./attention_sweeps.ts";

Deno.test("denseSweeps lists the asked-for shapes that fit, and none unasked", () => {
  assertEquals(denseSweeps({ tiled: false, chunked: false }, 49152, 256), []);
  const h200 = denseSweeps({ tiled: true, chunked: true }, 49152, 256);
  const names = h200.map((c) =>
    `${c.tuning.kernel} d${c.headDim} ${JSON.stringify(c.tuning.chunked ?? c.tuning.tiled)}`
  );
  // FLUX's default on 48 KiB is swept; 16 × 8 in 1 chunk (61 KB) is not there to sweep.
  assertEquals(names.includes('chunked d128 {"rg":8,"tc":16,"nch":2}'), true);
  assertEquals(names.some((n) => n.startsWith('chunked d128 {"rg":16,"tc":8,"nch":1}')), false);
  // The defaults' shapes at d72 and d64 with 2 row groups a thread are swept on 48 KiB.
  assertEquals(names.includes('tiled d72 {"rg":16,"tc":9,"cv":2,"qpt":2}'), true);
  assertEquals(names.includes('tiled d64 {"rg":16,"tc":8,"cv":2,"qpt":2}'), true);
  // Staging f16 operands as f16 only where asked.
  assertEquals(names.some((n) => n.includes('"half":true')), false);
  const half = denseSweeps({ tiled: true, chunked: false, half: true }, 49152, 256);
  assertEquals(
    half.some((c) => c.headDim === 72 && c.tuning.tiled?.half && c.tuning.tiled.tc === 9),
    true,
  );
  assertEquals(half.some((c) => c.headDim === 72 && c.tuning.tiled?.kpt === 8), true);
  // 8 keys a thread in f32 only where 48 KiB holds them: 16 row groups at d72, not 32.
  assertEquals(names.includes('tiled d72 {"rg":16,"tc":6,"cv":3,"kpt":8}'), true);
  assertEquals(names.some((n) => n.includes('"rg":32') && n.includes('"kpt":8')), false);
  // 32 KiB drops the shapes that need more; tiled before chunked.
  const small = denseSweeps({ tiled: true, chunked: true }, 32768, 256);
  assertEquals(small.length < h200.length, true);
  assertEquals(small[0].tuning.kernel, "tiled");
  assertEquals(small.at(-1)!.tuning.kernel, "chunked");
});
