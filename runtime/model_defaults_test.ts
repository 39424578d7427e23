import { assertEquals, assertRejects, assertThrows } from "../tests/assert.ts";
import { join } from "node:path";
import { CheckpointError } from "./errors.ts";
import {
  FLUX_SAMPLING,
  parseSamplingDefaults,
  PIXART_SAMPLING,
  readSamplingDefaults,
} from "./model_defaults.ts";

Deno.test("model defaults: the architecture's when model_index.json says nothing", () => {
  assertEquals(parseSamplingDefaults(undefined, "m", PIXART_SAMPLING), PIXART_SAMPLING);
  assertEquals(parseSamplingDefaults({ _class_name: "X" }, "m", FLUX_SAMPLING), FLUX_SAMPLING);
  assertEquals(PIXART_SAMPLING, { steps: 20, guidance: 4.5, sampler: "dpm++2m" });
  assertEquals(FLUX_SAMPLING, { steps: 28, guidance: 3.5, sampler: "flow-euler" });
});

Deno.test("model defaults: webdit.default_* override field by field", () => {
  const raw = { webdit: { default_guidance: 3, default_sampler: "ddim" } };
  assertEquals(parseSamplingDefaults(raw, "m", PIXART_SAMPLING), {
    steps: 20,
    guidance: 3,
    sampler: "ddim",
  });
  assertEquals(
    parseSamplingDefaults(
      { webdit: { default_steps: 4, default_guidance: 0 } },
      "m",
      FLUX_SAMPLING,
    ),
    { steps: 4, guidance: 0, sampler: "flow-euler" },
  );
});

Deno.test("model defaults: a bad value names the file and the field", () => {
  const cases: [unknown, string][] = [
    [{ webdit: { default_steps: 0 } }, "webdit.default_steps"],
    [{ webdit: { default_steps: 2.5 } }, "webdit.default_steps"],
    [{ webdit: { default_guidance: "4" } }, "webdit.default_guidance"],
    [{ webdit: { default_guidance: -1 } }, "webdit.default_guidance"],
    [{ webdit: { default_sampler: "euler" } }, "webdit.default_sampler"],
    [{ webdit: [] }, "webdit"],
  ];
  for (const [raw, field] of cases) {
    const e = assertThrows(
      () => parseSamplingDefaults(raw, "x/model_index.json", PIXART_SAMPLING),
      CheckpointError,
    ) as CheckpointError;
    assertEquals([e.file, e.field], ["x/model_index.json", field], JSON.stringify(raw));
  }
  // A sampler of the other family: FLUX samples with flow-euler only, PixArt never with it.
  assertThrows(
    () => parseSamplingDefaults({ webdit: { default_sampler: "dpm++2m" } }, "f", FLUX_SAMPLING),
    CheckpointError,
    "must be flow-euler for this model",
  );
  assertThrows(
    () =>
      parseSamplingDefaults({ webdit: { default_sampler: "flow-euler" } }, "p", PIXART_SAMPLING),
    CheckpointError,
    "must be dpm++2m or ddim",
  );
});

Deno.test("model defaults: read from a folder's model_index.json, or absent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await readSamplingDefaults(dir, PIXART_SAMPLING), PIXART_SAMPLING);
    const file = join(dir, "model_index.json");
    await Deno.writeTextFile(file, JSON.stringify({ webdit: { default_guidance: 2 } }));
    assertEquals((await readSamplingDefaults(dir, PIXART_SAMPLING)).guidance, 2);
    await Deno.writeTextFile(file, "{ not json");
    await assertRejects(() => readSamplingDefaults(dir, PIXART_SAMPLING), CheckpointError, file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("model defaults: the bundled model's model_index.json is read", async () => {
  const dir = new URL("../models/emoji-s", import.meta.url).pathname;
  const raw = JSON.parse(await Deno.readTextFile(join(dir, "model_index.json")));
  const d = await readSamplingDefaults(dir, PIXART_SAMPLING);
  assertEquals(
    [d.steps, d.guidance, d.sampler],
    [raw.webdit.default_steps, raw.webdit.default_guidance, raw.webdit.default_sampler],
  );
});
