import { assert, assertEquals } from "../tests/assert.ts";
import { gpuTest, withRuntime } from "../tests/gpu.ts";
import {
  BenchSuite,
  deviceSlug,
  estimateRow,
  gpuDriver,
  median,
  nvidiaSmiDriver,
  type ResultsFile,
  resultsHeader,
  resultsMarkdown,
  timeGpu,
  withoutBadValue2,
  writeResults,
  writeResultsAt,
} from "./harness.ts";

/** The header of the test results files. */
const TEST_HEADER = {
  device: "Test GPU",
  adapter: "vulkan",
  deno: Deno.version.deno,
  commit: "abc1234",
  date: "2026-11-27",
  command: "deno bench",
};

Deno.test("median of odd, even and empty lists", () => {
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assert(Number.isNaN(median([])));
});

Deno.test("resultsHeader: the GPU driver where WEBDIT_GPU_DRIVER gives it", () => {
  const before = Deno.env.get("WEBDIT_GPU_DRIVER");
  try {
    Deno.env.delete("WEBDIT_GPU_DRIVER");
    assertEquals(resultsHeader("d", "c", "x").driver, undefined);
    Deno.env.set("WEBDIT_GPU_DRIVER", "NVIDIA 1.2");
    const h = resultsHeader("d", "c", "x");
    assertEquals([h.device, h.commit, h.command, h.driver], ["d", "c", "x", "NVIDIA 1.2"]);
  } finally {
    if (before === undefined) Deno.env.delete("WEBDIT_GPU_DRIVER");
    else Deno.env.set("WEBDIT_GPU_DRIVER", before);
  }
});

Deno.test("gpuDriver: WEBDIT_GPU_DRIVER, else nvidia-smi's on NVIDIA devices only", () => {
  const before = Deno.env.get("WEBDIT_GPU_DRIVER");
  try {
    Deno.env.delete("WEBDIT_GPU_DRIVER");
    const smi = () => "580.1";
    assertEquals(gpuDriver("NVIDIA H200", smi), "NVIDIA 580.1");
    assertEquals(gpuDriver("llvmpipe (LLVM 15.0.6, 256 bits)", smi), undefined);
    assertEquals(gpuDriver("host CPU (x86_64)", smi), undefined);
    assertEquals(gpuDriver("NVIDIA H200", () => undefined), undefined);
    Deno.env.set("WEBDIT_GPU_DRIVER", "NVIDIA 1.2");
    assertEquals(gpuDriver("NVIDIA H200", smi), "NVIDIA 1.2");
    // A host-CPU run used no GPU: the machine's GPU driver is not its.
    assertEquals(gpuDriver("host CPU (x86_64)", smi), undefined);
    assertEquals(resultsHeader("host CPU (x86_64)", "c", "x").driver, undefined);
  } finally {
    if (before === undefined) Deno.env.delete("WEBDIT_GPU_DRIVER");
    else Deno.env.set("WEBDIT_GPU_DRIVER", before);
  }
  // Without nvidia-smi (or without --allow-run) the query gives nothing, and does not throw.
  const v = nvidiaSmiDriver();
  assert(v === undefined || /^\d/.test(v), v);
});

Deno.test("device slugs follow the results folder names", () => {
  assertEquals(deviceSlug("NVIDIA H100 80GB HBM3"), "nvidia-h100");
  assertEquals(deviceSlug("NVIDIA H200"), "nvidia-h200");
  assertEquals(deviceSlug("llvmpipe (LLVM 15.0.6, 256 bits)", true), "cpu-lavapipe");
  assertEquals(deviceSlug("Some GPU (rev 2)"), "some-gpu");
});

Deno.test("results files: json and md with every row", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file: ResultsFile = {
      ...TEST_HEADER,
      results: [
        { name: "gemm_f32_4096", value: 12.1, unit: "TFLOP/s", median_ms: 11.4, min_ms: 11.2 },
        { name: "x_ms", value: 3, unit: "ms", median_ms: 3, min_ms: 2.5, note: "n" },
      ],
    };
    const paths = await writeResults("test-gpu", "gemm", file, dir);
    assertEquals(paths.json, `${dir}/test-gpu/2026-11-27_gemm.json`);
    assertEquals(JSON.parse(await Deno.readTextFile(paths.json)), file);
    const md = await Deno.readTextFile(paths.md);
    assertEquals(md, resultsMarkdown(file));
    assert(md.includes("| gemm_f32_4096 | 12.1 | TFLOP/s | 11.4 | 11.2 |  |"), md);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("timeGpu waits for the queue and takes the iterations asked", gpuTest, async () => {
  await withRuntime(async (rt) => {
    let runs = 0;
    const t = await timeGpu(rt.device, () => {
      runs++;
      rt.device.queue.submit([rt.device.createCommandEncoder().finish()]);
    }, { warmup: 2, iterations: 12, minSampleMs: 0 });
    assertEquals(runs, 16); // one untimed unit, one calibration sample, 2 warm-ups, 12 timed
    assertEquals(t.samples.length, 12);
    assertEquals(t.reps, 1);
    assert(t.min_ms <= t.median_ms);
  });
});

Deno.test("timeGpu batches short work until a sample is long enough", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const units: number[] = [];
    const t = await timeGpu(rt.device, (reps) => {
      units.push(reps);
      return new Promise((r) => setTimeout(r, 2 * reps)); // 2 ms a unit
    }, { warmup: 0, iterations: 3, minSampleMs: 60, chunks: 1 });
    // Deno resolves onSubmittedWorkDone ~10-15 ms late, so reps is 16-32 here, ≥ 4 anywhere.
    assert(t.reps >= 4 && t.reps <= 32, `reps ${t.reps}`);
    assertEquals(units.slice(0, 4), [1, 1, 2, 4]); // one untimed unit, then the calibration
    assert(t.min_ms >= 1.9 && t.median_ms < 20, `per unit ${t.median_ms} ms`);
  });
});

