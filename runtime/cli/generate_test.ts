import { assert, assertEquals } from "../../tests/assert.ts";
import { readPng } from "../io/png.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { type CliRun, runCli } from "../../tests/cli_helpers.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

/** Runs `deno run -A cli.ts generate --model FIXTURE …args` (exit code, stdout and stderr). */
function generateBare(...args: string[]): Promise<CliRun> {
  return runCli(["generate", "--model", FIXTURE, ...args]);
}

/** {@linkcode generateBare} with --prompt "red apple". */
function generate(...args: string[]): ReturnType<typeof generateBare> {
  return generateBare("--prompt", "red apple", ...args);
}

/** Asserts a run exited 2 with `msg` on stderr, before sampling (no progress bar). */
function assertUsage(r: { code: number; stderr: string }, msg: string): void {
  assertEquals(r.code, 2, r.stderr);
  assert(r.stderr.includes(msg), r.stderr);
  assert(!r.stderr.includes("sampling ["), r.stderr);
  assert(!r.stderr.includes("    at "), r.stderr); // no stack trace
}

Deno.test("generate: clashing or missing outputs, --n against the files' batch, --prompt with --caption-embeds, negative numbers: exit 2 before sampling", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_gen_use_" });
  try {
    const lat = `${dir}/noise.safetensors`;
    await writeSafetensors(lat, {
      latents: { dtype: "F32", shape: [1, 3, 8, 8], data: new Float32Array(192).fill(0.5) },
    });
    const emb = `${dir}/emb.safetensors`;
    await writeSafetensors(emb, {
      prompt_embeds: { dtype: "F32", shape: [1, 4, 8], data: new Float32Array(32) },
    });
    const png = `${dir}/same.png`;
    assertUsage(
      await generate("--out", png, "--save-latents", png),
      `--out and --save-latents both name ${png}`,
    );
    // --n 2: the second image is x_1.png.
    assertUsage(
      await generate("--n", "2", "--out", `${dir}/x.png`, "--save-latents", `${dir}/x_1.png`),
      `--out and --save-latents both name ${dir}/x_1.png`,
    );
    assertUsage(
      await generate("--out", `${dir}/nodir/x.png`),
      `--out ${dir}/nodir/x.png: the folder ${dir}/nodir does not exist`,
    );
    assertUsage(
      await generate("--out", `${dir}/a.png`, "--save-latents", `${dir}/nodir/l.safetensors`),
      `--save-latents ${dir}/nodir/l.safetensors: the folder ${dir}/nodir does not exist`,
    );
    assertUsage(
      await generate("--n", "3", "--latents", lat, "--out", `${dir}/n.png`),
      `--n 3 disagrees with --latents ${lat} (batch 1)`,
    );
    assertUsage(
      await generateBare("--n", "3", "--caption-embeds", emb, "--out", `${dir}/n.png`),
      "--n 3 disagrees with --caption-embeds (batch 1)",
    );
    assertUsage(
      await generate("--caption-embeds", emb, "--out", `${dir}/p.png`),
      "give --prompt or --caption-embeds, not both",
    );
    for (const flag of ["--seed", "--steps", "--guidance"]) {
      const r = await generate(flag, "-1", "--out", `${dir}/neg.png`);
      assertUsage(r, `${flag} must be in [`);
      assert(r.stderr.includes("got -1"), r.stderr);
    }
    for (const f of await Array.fromAsync(Deno.readDir(dir))) {
      assert(f.name.endsWith(".safetensors"), `wrote ${f.name}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generate: --latents of the wrong channels or an odd height, and a FLUX sampler, are named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_gen_lat_" });
  try {
    const write = (name: string, shape: number[]) =>
      writeSafetensors(`${dir}/${name}`, {
        latents: {
          dtype: "F32",
          shape,
          data: new Float32Array(shape.reduce((a, b) => a * b)).fill(0.5),
        },
      });
    await write("c4.safetensors", [1, 4, 8, 8]);
    await write("odd.safetensors", [1, 3, 7, 8]);
    let r = await generate("--latents", `${dir}/c4.safetensors`, "--out", `${dir}/a.png`);
    assertUsage(
      r,
      `--latents ${dir}/c4.safetensors: expected [B, C, H, W] = [1, 3, 8, 8] (the model's 3 ` +
        "latent channels), got [1, 4, 8, 8]",
    );
    r = await generate("--latents", `${dir}/odd.safetensors`, "--out", `${dir}/a.png`);
    assertUsage(r, "the latents' height 7 is not a multiple of the model's patch size 2");
    r = await generate("--sampler", "flow-euler", "--out", `${dir}/a.png`);
    assertUsage(r, "--sampler must be dpm++2m or ddim for this (epsilon) model, got flow-euler");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generate --height/--width: the image has that size; bad sizes exit 2 naming the flag", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_gen_" });
  try {
    const png = `${dir}/rect.png`;
    const r = await generate("--height", "12", "--width", "20", "--steps", "1", "--out", png);
    assertEquals(r.code, 0, r.stderr);
    const img = await readPng(png);
    assertEquals([img.width, img.height], [20, 12]);

    const odd = await generate("--height", "13", "--out", `${dir}/odd.png`);
    assertEquals(odd.code, 2, odd.stderr);
    assert(odd.stderr.includes("--height must be a multiple of 2 pixels, got 13"), odd.stderr);

    // --latents fixes the size: a different --width is refused.
    const lat = `${dir}/noise.safetensors`;
    await writeSafetensors(lat, {
      latents: { dtype: "F32", shape: [1, 3, 8, 8], data: new Float32Array(192).fill(0.5) },
    });
    const clash = await generate("--latents", lat, "--width", "16", "--out", `${dir}/c.png`);
    assertEquals(clash.code, 2, clash.stderr);
    assert(clash.stderr.includes("--width 16 disagrees with --latents (8 pixels)"), clash.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generate --profile-step: the step's kernels by GPU time, on stderr and in --json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_prof_" });
  try {
    const r = await generate(
      "--steps",
      "2",
      "--profile-step",
      "1",
      "--json",
      "--out",
      `${dir}/p.png`,
    );
    if (r.stderr.includes("lacks timestamp-query")) return; // an adapter without them
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("step 1's kernels (GPU time):"), r.stderr);
    const j = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assertEquals(j.profile.step, 1);
    const kernels = j.profile.kernels as { name: string; ms: number; launches: number }[];
    assert(kernels.some((k) => k.name.startsWith("gemm")), JSON.stringify(kernels));
    for (let i = 1; i < kernels.length; i++) assert(kernels[i - 1].ms >= kernels[i].ms);
    const bad = await generate("--steps", "2", "--profile-step", "2", "--out", `${dir}/q.png`);
    assertEquals(bad.code, 2, bad.stderr);
    assert(bad.stderr.includes("--profile-step must be in [0, 1], got 2"), bad.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
