import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { Prng } from "../io/prng.ts";
import { tlqQuantizer } from "../../plugins/quantizers/tlq.ts";
import { uniformQuantizer } from "../../plugins/quantizers/uniform.ts";
import type { QuantizerPlugin } from "../../plugins/types.ts";
import { CalibratePool } from "./calibrate_pool.ts";
import { createDefaultRegistry } from "../builtins.ts";
import { quantizeModel } from "./quantize.ts";

function weight(rows: number, cols: number, seed: number) {
  const g = new Prng(seed);
  return { rows, cols, data: Float32Array.from({ length: rows * cols }, () => 0.02 * g.normal()) };
}

Deno.test("calibrate pool: workers give the calling thread's codes, parameters and meta", async () => {
  const pool = new CalibratePool(2, 0);
  try {
    const w = weight(24, 64, 1);
    const cases = [
      [tlqQuantizer, { bits: 3 }],
      [tlqQuantizer, { bits: 4, fit: "mse" as const }],
      [uniformQuantizer, { bits: 4, groupSize: 32 }],
    ] as const;
    const got = await Promise.all(cases.map(([p, o]) => pool.run(p, w, o)));
    for (const [i, [p, o]] of cases.entries()) {
      const want = p.calibrate(w, o);
      assertEquals(got[i].q, want, `${p.name} ${JSON.stringify(o)}`);
      assert(got[i].ms >= 0);
    }
    assertEquals(w.data.length, 24 * 64); // the caller's weight is copied, not detached
  } finally {
    pool.close();
  }
});

Deno.test("calibrate pool: a plugin not built in, or a small layer, runs on this thread", async () => {
  const pool = new CalibratePool(2, 1000);
  try {
    let calls = 0;
    const own: QuantizerPlugin = {
      ...tlqQuantizer,
      calibrate: (w, o) => (calls++, tlqQuantizer.calibrate(w, o)),
    };
    await pool.run(own, weight(40, 40, 2), { bits: 3 }); // 1600 weights, but not built in
    assertEquals(calls, 1);
    await pool.run(uniformQuantizer, weight(8, 16, 3), { bits: 4 }); // 128 weights < 1000
    assertEquals(pool.started, 0);
    await pool.run(uniformQuantizer, weight(40, 40, 3), { bits: 4 });
    assertEquals(pool.started, 2);
  } finally {
    pool.close();
  }
});

Deno.test("calibrate pool: a worker's error rejects the job, the pool goes on", async () => {
  const pool = new CalibratePool(2, 0);
  try {
    await assertRejects(
      () => pool.run(tlqQuantizer, weight(4, 16, 4), { bits: 8 }),
      Error,
      "tlq: bits must be one of 3, 4",
    );
    const r = await pool.run(tlqQuantizer, weight(4, 16, 5), { bits: 4 });
    assertEquals(r.q.bits, 4);
  } finally {
    pool.close();
  }
});

Deno.test("quantizeModel: a quantizer's error names the layer", async () => {
  const registry = createDefaultRegistry();
  registry.register({
    ...uniformQuantizer,
    name: "broken",
    calibrate: (w) => {
      if (w.rows === 128) throw new RangeError("no grid fits");
      return uniformQuantizer.calibrate(w, { bits: 4 });
    },
  });
  const fixture = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;
  await assertRejects(
    () => quantizeModel({ model: fixture, quantizer: "broken", wbits: 4, abits: 16, registry }),
    RangeError,
    "transformer_blocks.0.ff.net.0.proj: no grid fits",
  );
});
