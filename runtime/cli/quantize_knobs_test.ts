import { assert, assertEquals } from "../../tests/assert.ts";
import { runCli } from "../../tests/cli_helpers.ts";
import { META, openArtifact } from "../quant/artifact.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test(
  "quantize --greedy-objective and --paro-alpha reach the plan; misuse exits 2",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webdit_cli_knobs_" });
    try {
      const calib = `${dir}/prompts.txt`;
      await Deno.writeTextFile(calib, "red apple\nhappy cat\n");
      const base = ["quantize", "--model", FIXTURE, "--quantizer", "uniform", "--wbits", "8"];
      const out = `${dir}/q.safetensors`;
      const r = await runCli([
        ...base,
        ...["--abits", "8", "--rotation", "outlier", "--greedy-objective", "range"],
        ...["--attention", "paro", "--density", "0.5", "--paro-alpha", "0.9"],
        ...["--calib-file", calib, "--calib-steps", "2", "--out", out],
      ]);
      assertEquals(r.code, 0, r.stderr);
      const a = await openArtifact(out);
      try {
        assertEquals(a.plan.calibration?.rotationOptions, { greedyObjective: "range" });
        const attention = JSON.parse(a.file.metadata[META.attention]);
        assertEquals(attention.meta.alpha, 0.9);
      } finally {
        a.close();
      }
      const misuse: [string[], string][] = [
        [["--paro-alpha", "0.5"], "--paro-alpha applies to --attention paro"],
        [["--attention", "paro", "--paro-alpha", "1.5"], "--paro-alpha"],
        [["--greedy-objective", "range"], "--greedy-objective applies to --rotation outlier"],
        [["--rotation", "hadamard", "--greedy-objective", "range"], "applies to --rotation"],
        [["--rotation", "outlier", "--greedy-objective", "minmax"], "--greedy-objective"],
      ];
      for (const [extra, msg] of misuse) {
        const bad = await runCli([
          ...base,
          "--abits",
          "16",
          ...extra,
          "--out",
          `${dir}/x.safetensors`,
        ]);
        assertEquals(bad.code, 2, `${extra.join(" ")}: ${bad.stderr}`);
        assert(bad.stderr.includes(msg), `${extra.join(" ")}: ${bad.stderr}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
