import { assert, assertEquals } from "../../tests/assert.ts";
import { readPng } from "../io/png.ts";
import { writeSafetensors } from "../io/safetensors.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

/** Runs `deno run -A cli.ts generate …args` (exit code, stdout and stderr). */
async function generate(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "generate", "--model", FIXTURE, "--prompt", "red apple", ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    signal: AbortSignal.timeout(120_000),
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

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
