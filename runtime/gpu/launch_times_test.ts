import { assert, assertEquals } from "../../tests/assert.ts";
import { byKernel, formatKernelTimes } from "./launch_times.ts";

Deno.test("byKernel sums each kernel's launches, largest first; the table totals them", () => {
  const rows = byKernel([
    { name: "gemm", ms: 2 },
    { name: "norm", ms: 0.5 },
    { name: "gemm", ms: 3 },
    { name: "attention", ms: 4 },
    { name: "cast", ms: 0.5 },
  ]);
  assertEquals(rows, [
    { name: "gemm", ms: 5, launches: 2 },
    { name: "attention", ms: 4, launches: 1 },
    { name: "cast", ms: 0.5, launches: 1 },
    { name: "norm", ms: 0.5, launches: 1 },
  ]);
  const text = formatKernelTimes(rows);
  const lines = text.split("\n");
  assertEquals(lines.length, 5);
  assert(lines[0].includes("5.00 ms") && lines[0].includes("50.0 %") && lines[0].endsWith("gemm"));
  assert(lines[4].includes("10.00 ms total"), lines[4]);
  assertEquals(byKernel([]), []);
  assert(formatKernelTimes([]).includes("0.00 ms total"));
});
