/**
 * The ablation harness on a latent model with a VAE (tests/latent_models.ts): its rows score the
 * decoded images, and a resumed run gets the reference's decoded images back from the state.
 */
import { assert, assertEquals } from "../tests/assert.ts";
import { latentEmojiModel } from "../tests/latent_models.ts";
import { ablation } from "./ablation.ts";

Deno.test("ablation: a latent model with a VAE scores its decoded images, resumed too", async () => {
  const dir = await Deno.makeTempDir();
  const model = await latentEmojiModel(true);
  try {
    const matrix = {
      model,
      prompts: ["red apple"],
      steps: 2,
      batch: 1,
      calibration: { prompts: ["red apple"], steps: 2 },
      rows: [{ quantizer: "uniform", wbits: 8, abits: 8 }],
    };
    const file = `${dir}/m.json`;
    await Deno.writeTextFile(file, JSON.stringify(matrix));
    const args = ["--matrix", file, "--out", `${dir}/out`, "--state", `${dir}/state`, "--adapter"];
    assertEquals(await ablation([...args, "cpu"]), 0);
    // Grown and resumed: the FP32 reference's decoded images come back from the state folder.
    matrix.rows.push({ quantizer: "uniform", wbits: 8, abits: 16 } as never);
    await Deno.writeTextFile(file, JSON.stringify(matrix));
    assertEquals(await ablation([...args, "cpu", "--resume", "--name", "grown"]), 0);
    const [sub] = [...Deno.readDirSync(`${dir}/out`)];
    const json = [...Deno.readDirSync(`${dir}/out/${sub.name}`)].find((e) =>
      e.name.endsWith("_ablation_grown.json")
    )!;
    const r = JSON.parse(await Deno.readTextFile(`${dir}/out/${sub.name}/${json.name}`));
    assertEquals(r.rows.length, 3);
    for (const row of r.rows.slice(1)) assert(row.psnr > 20 && row.ssim > 0.5, JSON.stringify(row));
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(model, { recursive: true });
  }
});
