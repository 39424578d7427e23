import { assert, assertEquals } from "../../tests/assert.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { type CliRun, runCli } from "../../tests/cli_helpers.ts";

const FIXTURE = new URL("../../tests/fixtures/safetensors/reference.safetensors", import.meta.url)
  .pathname;

/** Runs `deno run -A cli.ts inspect …args` with a 20 s guard against hangs. */
function inspect(...args: string[]): Promise<CliRun> {
  return runCli(["inspect", ...args], { timeoutMs: 20_000 });
}

/** 8-byte length, header text (+ `pad` spaces), then `data` zero bytes. */
function rawFile(header: string, data: number, pad = 0): Uint8Array {
  const h = new TextEncoder().encode(header + " ".repeat(pad));
  const out = new Uint8Array(8 + h.length + data);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

const T = (dtype: string, shape: number[], a: number, b: number) =>
  JSON.stringify({ dtype, shape, data_offsets: [a, b] });

/** Asserts exit 1 and exactly one stderr line `error: <file>: <field>: …<includes>…`. */
function assertBad(r: CliRun, file: string, field: string, includes: string, what: string): void {
  // Deno itself may say it waits for the node_modules lock when tests run in parallel.
  const lines = r.stderr.trimEnd().split("\n").filter((l) => !l.startsWith("Blocking waiting"));
  assertEquals(r.code, 1, `${what}: exit code (stderr: ${r.stderr})`);
  assertEquals(lines.length, 1, `${what}: one stderr line, got ${JSON.stringify(r.stderr)}`);
  const prefix = `error: ${file}: ${field}: `;
  assert(lines[0].startsWith(prefix), `${what}: "${lines[0]}" should start with "${prefix}"`);
  assert(lines[0].includes(includes), `${what}: "${lines[0]}" should include "${includes}"`);
}

Deno.test("inspect: a good file lists tensors, metadata and the plan; --json last line", async () => {
  const r = await inspect(FIXTURE, "--json");
  assertEquals(r.code, 0, r.stderr);
  assert(r.stderr.includes("f8_e4m3  F8_E4M3"), r.stderr);
  assert(r.stderr.includes('      "layers": ['), "the plan is pretty-printed");
  const last = JSON.parse(r.stdout.trimEnd().split("\n").at(-1)!);
  assertEquals([last.file, last.ok, last.tensors.length, last.format], [
    FIXTURE,
    true,
    18,
    "safetensors",
  ]);
  assertEquals(last.tensors.find((t: { name: string }) => t.name === "f32"), {
    name: "f32",
    dtype: "F32",
    shape: [2, 3],
    bytes: 24,
    nan: 0,
    inf: 0,
  });
  assertEquals(last.metadata.format, "pt");
  assertEquals(last.plan, { layers: [{ name: "blocks.0", wbits: 4 }] });
  assertEquals(last.nonFinite, 3); // the fixture holds Inf/NaN codes on purpose: reported, not fatal
});

Deno.test("inspect: each bad file gives exit 1 and one error line naming file and field", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = rawFile(`{"a":${T("F32", [2], 0, 8)},"b":${T("F16", [3], 8, 14)}}`, 14, 2);
    const cases: [string, Uint8Array | null, string, string][] = [
      ["truncated", good.subarray(0, good.length - 3), "b", "truncated"],
      ["empty file", new Uint8Array(0), "header length", "shorter than the 8-byte"],
      [
        "header past end",
        (() => {
          const b = good.slice();
          new DataView(b.buffer).setBigUint64(0, 4096n, true);
          return b;
        })(),
        "header length",
        "runs past the end",
      ],
      [
        "huge header length",
        (() => {
          const b = good.slice();
          new DataView(b.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
          return b;
        })(),
        "header length",
        "cap",
      ],
      [
        "overlap",
        rawFile(`{"a":${T("F32", [2], 0, 8)},"b":${T("F16", [3], 4, 10)}}`, 10),
        "b",
        "overlap",
      ],
      [
        "hole",
        rawFile(`{"a":${T("F32", [2], 0, 8)},"b":${T("F16", [3], 12, 18)}}`, 18),
        "b",
        "hole",
      ],
      [
        "trailing bytes",
        rawFile(`{"a":${T("F32", [2], 0, 8)}}`, 16),
        "data",
        "covered by no tensor",
      ],
      ["unknown dtype", rawFile(`{"a":${T("F31", [2], 0, 8)}}`, 8), "a", 'unknown dtype "F31"'],
      ["shape/bytes", rawFile(`{"a":${T("F32", [2, 2], 0, 8)}}`, 8), "a", "needs 16"],
      ["invalid JSON", rawFile(`{"a":${T("F32", [2], 0, 8)}`, 8), "header", "invalid JSON"],
      ["non-object header", rawFile("[]", 0), "header", 'must begin with "{"'],
      ["string entry", rawFile('{"a":"x"}', 0), "a", "entry must be an object"],
      [
        "duplicate",
        rawFile(`{"a":${T("F32", [1], 0, 4)},"a":${T("F32", [1], 4, 8)}}`, 8),
        "a",
        "twice",
      ],
      [
        "depth bomb",
        rawFile(`{"a":${"[".repeat(5000)}${"]".repeat(5000)}}`, 0),
        "a",
        "nests deeper",
      ],
      [
        "bad metadata",
        rawFile('{"__metadata__":{"k":[1]}}', 0),
        "__metadata__",
        "must be a string",
      ],
      ["newline in name", rawFile(`{"a\\nb":${T("F32", [3], 0, 8)}}`, 8), "a\\nb", "needs 12"],
      ["missing file", null, "path", "no such file"],
    ];
    const runs = await Promise.all(cases.map(async ([, bytes], i) => {
      const p = `${dir}/case${i}.safetensors`;
      if (bytes) await Deno.writeFile(p, bytes);
      return [p, await inspect(p)] as const;
    }));
    runs.forEach(([p, r], i) => assertBad(r, p, cases[i][2], cases[i][3], cases[i][0]));

    const dr = await inspect(dir, "--json");
    assertBad(dr, dir, "path", "is a directory without", "directory");
    const last = JSON.parse(dr.stdout.trimEnd().split("\n").at(-1)!);
    assertEquals([last.ok, last.file], [false, dir]);
    assert(String(last.error).startsWith(`${dir}: path: is a directory`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspect: usage errors exit 2; --help exits 0", async () => {
  const [none, two, unknown, help] = await Promise.all([
    inspect(),
    inspect("a.safetensors", "b.safetensors"),
    inspect("--frobnicate", FIXTURE),
    inspect("--help"),
  ]);
  assertEquals([none.code, two.code, unknown.code, help.code], [2, 2, 2, 0]);
  assert(none.stderr.includes("missing FILE"));
  assert(two.stderr.includes("expected one FILE, got 2"));
  assert(help.stderr.includes("deno task inspect FILE"));
});

Deno.test("inspect: sharded index and model folder; --fail-nonfinite turns NaN into exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeSafetensors(`${dir}/m-1.safetensors`, {
      x: { dtype: "F32", shape: [2], data: new Float32Array([NaN, 1]) },
    });
    await writeSafetensors(`${dir}/m-2.safetensors`, {
      y: { dtype: "BF16", shape: [1], data: new Float32Array([2]) },
    });
    const idx = `${dir}/diffusion_pytorch_model.safetensors.index.json`;
    await Deno.writeTextFile(
      idx,
      JSON.stringify({
        metadata: { total_size: 6 },
        weight_map: { x: "m-1.safetensors", y: "m-2.safetensors" },
      }),
    );
    const [folder, strict, noValues] = await Promise.all([
      inspect(dir, "--json"),
      inspect(idx, "--fail-nonfinite"),
      inspect(idx, "--no-values", "--fail-nonfinite"),
    ]);
    assertEquals(folder.code, 0, folder.stderr);
    const last = JSON.parse(folder.stdout.trimEnd().split("\n").at(-1)!);
    assertEquals([last.format, last.shards.length, last.nonFinite, last.metadata.total_size], [
      "sharded",
      2,
      1,
      "6",
    ]);
    assertBad(strict, `${dir}/m-1.safetensors`, "x", "1 NaN and 0 Inf", "fail-nonfinite");
    assertEquals(noValues.code, 0, noValues.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