Deno.test("timeGpu calibrates past a slow first use", gpuTest, async () => {
  await withRuntime(async (rt) => {
    let calls = 0;
    const t = await timeGpu(rt.device, (reps) => {
      const ms = calls++ === 0 ? 120 : 2 * reps; // the first call pays a one-off 120 ms
      return new Promise((r) => setTimeout(r, ms));
    }, { warmup: 0, iterations: 3, minSampleMs: 60, chunks: 1 });
    assert(t.reps >= 4, `reps ${t.reps}: the slow first call ended the calibration`);
    assert(t.median_ms < 20, `per unit ${t.median_ms} ms`);
  });
});

Deno.test("timeGpu splits a sample into chunks that add up to its units", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const units: number[] = [];
    const t = await timeGpu(rt.device, (reps) => {
      units.push(reps);
      return new Promise((r) => setTimeout(r, 2 * reps));
    }, { warmup: 0, iterations: 1, minSampleMs: 60, chunks: 3 });
    // One untimed unit, a sample of 1 unit, then 2 units in 2 calls.
    assertEquals(units.slice(0, 4), [1, 1, 1, 1]);
    const last = units.slice(-Math.min(3, t.reps));
    assertEquals(last.reduce((a, b) => a + b, 0), t.reps);
    assert(Math.max(...last) - Math.min(...last) <= 1, `chunks ${last}`);
  });
});

Deno.test("a suite turns a failing check into a row with a note", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const suite = new BenchSuite({
      what: "test",
      write: false,
      describe: () => Promise.resolve({ device: "d", slug: "d" }),
    });
    suite.add({
      name: "ok_case",
      unit: "ms",
      setup: () => Promise.resolve({ device: rt.device, run: () => {} }),
      timing: { warmup: 0, iterations: 10, minSampleMs: 0 },
    });
    suite.add({
      name: "bad_case",
      unit: "ms",
      setup: () => Promise.reject(new Error("wrong result at [0, 0]")),
    });
    const rows = await suite.run(() => {});
    assertEquals(rows.map((r) => r.name), ["ok_case", "bad_case"]);
    assert(rows[0].median_ms >= 0 && rows[0].value === rows[0].median_ms);
    assertEquals(rows[0].reps, 1);
    assertEquals(rows[0].reps, 1);
    assert(Number.isNaN(rows[1].value));
    assertEquals(rows[1].note, "failed: wrong result at [0, 0]");
  });
});

