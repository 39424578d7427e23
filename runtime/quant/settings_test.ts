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

Deno.test("settings: weight groups nest with activation groups; gptqDamp needs gptq and a finite λ ≥ 0", () => {
  const reg = createDefaultRegistry();
  const base = { quantizer: "uniform", wbits: 4, abits: 8, groupSize: 64 };
  assertEquals(resolveSettings(base, reg).groupSize, 64);
  assertEquals(resolveSettings({ ...base, actGroup: 16 }, reg).actGroup, 16);
  assertEquals(resolveSettings({ ...base, actGroup: 128 }, reg).actGroup, 128);
  assertThrows(
    () => resolveSettings({ ...base, actGroup: 48 }, reg),
    RangeError,
    "groupSize 64 and actGroup 48: one must divide the other",
  );
  const g = { quantizer: "uniform", wbits: 4, abits: 8, gptq: true, gptqDamp: 0.001 };
  assertEquals(resolveSettings(g, reg).gptq, true);
  assertThrows(() => resolveSettings({ ...g, gptq: false }, reg), RangeError, "needs gptq");
  for (const bad of [-1, NaN, Infinity]) {
    assertThrows(() => resolveSettings({ ...g, gptqDamp: bad }, reg), RangeError, "gptqDamp");
  }
});

Deno.test("settings: cfgDelta needs quantized activations", () => {
  const reg = createDefaultRegistry();
  const base = { quantizer: "uniform", wbits: 8, abits: 8, cfgDelta: true };
  assertEquals(resolveSettings(base, reg, "PixArtTransformer2DModel").cfgDelta, true);
  assertEquals("cfgDelta" in resolveSettings({ ...base, cfgDelta: false }, reg), false);
  assertThrows(
    () => resolveSettings({ ...base, abits: 16 }, reg),
    RangeError,
    "cfgDelta needs quantized activations",
  );
});

Deno.test(
  "a CFG-delta plan: acts only under guidance, round-trips, is checked",
  gpuTest,
  async () => {
    const base = { model: FIXTURE, quantizer: "uniform", wbits: 8, abits: 4 };
    const dir = await Deno.makeTempDir({ prefix: "webdit_cfgd_" });
    const paths = [`${dir}/plain.safetensors`, `${dir}/cfgd.safetensors`];
    const delta = await quantizeModel({ ...base, cfgDelta: true });
    await writeArtifact(paths[0], await quantizeModel(base));
    await writeArtifact(paths[1], delta);
    const a = await openArtifact(paths[1]);
    assertEquals(a.plan.settings.cfgDelta, true);
    a.close();
    await withRuntime(async (rt) => {
      const [plain, cfgd] = [
        await loadPipeline(rt, { path: paths[0] }),
        await loadPipeline(rt, { path: paths[1] }),
      ];
      try {
        const image = async (p: typeof plain, guidance: number) =>
          (await p.generate({ prompt: "red apple", seed: 2, steps: 2, guidance })).latents;
        // Without guidance there is no CFG pair: the same image, bit for bit.
        assertEquals(Array.from(await image(cfgd, 1)), Array.from(await image(plain, 1)));
        const [g, d] = [await image(plain, 4.5), await image(cfgd, 4.5)];
        assert(
          d.every(Number.isFinite) && d.some((v, i) => v !== g[i]),
          "CFG delta changed nothing",
        );
      } finally {
        plain.release();
        cfgd.release();
      }
    });
    const bad = { ...delta, metadata: { ...delta.metadata } };
    const p = JSON.parse(bad.metadata[META.plan]);
    p.settings.cfgDelta = "yes";
    bad.metadata[META.plan] = JSON.stringify(p);
    await writeArtifact(paths[1], bad, { force: true });
    const e = await assertRejects(() => openArtifact(paths[1]), CheckpointError);
    assert(e.message.includes("settings.cfgDelta"), e.message);
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test("settings: gptqRefit needs GPTQ, per-row levels and a quantizer that refits", () => {
  const reg = createDefaultRegistry();
  const base = { quantizer: "tlq", wbits: 4, abits: 8, gptq: true, gptqRefit: true };
  resolveSettings(base, reg); // uniform, tlq and kmeans all refit
  assertThrows(() => resolveSettings({ ...base, gptq: false }, reg), RangeError, "needs gptq");
  assertThrows(() => resolveSettings({ ...base, groupSize: 32 }, reg), RangeError, "groupSize");
  const { refit: _, ...noRefit } = reg.get("quantizer", "uniform");
  reg.register({ ...noRefit, name: "plain" });
  assertThrows(
    () => resolveSettings({ ...base, quantizer: "plain" }, reg),
    RangeError,
    'quantizer "plain" cannot refit its levels',
  );
});
