import { assert, assertEquals, maxAbsDiff, rms } from "../tests/assert.ts";
import { gpuTest, withRuntime } from "../tests/gpu.ts";
import { loadPipeline } from "../runtime/pipeline.ts";
import { calibrate } from "../runtime/quant/calibrate.ts";
import { channelRatio, planRotations, readLinearWeights } from "../runtime/quant/rotation_plan.ts";
import { injectSalientChannels } from "./salient_model.ts";

const FIXTURE = new URL("../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test(
  "salient channels: same images, salient inputs, ARS takes the outlier branch there",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const channels = await injectSalientChannels(FIXTURE, dir, { seed: 1 });
      assertEquals(channels.length, 2 * 4 * 3); // 2 blocks × 4 sites × 3 offsets
      await withRuntime(async (rt) => {
        const run = async (path: string) => {
          const pipe = await loadPipeline(rt, { path });
          try {
            return (await pipe.generate({ prompt: "red apple", steps: 2, seed: 3 })).latents;
          } finally {
            pipe.release();
          }
        };
        const a = await run(FIXTURE);
        const b = await run(dir);
        // The offsets cancel in the next bias; only f32 rounding of β·W (|β| ≤ 245) remains.
        const { max } = maxAbsDiff(b, a);
        assert(max <= 1e-4 * rms(a), `images differ by ${max} (RMS ${rms(a)})`);

        const stats = await calibrate(rt, {
          path: dir,
          prompts: ["red apple"],
          steps: 2,
          sampleRows: 16,
          cacheDir: false,
        });
        for (const c of channels) {
          const s = stats.layers.get(c.layer)!;
          assert(
            Math.abs(s.absmax[c.channel]) >= 0.9 * Math.abs(c.beta),
            `${c.layer}[${c.channel}]`,
          );
          assert(channelRatio(s) > 20, `${c.layer}: max/median ${channelRatio(s)}`);
        }
        const names = [...new Set(channels.map((c) => c.layer))];
        const weights = await readLinearWeights(dir, names);
        const plans = planRotations(stats, weights, { rotation: "adaptive", maxSteps: 32 });
        for (const n of names) assertEquals(plans.get(n)!.kind, "outlier", n);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
