import { assertEquals, assertRejects } from "../../tests/assert.ts";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { CheckpointError } from "../errors.ts";
import { quantizeModel } from "./quantize.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test("quantize: a checkpoint that does not match its config is named before any work", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_ckpt_check_" });
  try {
    cpSync(FIXTURE, dir, { recursive: true });
    const cfgPath = join(dir, "transformer", "config.json");
    const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    const o = { model: dir, quantizer: "uniform", wbits: 8, abits: 16 };
    await quantizeModel(o); // as shipped: fine
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...cfg, caption_channels: 64 }));
    const e = await assertRejects(() => quantizeModel(o), CheckpointError) as CheckpointError;
    assertEquals(e.field, "caption_projection.linear_1.weight");
    assertEquals(e.file.endsWith("diffusion_pytorch_model.safetensors"), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
