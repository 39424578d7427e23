/**
 * The AutoencoderKL decoder (plugins/models/vae.ts) at sd-vae's shape — PixArt-α/Σ's VAE:
 * block_out_channels [128, 256, 512, 512], 2 layers a block, 32 groups — with random
 * Student-t weights (bench/random_model.ts), one image:
 *
 * - `vae_decode_sd_512`: a 64 × 64 latent → 512² (ms; value2 = TFLOP/s counting the
 *   convolutions' and the attention's multiply-adds as 2 FLOPs);
 * - `vae_decode_sd_1024`: 128 × 128 → 1024², where the adapter binds its widest activation
 *   ([1024², 256] f32, 1 GiB);
 * - `vae_decode_sd_512_explicit_im2col`: the 512² decode with the convolutions' im2col
 *   written out (runtime/ops/conv.ts) instead of read by the GEMM (value2: × the default's
 *   time, same run).
 *
 * Before timing, the decoder's output at an 8 × 8 latent (64² pixels) is compared with the
 * CPU reference (runtime/reference/vae.ts, f64 sums) of the same weights: max |error| ≤
 * 1e-4 × RMS asserted. On a CPU adapter only a 16 × 16 latent is timed (`vae_decode_sd_128`).
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/vae_bench.ts
 *                          # → bench/results/<device>/<date>_vae.{json,md}
 *
 * @module
 */
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { vaeDecodeRef } from "../runtime/reference/vae.ts";
import { loadVaeDecoder, type VaeDecoder } from "../plugins/models/vae.ts";
import {
  parseVaeConfig,
  vaeLargestBytes,
  vaeLayout,
  vaeWeightShapes,
} from "../plugins/models/vae_config.ts";
import { BenchSuite, deviceSlug } from "./harness.ts";
import { checkWithinRms } from "./sampled_check.ts";
import { RandomSource } from "./random_model.ts";

const adapter = (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto" | "gpu" | "cpu";
const rt: Runtime = await createRuntime({ adapter });
const config = parseVaeConfig({
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  norm_num_groups: 32,
  latent_channels: 4,
  scaling_factor: 0.18215,
});
const source = new RandomSource(vaeWeightShapes(config), 5, "sd-vae");

/** Multiply-adds × 2 of one decode at an h × w latent: the convolutions and the attention. */
function decodeFlops(h: number, w: number): number {
  const rev = [...config.blockOutChannels].reverse();
  const L = config.latentChannels;
  let f = 2 * h * w * L * L + 2 * h * w * 9 * L * rev[0]; // post_quant_conv, conv_in
  const conv = (cells: number, cin: number, cout: number) => 2 * cells * 9 * cin * cout;
  const { mid, up } = vaeLayout(config);
  const res = (cells: number, cin: number, cout: number) =>
    conv(cells, cin, cout) + conv(cells, cout, cout) + (cin !== cout ? 2 * cells * cin * cout : 0);
  const P = h * w;
  f += mid.reduce((s, r) => s + res(P, r.cin, r.cout), 0) + 2 * P * rev[0] * (4 * rev[0] + 2 * P);
  let cells = P;
  for (const b of up) {
    f += b.resnets.reduce((s, r) => s + res(cells, r.cin, r.cout), 0);
    if (b.upsample) {
      cells *= 4;
      f += conv(cells, b.resnets[0].cout, b.resnets[0].cout);
    }
  }
  return f + conv(cells, config.blockOutChannels[0], config.outChannels);
}

let vae: VaeDecoder | undefined;
let checked: string | undefined;

/** Loads the decoder once and checks it against the CPU reference at an 8 × 8 latent. */
async function prepared(): Promise<{ vae: VaeDecoder; note: string }> {
  vae ??= await loadVaeDecoder(rt, source, config);
  if (!checked) {
    const shape = [1, 4, 8, 8] as const;
    const zs = new Prng(3).normals(4 * 64);
    const z = uploadTensor(rt, zs, [...shape]);
    const rec = new Recorder(rt);
    const y = vae.decode(rec, z);
    await rec.submit();
    const got = await readTensor(rt, y);
    y.release();
    z.release();
    const host = new Map<string, Float32Array>();
    for (const n of source.tensors.keys()) host.set(n, await source.readF32(n));
    const ref = vaeDecodeRef((n) => host.get(n)!, config, zs, shape);
    const { maxErr: err, rms } = checkWithinRms("vae decode vs CPU reference", got, ref, 1e-4);
    checked = `checked at an 8 × 8 latent against the CPU reference: max |err| ${
      err.toExponential(2)
    } (RMS ${rms.toFixed(3)})`;
  }
  return { vae, note: checked };
}

const suite = new BenchSuite({
  what: "vae",
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: { note: "sd-vae decoder, random weights, one image, f32" },
    }),
  teardown: () => {
    vae?.release();
    rt.destroy();
  },
});

const sizes = rt.info.fallback ? [16] : [64, 128];
const cases = [...sizes.map((h) => ({ h, explicit: false })), { h: sizes[0], explicit: true }];
const msOf = (name: string) => suite.lastResults.find((r) => r.name === name)?.median_ms;
for (const { h, explicit } of cases) {
  const px = h * 8;
  const base = `vae_decode_sd_${px}`;
  suite.add({
    name: explicit ? `${base}_explicit_im2col` : base,
    unit: "ms",
    unit2: explicit ? "× implicit" : "TFLOP/s",
    setup: async () => {
      const { vae, note } = await prepared();
      const need = vaeLargestBytes(config, h, h);
      if (need > rt.bindingLimit) throw new Error(`a ${px}² decode needs a ${need}-byte tensor`);
      const z = uploadTensor(rt, new Prng(4).normals(4 * h * h), [1, 4, h, h]);
      return {
        device: rt.device,
        run: async (reps) => {
          const rec = new Recorder(rt);
          const o = { im2col: explicit ? "explicit" as const : "implicit" as const };
          for (let i = 0; i < reps; i++) vae.decode(rec, z, o).release();
          await rec.submit();
        },
        value2: (ms) => {
          if (!explicit) return decodeFlops(h, h) / (ms * 1e9);
          const implicitMs = msOf(base);
          return implicitMs && Number.isFinite(implicitMs) ? ms / implicitMs : undefined;
        },
        note: `${h} × ${h} latent → ${px}² RGB${explicit ? ", im2col written out" : ""}; ${note}`,
        dispose: () => z.release(),
      };
    },
    timing: { iterations: 5, minSampleMs: 200, maxReps: 8 },
  });
}

suite.register();