Deno.test(
  "a suite writes its rows as they finish, and WEBDIT_BENCH_FILTER drops cases",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir();
    const saved = Deno.env.get("WEBDIT_RESULTS_DIR");
    Deno.env.set("WEBDIT_RESULTS_DIR", dir);
    Deno.env.set("WEBDIT_BENCH_FILTER", "^keep_");
    try {
      await withRuntime(async (rt) => {
        const suite = new BenchSuite({
          what: "partial",
          write: true,
          describe: () => Promise.resolve({ device: "d", slug: "d" }),
        });
        const timing = { warmup: 0, iterations: 2, minSampleMs: 0 };
        const run = () => {};
        suite.add({
          name: "keep_first",
          unit: "ms",
          setup: () => Promise.resolve({ device: rt.device, run }),
          timing,
        });
        suite.add({
          name: "dropped",
          unit: "ms",
          setup: () => Promise.reject(new Error("filtered cases never run")),
        });
        // While the second case is set up, the file already holds the first row.
        let seen: ResultsFile | undefined;
        suite.add({
          name: "keep_second",
          unit: "ms",
          setup: async () => {
            const [f] = [...Deno.readDirSync(`${dir}/d`)].filter((e) => e.name.endsWith(".json"));
            seen = JSON.parse(await Deno.readTextFile(`${dir}/d/${f.name}`));
            return { device: rt.device, run };
          },
          timing,
        });
        assertEquals(suite.cases.map((c) => c.name), ["keep_first", "keep_second"]);
        const file = await suite.runAndWrite();
        assertEquals(seen?.results.map((r) => r.name), ["keep_first"]);
        assertEquals(seen?.extra?.partial, "1 of 2 cases");
        assertEquals(file.results.map((r) => r.name), ["keep_first", "keep_second"]);
        assertEquals(file.extra?.partial, undefined);
        assert(file.command.startsWith("WEBDIT_BENCH_FILTER='^keep_' "), file.command);
      });
    } finally {
      Deno.env.delete("WEBDIT_BENCH_FILTER");
      if (saved === undefined) Deno.env.delete("WEBDIT_RESULTS_DIR");
      else Deno.env.set("WEBDIT_RESULTS_DIR", saved);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("results files: a failed case goes to extra.failed, not a null value", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ok = { name: "a_ms", value: 2, unit: "ms", median_ms: 2, min_ms: 1.5 };
    const bad = {
      name: "b_ms",
      value: NaN,
      unit: "ms",
      median_ms: NaN,
      min_ms: NaN,
      note: "failed: x",
    };
    const file: ResultsFile = {
      ...TEST_HEADER,
      results: [ok, bad],
    };
    const paths = await writeResults("test-gpu", "x", file, dir);
    const read = JSON.parse(await Deno.readTextFile(paths.json));
    assertEquals(read.results, [ok]);
    assertEquals(read.extra.failed, [{ name: "b_ms", unit: "ms", note: "failed: x" }]);
    assert((await Deno.readTextFile(paths.md)).includes("| b_ms | — | | | | failed: x |"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("results files: a non-finite value2 is omitted and the note says so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ok = { name: "a_ms", value: 2, unit: "ms", median_ms: 2, min_ms: 1.5, value2: 3 };
    const nan = { ...ok, name: "b_ms", value2: NaN, unit2: "× dense", note: "checked" };
    const inf = { ...ok, name: "c_ms", value2: Infinity };
    const file: ResultsFile = {
      ...TEST_HEADER,
      results: [ok, nan, inf],
    };
    const paths = await writeResults("test-gpu", "x", file, dir);
    const text = await Deno.readTextFile(paths.json);
    assert(!text.includes("null"), text);
    const read = JSON.parse(text);
    assertEquals(read.results, [
      ok,
      {
        name: "b_ms",
        value: 2,
        unit: "ms",
        median_ms: 2,
        min_ms: 1.5,
        note: "checked; no value2 (× dense): NaN omitted",
      },
      {
        name: "c_ms",
        value: 2,
        unit: "ms",
        median_ms: 2,
        min_ms: 1.5,
        note: "no value2: Infinity omitted",
      },
    ]);
    assertEquals(withoutBadValue2(ok), ok);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a suite row has no value2 where the case has none this run", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const suite = new BenchSuite({
      what: "test",
      write: false,
      describe: () => Promise.resolve({ device: "d", slug: "d" }),
    });
    const timing = { warmup: 0, iterations: 2, minSampleMs: 0 };
    for (const [name, v2] of [["with_peer", 2], ["without_peer", undefined]] as const) {
      suite.add({
        name,
        unit: "ms",
        unit2: "× dense",
        setup: () =>
          Promise.resolve({ device: rt.device, run: () => {}, value2: () => v2, note: "n" }),
        timing,
      });
    }
    const rows = await suite.run(() => {});
    assertEquals([rows[0].value2, rows[0].unit2, rows[0].note], [2, "× dense", "n"]);
    assertEquals([rows[1].value2, rows[1].unit2], [undefined, undefined]);
    assertEquals(rows[1].note, "n; no value2 (× dense): its peer is not in this run");
  });
});

Deno.test("writeResults: a bench's own markdown of the stored file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file: ResultsFile = {
      ...TEST_HEADER,
      results: [{ name: "a_ms", value: NaN, unit: "ms", median_ms: NaN, min_ms: NaN }],
    };
    const paths = await writeResults(
      "test-gpu",
      "x",
      file,
      dir,
      (f) => `rows ${f.results.length}\n`,
    );
    assertEquals(await Deno.readTextFile(paths.md), "rows 0\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("estimateRow: an extrapolation has no timing of its own and says so", () => {
  assertEquals(estimateRow("x_est", 12.5, "min", "the rows above"), {
    name: "x_est",
    value: 12.5,
    unit: "min",
    median_ms: 0,
    min_ms: 0,
    note: "estimate from the rows above; not measured (no median/min)",
  });
});

Deno.test("writeResultsAt: a base without a folder writes in the current one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_results_at_" });
  const cwd = Deno.cwd();
  try {
    Deno.chdir(dir);
    const file = { ...TEST_HEADER, results: [] };
    assertEquals(await writeResultsAt("x", file, () => "md\n"), { json: "x.json", md: "x.md" });
    const names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
    assertEquals(names, ["x.json", "x.md"]);
    assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/x.json`)).commit, "abc1234");
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(dir, { recursive: true });
  }
});
