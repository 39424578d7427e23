import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { createDefaultRegistry } from "../builtins.ts";
import { CheckpointError } from "../errors.ts";
import { loadPipeline } from "../pipeline.ts";
import { META, openArtifact } from "./artifact.ts";
import { quantizeModel, writeArtifact } from "./quantize.ts";
import { resolveSettings } from "./settings.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test("settings: tlqFit is TLQ's, mse or percentile (absent)", () => {
  const reg = createDefaultRegistry();
  const base = { quantizer: "tlq", wbits: 3, abits: 16 };
  assertEquals(resolveSettings({ ...base, tlqFit: "mse" }, reg).tlqFit, "mse");
  const pct = resolveSettings({ ...base, tlqFit: "percentile" as "mse" }, reg);
  assertEquals("tlqFit" in pct, false);
  assertThrows(
    () => resolveSettings({ ...base, quantizer: "uniform", tlqFit: "mse" }, reg),
    RangeError,
    'tlqFit is the "tlq" quantizer\'s',
  );
  assertThrows(
    () => resolveSettings({ ...base, tlqFit: "best" as "mse" }, reg),
    RangeError,
    "tlqFit must be percentile or mse, got best",
  );
});

Deno.test("settings: tlqAssign nearest is TLQ's, on METHODS.md's grid (mse is nearest already)", () => {
  const reg = createDefaultRegistry();
  const base = { quantizer: "tlq", wbits: 4, abits: 8 };
  assertEquals(resolveSettings({ ...base, tlqAssign: "nearest" }, reg).tlqAssign, "nearest");
  // With the mse fit the codes are nearest anyway: nothing to record.
  const mse = resolveSettings({ ...base, tlqFit: "mse", tlqAssign: "nearest" }, reg);
  assertEquals("tlqAssign" in mse, false);
  assertThrows(
    () => resolveSettings({ ...base, quantizer: "uniform", tlqAssign: "nearest" }, reg),
    RangeError,
    'tlqAssign is the "tlq" quantizer\'s',
  );
  assertThrows(
    () => resolveSettings({ ...base, tlqFit: "mse", tlqAssign: "log" as "nearest" }, reg),
    RangeError,
    "nearest level",
  );
});

Deno.test(
  "a TLQ plan with mse-fitted grids: no layer worse, round-trips, is checked",
  gpuTest,
  async () => {
    const base = { model: FIXTURE, quantizer: "tlq", wbits: 3, abits: 16 };
    const pct = await quantizeModel(base);
    const fit = await quantizeModel({ ...base, tlqFit: "mse" });
    assertEquals(fit.plan.settings.tlqFit, "mse");
    assertEquals(pct.plan.settings.tlqFit, undefined);
    const before = new Map(pct.layers.map((l) => [l.name, l.sqnrDb]));
    let better = 0;
    for (const l of fit.layers.filter((l) => l.sqnrDb !== null)) {
      const b = before.get(l.name)!;
      assert(l.sqnrDb! >= b - 1e-9, `${l.name}: ${l.sqnrDb} dB < ${b} dB`);
      if (l.sqnrDb! > b + 0.1) better++;
    }
    assert(better > 10, `only ${better} layers gained 0.1 dB`);

    const dir = await Deno.makeTempDir({ prefix: "webdit_tlqfit_" });
    const out = `${dir}/w3.safetensors`;
    await writeArtifact(out, fit);
    const a = await openArtifact(out);
    assertEquals(a.plan.settings.tlqFit, "mse");
    a.close();
    await withRuntime(async (rt) => {
      const pipe = await loadPipeline(rt, { path: out });
      try {
        const r = await pipe.generate({ prompt: "red apple", seed: 1, steps: 2 });
        assert(r.latents.every(Number.isFinite));
      } finally {
        pipe.release();
      }
    });
    const bad = { ...fit, metadata: { ...fit.metadata } };
    const p = JSON.parse(bad.metadata[META.plan]);
    p.settings.tlqFit = "best";
    bad.metadata[META.plan] = JSON.stringify(p);
    await writeArtifact(out, bad, { force: true });
    const e = await assertRejects(() => openArtifact(out), CheckpointError);
    assert(e.message.includes("settings.tlqFit"), e.message);
    await Deno.remove(dir, { recursive: true });
  },
);
