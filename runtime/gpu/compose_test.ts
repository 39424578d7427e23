import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { composeWgsl } from "./compose.ts";

Deno.test("composeWgsl: f32 has no enable and aliases DT to f32", () => {
  const c = composeWgsl("fn k() {}");
  assert(!c.source.includes("enable f16"));
  assert(c.source.includes("alias DT = f32;"));
  assertEquals(c.source.split("\n").length - 1, c.preludeLines + 0);
});

Deno.test("composeWgsl: f16 enables the extension and libs come before the kernel", () => {
  const c = composeWgsl("fn k() {}", { storage: "f16", libs: ["fn a() {}\nfn b() {}"] });
  const lines = c.source.split("\n");
  assertEquals(lines[0], "enable f16;");
  assertEquals(lines[c.preludeLines], "fn k() {}");
  assert(c.source.indexOf("fn a()") < c.source.indexOf("fn k()"));
});

Deno.test("composeWgsl: rejects unknown storage types", () => {
  assertThrows(() => composeWgsl("", { storage: "f64" as "f32" }), TypeError, "f32 or f16");
});
