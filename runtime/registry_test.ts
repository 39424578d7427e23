import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { createDefaultRegistry } from "./builtins.ts";
import { PluginRegistry } from "./registry.ts";

Deno.test("registry: lookup by kind and name, duplicates and unknown names are errors", () => {
  const r = new PluginRegistry();
  const a = { kind: "model", name: "a", className: "A", description: "first" } as const;
  r.register(a).register({ kind: "model", name: "b", className: "B", description: "second" });
  assertEquals(r.get("model", "a").description, "first");
  assertEquals(r.list("model").map((p) => p.name), ["a", "b"]);
  assertEquals(r.list("rotation"), []);
  assert(r.has("model", "b") && !r.has("rotation", "b"));
  assertThrows(() => r.register(a), Error, "already");
  assertThrows(() => r.get("model", "c"), RangeError, "registered: a, b");
  assertThrows(() => r.get("quantizer", "tlq"), RangeError, "registered: none");
});

Deno.test("the default registry holds every built-in plugin family", () => {
  const r = createDefaultRegistry();
  for (const kind of ["model", "quantizer", "rotation", "attention"] as const) {
    assert(r.list(kind).length > 0, `no ${kind} plugin registered`);
  }
  assert(r.has("model", "pixart") && r.has("model", "flux"));
});
