import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { join } from "node:path";
import { createDefaultRegistry } from "../builtins.ts";
import { uniformQuantizer } from "../../plugins/quantizers/uniform.ts";
import { CheckpointError } from "../errors.ts";
import { loadPipeline } from "../pipeline.ts";
import { openArtifact, paramName } from "./artifact.ts";
import { quantizeModel, writeArtifact } from "./quantize.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test(
  "a registered quantizer plugin quantizes, writes and loads by its stored form, not its name",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webdit_custom_q_" });
    try {
      // A user's plugin of the affine form (codes with scale and zero) under its own name.
      const registry = createDefaultRegistry().register({
        ...uniformQuantizer,
        name: "affine-user",
        calibrate: (w, o) => ({ ...uniformQuantizer.calibrate(w, o), quantizer: "affine-user" }),
      });
      const r = await quantizeModel({
        model: FIXTURE,
        quantizer: "affine-user",
        wbits: 4,
        abits: 16,
        registry,
      });
      const path = join(dir, "q.safetensors");
      await writeArtifact(path, r);
      await withRuntime(async (rt) => {
        const pipe = await loadPipeline(rt, { path });
        try {
          const out = await pipe.generate({ prompt: "red apple", steps: 1 });
          assert(out.latents.every(Number.isFinite));
        } finally {
          pipe.release();
        }
      });
      // Without its zero points it is refused, naming the missing tensor.
      const a = await openArtifact(path);
      const layer = Object.entries(a.plan.layers).find(([, l]) => l.quantizer !== "fp")![0];
      a.close();
      const zero = paramName(layer, "zero");
      const { [zero]: _, ...tensors } = r.tensors;
      await writeArtifact(path, { ...r, tensors }, { force: true });
      const b = await openArtifact(path);
      try {
        const e = await assertRejects(() => b.quantizedWeight(layer), CheckpointError);
        assertEquals((e as CheckpointError).field, zero);
      } finally {
        b.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
